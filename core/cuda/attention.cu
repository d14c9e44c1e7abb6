// core/cuda/attention.cu — fused scaled-dot-product attention (forward and backward) and rotary position
// embedding on CUDA.
//
// Shapes: q (B, NH, T, HS), k and v (B, NH, S, HS); o (B, NH, T, HS); lse (B, NH, T) in f32 (f64 for f64).
// Causal attention aligns queries to the last T keys: query t sees keys s <= t + (S - T) (core/cpu/attention.cpp).
//
// Forward — a flash-style tiled kernel (online softmax, nothing of size T x S is stored):
//   block = 4 warps = BR 16 query rows of one (b, h); K/V tiles of BC 32 keys are staged in shared memory.
//   For each tile a warp handles its 4 rows: lane j scores key j against the row's q (q row broadcast from
//   shared memory, K rows padded by one element so the 32 lanes hit 32 banks), the warp keeps the running
//   max m and sum l, and each lane accumulates the output dims d = lane + 32 i (i < HS/32) from the tile's
//   V rows with the probabilities broadcast by shuffles. Causal tiles past the block's last query are
//   skipped. lse = m + log(l) is saved for the backward.
// Backward — two deterministic kernels (no atomics), both recomputing P from q, k and lse:
//   dQ:   the forward's layout; dS = P (dP - Drow), dQ += dS K per key tile;
//   dK/dV: block = 16 keys, looping over 32-row query tiles: dV += P^T dO, dK += dS^T Q;
//   Drow = rowsum(dO * o) comes from a small pre-pass.
// The math runs on FP32 (or FP64) CUDA cores, not tensor cores: correct and memory-frugal first. bf16/f16
// inputs are widened to f32 and outputs rounded once, exactly as the CPU backend does. Gradients are
// written (=). HS <= 256 (per-lane register tiles of HS/32 values).
// By default bf16/f16 attention takes the tensor-core GEMM path instead (core/cuda/attention_gemm.cu);
// MODU_CUDA_ATTENTION=tc selects the fused tensor-core kernels (core/cuda/attention_tc.cu) for bf16/f16 with
// head sizes <= 128, MODU_CUDA_ATTENTION=cudnn cuDNN's fused flash attention (core/cuda/attention_cudnn.cpp).
// MODU_CUDA_ATTENTION=auto|gemm|flash|tc|cudnn chooses (attention_path, attention_gemm.h).
//
// Rotary: x (B, T, NH, HS) rotated pairwise (i, i + HS/2) by cos/sin (T, HS/2); inverse rotates by -angle.
#include "core/cuda/attention_gemm.h"
#include "core/cuda/attention_cudnn.h"
#include "core/cuda/attention_tc.h"
#include "core/cuda/common.cuh"
#include "core/ops/attention_packed.h"

namespace modu::cuda {

namespace {

constexpr int kAttnWarps = 4;
constexpr int kRowsPerWarp = 4;
constexpr int kBR = kAttnWarps * kRowsPerWarp;  // query rows (forward, dQ) or keys (dK/dV) per block
constexpr int kBC = 32;                         // keys (forward, dQ) or queries (dK/dV) per tile
constexpr int kAttnThreads = kAttnWarps * 32;

struct AttnGeom {
  int64_t B, NH, T, S;
  int D;
  int64_t shift;  // S - T
  bool causal;
  double scale;
  // element strides (batch, head, position) of q, k, v, o, go; the last dim is unit-stride
  int64_t q_s[3], k_s[3], v_s[3], o_s[3], go_s[3];
};

template <class A>
__device__ __forceinline__ const A* head_ptr(const A* base, const int64_t* s, int64_t b, int64_t h) {
  return base + b * s[0] + h * s[1];
}

// ---- forward --------------------------------------------------------------------------------------------------
template <class A, int DPL>
__global__ void __launch_bounds__(kAttnThreads) attn_fwd_kernel(const A* q, const A* k, const A* v, A* o, A* lse,
                                                                AttnGeom g) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int D = g.D;
  A* Qs = reinterpret_cast<A*>(smem_raw);  // kBR x D
  A* Ks = Qs + kBR * D;                     // kBC x (D + 1)
  A* Vs = Ks + kBC * (D + 1);               // kBC x D
  const int64_t bh = blockIdx.x, b = bh / g.NH, h = bh % g.NH;
  const int64_t q0 = static_cast<int64_t>(blockIdx.y) * kBR;
  const A* qb = head_ptr(q, g.q_s, b, h);
  const A* kb = head_ptr(k, g.k_s, b, h);
  const A* vb = head_ptr(v, g.v_s, b, h);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const A scale = static_cast<A>(g.scale);
  const A neg_inf = -m_inf<A>();

  for (int e = threadIdx.x; e < kBR * D; e += kAttnThreads) {
    int r = e / D, d = e % D;
    int64_t t = q0 + r;
    Qs[e] = t < g.T ? qb[t * g.q_s[2] + d] : A(0);
  }

  A m[kRowsPerWarp], l[kRowsPerWarp], acc[kRowsPerWarp][DPL];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    m[r] = neg_inf;
    l[r] = A(0);
#pragma unroll
    for (int i = 0; i < DPL; ++i) acc[r][i] = A(0);
  }
  int64_t q_last = (q0 + kBR < g.T ? q0 + kBR : g.T) - 1;
  int64_t kend = g.causal ? (q_last + g.shift + 1 < g.S ? q_last + g.shift + 1 : g.S) : g.S;

  for (int64_t k0 = 0; k0 < kend; k0 += kBC) {
    __syncthreads();
    for (int e = threadIdx.x; e < kBC * D; e += kAttnThreads) {
      int j = e / D, d = e % D;
      int64_t s = k0 + j;
      bool in = s < g.S;
      Ks[j * (D + 1) + d] = in ? kb[s * g.k_s[2] + d] : A(0);
      Vs[j * D + d] = in ? vb[s * g.v_s[2] + d] : A(0);
    }
    __syncthreads();
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int row = warp * kRowsPerWarp + r;
      const int64_t t = q0 + row;
      if (t >= g.T) continue;  // uniform over the warp
      const int64_t s = k0 + lane;
      const A* qr = Qs + row * D;
      const A* kr = Ks + lane * (D + 1);
      A sc = A(0);
      for (int d = 0; d < D; ++d) sc += qr[d] * kr[d];
      sc *= scale;
      bool valid = s < g.S && (!g.causal || s <= t + g.shift);
      A mt = warp_max(valid ? sc : neg_inf);
      A mnew = m[r] > mt ? m[r] : mt;
      if (mnew == neg_inf) continue;  // nothing visible yet (uniform)
      A p = valid ? m_exp(sc - mnew) : A(0);
      A corr = m_exp(m[r] - mnew);
      l[r] = l[r] * corr + warp_sum(p);
#pragma unroll
      for (int i = 0; i < DPL; ++i) acc[r][i] *= corr;
      for (int j = 0; j < kBC; ++j) {
        A pj = shfl_idx(p, j);
        const A* vr = Vs + j * D;
#pragma unroll
        for (int i = 0; i < DPL; ++i) {
          int d = lane + 32 * i;
          if (d < D) acc[r][i] += pj * vr[d];
        }
      }
      m[r] = mnew;
    }
  }
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int64_t t = q0 + warp * kRowsPerWarp + r;
    if (t >= g.T) continue;
    A inv = A(1) / l[r];
    A* orow = o + (bh * g.T + t) * D;
#pragma unroll
    for (int i = 0; i < DPL; ++i) {
      int d = lane + 32 * i;
      if (d < D) orow[d] = acc[r][i] * inv;
    }
    if (lane == 0) lse[bh * g.T + t] = m[r] + m_log(l[r]);
  }
}

// ---- backward ---------------------------------------------------------------------------------------------------
// Drow[bh, t] = sum_d go[t, d] * o[t, d] (warp per row).
template <class A>
__global__ void attn_drow_kernel(const A* o, const A* go, A* drow, AttnGeom g) {
  int64_t rows = g.B * g.NH * g.T;
  int64_t row = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + (threadIdx.x >> 5);
  int lane = threadIdx.x & 31;
  if (row >= rows) return;
  int64_t t = row % g.T, bh = row / g.T, b = bh / g.NH, h = bh % g.NH;
  const A* orow = head_ptr(o, g.o_s, b, h) + t * g.o_s[2];
  const A* grow = head_ptr(go, g.go_s, b, h) + t * g.go_s[2];
  A s = A(0);
  for (int d = lane; d < g.D; d += 32) s += grow[d] * orow[d];
  s = warp_sum(s);
  if (lane == 0) drow[row] = s;
}

template <class A, int DPL>
__global__ void __launch_bounds__(kAttnThreads) attn_bwd_dq_kernel(const A* q, const A* k, const A* v, const A* go,
                                                                   const A* lse, const A* drow, A* gq, AttnGeom g) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int D = g.D;
  A* Qs = reinterpret_cast<A*>(smem_raw);  // kBR x D
  A* dOs = Qs + kBR * D;                    // kBR x D
  A* Ks = dOs + kBR * D;                    // kBC x (D + 1)
  A* Vs = Ks + kBC * (D + 1);               // kBC x (D + 1)
  const int64_t bh = blockIdx.x, b = bh / g.NH, h = bh % g.NH;
  const int64_t q0 = static_cast<int64_t>(blockIdx.y) * kBR;
  const A* qb = head_ptr(q, g.q_s, b, h);
  const A* kb = head_ptr(k, g.k_s, b, h);
  const A* vb = head_ptr(v, g.v_s, b, h);
  const A* gob = head_ptr(go, g.go_s, b, h);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const A scale = static_cast<A>(g.scale);

  for (int e = threadIdx.x; e < kBR * D; e += kAttnThreads) {
    int r = e / D, d = e % D;
    int64_t t = q0 + r;
    bool in = t < g.T;
    Qs[e] = in ? qb[t * g.q_s[2] + d] : A(0);
    dOs[e] = in ? gob[t * g.go_s[2] + d] : A(0);
  }
  A lse_r[kRowsPerWarp], drow_r[kRowsPerWarp], dq[kRowsPerWarp][DPL];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    int64_t t = q0 + warp * kRowsPerWarp + r;
    lse_r[r] = t < g.T ? lse[bh * g.T + t] : A(0);
    drow_r[r] = t < g.T ? drow[bh * g.T + t] : A(0);
#pragma unroll
    for (int i = 0; i < DPL; ++i) dq[r][i] = A(0);
  }
  int64_t q_last = (q0 + kBR < g.T ? q0 + kBR : g.T) - 1;
  int64_t kend = g.causal ? (q_last + g.shift + 1 < g.S ? q_last + g.shift + 1 : g.S) : g.S;

  for (int64_t k0 = 0; k0 < kend; k0 += kBC) {
    __syncthreads();
    for (int e = threadIdx.x; e < kBC * D; e += kAttnThreads) {
      int j = e / D, d = e % D;
      int64_t s = k0 + j;
      bool in = s < g.S;
      Ks[j * (D + 1) + d] = in ? kb[s * g.k_s[2] + d] : A(0);
      Vs[j * (D + 1) + d] = in ? vb[s * g.v_s[2] + d] : A(0);
    }
    __syncthreads();
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int row = warp * kRowsPerWarp + r;
      const int64_t t = q0 + row;
      if (t >= g.T) continue;
      const int64_t s = k0 + lane;
      const A *qr = Qs + row * D, *dor = dOs + row * D;
      const A *kr = Ks + lane * (D + 1), *vr = Vs + lane * (D + 1);
      A sc = A(0), dp = A(0);
      for (int d = 0; d < D; ++d) {
        sc += qr[d] * kr[d];
        dp += dor[d] * vr[d];
      }
      bool valid = s < g.S && (!g.causal || s <= t + g.shift);
      A p = valid ? m_exp(sc * scale - lse_r[r]) : A(0);
      A ds = p * (dp - drow_r[r]);
      for (int j = 0; j < kBC; ++j) {
        A dsj = shfl_idx(ds, j);
        const A* kj = Ks + j * (D + 1);
#pragma unroll
        for (int i = 0; i < DPL; ++i) {
          int d = lane + 32 * i;
          if (d < D) dq[r][i] += dsj * kj[d];
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int64_t t = q0 + warp * kRowsPerWarp + r;
    if (t >= g.T) continue;
    A* out = gq + (bh * g.T + t) * D;
#pragma unroll
    for (int i = 0; i < DPL; ++i) {
      int d = lane + 32 * i;
      if (d < D) out[d] = dq[r][i] * scale;
    }
  }
}

template <class A, int DPL>
__global__ void __launch_bounds__(kAttnThreads) attn_bwd_dkv_kernel(const A* q, const A* k, const A* v, const A* go,
                                                                    const A* lse, const A* drow, A* gk, A* gv,
                                                                    AttnGeom g) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int D = g.D;
  A* Ks = reinterpret_cast<A*>(smem_raw);  // kBR x D (this block's keys)
  A* Vs = Ks + kBR * D;                     // kBR x D
  A* Qs = Vs + kBR * D;                     // kBC x (D + 1)
  A* dOs = Qs + kBC * (D + 1);              // kBC x (D + 1)
  A* Ls = dOs + kBC * (D + 1);              // kBC
  A* Drs = Ls + kBC;                        // kBC
  const int64_t bh = blockIdx.x, b = bh / g.NH, h = bh % g.NH;
  const int64_t s0 = static_cast<int64_t>(blockIdx.y) * kBR;
  const A* qb = head_ptr(q, g.q_s, b, h);
  const A* kb = head_ptr(k, g.k_s, b, h);
  const A* vb = head_ptr(v, g.v_s, b, h);
  const A* gob = head_ptr(go, g.go_s, b, h);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const A scale = static_cast<A>(g.scale);

  for (int e = threadIdx.x; e < kBR * D; e += kAttnThreads) {
    int r = e / D, d = e % D;
    int64_t s = s0 + r;
    bool in = s < g.S;
    Ks[e] = in ? kb[s * g.k_s[2] + d] : A(0);
    Vs[e] = in ? vb[s * g.v_s[2] + d] : A(0);
  }
  A dk[kRowsPerWarp][DPL], dv[kRowsPerWarp][DPL];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
    for (int i = 0; i < DPL; ++i) dk[r][i] = dv[r][i] = A(0);

  // The first query that sees key s0: t + shift >= s0.
  int64_t t_begin = g.causal ? (s0 - g.shift > 0 ? s0 - g.shift : 0) : 0;
  t_begin = t_begin / kBC * kBC;
  for (int64_t t0 = t_begin; t0 < g.T; t0 += kBC) {
    __syncthreads();
    for (int e = threadIdx.x; e < kBC * D; e += kAttnThreads) {
      int i = e / D, d = e % D;
      int64_t t = t0 + i;
      bool in = t < g.T;
      Qs[i * (D + 1) + d] = in ? qb[t * g.q_s[2] + d] : A(0);
      dOs[i * (D + 1) + d] = in ? gob[t * g.go_s[2] + d] : A(0);
    }
    if (threadIdx.x < kBC) {
      int64_t t = t0 + threadIdx.x;
      Ls[threadIdx.x] = t < g.T ? lse[bh * g.T + t] : A(0);
      Drs[threadIdx.x] = t < g.T ? drow[bh * g.T + t] : A(0);
    }
    __syncthreads();
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int kr_i = warp * kRowsPerWarp + r;
      const int64_t s = s0 + kr_i;
      if (s >= g.S) continue;
      const int64_t t = t0 + lane;
      const A *kr = Ks + kr_i * D, *vr = Vs + kr_i * D;
      const A *qr = Qs + lane * (D + 1), *dor = dOs + lane * (D + 1);
      A sc = A(0), dp = A(0);
      for (int d = 0; d < D; ++d) {
        sc += qr[d] * kr[d];
        dp += dor[d] * vr[d];
      }
      bool valid = t < g.T && (!g.causal || s <= t + g.shift);
      A p = valid ? m_exp(sc * scale - Ls[lane]) : A(0);
      A ds = p * (dp - Drs[lane]);
      for (int j = 0; j < kBC; ++j) {
        A pj = shfl_idx(p, j), dsj = shfl_idx(ds, j);
        const A *qj = Qs + j * (D + 1), *doj = dOs + j * (D + 1);
#pragma unroll
        for (int i = 0; i < DPL; ++i) {
          int d = lane + 32 * i;
          if (d < D) {
            dv[r][i] += pj * doj[d];
            dk[r][i] += dsj * qj[d];
          }
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int64_t s = s0 + warp * kRowsPerWarp + r;
    if (s >= g.S) continue;
    A* ok = gk + (bh * g.S + s) * D;
    A* ov = gv + (bh * g.S + s) * D;
#pragma unroll
    for (int i = 0; i < DPL; ++i) {
      int d = lane + 32 * i;
      if (d < D) {
        ok[d] = dk[r][i] * scale;
        ov[d] = dv[r][i];
      }
    }
  }
}

// ---- host side ----------------------------------------------------------------------------------------------------

// An operand in the compute type with a unit-stride last dim (the tensor itself when it already is one).
Tensor compute_operand(const Tensor& x, DType ct) {
  if (x.dtype() == ct && x.stride(3) == 1) return x;
  return to_dtype(x, ct);
}

void set_strides(int64_t* s, const Tensor& t) {
  s[0] = t.stride(0);
  s[1] = t.stride(1);
  s[2] = t.stride(2);
}

template <class Kernel>
void allow_smem(Kernel kernel, size_t bytes, const char* name) {
  int dev = current_device();
  MODU_CHECK(bytes <= max_shared_memory_per_block(dev), name, ": needs ", bytes,
             " bytes of shared memory per block for this head size, more than this GPU's ",
             max_shared_memory_per_block(dev), "; use a smaller head size or f32");
  if (bytes > 48 * 1024)
    MODU_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

template <class F>
void dispatch_dpl(int D, F&& f) {
  MODU_CHECK(D > 0 && D <= 256, "attention: head size ", D, " is not supported by the CUDA kernel (1..256)");
  if (D <= 64) f(std::integral_constant<int, 2>{});
  else if (D <= 128) f(std::integral_constant<int, 4>{});
  else f(std::integral_constant<int, 8>{});
}

AttnGeom make_geom(const Tensor& q, const Tensor& k, const AttentionAttrs& a) {
  AttnGeom g{};
  g.B = q.size(0);
  g.NH = q.size(1);
  g.T = q.size(2);
  g.S = k.size(2);
  g.D = static_cast<int>(q.size(3));
  g.shift = g.S - g.T;
  g.causal = a.causal;
  g.scale = a.scale;
  return g;
}

template <class A>
void attention_forward(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, Tensor& o, Tensor& lse,
                       const AttentionAttrs& a) {
  DType ct = std::is_same_v<A, double> ? DType::F64 : DType::F32;
  Tensor q = compute_operand(q_in, ct), k = compute_operand(k_in, ct), v = compute_operand(v_in, ct);
  AttnGeom g = make_geom(q, k, a);
  set_strides(g.q_s, q);
  set_strides(g.k_s, k);
  set_strides(g.v_s, v);
  dispatch_dpl(g.D, [&](auto dpl) {
    constexpr int DPL = decltype(dpl)::value;
    size_t smem = static_cast<size_t>(kBR * g.D + kBC * (g.D + 1) + kBC * g.D) * sizeof(A);
    auto kernel = attn_fwd_kernel<A, DPL>;
    allow_smem(kernel, smem, "attention");
    dim3 grid(static_cast<unsigned>(g.B * g.NH), static_cast<unsigned>((g.T + kBR - 1) / kBR));
    kernel<<<grid, kAttnThreads, smem, cur_stream()>>>(static_cast<const A*>(q.data_ptr()),
                                                       static_cast<const A*>(k.data_ptr()),
                                                       static_cast<const A*>(v.data_ptr()), static_cast<A*>(o.data_ptr()),
                                                       static_cast<A*>(lse.data_ptr()), g);
    MODU_CUDA_LAUNCH_CHECK("attention");
  });
}

template <class A>
void attention_backward(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, const Tensor& o_in,
                        const Tensor& lse_in, const Tensor& go_in, const AttentionAttrs& a, Tensor& gq, Tensor& gk,
                        Tensor& gv) {
  DType ct = std::is_same_v<A, double> ? DType::F64 : DType::F32;
  Tensor q = compute_operand(q_in, ct), k = compute_operand(k_in, ct), v = compute_operand(v_in, ct);
  Tensor o = compute_operand(o_in, ct), go = compute_operand(go_in, ct);
  Tensor lse = contiguous(lse_in);
  AttnGeom g = make_geom(q, k, a);
  set_strides(g.q_s, q);
  set_strides(g.k_s, k);
  set_strides(g.v_s, v);
  set_strides(g.o_s, o);
  set_strides(g.go_s, go);
  int dev = current_device();
  Tensor drow = Tensor::empty(Dims{g.B, g.NH, g.T}, ct, Device::cuda(dev));
  int64_t rows = g.B * g.NH * g.T;
  cudaStream_t s = cur_stream();
  if (rows > 0) {
    attn_drow_kernel<A><<<static_cast<unsigned>((rows + 7) / 8), 256, 0, s>>>(
        static_cast<const A*>(o.data_ptr()), static_cast<const A*>(go.data_ptr()), static_cast<A*>(drow.data_ptr()), g);
    MODU_CUDA_LAUNCH_CHECK("attention_backward (rowsum)");
  }
  dispatch_dpl(g.D, [&](auto dpl) {
    constexpr int DPL = decltype(dpl)::value;
    const A *Q = static_cast<const A*>(q.data_ptr()), *K = static_cast<const A*>(k.data_ptr()),
            *V = static_cast<const A*>(v.data_ptr()), *GO = static_cast<const A*>(go.data_ptr()),
            *L = static_cast<const A*>(lse.data_ptr()), *DR = static_cast<const A*>(drow.data_ptr());
    if (g.T > 0) {
      size_t smem = static_cast<size_t>(2 * kBR * g.D + 2 * kBC * (g.D + 1)) * sizeof(A);
      auto kernel = attn_bwd_dq_kernel<A, DPL>;
      allow_smem(kernel, smem, "attention_backward");
      dim3 grid(static_cast<unsigned>(g.B * g.NH), static_cast<unsigned>((g.T + kBR - 1) / kBR));
      kernel<<<grid, kAttnThreads, smem, s>>>(Q, K, V, GO, L, DR, static_cast<A*>(gq.data_ptr()), g);
      MODU_CUDA_LAUNCH_CHECK("attention_backward (dq)");
    }
    if (g.S > 0) {
      size_t smem = static_cast<size_t>(2 * kBR * g.D + 2 * kBC * (g.D + 1) + 2 * kBC) * sizeof(A);
      auto kernel = attn_bwd_dkv_kernel<A, DPL>;
      allow_smem(kernel, smem, "attention_backward");
      dim3 grid(static_cast<unsigned>(g.B * g.NH), static_cast<unsigned>((g.S + kBR - 1) / kBR));
      kernel<<<grid, kAttnThreads, smem, s>>>(Q, K, V, GO, L, DR, static_cast<A*>(gk.data_ptr()),
                                              static_cast<A*>(gv.data_ptr()), g);
      MODU_CUDA_LAUNCH_CHECK("attention_backward (dk, dv)");
    }
  });
}

bool is_half_type(DType t) { return t == DType::BF16 || t == DType::F16; }

// o (B, NH, T, HS) and lse of q, k, v on the path attention_path() picks; o may be a strided view with a unit-stride
// last dim (attention_packed's), which every path but the flash kernel writes in place.
void forward_any(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& o, Tensor& lse, const AttentionAttrs& a) {
  if (o.numel() == 0 && lse.numel() == 0) return;
  if (k.size(2) == 0) {  // no keys: softmax over nothing, as the CPU: o = 0, lse = -inf
    fill(o, 0.0);
    fill(lse, -INFINITY);
    return;
  }
  DType dt = q.dtype();
  const AttentionPath path = attention_path(dt, q.size(3));
  if (path == AttentionPath::Cudnn) {
    Tensor qc = compute_operand(q, dt), kc = compute_operand(k, dt), vc = compute_operand(v, dt);
    if (attention_cudnn_unsupported(qc, kc, vc, a).empty() && attention_cudnn_unsupported(o, o, o, a).empty() &&
        attention_forward_cudnn(qc, kc, vc, o, lse, a))
      return;
    return attention_forward_gemm(qc, kc, vc, o, lse, a);
  }
  if (path == AttentionPath::TensorCore && attention_tc_supported(q, k, v)) {
    return attention_forward_tc(compute_operand(q, dt), compute_operand(k, dt), compute_operand(v, dt), o, lse, a);
  }
  if (path != AttentionPath::Flash) {
    return attention_forward_gemm(compute_operand(q, dt), compute_operand(k, dt), compute_operand(v, dt), o, lse, a);
  }
  // The flash kernel writes a contiguous o in its accumulation type.
  const bool direct = (dt == DType::F64 || dt == DType::F32) && o.is_contiguous();
  Tensor out = direct ? o : Tensor::empty(o.shape(), dt == DType::F64 ? DType::F64 : DType::F32, o.device());
  if (dt == DType::F64) {
    attention_forward<double>(q, k, v, out, lse, a);
  } else {
    MODU_CHECK(dt == DType::F32 || is_half_type(dt), "attention: no CUDA kernel for ", dtype_name(dt));
    attention_forward<float>(q, k, v, out, lse, a);
  }
  if (!direct) copy_into(o, out);
}

// gq, gk, gv (=) of q, k, v (B, NH, ., HS) from o, lse (the forward's) and go, on the forward's path; the gradients
// may be strided views with unit-stride last dims (attention_packed_backward's).
void backward_any(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o, const Tensor& lse,
                  const Tensor& go, Tensor& gq, Tensor& gk, Tensor& gv, const AttentionAttrs& a) {
  DType dt = q.dtype();
  if (k.size(2) == 0) {
    fill(gq, 0.0);
    return;
  }
  if (q.size(2) == 0) {  // no queries: nothing reaches the keys, as the CPU
    fill(gk, 0.0);
    fill(gv, 0.0);
    return;
  }
  if (gq.numel() == 0 && gk.numel() == 0) return;
  const AttentionPath path = attention_path(dt, q.size(3));
  if (path == AttentionPath::Cudnn) {  // the forward's choice, from the same operands
    Tensor qc = compute_operand(q, dt), kc = compute_operand(k, dt), vc = compute_operand(v, dt);
    if (attention_cudnn_unsupported(qc, kc, vc, a).empty() && attention_cudnn_unsupported(o, o, o, a).empty()) {
      // go as cuDNN takes it (a contiguous copy when its strides are not multiples of 8); the gradients are
      // written in place when cuDNN takes their layout, else through contiguous temporaries.
      Tensor goc = compute_operand(go, dt);
      if (!attention_cudnn_unsupported(goc, goc, goc, AttentionAttrs{}).empty()) goc = contiguous(goc);
      if (attention_cudnn_unsupported(gq, gk, gv, a).empty()) {
        if (attention_backward_cudnn(qc, kc, vc, o, contiguous(lse), goc, gq, gk, gv, a)) return;
      } else {
        Tensor tq = Tensor::empty(gq.shape(), dt, gq.device()), tk = Tensor::empty(gk.shape(), dt, gk.device()),
               tv = Tensor::empty(gv.shape(), dt, gv.device());
        if (attention_backward_cudnn(qc, kc, vc, o, contiguous(lse), goc, tq, tk, tv, a)) {
          copy_into(gq, tq);
          copy_into(gk, tk);
          copy_into(gv, tv);
          return;
        }
      }
    }  // cuDNN refused these operands or this graph: the GEMM path (lse is stored alike on every path)
    return attention_backward_gemm(qc, kc, vc, contiguous(lse), compute_operand(go, dt), gq, gk, gv, a);
  }
  if (path == AttentionPath::TensorCore && attention_tc_supported(q, k, v)) {
    return attention_backward_tc(compute_operand(q, dt), compute_operand(k, dt), compute_operand(v, dt),
                                 compute_operand(o, dt), contiguous(lse), compute_operand(go, dt), gq, gk, gv, a);
  }
  if (path != AttentionPath::Flash) {
    return attention_backward_gemm(compute_operand(q, dt), compute_operand(k, dt), compute_operand(v, dt),
                                   contiguous(lse), compute_operand(go, dt), gq, gk, gv, a);
  }
  // The flash kernels write contiguous gradients in their accumulation type.
  MODU_CHECK(dt == DType::F64 || dt == DType::F32 || is_half_type(dt), "attention_backward: no CUDA kernel for ",
             dtype_name(dt));
  const DType acc = dt == DType::F64 ? DType::F64 : DType::F32;
  auto target = [&](Tensor& g) {
    return g.dtype() == acc && g.is_contiguous() ? g : Tensor::empty(g.shape(), acc, g.device());
  };
  Tensor tq = target(gq), tk = target(gk), tv = target(gv);
  if (dt == DType::F64) {
    attention_backward<double>(q, k, v, o, lse, go, a, tq, tk, tv);
  } else {
    attention_backward<float>(q, k, v, o, lse, go, a, tq, tk, tv);
  }
  for (auto [dst, src] : {std::pair<Tensor*, Tensor*>{&gq, &tq}, {&gk, &tk}, {&gv, &tv}})
    if (dst->data_ptr() != src->data_ptr() || dst->dtype() != src->dtype()) copy_into(*dst, *src);
}

void attention_kernel(const KernelCall& c) {
  forward_any(c.input(0), c.input(1), c.input(2), c.output(0), c.output(1), c.attrs.attention);
}

void attention_backward_kernel(const KernelCall& c) {
  backward_any(c.input(0), c.input(1), c.input(2), c.input(3), c.input(4), c.input(5), c.output(0), c.output(1),
               c.output(2), c.attrs.attention);
}

Tensor contiguous_copy(const Tensor& x) { return contiguous(x); }

void attention_packed_kernel(const KernelCall& c) { run_attention_packed(c, contiguous_copy, forward_any); }

void attention_packed_backward_kernel(const KernelCall& c) {
  run_attention_packed_backward(c, contiguous_copy, backward_any);
}

// ---- rotary --------------------------------------------------------------------------------------------------------
template <class T>
__global__ void rotary_kernel(const T* x, const T* cs, const T* sn, T* y, int64_t rows, int64_t T_, int64_t NH,
                              int64_t half, acc_t<T> sign) {
  using A = acc_t<T>;
  int64_t total = rows * half;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t r = e / half, i = e % half;
    int64_t t = (r / NH) % T_;
    A co = ld(cs + t * half + i), si = sign * ld(sn + t * half + i);
    const T* p = x + r * 2 * half;
    A x1 = ld(p + i), x2 = ld(p + i + half);
    T* q = y + r * 2 * half;
    st(q + i, x1 * co - x2 * si);
    st(q + i + half, x2 * co + x1 * si);
  }
}

void rotary_launch(const KernelCall& c) {
  Tensor x = contiguous(c.input(0)), cs = contiguous(c.input(1)), sn = contiguous(c.input(2));
  Tensor& y = c.output(0);
  int64_t B = x.size(0), T_ = x.size(1), NH = x.size(2), half = x.size(3) / 2;
  int64_t rows = B * T_ * NH;
  if (rows * half == 0) return;
  dispatch_floating(x.dtype(), "rotary", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    rotary_kernel<T><<<grid_for(rows * half), kThreads, 0, cur_stream()>>>(
        static_cast<const T*>(x.data_ptr()), static_cast<const T*>(cs.data_ptr()), static_cast<const T*>(sn.data_ptr()),
        static_cast<T*>(y.data_ptr()), rows, T_, NH, half, static_cast<A>(c.attrs.rotary.inverse ? -1.0 : 1.0));
    MODU_CUDA_LAUNCH_CHECK("rotary");
  });
}

}  // namespace

void register_attention_kernels(KernelRegistry& r) {
  const auto cuda = DeviceType::CUDA;
  r.set(cuda, OpId::attention, guarded<attention_kernel>, kFloatTypes);
  r.set(cuda, OpId::attention_backward, guarded<attention_backward_kernel>, kFloatTypes);
  r.set(cuda, OpId::attention_packed, guarded<attention_packed_kernel>, kFloatTypes);
  r.set(cuda, OpId::attention_packed_backward, guarded<attention_packed_backward_kernel>, kFloatTypes);
  r.set(cuda, OpId::rotary, guarded<rotary_launch>, kFloatTypes);
}

}  // namespace modu::cuda
