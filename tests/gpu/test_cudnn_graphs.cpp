// tests/gpu/test_cudnn_graphs.cpp — the cuDNN attention path's graphs (core/cuda/attention_cudnn.cpp), checked
// without a GPU: for the operands the model and the parity cases hand it, the forward and both backward graphs
// (deterministic and default) pass the cuDNN frontend's validation for sm_80 and sm_90 in bf16 and f16. Runs in
// CI (CUDA build, cuDNN loadable: CMake points MODU_CUDNN_LIBRARY at it); execution itself is checked on a GPU by
// backend_parity under MODU_CUDA_ATTENTION=cudnn (tests/gpu/run.sh).
#include <gtest/gtest.h>

#include <string>

#include "core/cuda/attention_cudnn.h"
#include "core/ops/layout.h"
#include "core/ops/ops.h"

using namespace modu;

namespace {
// (B, NH, L, HS) in dtype, stored as (B, L, NH, HS) when `bthd` (the model's permuted views).
Tensor heads(int64_t B, int64_t NH, int64_t L, int64_t HS, DType dt, bool bthd) {
  if (bthd) return Tensor::zeros(Dims{B, L, NH, HS}, dt).permute(Dims{0, 2, 1, 3});
  return Tensor::zeros(Dims{B, NH, L, HS}, dt);
}

struct Config {
  const char* name;
  int64_t B, NH, T, S, HS;
  bool causal, bthd;
  double scale;
};
}  // namespace

TEST(CudnnGraphs, ValidateForTheShapesModuUses) {
  ASSERT_TRUE(cuda::attention_cudnn_built()) << "configure found cudnn_frontend.h, so the path must be built";
  const Config configs[] = {
      {"gpt2_124m_packed_qkv", 8, 12, 1024, 1024, 64, true, true, 0.125},
      {"tiles_causal_hs64", 1, 2, 130, 130, 64, true, true, 0.125},
      {"tiles_full_hs32", 2, 1, 65, 97, 32, false, false, 0.17677669529663687},
      {"tiles_causal_hs48", 1, 2, 77, 77, 48, true, false, 0.14433756729740643},
      {"llama_gqa_expanded", 2, 4, 16, 16, 16, true, false, 0.25},
  };
  for (DType dt : {DType::BF16, DType::F16}) {
    for (const Config& c : configs) {
      Tensor q = heads(c.B, c.NH, c.T, c.HS, dt, c.bthd);
      Tensor k = heads(c.B, c.NH, c.S, c.HS, dt, c.bthd), v = heads(c.B, c.NH, c.S, c.HS, dt, c.bthd);
      if (c.bthd && c.T == c.S) {  // q, k, v as thirds of one packed (B, T, 3, NH, HS) projection
        Tensor qkv = Tensor::zeros(Dims{c.B, c.T, 3 * c.NH * c.HS}, dt);
        auto view = [&](int i) {
          return qkv.narrow(2, i * c.NH * c.HS, c.NH * c.HS).view(Dims{c.B, c.T, c.NH, c.HS}).permute(Dims{0, 2, 1, 3});
        };
        q = view(0), k = view(1), v = view(2);
      }
      AttentionAttrs a;
      a.causal = c.causal;
      a.scale = c.scale;
      for (int sm : {80, 90}) {
        EXPECT_EQ(cuda::attention_cudnn_validate(q, k, v, a, sm), "")
            << c.name << " " << dtype_name(dt) << " sm_" << sm;
      }
    }
  }
}

// attention_packed's layouts (core/ops/layout.h: packed_heads): q, k, v, their gradients as thirds of packed
// (B, T, 3C) tensors, o and its gradient as (B, T, C) head views; GPT-2 124M at T = 1024 and the GPU parity case.
TEST(CudnnGraphs, ValidateAttentionPackedLayouts) {
  struct Packed {
    const char* name;
    int64_t B, T, NH, HS;
  };
  for (DType dt : {DType::BF16, DType::F16}) {
    for (const Packed& c : {Packed{"gpt2_124m", 8, 1024, 12, 64}, Packed{"tiles_packed_hs64", 2, 130, 2, 64}}) {
      const int64_t C = c.NH * c.HS;
      Tensor qkv = Tensor::zeros(Dims{c.B, c.T, 3 * C}, dt), gqkv = Tensor::zeros(Dims{c.B, c.T, 3 * C}, dt);
      Tensor o = Tensor::zeros(Dims{c.B, c.T, C}, dt), go = Tensor::zeros(Dims{c.B, c.T, C}, dt);
      auto part = [&](const Tensor& t, int64_t parts, int64_t i) { return packed_heads(t, c.NH, parts, i); };
      AttentionAttrs a;
      a.causal = true;
      a.scale = 0.125;
      a.n_head = static_cast<int32_t>(c.NH);
      EXPECT_EQ(part(qkv, 3, 1).stride(2), 3 * C) << "k's positions step over the packed row";
      for (int sm : {80, 90}) {
        EXPECT_EQ(
            cuda::attention_cudnn_validate(part(qkv, 3, 0), part(qkv, 3, 1), part(qkv, 3, 2), part(o, 1, 0),
                                           part(go, 1, 0), part(gqkv, 3, 0), part(gqkv, 3, 1), part(gqkv, 3, 2), a, sm),
            "")
            << c.name << " " << dtype_name(dt) << " sm_" << sm;
      }
    }
  }
}

// Operands the path does not take are refused before any graph is made (attention.cu then uses the GEMM path).
TEST(CudnnGraphs, RefusesOperandsCudnnDoesNotTake) {
  AttentionAttrs causal;
  Tensor hs20 = Tensor::zeros(Dims{1, 2, 8, 20}, DType::BF16);
  EXPECT_NE(cuda::attention_cudnn_unsupported(hs20, hs20, hs20, causal), "");
  Tensor f32 = Tensor::zeros(Dims{1, 2, 8, 16}, DType::F32);
  EXPECT_NE(cuda::attention_cudnn_unsupported(f32, f32, f32, causal), "");
  Tensor q = Tensor::zeros(Dims{1, 2, 8, 16}, DType::BF16), k = Tensor::zeros(Dims{1, 2, 4, 16}, DType::BF16);
  EXPECT_NE(cuda::attention_cudnn_unsupported(q, k, k, causal), "") << "causal with fewer keys than queries";
  EXPECT_NE(cuda::attention_cudnn_unsupported(k, q, q, causal), "") << "causal with more keys (a KV-cache decode)";
  AttentionAttrs full;
  full.causal = false;
  EXPECT_EQ(cuda::attention_cudnn_unsupported(k, q, q, full), "") << "full attention over more keys than queries";
  Tensor hs0 = Tensor::zeros(Dims{1, 2, 8, 0}, DType::BF16);
  EXPECT_NE(cuda::attention_cudnn_unsupported(hs0, hs0, hs0, causal), "") << "head size 0";
  EXPECT_NE(cuda::attention_cudnn_validate(hs20, hs20, hs20, causal, 90), "");
}
