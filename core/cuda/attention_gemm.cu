// core/cuda/attention_gemm.cu — scaled-dot-product attention (forward and backward) on tensor cores
// through cuBLAS GEMMs, one batch row (all heads) at a time, with row kernels for softmax.
//
// Shapes: q (B, NH, T, HS), k and v (B, NH, S, HS) with unit-stride last dims and any other strides;
// o, gq, gk, gv written through their own strides; lse (B, NH, T) f32. Causal alignment as everywhere in
// modu: query t sees keys s <= t + (S - T); a query with no visible key gets o = 0, lse = -inf.
//
// Per batch index b (scratch of NH x T x S, reused across b; the scale folded into the GEMMs):
//   forward   S = scale Q K^T (f32)  ->  P = softmax_causal(S) (compute type), lse  ->  O = P V
//   backward  S = scale Q K^T  ->  P = exp(S - lse) masked  ->  dV = P^T dO
//             dP = dO V^T (f32, over S's buffer)  ->  dS = scale P (dP - rowsum(P dP)) (over P's buffer)
//             dQ = dS K,  dK = dS^T Q
// The compute type is the inputs' (bf16/f16 multiply on tensor cores with fp32 accumulation; f32 in
// true fp32, no TF32). P and dS are rounded to the compute type before their GEMMs (as flash-attention
// kernels do for 16-bit inputs); scores, row statistics and dP stay f32. Outputs are rounded once.
//
// Why this exists beside attention.cu's flash-style kernel: that kernel runs on FP32 CUDA cores and was
// ~70% of a bf16 GPT-2 step on an H200 (bench/results/2026-11-28-h200.md). This path moves the FLOPs onto
// tensor cores at the price of O(NH T S) scratch per batch row (12 x 1024 x 1024 x 6 bytes = 72 MB for
// GPT-2 small) and a few memory passes over it. The fused tensor-core kernels (attention_tc.cu,
// MODU_CUDA_ATTENTION=tc) are the next step; they replace this path once they have matched the CPU on a GPU.
//
// Invariants: deterministic (cuBLAS default algorithms, fixed row reductions, no atomics); gradients are
// written (=); nothing here goes through dispatch().
#include <cstdlib>
#include <string>

#include "core/cuda/attention_gemm.h"
#include "core/cuda/common.cuh"

namespace modu::cuda {

namespace {

constexpr int kRowWarps = 4;  // rows per block in the row kernels (one warp per row)

struct RowGeom {
  int64_t NH, T, S, shift;
  bool causal;
};

// Keys visible to query t (0 when none).
__device__ __forceinline__ int64_t visible_keys(const RowGeom& g, int64_t t) {
  if (!g.causal) return g.S;
  int64_t n = t + g.shift + 1;
  return n < 0 ? 0 : (n > g.S ? g.S : n);
}

// Forward softmax of one (h, t) row of S: P (compute type P_T) and lse (f32, into lse_b[h * lse_h + t]).
template <class P_T>
__global__ void softmax_rows_kernel(const float* __restrict__ scores, P_T* __restrict__ probs, float* lse_b,
                                    int64_t lse_h, RowGeom g) {
  int64_t row = static_cast<int64_t>(blockIdx.x) * kRowWarps + threadIdx.x / 32;
  int lane = threadIdx.x % 32;
  if (row >= g.NH * g.T) return;
  int64_t h = row / g.T, t = row % g.T;
  const float* s = scores + row * g.S;
  P_T* p = probs + row * g.S;
  int64_t n = visible_keys(g, t);
  float m = -INFINITY;
  for (int64_t j = lane; j < n; j += 32) m = fmaxf(m, s[j]);
  m = warp_max(m);
  float l = 0.f;
  for (int64_t j = lane; j < n; j += 32) l += expf(s[j] - m);
  l = warp_sum(l);
  float inv = n > 0 ? 1.f / l : 0.f;
  for (int64_t j = lane; j < g.S; j += 32) st(p + j, j < n ? expf(s[j] - m) * inv : 0.f);
  if (lane == 0) lse_b[h * lse_h + t] = n > 0 ? m + logf(l) : -INFINITY;
}

// Backward: P = exp(S - lse) on visible keys, 0 elsewhere.
template <class P_T>
__global__ void probs_from_lse_kernel(const float* __restrict__ scores, P_T* __restrict__ probs, const float* lse_b,
                                      int64_t lse_h, RowGeom g) {
  int64_t row = static_cast<int64_t>(blockIdx.x) * kRowWarps + threadIdx.x / 32;
  int lane = threadIdx.x % 32;
  if (row >= g.NH * g.T) return;
  int64_t h = row / g.T, t = row % g.T;
  const float* s = scores + row * g.S;
  P_T* p = probs + row * g.S;
  int64_t n = visible_keys(g, t);
  float lse = lse_b[h * lse_h + t];
  for (int64_t j = lane; j < g.S; j += 32) st(p + j, j < n ? expf(s[j] - lse) : 0.f);
}

// Backward: dS = scale P (dP - sum_j P dP), written over P (each warp reads its row whole before writing).
template <class P_T>
__global__ void softmax_grad_rows_kernel(P_T* __restrict__ probs_to_ds, const float* __restrict__ dp, float scale,
                                         RowGeom g) {
  int64_t row = static_cast<int64_t>(blockIdx.x) * kRowWarps + threadIdx.x / 32;
  int lane = threadIdx.x % 32;
  if (row >= g.NH * g.T) return;
  P_T* p = probs_to_ds + row * g.S;
  const float* d = dp + row * g.S;
  float dot = 0.f;
  for (int64_t j = lane; j < g.S; j += 32) dot += ld(p + j) * d[j];
  dot = warp_sum(dot);
  __syncwarp();
  for (int64_t j = lane; j < g.S; j += 32) st(p + j, scale * ld(p + j) * (d[j] - dot));
}

unsigned row_blocks(const RowGeom& g) { return static_cast<unsigned>((g.NH * g.T + kRowWarps - 1) / kRowWarps); }

// Element pointer of (b, h=0, pos=0) of a (B, NH, L, HS) tensor.
const char* base_of(const Tensor& t, int64_t b) {
  return static_cast<const char*>(t.data_ptr()) + b * t.stride(0) * static_cast<int64_t>(dtype_size(t.dtype()));
}
char* base_of_mut(Tensor& t, int64_t b) {
  return static_cast<char*>(t.data_ptr()) + b * t.stride(0) * static_cast<int64_t>(dtype_size(t.dtype()));
}

void check_operand(const Tensor& t, const char* what) {
  MODU_CHECK(t.dim() == 4 && (t.size(3) <= 1 || t.stride(3) == 1), "attention (GEMM path): ", what,
             " must be 4-D with a unit-stride last dim");
}

template <class P_T>
void forward_impl(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& o, Tensor& lse, const AttentionAttrs& a) {
  const int64_t B = q.size(0), NH = q.size(1), T = q.size(2), S = k.size(2), HS = q.size(3);
  const DType ct = q.dtype();
  const int dev = current_device();
  RowGeom g{NH, T, S, S - T, a.causal};
  Tensor scores = Tensor::empty(Dims{NH, T, S}, DType::F32, Device::cuda(dev));
  Tensor probs = Tensor::empty(Dims{NH, T, S}, ct, Device::cuda(dev));
  cudaStream_t stream = cur_stream();
  for (int64_t b = 0; b < B; ++b) {
    gemm(ct, DType::F32, false, true, T, S, HS, a.scale, base_of(q, b), q.stride(2), q.stride(1), base_of(k, b),
         k.stride(2), k.stride(1), 0.0, scores.data_ptr(), S, T * S, NH);
    float* lse_b = static_cast<float*>(lse.data_ptr()) + b * lse.stride(0);
    softmax_rows_kernel<P_T><<<row_blocks(g), kRowWarps * 32, 0, stream>>>(
        static_cast<const float*>(scores.data_ptr()), static_cast<P_T*>(probs.data_ptr()), lse_b, lse.stride(1), g);
    MODU_CUDA_LAUNCH_CHECK("attention (GEMM path): softmax");
    gemm(ct, o.dtype(), false, false, T, HS, S, 1.0, probs.data_ptr(), S, T * S, base_of(v, b), v.stride(2),
         v.stride(1), 0.0, base_of_mut(o, b), o.stride(2), o.stride(1), NH);
  }
}

template <class P_T>
void backward_impl(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& lse, const Tensor& go, Tensor& gq,
                   Tensor& gk, Tensor& gv, const AttentionAttrs& a) {
  const int64_t B = q.size(0), NH = q.size(1), T = q.size(2), S = k.size(2), HS = q.size(3);
  const DType ct = q.dtype();
  const int dev = current_device();
  RowGeom g{NH, T, S, S - T, a.causal};
  Tensor scores = Tensor::empty(Dims{NH, T, S}, DType::F32,
                                Device::cuda(dev));                     // S, then dP
  Tensor probs = Tensor::empty(Dims{NH, T, S}, ct, Device::cuda(dev));  // P, then dS
  cudaStream_t stream = cur_stream();
  for (int64_t b = 0; b < B; ++b) {
    gemm(ct, DType::F32, false, true, T, S, HS, a.scale, base_of(q, b), q.stride(2), q.stride(1), base_of(k, b),
         k.stride(2), k.stride(1), 0.0, scores.data_ptr(), S, T * S, NH);
    const float* lse_b = static_cast<const float*>(lse.data_ptr()) + b * lse.stride(0);
    probs_from_lse_kernel<P_T><<<row_blocks(g), kRowWarps * 32, 0, stream>>>(
        static_cast<const float*>(scores.data_ptr()), static_cast<P_T*>(probs.data_ptr()), lse_b, lse.stride(1), g);
    MODU_CUDA_LAUNCH_CHECK("attention_backward (GEMM path): probabilities");
    // dV (S, HS) = P^T (S, T) dO (T, HS)
    gemm(ct, gv.dtype(), true, false, S, HS, T, 1.0, probs.data_ptr(), S, T * S, base_of(go, b), go.stride(2),
         go.stride(1), 0.0, base_of_mut(gv, b), gv.stride(2), gv.stride(1), NH);
    // dP (T, S) = dO (T, HS) V^T
    gemm(ct, DType::F32, false, true, T, S, HS, 1.0, base_of(go, b), go.stride(2), go.stride(1), base_of(v, b),
         v.stride(2), v.stride(1), 0.0, scores.data_ptr(), S, T * S, NH);
    softmax_grad_rows_kernel<P_T><<<row_blocks(g), kRowWarps * 32, 0, stream>>>(
        static_cast<P_T*>(probs.data_ptr()), static_cast<const float*>(scores.data_ptr()), static_cast<float>(a.scale),
        g);
    MODU_CUDA_LAUNCH_CHECK("attention_backward (GEMM path): softmax gradient");
    // dQ (T, HS) = dS (T, S) K (S, HS);  dK (S, HS) = dS^T (S, T) Q (T, HS)
    gemm(ct, gq.dtype(), false, false, T, HS, S, 1.0, probs.data_ptr(), S, T * S, base_of(k, b), k.stride(2),
         k.stride(1), 0.0, base_of_mut(gq, b), gq.stride(2), gq.stride(1), NH);
    gemm(ct, gk.dtype(), true, false, S, HS, T, 1.0, probs.data_ptr(), S, T * S, base_of(q, b), q.stride(2),
         q.stride(1), 0.0, base_of_mut(gk, b), gk.stride(2), gk.stride(1), NH);
  }
}

template <class F>
void dispatch_compute(DType t, const char* name, F&& f) {
  switch (t) {
    case DType::F32:
      f(float{});
      return;
    case DType::BF16:
      f(bf16_t{});
      return;
    case DType::F16:
      f(f16_t{});
      return;
    default:
      MODU_FAIL(name, " (GEMM path): no kernel for ", dtype_name(t), "; use f32, bf16 or f16");
  }
}

}  // namespace

AttentionPath attention_path(DType dtype, int64_t head_size) {
  enum Mode { kAuto, kGemm, kFlash, kTc, kCudnn };
  static const Mode mode = [] {
    const char* env = std::getenv("MODU_CUDA_ATTENTION");
    std::string m = env ? env : "";
    if (m == "gemm") return kGemm;
    if (m == "flash") return kFlash;
    if (m == "tc") return kTc;
    if (m == "cudnn") return kCudnn;
    MODU_CHECK(m.empty() || m == "auto", "MODU_CUDA_ATTENTION='", m, "': use auto, gemm, flash, tc or cudnn");
    return kAuto;
  }();
  const bool half = dtype == DType::BF16 || dtype == DType::F16;
  switch (mode) {
    case kFlash:
      return AttentionPath::Flash;
    case kGemm:
      return dtype == DType::F64 ? AttentionPath::Flash : AttentionPath::Gemm;
    case kTc:
      if (half && head_size >= 1 && head_size <= 128) return AttentionPath::TensorCore;
      return half ? AttentionPath::Gemm : AttentionPath::Flash;
    case kCudnn:
      return half ? AttentionPath::Cudnn : AttentionPath::Flash;
    case kAuto:
      break;
  }
  return half ? AttentionPath::Gemm : AttentionPath::Flash;  // auto: tensor cores for 16-bit inputs
}

void attention_forward_gemm(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& o, Tensor& lse,
                            const AttentionAttrs& a) {
  check_operand(q, "q");
  check_operand(k, "k");
  check_operand(v, "v");
  check_operand(o, "the output");
  MODU_CHECK(k.dtype() == q.dtype() && v.dtype() == q.dtype(), "attention (GEMM path): q, k, v dtypes differ");
  MODU_CHECK(lse.dtype() == DType::F32, "attention (GEMM path): lse must be f32");
  dispatch_compute(q.dtype(), "attention", [&](auto tag) { forward_impl<decltype(tag)>(q, k, v, o, lse, a); });
}

void attention_backward_gemm(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& lse, const Tensor& go,
                             Tensor& gq, Tensor& gk, Tensor& gv, const AttentionAttrs& a) {
  check_operand(q, "q");
  check_operand(k, "k");
  check_operand(v, "v");
  check_operand(go, "the output gradient");
  check_operand(gq, "dq");
  check_operand(gk, "dk");
  check_operand(gv, "dv");
  MODU_CHECK(go.dtype() == q.dtype(), "attention_backward (GEMM path): the output gradient is ", dtype_name(go.dtype()),
             " but q is ", dtype_name(q.dtype()));
  MODU_CHECK(lse.dtype() == DType::F32, "attention_backward (GEMM path): lse must be f32");
  dispatch_compute(q.dtype(), "attention_backward",
                   [&](auto tag) { backward_impl<decltype(tag)>(q, k, v, lse, go, gq, gk, gv, a); });
}

}  // namespace modu::cuda
