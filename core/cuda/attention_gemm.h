// core/cuda/attention_gemm.h — the tensor-core (cuBLAS GEMM) attention path of the CUDA backend
// (core/cuda/attention_gemm.cu); attention.cu's kernels pick it per call. Host-only header.
#pragma once

#include "core/ops/dispatch.h"

namespace modu::cuda {

// The CUDA attention implementations (forward and backward take the same one).
enum class AttentionPath {
  Flash,       // attention.cu: the flash-style kernel on FP32 CUDA cores (f32, f64; bf16/f16 widened)
  Gemm,        // attention_gemm.cu: cuBLAS tensor-core GEMMs with T x S scratch (f32, bf16, f16)
  TensorCore,  // attention_tc.cu: the fused FlashAttention-2 style mma.sync kernels (bf16, f16; HS <= 128)
  Cudnn,       // attention_cudnn.cpp: cuDNN's fused flash attention (bf16, f16; attention_cudnn_unsupported)
};

// The path attention of this input dtype and head size takes, from MODU_CUDA_ATTENTION (read once):
//   auto (default)  bf16/f16 on Gemm, f32/f64 on Flash
//   gemm            f32/bf16/f16 on Gemm, f64 on Flash
//   flash           everything on Flash
//   tc              bf16/f16 with head size <= 128 on TensorCore, other bf16/f16 on Gemm, f32/f64 on Flash
//   cudnn           bf16/f16 on Cudnn (operands cuDNN does not take: Gemm), f32/f64 on Flash
// TensorCore becomes the bf16/f16 default once it has matched the CPU on a GPU (tests/gpu/run.sh).
// Any other value throws.
AttentionPath attention_path(DType dtype, int64_t head_size);

// q (B, NH, T, HS), k and v (B, NH, S, HS): one dtype (f32, bf16 or f16),
// unit-stride last dims. o (B, NH, T, HS) in q's dtype, lse (B, NH, T) f32
// contiguous; both written.
void attention_forward_gemm(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& o, Tensor& lse,
                            const AttentionAttrs& a);
// go: the output gradient in q's dtype; gq, gk, gv written (=) in their own
// dtypes and strides.
void attention_backward_gemm(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& lse, const Tensor& go,
                             Tensor& gq, Tensor& gk, Tensor& gv, const AttentionAttrs& a);

}  // namespace modu::cuda
