// core/cuda/attention_tc.h — the fused tensor-core (FlashAttention-2 style) attention path of the CUDA backend
// (core/cuda/attention_tc.cu); attention.cu's kernels pick it per call when attention_path() says so
// (MODU_CUDA_ATTENTION=tc). Host-only header.
#pragma once

#include "core/ops/dispatch.h"

namespace modu::cuda {

// Whether the fused kernels take these operands: q, k, v 4-D of one dtype, bf16 or f16, head size 1..128, at most
// 65535 tiles of 64 queries or keys, and every kernel's shared memory within the GPU's per-block limit (head
// sizes above 64 need 102 KB, more than sm_86 / sm_89 parts have); attention.cu takes the GEMM path otherwise.
bool attention_tc_supported(const Tensor& q, const Tensor& k, const Tensor& v);

// q (B, NH, T, HS), k and v (B, NH, S, HS), unit-stride last dims, any other strides; S > 0.
// o (B, NH, T, HS) in q's dtype (written through its strides), lse (B, NH, T) f32 contiguous; both written.
void attention_forward_tc(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& o, Tensor& lse,
                          const AttentionAttrs& a);
// o: the forward's output, go: the output gradient (q's dtype, unit-stride last dims); lse f32 contiguous.
// gq, gk, gv written (=) in q's dtype through their own strides.
void attention_backward_tc(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o, const Tensor& lse,
                           const Tensor& go, Tensor& gq, Tensor& gk, Tensor& gv, const AttentionAttrs& a);

}  // namespace modu::cuda
