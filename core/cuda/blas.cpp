// core/cuda/blas.cpp — matmul and linear on cuBLAS / cuBLASLt, and the row-major GEMM helper the other
// CUDA kernels use (conv2d).
//
// Invariants:
//  - f32 GEMMs compute in true fp32 (CUBLAS_COMPUTE_32F, default math mode: no TF32), so CUDA agrees with
//    the CPU to fp32 rounding; bf16/f16 multiply on tensor cores with fp32 accumulation and round once on
//    output (or write the f32 accumulators: matmul's accumulate_out); f64 computes in fp64. Outputs are written (beta =
//    0), except where linear starts from the bias.
//  - Transposed views are passed as transposes, never copied (as core/cpu/matmul.cpp): an operand is copied
//    only when neither its rows nor its columns are unit-stride.
//  - matmul: batch dims broadcast (stride 0). When the right operand is shared by the whole batch and the
//    left's batch folds into its rows, one large GEMM runs (x (B, T, C) @ w (C, N)); otherwise batch dims are
//    coalesced and the innermost run goes to one strided-batched call per remaining index.
//  - linear (x (..., K), w (N, K), b (N)) for f32/bf16/f16 is one cuBLASLt matmul with the bias epilogue
//    (bias added in fp32 before the single rounding); f64, or a layout cuBLASLt declines, starts C from the
//    broadcast bias and runs a GEMM with beta = 1. cuBLASLt plans are cached per shape and alignment.
//  All GEMMs run on the device's stream with the device's workspace.
#include <climits>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "core/cuda/kernels.h"
#include "core/ops/layout.h"

namespace modu::cuda {

namespace {

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::F32: return CUDA_R_32F;
    case DType::F64: return CUDA_R_64F;
    case DType::BF16: return CUDA_R_16BF;
    case DType::F16: return CUDA_R_16F;
    default: MODU_FAIL("GEMM: unsupported dtype ", dtype_name(t));
  }
}

int to_int(int64_t v, const char* what) {
  MODU_CHECK(v >= 0 && v <= INT_MAX, "GEMM: ", what, " = ", v, " exceeds cuBLAS's 32-bit limit");
  return static_cast<int>(v);
}


size_t alignment_of(const void* p) {
  uintptr_t v = reinterpret_cast<uintptr_t>(p);
  size_t a = 256;
  while (a > 1 && v % a) a >>= 1;
  return a;
}

}  // namespace

void gemm(DType in_type, DType out_type, bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha,
          const void* A, int64_t lda, int64_t stride_a, const void* B, int64_t ldb, int64_t stride_b, double beta,
          void* C, int64_t ldc, int64_t stride_c, int64_t batch) {
  if (M == 0 || N == 0 || batch == 0) return;
  int dev = current_device();
  cublasHandle_t h = cublas_handle(dev);
  // Row-major C (M, N) = op(A) op(B) is column-major C^T (N, M) = op(B)^T op(A)^T: swap the operands.
  cublasOperation_t opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N, opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  // Leading dims must cover the column-major rows even for degenerate sizes.
  int64_t ldb_min = tb ? K : N, lda_min = ta ? M : K;
  if (ldb < std::max<int64_t>(ldb_min, 1)) ldb = std::max<int64_t>(ldb_min, 1);
  if (lda < std::max<int64_t>(lda_min, 1)) lda = std::max<int64_t>(lda_min, 1);
  int m = to_int(N, "N"), n = to_int(M, "M"), k = to_int(K, "K");
  int ilda = to_int(lda, "lda"), ildb = to_int(ldb, "ldb"), ildc = to_int(ldc, "ldc");
  int ibatch = to_int(batch, "batch");
  cudaDataType_t ti = cuda_type(in_type), to = cuda_type(out_type);
  if (in_type == DType::F64) {
    MODU_CHECK(out_type == DType::F64, "GEMM: f64 inputs need an f64 output");
    MODU_CUBLAS_CHECK(cublasGemmStridedBatchedEx(h, opb, opa, m, n, k, &alpha, B, ti, ildb, stride_b, A, ti, ilda,
                                                 stride_a, &beta, C, to, ildc, stride_c, ibatch, CUBLAS_COMPUTE_64F,
                                                 CUBLAS_GEMM_DEFAULT));
  } else {
    float fa = static_cast<float>(alpha), fb = static_cast<float>(beta);
    MODU_CUBLAS_CHECK(cublasGemmStridedBatchedEx(h, opb, opa, m, n, k, &fa, B, ti, ildb, stride_b, A, ti, ilda,
                                                 stride_a, &fb, C, to, ildc, stride_c, ibatch, CUBLAS_COMPUTE_32F,
                                                 CUBLAS_GEMM_DEFAULT));
  }
}

namespace {

// ---- matmul ---------------------------------------------------------------------------------------------

void matmul_kernel(const KernelCall& c) {
  Tensor a = c.input(0), b = c.input(1);
  Tensor& out = c.output(0);
  int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  if (out.numel() == 0) return;
  if (K == 0) {
    fill(out, 0.0);
    return;
  }
  GemmOperand oa, ob;
  if (!gemm_operand(M, K, a.stride(-2), a.stride(-1), &oa)) {
    a = contiguous(a);
    oa = {false, K};
  }
  if (!gemm_operand(K, N, b.stride(-2), b.stride(-1), &ob)) {
    b = contiguous(b);
    ob = {false, N};
  }
  DType dt = a.dtype(), ot = out.dtype();  // ot: f32 for bf16/f16 inputs under accumulate_out
  size_t es = dtype_size(dt), eo = dtype_size(ot);
  MatmulBatch mb = matmul_batch(a, b, out, oa);
  int nb = mb.dims;
  int64_t batch = mb.count;
  const Dims &sa = mb.stride_a, &sb = mb.stride_b;
  const char* A = static_cast<const char*>(a.data_ptr());
  const char* B = static_cast<const char*>(b.data_ptr());
  char* C = static_cast<char*>(out.data_ptr());
  if (mb.folds_into_rows) {
    gemm(dt, ot, false, ob.trans, batch * M, N, K, 1.0, A, oa.ld, 0, B, ob.ld, 0, 0.0, C, N, 0, 1);
    return;
  }
  // Coalesce batch dims (size > 1) whose strides nest for all three operands.
  struct BDim {
    int64_t size, sa, sb, sc;
  };
  BDim dims[kMaxDims];
  int nd = 0;
  int64_t sc_run = M * N;
  int64_t sc_of[kMaxDims];
  for (int d = nb - 1; d >= 0; --d) {
    sc_of[d] = sc_run;
    sc_run *= out.size(d);
  }
  for (int d = 0; d < nb; ++d) {
    int64_t sz = out.size(d);
    if (sz == 1) continue;
    if (nd > 0) {
      BDim& p = dims[nd - 1];
      if (p.sa == sa[d] * sz && p.sb == sb[d] * sz && p.sc == sc_of[d] * sz) {
        p.size *= sz;
        p.sa = sa[d];
        p.sb = sb[d];
        p.sc = sc_of[d];
        continue;
      }
    }
    dims[nd++] = {sz, sa[d], sb[d], sc_of[d]};
  }
  if (nd == 0) dims[nd++] = {1, 0, 0, M * N};
  const BDim& inner = dims[nd - 1];
  int64_t outer = 1;
  for (int i = 0; i < nd - 1; ++i) outer *= dims[i].size;
  for (int64_t o = 0; o < outer; ++o) {
    int64_t offa = 0, offb = 0, offc = 0, rem = o;
    for (int i = nd - 2; i >= 0; --i) {
      int64_t idx = rem % dims[i].size;
      rem /= dims[i].size;
      offa += idx * dims[i].sa;
      offb += idx * dims[i].sb;
      offc += idx * dims[i].sc;
    }
    gemm(dt, ot, oa.trans, ob.trans, M, N, K, 1.0, A + offa * static_cast<int64_t>(es), oa.ld, inner.sa,
         B + offb * static_cast<int64_t>(es), ob.ld, inner.sb, 0.0, C + offc * static_cast<int64_t>(eo), N, inner.sc,
         inner.size);
  }
}

// ---- linear: cuBLASLt with the bias epilogue ----------------------------------------------------------------

struct LtKey {
  int dev;
  DType dt;
  int64_t M, N, K, ldw;
  bool wtrans;
  uint16_t align_w, align_x, align_out;
  bool operator==(const LtKey&) const = default;
};
struct LtKeyHash {
  size_t operator()(const LtKey& k) const {
    size_t h = std::hash<int64_t>()(k.M);
    auto mix = [&](uint64_t v) { h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2); };
    mix(static_cast<uint64_t>(k.N));
    mix(static_cast<uint64_t>(k.K));
    mix(static_cast<uint64_t>(k.ldw));
    mix((static_cast<uint64_t>(k.dev) << 32) | (static_cast<uint64_t>(k.dt) << 24) | (uint64_t(k.wtrans) << 16) |
        ((uint64_t(k.align_w) << 8) ^ (uint64_t(k.align_x) << 4) ^ k.align_out));
    return h;
  }
};
struct LtPlan {
  bool ok = false;
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
};

std::mutex g_lt_mu;
std::unordered_map<LtKey, LtPlan, LtKeyHash> g_lt_plans;  // never destroyed before exit (plans are tiny)

// The plan for out (M, N) = x (M, K) @ w^T + bias; `ok` false when cuBLASLt offers no algorithm.
const LtPlan& lt_plan(const LtKey& key) {
  std::lock_guard<std::mutex> lock(g_lt_mu);
  auto it = g_lt_plans.find(key);
  if (it != g_lt_plans.end()) return it->second;
  LtPlan p;
  cudaDataType_t t = cuda_type(key.dt);
  // Column-major: D^T (N, M) = op(W) (N, K) x^T (K, M). W stored row-major (N, K) is column-major (K, N): op T.
  cublasOperation_t opa = key.wtrans ? CUBLAS_OP_N : CUBLAS_OP_T, opb = CUBLAS_OP_N;
  cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
  MODU_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  MODU_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof(opa)));
  MODU_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof(opb)));
  MODU_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
  MODU_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &t, sizeof(t)));
  uint64_t wr = key.wtrans ? static_cast<uint64_t>(key.N) : static_cast<uint64_t>(key.K);
  uint64_t wc = key.wtrans ? static_cast<uint64_t>(key.K) : static_cast<uint64_t>(key.N);
  MODU_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, t, wr, wc, key.ldw));
  MODU_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, t, static_cast<uint64_t>(key.K), static_cast<uint64_t>(key.M),
                                               key.K));
  MODU_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.d, t, static_cast<uint64_t>(key.N), static_cast<uint64_t>(key.M),
                                               key.N));
  size_t ws_bytes = 0;
  blas_workspace(key.dev, &ws_bytes);
  cublasLtMatmulPreference_t pref;
  MODU_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  MODU_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes,
                                                         sizeof(ws_bytes)));
  uint32_t aw = key.align_w, ax = key.align_x, ao = key.align_out;
  MODU_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aw, sizeof(aw)));
  MODU_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ax, sizeof(ax)));
  MODU_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ao, sizeof(ao)));
  MODU_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ao, sizeof(ao)));
  cublasLtMatmulHeuristicResult_t res{};
  int found = 0;
  cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(cublaslt_handle(key.dev), p.desc, p.a, p.b, p.d, p.d, pref, 1,
                                                     &res, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st == CUBLAS_STATUS_SUCCESS && found > 0 && res.state == CUBLAS_STATUS_SUCCESS) {
    p.algo = res.algo;
    p.ok = true;
  }
  return g_lt_plans.emplace(key, p).first->second;
}

void linear_kernel(const KernelCall& c) {
  const Tensor& b = c.input(2);
  Tensor& out = c.output(0);
  Tensor x = contiguous(c.input(0));
  Tensor w = c.input(1);
  int64_t K = x.size(-1), N = w.size(0), M = K > 0 ? x.numel() / K : out.numel() / std::max<int64_t>(N, 1);
  DType dt = x.dtype();
  if (out.numel() == 0) return;
  GemmOperand ow;  // w (N, K) used as w^T
  if (!gemm_operand(N, K, w.stride(0), w.stride(1), &ow)) {
    w = contiguous(w);
    ow = {false, K};
  }
  int64_t ldw = std::max<int64_t>(ow.ld, 1);
  if (ldw < (ow.trans ? N : K)) ldw = ow.trans ? N : K;
  int dev = current_device();
  Tensor bias = contiguous(b);
  if (dt != DType::F64 && K > 0 && alignment_of(bias.data_ptr()) >= 16) {
    LtKey key{dev, dt, M, N, K, ldw, ow.trans, static_cast<uint16_t>(alignment_of(w.data_ptr())),
              static_cast<uint16_t>(alignment_of(x.data_ptr())), static_cast<uint16_t>(alignment_of(out.data_ptr()))};
    const LtPlan& p = lt_plan(key);
    if (p.ok) {
      // The bias pointer is per call: set it on the cached descriptor and run under the plans' lock.
      std::lock_guard<std::mutex> lock(g_lt_mu);
      const void* bp = bias.data_ptr();
      MODU_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bp, sizeof(bp)));
      size_t ws_bytes = 0;
      void* ws = blas_workspace(dev, &ws_bytes);
      float alpha = 1.0f, beta = 0.0f;
      MODU_CUBLAS_CHECK(cublasLtMatmul(cublaslt_handle(dev), p.desc, &alpha, w.data_ptr(), p.a, x.data_ptr(), p.b,
                                       &beta, out.data_ptr(), p.d, out.data_ptr(), p.d, &p.algo, ws, ws_bytes,
                                       stream(dev)));
      return;
    }
  }
  // Start from the broadcast bias, then accumulate the product (beta = 1).
  Tensor out2 = Tensor::make_view(out.storage(), Dims{M, N}, Dims{N, 1}, out.offset(), dt);
  Tensor bias2 = Tensor::make_view(bias.storage(), Dims{M, N}, Dims{0, 1}, bias.offset(), dt);
  copy_into(out2, bias2);
  if (K == 0) return;
  gemm(dt, dt, false, !ow.trans, M, N, K, 1.0, x.data_ptr(), K, 0, w.data_ptr(), ldw, 0, 1.0, out.data_ptr(), N, 0, 1);
}

}  // namespace

void register_blas_kernels(KernelRegistry& r) {
  r.set(DeviceType::CUDA, OpId::matmul, guarded<matmul_kernel>, kFloatTypes);
  r.set(DeviceType::CUDA, OpId::linear, guarded<linear_kernel>, kFloatTypes);
}

}  // namespace modu::cuda
