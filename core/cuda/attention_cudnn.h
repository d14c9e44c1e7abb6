// core/cuda/attention_cudnn.h — scaled-dot-product attention through cuDNN's fused flash-attention engines
// (core/cuda/attention_cudnn.cpp); attention.cu's kernels take it when attention_path() says so
// (MODU_CUDA_ATTENTION=cudnn). Host-only header.
#pragma once

#include <string>

#include "core/ops/dispatch.h"

namespace modu::cuda {

// Forward and backward calls that ran on cuDNN so far (the parity run proves the path was taken).
int64_t attention_cudnn_calls();

// Whether this build has the cuDNN path (the cuDNN frontend headers were there at configure time:
// scripts/fetch-cudnn-frontend.sh).
bool attention_cudnn_built();

// Empty when cuDNN takes these operands, else why not: q (B, NH, T, HS), k and v (B, NH, S, HS) of one dtype,
// bf16 or f16; HS a multiple of 8 from 8 to 128; unit-stride last dims, other strides multiples of 8 elements,
// 16-byte aligned data; T, S > 0; causal attention needs S == T (S > T is a KV-cache decode step, which would
// build one graph per cache length; the GEMM path takes it).
std::string attention_cudnn_unsupported(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionAttrs& a);

// o (B, NH, T, HS) in q's dtype (through its strides), lse (B, NH, T) f32 contiguous: the natural-log
// log-sum-exp of each row's scaled scores (cuDNN's softmax statistics); both written, and true returned.
// False, with nothing written, when cuDNN cannot be used (not loadable, or older than 9.5.1) or refuses to build
// this graph (cached, said once on stderr): the caller takes another path. Operands attention_cudnn_unsupported
// refuses throw; so do execution errors, naming the cuDNN step and its message.
bool attention_forward_cudnn(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& o, Tensor& lse,
                             const AttentionAttrs& a);
// o, lse: the forward's outputs (any path's: they all store lse alike); go the output gradient. gq, gk, gv written
// (=) through their strides, in q's dtype, and true returned; false as the forward. Deterministic where cuDNN has
// a deterministic backward for the GPU (it is asked for first); otherwise cuDNN's default backward, with a
// warning on stderr once.
bool attention_backward_cudnn(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o, const Tensor& lse,
                              const Tensor& go, Tensor& gq, Tensor& gk, Tensor& gv, const AttentionAttrs& a);

// Defines the forward and backward graphs for these operands (CPU tensors will do: only dtypes, shapes and
// strides are read; o and the gradients as dispatch allocates them) and runs the frontend's validation for a
// GPU of compute capability sm_version (e.g. 90), with no GPU: "" when every graph validates, else the
// messages. Needs cuDNN loadable (as the path itself); tests/gpu/test_cudnn_graphs.cpp runs it in CI.
std::string attention_cudnn_validate(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionAttrs& a,
                                     int sm_version);
// The same with the outputs' layouts given (attention_packed writes o and the gradients as strided views).
std::string attention_cudnn_validate(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o,
                                     const Tensor& go, const Tensor& gq, const Tensor& gk, const Tensor& gv,
                                     const AttentionAttrs& a, int sm_version);

}  // namespace modu::cuda
