# Toolchain for 32-bit x86 workers (Pentium Pro/II and up, no SSE required):
# Debian's i686 cross compiler (not gcc-multilib, which Debian makes conflict
# with every cross compiler, the ARM ones of scripts/build-arm.sh included),
# libraries from an i386 sysroot made by scripts/build-i686.sh, linked
# statically so one file copies onto an old box.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR i686)
set(CMAKE_C_COMPILER i686-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER i686-linux-gnu-g++)
# x87 floating point, no SSE in portable code; SIMD files add their own flags.
# 64-bit file offsets: shard files and models can be larger than 2 GB
# (common/net/shard_cache.cpp refuses to build without them).
set(CMAKE_C_FLAGS_INIT "-m32 -march=i686 -mtune=generic -D_FILE_OFFSET_BITS=64")
set(CMAKE_CXX_FLAGS_INIT "-m32 -march=i686 -mtune=generic -D_FILE_OFFSET_BITS=64")
set(CMAKE_EXE_LINKER_FLAGS_INIT "-m32 -static")
set(CMAKE_LIBRARY_ARCHITECTURE i386-linux-gnu)
set(FERRY_I686_SYSROOT "" CACHE PATH "Extracted i386 packages (scripts/build-i686.sh)")
set(CMAKE_FIND_ROOT_PATH ${FERRY_I686_SYSROOT} /usr/i686-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
set(CMAKE_FIND_LIBRARY_SUFFIXES ".a")
