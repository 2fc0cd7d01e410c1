// LORAFLEET_HD marks the serving kernels' element and row functions as callable from both host and device
// code: `__host__ __device__` when nvcc compiles the file, nothing under a plain C++ compiler. So the
// exact same function body runs inside a CUDA kernel and, on the CPU, in the kernels_host tests that check
// it against the engine's CPU implementation (llm.c's rule: each kernel next to a plain reference).
// The headers that use it are C++17 and free of the standard library beyond <cmath>-level math, because
// .cu files compile as C++17 and device code cannot call most of the library.
#pragma once

#if defined(__CUDACC__)
#define LORAFLEET_HD __host__ __device__ __forceinline__
#else
#define LORAFLEET_HD inline
#endif
