# Toolchain for Windows workers (scripts/build-windows.sh): Debian's mingw-w64
# cross compilers with POSIX threads (std::thread over winpthreads), linked
# statically so ferry-worker.exe is one file to copy onto a Windows PC.
# FERRY_WINDOWS: i686 (32-bit Windows, any x86 with or without SSE2) or x86_64.
# FERRY_WINDOWS_DEPS: protobuf-lite, libsodium and the header-only libraries
# staged by the script (the host's /usr/include holds glibc's headers, which
# must not reach a Windows compile).
set(FERRY_WINDOWS "x86_64" CACHE STRING "i686 or x86_64")
set(FERRY_WINDOWS_DEPS "" CACHE PATH "Dependencies built for this target (scripts/build-windows.sh)")
set(CMAKE_SYSTEM_NAME Windows)
if(FERRY_WINDOWS STREQUAL "i686")
  set(CMAKE_SYSTEM_PROCESSOR i686)
  set(triple i686-w64-mingw32)
  # x87 floating point like the Linux i686 build; SIMD files add their own flags.
  # Windows keeps 32-bit stacks 4-byte aligned: SSE spills need realigning.
  set(arch_flags "-march=i686 -mtune=generic -mstackrealign")
else()
  set(CMAKE_SYSTEM_PROCESSOR x86_64)
  set(triple x86_64-w64-mingw32)
  set(arch_flags "")
endif()
set(CMAKE_C_COMPILER ${triple}-gcc-posix)
set(CMAKE_CXX_COMPILER ${triple}-g++-posix)
set(CMAKE_RC_COMPILER ${triple}-windres)
# Windows 7 is the oldest target (deploy/README.md, "Windows PCs", says why); 64-bit offsets
# for shard files over 2 GB on the 32-bit build.
# GCC spills AVX registers with aligned moves to stack slots that 64-bit
# Windows aligns to 16 bytes only (GCC bug 54412): the assembler turns every
# aligned vector move into an unaligned one, which costs nothing on CPUs with AVX.
set(win_flags "${arch_flags} -D_WIN32_WINNT=0x0601 -DWINVER=0x0601 -DWIN32_LEAN_AND_MEAN -DNOMINMAX -D_FILE_OFFSET_BITS=64 -Wa,-muse-unaligned-vector-move")
set(CMAKE_C_FLAGS_INIT "${win_flags} -isystem ${FERRY_WINDOWS_DEPS}/include")
set(CMAKE_CXX_FLAGS_INIT "${win_flags} -isystem ${FERRY_WINDOWS_DEPS}/include")
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static -static-libgcc -static-libstdc++")
set(CMAKE_FIND_ROOT_PATH ${FERRY_WINDOWS_DEPS} /usr/${triple})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
set(CMAKE_FIND_LIBRARY_SUFFIXES ".a")
