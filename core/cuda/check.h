// core/cuda/check.h — error checking for CUDA runtime, cuBLAS and cuBLASLt calls, and kernel launches.
//
//   MODU_CUDA_CHECK(cudaMalloc(&p, n));       // throws modu::Error on failure
//   MODU_CUBLAS_CHECK(cublasSgemm(...));      // cublasStatus_t (cuBLAS and cuBLASLt)
//   kernel<<<grid, block, smem, stream>>>(...);
//   MODU_CUDA_LAUNCH_CHECK("kernel name");    // cudaGetLastError after every launch
//
// Invariants (ARCHITECTURE §9): never compiled out; every report names the file and line of the call,
// the call's text and the CUDA error string, e.g.
//   "CUDA error: cudaMalloc(&p, n) failed with out of memory (cudaErrorMemoryAllocation) at core/cuda/runtime.cpp:88".
// A sticky error (an illegal address in a kernel) corrupts the context: the message says so, since every
// later CUDA call of the process will fail too. With MODU_CUDA_LAUNCH_BLOCKING=1 in the environment each
// launch check also synchronises the stream, so an asynchronous kernel fault is reported at its launch.
#pragma once

#include <cuda_runtime_api.h>

namespace modu::cuda::detail {

[[noreturn]] void cuda_fail(cudaError_t err, const char* call, const char* file, int line);
[[noreturn]] void cublas_fail(int status, const char* call, const char* file, int line);
// cudaGetLastError(), plus a stream synchronisation and a deferred-error check in launch-blocking mode.
void check_launch(const char* what, const char* file, int line);

}  // namespace modu::cuda::detail

#define MODU_CUDA_CHECK(call)                                                      \
  do {                                                                             \
    cudaError_t modu_cuda_err_ = (call);                                           \
    if (modu_cuda_err_ != cudaSuccess) [[unlikely]]                                \
      ::modu::cuda::detail::cuda_fail(modu_cuda_err_, #call, __FILE__, __LINE__); \
  } while (0)

#define MODU_CUBLAS_CHECK(call)                                                                  \
  do {                                                                                           \
    int modu_cublas_st_ = static_cast<int>(call);                                                \
    if (modu_cublas_st_ != 0) [[unlikely]]                                                       \
      ::modu::cuda::detail::cublas_fail(modu_cublas_st_, #call, __FILE__, __LINE__);             \
  } while (0)

#define MODU_CUDA_LAUNCH_CHECK(what) ::modu::cuda::detail::check_launch(what, __FILE__, __LINE__)
