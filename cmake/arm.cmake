# Toolchain for ARM workers (scripts/build-arm.sh): Debian's cross compilers,
# libraries from a sysroot of unpacked arm64/armhf packages, linked
# statically so one file copies onto a Raspberry Pi or board.
# FERRY_ARM: aarch64 (64-bit ARMv8: Pi 3/4/5, 64-bit systems) or armhf
# (32-bit ARMv7 with hard float: Pi 2/3 on a 32-bit system).
set(FERRY_ARM "aarch64" CACHE STRING "aarch64 or armhf")
set(FERRY_ARM_SYSROOT "" CACHE PATH "Extracted arm64/armhf packages (scripts/build-arm.sh)")
set(CMAKE_SYSTEM_NAME Linux)
if(FERRY_ARM STREQUAL "armhf")
  set(CMAKE_SYSTEM_PROCESSOR armv7l)
  set(triple arm-linux-gnueabihf)
  # Debian's armhf baseline (ARMv7-A, VFPv3-D16, Thumb-2); NEON files add -mfpu=neon.
  # 64-bit file offsets: shard files and models can be larger than 2 GB.
  set(arch_flags "-D_FILE_OFFSET_BITS=64")
else()
  set(CMAKE_SYSTEM_PROCESSOR aarch64)
  set(triple aarch64-linux-gnu)
  set(arch_flags "")
endif()
set(CMAKE_C_COMPILER ${triple}-gcc)
set(CMAKE_CXX_COMPILER ${triple}-g++)
set(CMAKE_C_FLAGS_INIT "${arch_flags}")
set(CMAKE_CXX_FLAGS_INIT "${arch_flags}")
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static")
set(CMAKE_LIBRARY_ARCHITECTURE ${triple})
set(CMAKE_FIND_ROOT_PATH ${FERRY_ARM_SYSROOT} /usr/${triple})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
set(CMAKE_FIND_LIBRARY_SUFFIXES ".a")
