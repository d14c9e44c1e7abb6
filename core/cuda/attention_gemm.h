// core/cuda/attention_gemm.h — the tensor-core (cuBLAS GEMM) attention path of the CUDA backend
// (core/cuda/attention_gemm.cu); attention.cu's kernels pick it per call. Host-only header.
#pragma once

#include "core/ops/dispatch.h"

namespace modu::cuda {

// Whether attention of this input dtype takes the GEMM path.
// MODU_CUDA_ATTENTION=auto (default: bf16 and f16 on tensor cores, f32 and f64
// on the flash-style FP32 kernel) | gemm (also f32) | flash (never).
bool attention_gemm_preferred(DType dtype);

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
