// core/cuda/kernels.h — registration entry points of the CUDA kernel families (one per source file) and
// the helpers they share. Host-only header (no device code), usable from .cpp and .cu files.
//
// Invariants: helpers here never go through dispatch() (no tape, no dispatch counters), so kernels may
// call them freely; every tensor they touch is on one CUDA device, the current one; all work is queued
// on that device's stream (core/cuda/runtime.h). Outputs are written (=) unless a name says otherwise.
#pragma once

#include <cstdint>
#include <vector>

#include "core/cuda/runtime.h"
#include "core/ops/dispatch.h"

namespace modu::cuda {

void register_elementwise_kernels(KernelRegistry& r);  // elementwise.cu: unary, binary, compare, where, masked_fill
void register_copy_kernels(KernelRegistry& r);         // copy.cu: cast, copies, fills, factories, random, add_, adamw_
void register_reduce_kernels(KernelRegistry& r);       // reduce.cu: sum, mean, var, max, argmax
void register_blas_kernels(KernelRegistry& r);         // blas.cpp: matmul, linear
void register_nn_kernels(KernelRegistry& r);           // nn.cu: softmax, cross-entropy, norms
void register_index_kernels(KernelRegistry& r);        // index.cu: embedding, index/gather/scatter, concat
void register_attention_kernels(KernelRegistry& r);    // attention.cu: attention, rotary
void register_image_kernels(KernelRegistry& r);        // image.cu: conv2d, upsample, avg_pool

// The device a kernel call runs on: input 0's, the factory's, or to_device's CUDA end.
int call_device(const KernelCall& c);

// Every registered CUDA kernel is wrapped: it runs with its device current and, in launch-blocking mode,
// is followed by a synchronisation that raises deferred kernel errors at the op that caused them.
template <Kernel K>
void guarded(const KernelCall& c) {
  int dev = call_device(c);
  DeviceGuard guard(dev);
  K(c);
  if (launch_blocking()) synchronize(dev);
}

// ---- helpers (copy.cu) -------------------------------------------------------------------------------
// dst <- src: src broadcast to dst's shape, dtype converted as the CPU's copy_ does, any strides.
void copy_into(Tensor& dst, const Tensor& src);
// t itself when contiguous, else a contiguous copy (same dtype, same device).
Tensor contiguous(const Tensor& t);
// A contiguous copy in `dtype` (t itself when it already is contiguous and of that dtype).
Tensor to_dtype(const Tensor& t, DType dtype);
// Every element of t (any strides) set to `value` converted as the CPU's fill_ does.
void fill(Tensor& t, double value);

// ---- test hooks (copy.cu) ------------------------------------------------------------------------------
// Raw Philox4x32-10 words of blocks [counter, counter + blocks) computed on the current device.
std::vector<uint32_t> philox_words(uint64_t key, uint64_t counter, int64_t blocks);
// Launches a kernel with an invalid configuration: MODU_CUDA_LAUNCH_CHECK must throw naming copy.cu:line.
void bad_launch_for_test();

// ---- GEMM (blas.cpp) ----------------------------------------------------------------------------------
// Row-major strided-batched C = alpha op(A) op(B) + beta C with op(A) (M, K), op(B) (K, N), C (M, N).
// `ta` means A is stored as (K, M) with leading dimension lda (likewise tb for B). A and B share
// `in_type`; C has `out_type` (the same, or f32 for 16-bit inputs: fp32 accumulation and output).
// Compute is fp32 for f32/bf16/f16 (no TF32) and fp64 for f64. Strides are in elements.
void gemm(DType in_type, DType out_type, bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha,
          const void* A, int64_t lda, int64_t stride_a, const void* B, int64_t ldb, int64_t stride_b, double beta,
          void* C, int64_t ldc, int64_t stride_c, int64_t batch);

}  // namespace modu::cuda
