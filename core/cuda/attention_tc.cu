// core/cuda/attention_tc.cu — fused scaled-dot-product attention (forward and backward) on tensor cores for
// bf16 and f16, FlashAttention-2 style: nothing of size T x S is stored, every matrix product is an
// mma.sync.m16n8k16 (16-bit inputs, f32 accumulation), sm_80 and later. Selected by MODU_CUDA_ATTENTION=tc
// (core/cuda/attention_gemm.h: attention_path); not the default until it has matched the CPU on a GPU.
//
// Shapes: q (B, NH, T, HS), k and v (B, NH, S, HS), o (B, NH, T, HS), lse (B, NH, T) f32. Causal attention
// aligns queries to the last T keys: query t sees keys s <= t + (S - T) (core/cpu/attention.cpp); a query with
// no visible key gets o = 0, lse = -inf and zero gradients. q, k, v, o, dO: unit-stride last dim, any other
// strides (the model's permuted (B, T, NH, HS) views go in as they are); outputs written through their strides.
// Head sizes 1..128: the head dim is zero-padded to HP = 32, 64 or 128 in shared memory (zeros change no dot
// product; padded output columns are never stored). Other head sizes and f32/f64 take the other paths
// (attention.cu decides, attention_tc_supported).
//
// Forward (attn_tc_fwd_kernel): a CTA of 4 warps per (b, h, BM = 64 query rows), each warp 16 rows.
//   The Q tile is loaded once into shared memory and kept in registers as mma A fragments; K and V tiles of
//   BN = 64 keys are double-buffered in shared memory (cp.async, 16-byte chunks, when every operand is 16-byte
//   aligned with strides in multiples of 8 elements and HS = HP; otherwise plain zero-padding loads).
//   Per tile: S = Q K^T (f32 registers), scaled by scale * log2(e), masked (keys >= S, causal), online
//   softmax in base 2 (running max m and a per-thread partial row sum l, both f32; exp2f), P rounded to the
//   input type and O += P V. Causal: key tiles past the CTA's last query are never visited, only tiles that
//   cross the diagonal (or the end of the keys) are masked. At the end the row sums are reduced over the
//   quad, O / l is rounded once and lse = m ln 2 + log l stored. Query blocks are launched last-first so the
//   long causal rows start early.
// Backward: three kernels, deterministic (no atomics: dQ and dK/dV each have a single writer), all
//   recomputing P = exp(scale q.k - lse) from q, k and the forward's lse:
//   attn_tc_drow_kernel   Drow[t] = sum_d dO[t, d] O[t, d] (f32, a warp per row);
//   attn_tc_dq_kernel     a CTA per (b, h, 64 query rows) like the forward, Q and dO tiles in shared memory,
//                         K/V tiles of 64 keys double-buffered: S = Q K^T, P, dP = dO V^T,
//                         dS = P (dP - Drow), dQ += dS K; dQ = scale dQ stored;
//   attn_tc_dkv_kernel    a CTA per (b, h, 64 keys), each warp 16 keys, in transposed form so that every
//                         product keeps the CTA's keys as the mma rows: S^T = K Q^T, P^T, dP^T = V dO^T,
//                         dS^T = P^T (dP^T - Drow), dV += P^T dO, dK += dS^T Q over Q/dO tiles of BQ queries
//                         (64; 32 for HP = 128 to bound registers), double-buffered; causal: query tiles
//                         before the first query that sees the CTA's first key are skipped. dK = scale dK.
//   P and dS are rounded to the input type before their products (as the GEMM path and flash-attention do);
//   S, dP, the row statistics and all accumulators are f32. Outputs are rounded once.
//
// Fragments (PTX ISA, mma.m16n8k16 with .bf16/.f16; g = lane / 4, c = lane % 4; a .b32 register holds two
// consecutive 16-bit elements, the lower column in the low half):
//   A (16 x 16, row-major): a0 (row g, cols 2c, 2c+1), a1 (row g+8, same cols), a2 (row g, cols 2c+8, 2c+9),
//     a3 (row g+8, cols 2c+8, 2c+9). Loaded with ldmatrix.x4 (no .trans) from a row-major [row][k] tile:
//     lane l supplies the address of row (l/8 % 2) * 8 + l % 8, column k0 + (l/16) * 8, so the four 8x8
//     matrices land in a0..a3. Used for Q (forward, dQ), dO (dQ), K and V (dK/dV).
//   B (16 x 8, "col": element (k, n)): b0 (k = 2c, 2c+1; n = g), b1 (k = 2c+8, 2c+9; n = g).
//     - When the tile is stored [n][k] (B = X^T: K in Q K^T, V in dO V^T, Q in K Q^T, dO in V dO^T):
//       ldmatrix.x4 without .trans, lane l addresses row n0 + (l/16) * 8 + l % 8, column k0 + (l/8 % 2) * 8;
//       registers 0, 1 are b0, b1 of n-tile n0 and registers 2, 3 those of n-tile n0 + 8.
//     - When the tile is stored [k][n] (V in P V, K in dS K, dO in P^T dO, Q in dS^T Q): ldmatrix.x4.trans,
//       lane l addresses row k0 + (l/8 % 2) * 8 + l % 8, column n0 + (l/16) * 8; the transpose gives each
//       thread elements (k = 2c, 2c+1; n = g), so registers 0, 1 are b0, b1 of n-tile n0, 2, 3 of n0 + 8.
//   C/D (16 x 8, f32): c[0], c[1] (row g, cols 2c, 2c+1), c[2], c[3] (row g+8, same cols).
//     An f32 score tile (16 x 64 = n-tiles 0..7) becomes the A operand of the next product without any
//     shuffle: for the k-step j (columns 16j..16j+15), a0 = pack(C[2j][0], C[2j][1]), a1 = pack(C[2j][2],
//     C[2j][3]), a2 = pack(C[2j+1][0], C[2j+1][1]), a3 = pack(C[2j+1][2], C[2j+1][3]).
//   Each thread owns two rows (g and g + 8 of its warp's 16); row statistics are reduced over the quad
//   (lanes 4g..4g+3) with two xor-shuffles.
//
// Shared memory: row-major tiles with a row pitch of HP + 8 elements (16 bytes of padding: the 8 rows an
// ldmatrix phase reads start in 8 distinct 16-byte bank groups). Per CTA (bf16/f16), forward
// (64 + 4 * 64) * (HP + 8) * 2 bytes = 46 KB (HP 64), 87 KB (HP 128); dQ (128 + 4 * 64) rows = 55 KB / 104 KB;
// dK/dV (128 + 4 * BQ) rows + 4 BQ floats = 55 KB / 70 KB. 128 threads per CTA, __launch_bounds__(128).
// Registers (ptxas, CUDA 13, sm_90 / sm_80; no spills, no stack) for HP 32 / 64 / 128: forward 127/134,
// 129/145, 180/208; dQ 137/156, 146/168, 193/240; dK/dV 167/168, 230/227, 244/242; rowsum ~30. Expected
// occupancy for GPT-2's HP = 64 on an H100/H200: forward and dQ 3 CTAs (12 warps) per SM, dK/dV 2 CTAs
// (8 warps), bounded by registers (shared memory would allow 4).
//
// Invariants: deterministic (fixed tiling and reduction order, no atomics); gradients written (=); every
// launch checked; scratch (Drow) from the caching allocator; nothing here goes through dispatch().
// Checks: tests/gpu/run.sh runs backend_parity --filter=attention under MODU_CUDA_ATTENTION=tc (incl. the
// multi-tile attention_tiles_* cases) and compute-sanitizer memcheck/racecheck; tests/gpu/attention_tc_emu.py
// emulates the fragment layouts and index math of these kernels in Python (no GPU needed).
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "core/cuda/attention_tc.h"
#include "core/cuda/common.cuh"

namespace modu::cuda {

namespace {

constexpr int kTcThreads = 128;  // 4 warps
constexpr int kTcBM = 64;        // query rows per CTA (forward, dQ); keys per CTA (dK/dV)
constexpr int kTcBN = 64;        // keys per K/V tile (forward, dQ)
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

struct TcGeom {
  int64_t NH, T, S, shift;  // shift = S - T
  int D;                    // the true head size (<= HP)
  int causal;
  int fast;          // cp.async 16-byte loads (every operand aligned, HS = HP); else zero-padding scalar loads
  float scale;       // the softmax scale
  float scale_log2;  // scale * log2(e)
  // element strides (batch, head, position); the last dim is unit-stride
  int64_t q_s[3], k_s[3], v_s[3], o_s[3], go_s[3], gq_s[3], gk_s[3], gv_s[3];
};

// ---- PTX wrappers -------------------------------------------------------------------------------------------------
__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// c += a b (m16n8k16, f32 accumulators)
template <class T>
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (std::is_same_v<T, bf16_t>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// Two floats rounded (nearest-even) to T and packed, lo in the low half.
template <class T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  uint32_t r;
  if constexpr (std::is_same_v<T, bf16_t>) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    memcpy(&r, &v, 4);
  } else {
    __half2 v = __floats2half2_rn(lo, hi);
    memcpy(&r, &v, 4);
  }
  return r;
}

// ---- tile loads ---------------------------------------------------------------------------------------------------
// ROWS rows of HP elements into sm (pitch HP + 8): global row row0 + r of `base` (row stride ld) when it is
// < nrows, zeros otherwise; columns >= D are zero. Asynchronous (cp.async) when fast, else plain loads.
template <class T, int HP, int ROWS>
__device__ __forceinline__ void load_tile(T* sm, const T* base, int64_t ld, int64_t row0, int64_t nrows, int D,
                                          bool fast) {
  constexpr int LD = HP + 8, CPR = HP / 8;
  if (fast) {
    for (int c = threadIdx.x; c < ROWS * CPR; c += kTcThreads) {
      const int r = c / CPR, cc = c % CPR;
      const int64_t gr = row0 + r;
      const bool in = gr < nrows;
      const T* src = in ? base + gr * ld + cc * 8 : base;  // src-size 0: nothing read, 16 zero bytes written
      cp_async16(smem_addr(sm + r * LD + cc * 8), src, in ? 16 : 0);
    }
  } else {
    for (int e = threadIdx.x; e < ROWS * HP; e += kTcThreads) {
      const int r = e / HP, d = e % HP;
      const int64_t gr = row0 + r;
      sm[r * LD + d] = (gr < nrows && d < D) ? base[gr * ld + d] : from_value<T>(0.f);
    }
  }
}

// A fragment (16 x 16) of rows r0..r0+15, columns k0..k0+15 of a row-major tile (pitch LD).
template <int LD, class T>
__device__ __forceinline__ void load_a(uint32_t (&a)[4], const T* tile, int r0, int k0, int lane) {
  const int row = r0 + ((lane >> 3) & 1) * 8 + (lane & 7), col = k0 + (lane >> 4) * 8;
  ldmatrix_x4(a, smem_addr(tile + row * LD + col));
}
// B fragments of n-tiles n0 and n0 + 8, k-step k0, from a tile stored [n][k] (B = tile^T).
template <int LD, class T>
__device__ __forceinline__ void load_b_nk(uint32_t (&b)[4], const T* tile, int n0, int k0, int lane) {
  const int row = n0 + (lane >> 4) * 8 + (lane & 7), col = k0 + ((lane >> 3) & 1) * 8;
  ldmatrix_x4(b, smem_addr(tile + row * LD + col));
}
// B fragments of n-tiles n0 and n0 + 8, k-step k0, from a tile stored [k][n].
template <int LD, class T>
__device__ __forceinline__ void load_b_kn(uint32_t (&b)[4], const T* tile, int n0, int k0, int lane) {
  const int row = k0 + ((lane >> 3) & 1) * 8 + (lane & 7), col = n0 + (lane >> 4) * 8;
  ldmatrix_x4_trans(b, smem_addr(tile + row * LD + col));
}

// acc (16 x 8 NT) += A (16 x HP, tile rows r0.., row-major) . B^T where B (8 NT x HP) is stored [n][k].
template <class T, int HP, int NT>
__device__ __forceinline__ void mma_abt(float (&acc)[NT][4], const T* a_tile, int r0, const T* b_tile, int lane) {
  constexpr int LD = HP + 8;
#pragma unroll
  for (int ks = 0; ks < HP / 16; ++ks) {
    uint32_t a[4];
    load_a<LD>(a, a_tile, r0, ks * 16, lane);
#pragma unroll
    for (int np = 0; np < NT / 2; ++np) {
      uint32_t b[4];
      load_b_nk<LD>(b, b_tile, np * 16, ks * 16, lane);
      mma16816<T>(acc[2 * np], a, b[0], b[1]);
      mma16816<T>(acc[2 * np + 1], a, b[2], b[3]);
    }
  }
}

// acc (16 x HP) += P (16 x 8 NT, f32 C fragments, rounded to T here) . B where B (8 NT x HP) is stored [k][n].
template <class T, int HP, int NT>
__device__ __forceinline__ void mma_pb(float (&acc)[HP / 8][4], const float (&p)[NT][4], const T* b_tile, int lane) {
  constexpr int LD = HP + 8;
#pragma unroll
  for (int kk = 0; kk < NT / 2; ++kk) {
    uint32_t a[4];
    a[0] = pack2<T>(p[2 * kk][0], p[2 * kk][1]);
    a[1] = pack2<T>(p[2 * kk][2], p[2 * kk][3]);
    a[2] = pack2<T>(p[2 * kk + 1][0], p[2 * kk + 1][1]);
    a[3] = pack2<T>(p[2 * kk + 1][2], p[2 * kk + 1][3]);
#pragma unroll
    for (int dp = 0; dp < HP / 16; ++dp) {
      uint32_t b[4];
      load_b_kn<LD>(b, b_tile, dp * 16, kk * 16, lane);
      mma16816<T>(acc[2 * dp], a, b[0], b[1]);
      mma16816<T>(acc[2 * dp + 1], a, b[2], b[3]);
    }
  }
}

// Stores rows (row_a, row_a + 8) of a 16 x HP C-fragment accumulator, times mul[r], through `base` (row
// stride ld), rows < nrows and columns < D only.
template <class T, int HP>
__device__ __forceinline__ void store_rows(T* base, int64_t ld, int64_t row_a, int64_t nrows, int D,
                                           const float (&acc)[HP / 8][4], const float (&mul)[2], int tig) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int64_t row = row_a + 8 * r;
    if (row >= nrows) continue;
    T* out = base + row * ld;
#pragma unroll
    for (int nt = 0; nt < HP / 8; ++nt) {
      const int d = nt * 8 + 2 * tig;
      if (d < D) out[d] = from_value<T>(acc[nt][2 * r] * mul[r]);
      if (d + 1 < D) out[d + 1] = from_value<T>(acc[nt][2 * r + 1] * mul[r]);
    }
  }
}

// Keys visible to the query rows [q0, q_end): the end of the key range the block must visit.
__device__ __forceinline__ int64_t key_end(const TcGeom& g, int64_t q_end) {
  if (!g.causal) return g.S;
  const int64_t e = q_end - 1 + g.shift + 1;
  return e < g.S ? e : g.S;
}

// ---- forward ------------------------------------------------------------------------------------------------------
template <class T, int HP>
__global__ void __launch_bounds__(kTcThreads)
    attn_tc_fwd_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v, T* __restrict__ o,
                       float* __restrict__ lse, TcGeom g) {
  constexpr int LD = HP + 8, BM = kTcBM, BN = kTcBN, NT = BN / 8, OT = HP / 8;
  extern __shared__ __align__(16) unsigned char tc_smem[];
  T* Qs = reinterpret_cast<T*>(tc_smem);  // BM x LD
  T* Ks = Qs + BM * LD;                   // 2 x BN x LD
  T* Vs = Ks + 2 * BN * LD;               // 2 x BN x LD
  const int64_t bh = blockIdx.x, b = bh / g.NH, h = bh % g.NH;
  const int64_t q0 = static_cast<int64_t>(gridDim.y - 1 - blockIdx.y) * BM;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gid = lane >> 2, tig = lane & 3;
  const T* qb = q + b * g.q_s[0] + h * g.q_s[1];
  const T* kb = k + b * g.k_s[0] + h * g.k_s[1];
  const T* vb = v + b * g.v_s[0] + h * g.v_s[1];
  const bool fast = g.fast != 0;

  const int64_t kend = key_end(g, q0 + BM < g.T ? q0 + BM : g.T);
  const int ntiles = kend > 0 ? static_cast<int>((kend + BN - 1) / BN) : 0;
  load_tile<T, HP, BM>(Qs, qb, g.q_s[2], q0, g.T, g.D, fast);
  if (ntiles > 0) {
    load_tile<T, HP, BN>(Ks, kb, g.k_s[2], 0, g.S, g.D, fast);
    load_tile<T, HP, BN>(Vs, vb, g.v_s[2], 0, g.S, g.D, fast);
  }
  cp_async_commit();

  const int64_t row_a = q0 + warp * 16 + gid;  // this thread's rows: row_a and row_a + 8
  float oacc[OT][4];
#pragma unroll
  for (int i = 0; i < OT; ++i) oacc[i][0] = oacc[i][1] = oacc[i][2] = oacc[i][3] = 0.f;
  float m2[2] = {-INFINITY, -INFINITY};  // running max of the base-2 scores
  float l[2] = {0.f, 0.f};               // this thread's part of the running row sums
  uint32_t qf[HP / 16][4];

  for (int j = 0; j < ntiles; ++j) {
    if (j + 1 < ntiles) {
      const int nb = (j + 1) & 1;
      load_tile<T, HP, BN>(Ks + nb * BN * LD, kb, g.k_s[2], static_cast<int64_t>(j + 1) * BN, g.S, g.D, fast);
      load_tile<T, HP, BN>(Vs + nb * BN * LD, vb, g.v_s[2], static_cast<int64_t>(j + 1) * BN, g.S, g.D, fast);
    }
    cp_async_commit();  // possibly empty: keeps the wait count uniform
    cp_async_wait<1>();
    __syncthreads();
    if (j == 0) {
#pragma unroll
      for (int ks = 0; ks < HP / 16; ++ks) load_a<LD>(qf[ks], Qs, warp * 16, ks * 16, lane);
    }
    const T* Kt = Ks + (j & 1) * BN * LD;
    const T* Vt = Vs + (j & 1) * BN * LD;

    float s[NT][4];
#pragma unroll
    for (int i = 0; i < NT; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.f;
#pragma unroll
    for (int ks = 0; ks < HP / 16; ++ks) {
#pragma unroll
      for (int np = 0; np < NT / 2; ++np) {
        uint32_t bf[4];
        load_b_nk<LD>(bf, Kt, np * 16, ks * 16, lane);
        mma16816<T>(s[2 * np], qf[ks], bf[0], bf[1]);
        mma16816<T>(s[2 * np + 1], qf[ks], bf[2], bf[3]);
      }
    }
    const int64_t k0 = static_cast<int64_t>(j) * BN;
    // The tile needs a mask when it runs past the keys or past the first row's causal limit.
    const bool need_mask = k0 + BN > g.S || (g.causal && k0 + BN - 1 > q0 + g.shift);
    float mt[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float x = s[nt][e] * g.scale_log2;
        if (need_mask) {
          const int64_t key = k0 + nt * 8 + 2 * tig + (e & 1), row = row_a + (e >> 1) * 8;
          if (key >= g.S || (g.causal && key > row + g.shift)) x = -INFINITY;
        }
        s[nt][e] = x;
        mt[e >> 1] = fmaxf(mt[e >> 1], x);
      }
    }
    float muse[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mt[r] = fmaxf(mt[r], __shfl_xor_sync(0xffffffffu, mt[r], 1));
      mt[r] = fmaxf(mt[r], __shfl_xor_sync(0xffffffffu, mt[r], 2));
      const float mnew = fmaxf(m2[r], mt[r]);
      muse[r] = mnew == -INFINITY ? 0.f : mnew;  // a row with nothing visible yet: exp2(-inf - 0) = 0
      const float corr = exp2f(m2[r] - muse[r]);
      m2[r] = mnew;
      l[r] *= corr;
#pragma unroll
      for (int i = 0; i < OT; ++i) {
        oacc[i][2 * r] *= corr;
        oacc[i][2 * r + 1] *= corr;
      }
    }
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float p = exp2f(s[nt][e] - muse[e >> 1]);
        s[nt][e] = p;
        l[e >> 1] += p;
      }
    }
    mma_pb<T, HP, NT>(oacc, s, Vt, lane);
    __syncthreads();  // every warp is done with this buffer before the next iteration refills it
  }
  cp_async_wait<0>();

  float inv[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    inv[r] = l[r] > 0.f ? 1.f / l[r] : 0.f;
    const int64_t row = row_a + 8 * r;
    if (tig == 0 && row < g.T) lse[bh * g.T + row] = l[r] > 0.f ? m2[r] * kLn2 + logf(l[r]) : -INFINITY;
  }
  store_rows<T, HP>(o + b * g.o_s[0] + h * g.o_s[1], g.o_s[2], row_a, g.T, g.D, oacc, inv, tig);
}

// ---- backward -----------------------------------------------------------------------------------------------------
// Drow[bh * T + t] = sum_d dO[t, d] O[t, d] in f32 (a warp per row).
template <class T>
__global__ void attn_tc_drow_kernel(const T* __restrict__ o, const T* __restrict__ go, float* __restrict__ drow,
                                    int64_t rows, TcGeom g) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= rows) return;
  const int64_t t = row % g.T, bh = row / g.T, b = bh / g.NH, h = bh % g.NH;
  const T* orow = o + b * g.o_s[0] + h * g.o_s[1] + t * g.o_s[2];
  const T* grow = go + b * g.go_s[0] + h * g.go_s[1] + t * g.go_s[2];
  float s = 0.f;
  for (int d = lane; d < g.D; d += 32) s += ld(grow + d) * ld(orow + d);
  s = warp_sum(s);
  if (lane == 0) drow[row] = s;
}

// lse in base 2 for recomputing P; a row with no visible key (lse = -inf) gets +inf so that P = 0 there.
__device__ __forceinline__ float lse_base2(float lse) { return lse == -INFINITY ? INFINITY : lse * kLog2e; }

template <class T, int HP>
__global__ void __launch_bounds__(kTcThreads)
    attn_tc_dq_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                      const T* __restrict__ go, const float* __restrict__ lse, const float* __restrict__ drow,
                      T* __restrict__ gq, TcGeom g) {
  constexpr int LD = HP + 8, BM = kTcBM, BN = kTcBN, NT = BN / 8, OT = HP / 8;
  extern __shared__ __align__(16) unsigned char tc_smem[];
  T* Qs = reinterpret_cast<T*>(tc_smem);  // BM x LD
  T* dOs = Qs + BM * LD;                  // BM x LD
  T* Ks = dOs + BM * LD;                  // 2 x BN x LD
  T* Vs = Ks + 2 * BN * LD;               // 2 x BN x LD
  const int64_t bh = blockIdx.x, b = bh / g.NH, h = bh % g.NH;
  const int64_t q0 = static_cast<int64_t>(gridDim.y - 1 - blockIdx.y) * BM;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gid = lane >> 2, tig = lane & 3;
  const T* qb = q + b * g.q_s[0] + h * g.q_s[1];
  const T* kb = k + b * g.k_s[0] + h * g.k_s[1];
  const T* vb = v + b * g.v_s[0] + h * g.v_s[1];
  const T* gob = go + b * g.go_s[0] + h * g.go_s[1];
  const bool fast = g.fast != 0;

  const int64_t kend = key_end(g, q0 + BM < g.T ? q0 + BM : g.T);
  const int ntiles = kend > 0 ? static_cast<int>((kend + BN - 1) / BN) : 0;
  load_tile<T, HP, BM>(Qs, qb, g.q_s[2], q0, g.T, g.D, fast);
  load_tile<T, HP, BM>(dOs, gob, g.go_s[2], q0, g.T, g.D, fast);
  if (ntiles > 0) {
    load_tile<T, HP, BN>(Ks, kb, g.k_s[2], 0, g.S, g.D, fast);
    load_tile<T, HP, BN>(Vs, vb, g.v_s[2], 0, g.S, g.D, fast);
  }
  cp_async_commit();

  const int64_t row_a = q0 + warp * 16 + gid;
  float lse2[2], dr[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int64_t row = row_a + 8 * r;
    lse2[r] = row < g.T ? lse_base2(lse[bh * g.T + row]) : INFINITY;
    dr[r] = row < g.T ? drow[bh * g.T + row] : 0.f;
  }
  float dq[OT][4];
#pragma unroll
  for (int i = 0; i < OT; ++i) dq[i][0] = dq[i][1] = dq[i][2] = dq[i][3] = 0.f;

  for (int j = 0; j < ntiles; ++j) {
    if (j + 1 < ntiles) {
      const int nb = (j + 1) & 1;
      load_tile<T, HP, BN>(Ks + nb * BN * LD, kb, g.k_s[2], static_cast<int64_t>(j + 1) * BN, g.S, g.D, fast);
      load_tile<T, HP, BN>(Vs + nb * BN * LD, vb, g.v_s[2], static_cast<int64_t>(j + 1) * BN, g.S, g.D, fast);
    }
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const T* Kt = Ks + (j & 1) * BN * LD;
    const T* Vt = Vs + (j & 1) * BN * LD;

    float p[NT][4], dp[NT][4];
#pragma unroll
    for (int i = 0; i < NT; ++i)
#pragma unroll
      for (int e = 0; e < 4; ++e) p[i][e] = dp[i][e] = 0.f;
    mma_abt<T, HP, NT>(p, Qs, warp * 16, Kt, lane);    // S = Q K^T
    mma_abt<T, HP, NT>(dp, dOs, warp * 16, Vt, lane);  // dP = dO V^T
    const int64_t k0 = static_cast<int64_t>(j) * BN;
    const bool need_mask = k0 + BN > g.S || (g.causal && k0 + BN - 1 > q0 + g.shift);
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = e >> 1;
        float pr = exp2f(p[nt][e] * g.scale_log2 - lse2[r]);
        if (need_mask) {
          const int64_t key = k0 + nt * 8 + 2 * tig + (e & 1), row = row_a + 8 * r;
          if (key >= g.S || (g.causal && key > row + g.shift)) pr = 0.f;
        }
        p[nt][e] = pr * (dp[nt][e] - dr[r]);  // dS (the scale is applied at the store)
      }
    }
    mma_pb<T, HP, NT>(dq, p, Kt, lane);  // dQ += dS K
    __syncthreads();
  }
  cp_async_wait<0>();
  const float mul[2] = {g.scale, g.scale};
  store_rows<T, HP>(gq + b * g.gq_s[0] + h * g.gq_s[1], g.gq_s[2], row_a, g.T, g.D, dq, mul, tig);
}

template <int HP>
constexpr int dkv_bq() {
  return HP == 128 ? 32 : 64;
}

// Dynamic shared memory per CTA of each kernel for padded head size hp (16-bit elements).
constexpr size_t tc_forward_smem(int hp) { return static_cast<size_t>(kTcBM + 4 * kTcBN) * (hp + 8) * 2; }
constexpr size_t tc_dq_smem(int hp) { return static_cast<size_t>(2 * kTcBM + 4 * kTcBN) * (hp + 8) * 2; }
constexpr size_t tc_dkv_smem(int hp) {
  const int bq = hp == 128 ? 32 : 64;  // dkv_bq
  return static_cast<size_t>(2 * kTcBM + 4 * bq) * (hp + 8) * 2 + 4 * bq * sizeof(float);
}

template <class T, int HP>
__global__ void __launch_bounds__(kTcThreads)
    attn_tc_dkv_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                       const T* __restrict__ go, const float* __restrict__ lse, const float* __restrict__ drow,
                       T* __restrict__ gk, T* __restrict__ gv, TcGeom g) {
  constexpr int LD = HP + 8, BK = kTcBM, BQ = dkv_bq<HP>(), NT = BQ / 8, OT = HP / 8;
  extern __shared__ __align__(16) unsigned char tc_smem[];
  T* Ks = reinterpret_cast<T*>(tc_smem);                    // BK x LD
  T* Vs = Ks + BK * LD;                                     // BK x LD
  T* Qs = Vs + BK * LD;                                     // 2 x BQ x LD
  T* dOs = Qs + 2 * BQ * LD;                                // 2 x BQ x LD
  float* Ls = reinterpret_cast<float*>(dOs + 2 * BQ * LD);  // 2 x BQ (base-2 lse)
  float* Ds = Ls + 2 * BQ;                                  // 2 x BQ (Drow)
  const int64_t bh = blockIdx.x, b = bh / g.NH, h = bh % g.NH;
  const int64_t s0 = static_cast<int64_t>(blockIdx.y) * BK;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gid = lane >> 2, tig = lane & 3;
  const T* qb = q + b * g.q_s[0] + h * g.q_s[1];
  const T* kb = k + b * g.k_s[0] + h * g.k_s[1];
  const T* vb = v + b * g.v_s[0] + h * g.v_s[1];
  const T* gob = go + b * g.go_s[0] + h * g.go_s[1];
  const float* lse_b = lse + bh * g.T;
  const float* dr_b = drow + bh * g.T;
  const bool fast = g.fast != 0;

  // The first query that sees key s0 is t = s0 - shift (causal); start at its tile.
  int64_t t_begin = g.causal ? (s0 - g.shift > 0 ? s0 - g.shift : 0) : 0;
  t_begin = t_begin / BQ * BQ;
  const int nq = t_begin < g.T ? static_cast<int>((g.T - t_begin + BQ - 1) / BQ) : 0;

  auto prefetch = [&](int i) {
    const int buf = i & 1;
    const int64_t t0 = t_begin + static_cast<int64_t>(i) * BQ;
    load_tile<T, HP, BQ>(Qs + buf * BQ * LD, qb, g.q_s[2], t0, g.T, g.D, fast);
    load_tile<T, HP, BQ>(dOs + buf * BQ * LD, gob, g.go_s[2], t0, g.T, g.D, fast);
    if (threadIdx.x < BQ) {
      const int64_t t = t0 + threadIdx.x;
      Ls[buf * BQ + threadIdx.x] = t < g.T ? lse_base2(lse_b[t]) : INFINITY;
      Ds[buf * BQ + threadIdx.x] = t < g.T ? dr_b[t] : 0.f;
    }
  };
  load_tile<T, HP, BK>(Ks, kb, g.k_s[2], s0, g.S, g.D, fast);
  load_tile<T, HP, BK>(Vs, vb, g.v_s[2], s0, g.S, g.D, fast);
  if (nq > 0) prefetch(0);
  cp_async_commit();

  const int64_t key_a = s0 + warp * 16 + gid;  // this thread's keys: key_a and key_a + 8
  float dk[OT][4], dv[OT][4];
#pragma unroll
  for (int i = 0; i < OT; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) dk[i][e] = dv[i][e] = 0.f;

  for (int i = 0; i < nq; ++i) {
    if (i + 1 < nq) prefetch(i + 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const int buf = i & 1;
    const T* Qt = Qs + buf * BQ * LD;
    const T* dOt = dOs + buf * BQ * LD;
    const float* Lt = Ls + buf * BQ;
    const float* Dt = Ds + buf * BQ;
    const int64_t t0 = t_begin + static_cast<int64_t>(i) * BQ;

    float p[NT][4], dp[NT][4];
#pragma unroll
    for (int n = 0; n < NT; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) p[n][e] = dp[n][e] = 0.f;
    mma_abt<T, HP, NT>(p, Ks, warp * 16, Qt, lane);    // S^T = K Q^T
    mma_abt<T, HP, NT>(dp, Vs, warp * 16, dOt, lane);  // dP^T = V dO^T
    // Mask when the tile runs past the queries or the keys, or a query of it does not see the CTA's last key.
    const bool need_mask = t0 + BQ > g.T || s0 + BK > g.S || (g.causal && s0 + BK - 1 > t0 + g.shift);
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int col = nt * 8 + 2 * tig + (e & 1);  // query t0 + col
        float pr = exp2f(p[nt][e] * g.scale_log2 - Lt[col]);
        if (need_mask) {
          const int64_t t = t0 + col, key = key_a + (e >> 1) * 8;
          if (t >= g.T || key >= g.S || (g.causal && key > t + g.shift)) pr = 0.f;
        }
        p[nt][e] = pr;                           // P^T
        dp[nt][e] = pr * (dp[nt][e] - Dt[col]);  // dS^T (the scale is applied at the store)
      }
    }
    mma_pb<T, HP, NT>(dv, p, dOt, lane);  // dV += P^T dO
    mma_pb<T, HP, NT>(dk, dp, Qt, lane);  // dK += dS^T Q
    __syncthreads();
  }
  cp_async_wait<0>();
  const float one[2] = {1.f, 1.f}, sc[2] = {g.scale, g.scale};
  store_rows<T, HP>(gv + b * g.gv_s[0] + h * g.gv_s[1], g.gv_s[2], key_a, g.S, g.D, dv, one, tig);
  store_rows<T, HP>(gk + b * g.gk_s[0] + h * g.gk_s[1], g.gk_s[2], key_a, g.S, g.D, dk, sc, tig);
}

// ---- host side ----------------------------------------------------------------------------------------------------
void set_strides3(int64_t* s, const Tensor& t) {
  s[0] = t.stride(0);
  s[1] = t.stride(1);
  s[2] = t.stride(2);
}

// 16-byte cp.async needs the head base and every row 16-byte aligned.
bool vec_ok(const Tensor& t) {
  const int64_t e = static_cast<int64_t>(dtype_size(t.dtype()));
  const int64_t per16 = 16 / e;
  return reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0 && t.stride(0) % per16 == 0 && t.stride(1) % per16 == 0 &&
         t.stride(2) % per16 == 0;
}

int padded_head(int64_t D) { return D <= 32 ? 32 : (D <= 64 ? 64 : 128); }

TcGeom make_tc_geom(const Tensor& q, const Tensor& k, const AttentionAttrs& a) {
  TcGeom g{};
  g.NH = q.size(1);
  g.T = q.size(2);
  g.S = k.size(2);
  g.shift = g.S - g.T;
  g.D = static_cast<int>(q.size(3));
  g.causal = a.causal ? 1 : 0;
  g.scale = static_cast<float>(a.scale);
  g.scale_log2 = static_cast<float>(a.scale * 1.4426950408889634);
  return g;
}

template <class Kernel>
void tc_allow_smem(Kernel kernel, size_t bytes, const char* name) {
  const int dev = current_device();
  MODU_CHECK(bytes <= max_shared_memory_per_block(dev), name, " (tensor-core path): needs ", bytes,
             " bytes of shared memory per block, more than this GPU's ", max_shared_memory_per_block(dev));
  if (bytes > 48 * 1024)
    MODU_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

template <class F>
void dispatch_tc(DType dt, int64_t D, F&& f) {
  auto with_hp = [&](auto tag) {
    using T = decltype(tag);
    const int hp = padded_head(D);
    if (hp == 32)
      f(T{}, std::integral_constant<int, 32>{});
    else if (hp == 64)
      f(T{}, std::integral_constant<int, 64>{});
    else
      f(T{}, std::integral_constant<int, 128>{});
  };
  if (dt == DType::BF16)
    with_hp(bf16_t{});
  else if (dt == DType::F16)
    with_hp(f16_t{});
  else
    MODU_FAIL("attention (tensor-core path): no kernel for ", dtype_name(dt));
}

void check_tc_operand(const Tensor& t, DType dt, const char* what) {
  MODU_CHECK(t.dim() == 4 && (t.size(3) <= 1 || t.stride(3) == 1), "attention (tensor-core path): ", what,
             " must be 4-D with a unit-stride last dim");
  MODU_CHECK(t.dtype() == dt, "attention (tensor-core path): ", what, " is ", dtype_name(t.dtype()), ", not ",
             dtype_name(dt));
}

}  // namespace

bool attention_tc_supported(const Tensor& q, const Tensor& k, const Tensor& v) {
  const DType dt = q.dtype();
  if (dt != DType::BF16 && dt != DType::F16) return false;
  if (k.dtype() != dt || v.dtype() != dt || q.dim() != 4 || k.dim() != 4 || v.dim() != 4) return false;
  const int64_t D = q.size(3);
  if (D < 1 || D > 128 || k.size(3) != D || v.size(3) != D) return false;
  // Query and key tiles of 64 on grid y (at most 65535 blocks), and every kernel's shared memory on this GPU
  // (HP = 128's dQ kernel needs 102 KB: more than the 99 KB of sm_86 / sm_89 parts).
  if ((std::max(q.size(2), k.size(2)) + kTcBM - 1) / kTcBM > 65535) return false;
  const int hp = padded_head(D);
  const size_t need = std::max({tc_forward_smem(hp), tc_dq_smem(hp), tc_dkv_smem(hp)});
  return need <= max_shared_memory_per_block(q.device().index);
}

void attention_forward_tc(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& o, Tensor& lse,
                          const AttentionAttrs& a) {
  const DType dt = q.dtype();
  check_tc_operand(q, dt, "q");
  check_tc_operand(k, dt, "k");
  check_tc_operand(v, dt, "v");
  check_tc_operand(o, dt, "the output");
  MODU_CHECK(lse.dtype() == DType::F32 && lse.is_contiguous(),
             "attention (tensor-core path): lse must be f32 and contiguous");
  TcGeom g = make_tc_geom(q, k, a);
  const int64_t B = q.size(0);
  if (B * g.NH == 0 || g.T == 0) return;
  MODU_CHECK(g.S > 0, "attention (tensor-core path): no keys");
  set_strides3(g.q_s, q);
  set_strides3(g.k_s, k);
  set_strides3(g.v_s, v);
  set_strides3(g.o_s, o);
  g.fast = padded_head(g.D) == g.D && vec_ok(q) && vec_ok(k) && vec_ok(v);
  dispatch_tc(dt, g.D, [&](auto tag, auto hp) {
    using T = decltype(tag);
    constexpr int HP = decltype(hp)::value;
    const size_t smem = tc_forward_smem(HP);
    auto kernel = attn_tc_fwd_kernel<T, HP>;
    tc_allow_smem(kernel, smem, "attention");
    dim3 grid(static_cast<unsigned>(B * g.NH), static_cast<unsigned>((g.T + kTcBM - 1) / kTcBM));
    kernel<<<grid, kTcThreads, smem, cur_stream()>>>(
        static_cast<const T*>(q.data_ptr()), static_cast<const T*>(k.data_ptr()), static_cast<const T*>(v.data_ptr()),
        static_cast<T*>(o.data_ptr()), static_cast<float*>(lse.data_ptr()), g);
    MODU_CUDA_LAUNCH_CHECK("attention (tensor-core path)");
  });
}

void attention_backward_tc(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o, const Tensor& lse,
                           const Tensor& go, Tensor& gq, Tensor& gk, Tensor& gv, const AttentionAttrs& a) {
  const DType dt = q.dtype();
  check_tc_operand(q, dt, "q");
  check_tc_operand(k, dt, "k");
  check_tc_operand(v, dt, "v");
  check_tc_operand(o, dt, "the forward output");
  check_tc_operand(go, dt, "the output gradient");
  check_tc_operand(gq, dt, "dq");
  check_tc_operand(gk, dt, "dk");
  check_tc_operand(gv, dt, "dv");
  MODU_CHECK(lse.dtype() == DType::F32 && lse.is_contiguous(),
             "attention_backward (tensor-core path): lse must be f32 and contiguous");
  TcGeom g = make_tc_geom(q, k, a);
  const int64_t B = q.size(0);
  if (B * g.NH == 0) return;
  MODU_CHECK(g.S > 0, "attention_backward (tensor-core path): no keys");
  set_strides3(g.q_s, q);
  set_strides3(g.k_s, k);
  set_strides3(g.v_s, v);
  set_strides3(g.o_s, o);
  set_strides3(g.go_s, go);
  set_strides3(g.gq_s, gq);
  set_strides3(g.gk_s, gk);
  set_strides3(g.gv_s, gv);
  g.fast = padded_head(g.D) == g.D && vec_ok(q) && vec_ok(k) && vec_ok(v) && vec_ok(go);
  const int dev = current_device();
  const int64_t rows = B * g.NH * g.T;
  Tensor drow = Tensor::empty(Dims{B, g.NH, g.T}, DType::F32, Device::cuda(dev));
  cudaStream_t s = cur_stream();
  dispatch_tc(dt, g.D, [&](auto tag, auto hp) {
    using T = decltype(tag);
    constexpr int HP = decltype(hp)::value;
    const T *Q = static_cast<const T*>(q.data_ptr()), *K = static_cast<const T*>(k.data_ptr()),
            *V = static_cast<const T*>(v.data_ptr()), *GO = static_cast<const T*>(go.data_ptr());
    const float *L = static_cast<const float*>(lse.data_ptr()), *DR = static_cast<const float*>(drow.data_ptr());
    if (rows > 0) {
      attn_tc_drow_kernel<T><<<static_cast<unsigned>((rows + 7) / 8), 256, 0, s>>>(
          static_cast<const T*>(o.data_ptr()), GO, static_cast<float*>(drow.data_ptr()), rows, g);
      MODU_CUDA_LAUNCH_CHECK("attention_backward (tensor-core path): rowsum");
      const size_t smem = tc_dq_smem(HP);
      auto kernel = attn_tc_dq_kernel<T, HP>;
      tc_allow_smem(kernel, smem, "attention_backward");
      dim3 grid(static_cast<unsigned>(B * g.NH), static_cast<unsigned>((g.T + kTcBM - 1) / kTcBM));
      kernel<<<grid, kTcThreads, smem, s>>>(Q, K, V, GO, L, DR, static_cast<T*>(gq.data_ptr()), g);
      MODU_CUDA_LAUNCH_CHECK("attention_backward (tensor-core path): dq");
    }
    // dK and dV are written even when T = 0 (zeros: no query sees any key).
    constexpr int BQ = dkv_bq<HP>();
    static_assert(BQ == (HP == 128 ? 32 : 64), "tc_dkv_smem's tile");
    const size_t smem = tc_dkv_smem(HP);
    auto kernel = attn_tc_dkv_kernel<T, HP>;
    tc_allow_smem(kernel, smem, "attention_backward");
    dim3 grid(static_cast<unsigned>(B * g.NH), static_cast<unsigned>((g.S + kTcBM - 1) / kTcBM));
    kernel<<<grid, kTcThreads, smem, s>>>(Q, K, V, GO, L, DR, static_cast<T*>(gk.data_ptr()),
                                          static_cast<T*>(gv.data_ptr()), g);
    MODU_CUDA_LAUNCH_CHECK("attention_backward (tensor-core path): dk, dv");
  });
}

}  // namespace modu::cuda
