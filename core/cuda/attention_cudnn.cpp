// core/cuda/attention_cudnn.cpp — scaled-dot-product attention, forward and backward, on cuDNN's fused
// flash-attention engines (bf16/f16 in, f32 softmax and accumulation; nothing of size T x S stored), through
// NVIDIA's cuDNN frontend (header-only, fetched by scripts/fetch-cudnn-frontend.sh). cuDNN itself is loaded at
// run time (dlopen of libcudnn.so.9, or the path in MODU_CUDNN_LIBRARY), so builds, CI and every other path
// work on machines without it. Selected by MODU_CUDA_ATTENTION=cudnn (attention_gemm.h: attention_path); not
// the default until it has matched the CPU on a GPU.
//
// Shapes as the op's: q (B, NH, T, HS), k and v (B, NH, S, HS), o (B, NH, T, HS), any strides with a unit-stride
// last dim (the model's permuted (B, T, NH, HS) views go in as they are); lse (B, NH, T) f32 contiguous is
// cuDNN's softmax statistics tensor (B, NH, T, 1): per row max + log(sum exp(scores - max)) of the scaled
// scores, natural log, as core/cpu/attention.cpp's lse. Causal: query t sees keys s <= t + (S - T), cuDNN's
// bottom-right diagonal alignment (top-left and bottom-right agree when S = T).
//
// Invariants: one graph per (device, dtype, direction, sizes, strides, scale, causal), built on first use
// and cached for the process (the graph, not the data, is cached: execution binds the pointers); a graph cuDNN
// refuses to build is cached as refused, said once on stderr, and the call returns false so that the caller
// takes another path (as it does when cuDNN is missing or older than 9.5.1); the workspace comes from the caching
// allocator, on the device's stream; the cuDNN handle of a device is bound to that stream before every
// execution. Errors name the cuDNN step and carry cuDNN's message.
#include "core/cuda/attention_cudnn.h"

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "core/check.h"
#include "core/cuda/runtime.h"

#if MODU_HAVE_CUDNN_FRONTEND
#include <dlfcn.h>

#include <cudnn_frontend.h>

// The frontend's dynamic loading reads cuDNN's symbols from this handle (set by load_cudnn()).
namespace cudnn_frontend {
void* cudnn_dlhandle = nullptr;
}  // namespace cudnn_frontend
#endif

namespace modu::cuda {

namespace {
std::atomic<int64_t> g_calls{0};
}  // namespace
int64_t attention_cudnn_calls() { return g_calls.load(); }

std::string attention_cudnn_unsupported(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionAttrs& a) {
  if (q.dtype() != DType::BF16 && q.dtype() != DType::F16) return "dtype is not bf16 or f16";
  if (k.dtype() != q.dtype() || v.dtype() != q.dtype()) return "q, k and v differ in dtype";
  if (q.dim() != 4 || k.dim() != 4 || v.dim() != 4) return "operands are not 4-D";
  const int64_t HS = q.size(3), T = q.size(2), S = k.size(2);
  if (HS == 0 || HS % 8 != 0 || HS > 128) return "head size is not a multiple of 8 from 8 to 128";
  if (k.size(3) != HS || v.size(3) != HS || k.size(0) != q.size(0) || k.size(1) != q.size(1) || v.shape() != k.shape())
    return "k and v do not match q's batch, heads and head size";
  if (T == 0 || S == 0) return "no queries or no keys";
  if (a.causal && S < T) return "causal attention with fewer keys than queries";
  if (a.causal && S > T) return "causal with more keys than queries (a KV-cache decode step): a graph per length";
  for (const Tensor* t : {&q, &k, &v}) {
    if (t->stride(3) != 1) return "a last dim is not unit-stride";
    for (int d = 0; d < 3; ++d)
      if (t->stride(d) % 8 != 0) return "a stride is not a multiple of 8 elements";
    if (reinterpret_cast<uintptr_t>(t->data_ptr()) % 16 != 0) return "data is not 16-byte aligned";
  }
  return "";
}

#if MODU_HAVE_CUDNN_FRONTEND

namespace fe = cudnn_frontend;

bool attention_cudnn_built() { return true; }

namespace {

std::mutex g_mutex;  // the handle table and the graph cache

// cuDNN up to 9.5.0 assumed the output gradient has the output's strides (the model's need not).
constexpr int64_t kMinCudnnVersion = 90501;

// "" once cuDNN is loaded and new enough, else why not (the same answer for the whole process).
const std::string& cudnn_load_error() {
  static std::once_flag once;
  static std::string error;
  std::call_once(once, [] {
    const char* env = std::getenv("MODU_CUDNN_LIBRARY");
    const char* name = env && *env ? env : "libcudnn.so.9";
    void* h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      const char* why = dlerror();
      error = std::string("cannot load cuDNN (") + name + "): " + (why ? why : "unknown error") +
              "; put the folder of libcudnn.so.9 on LD_LIBRARY_PATH or set MODU_CUDNN_LIBRARY to its path";
      return;
    }
    fe::cudnn_dlhandle = h;
    const int64_t version = static_cast<int64_t>(fe::detail::get_backend_version());
    if (version < kMinCudnnVersion)
      error = std::string("cuDNN ") + std::to_string(version) + " (" + name + ") is older than 9.5.1 (" +
              std::to_string(kMinCudnnVersion) +
              "), whose attention backward reads the output gradient in the output's strides; install cuDNN >= "
              "9.5.1 or set MODU_CUDNN_LIBRARY to one";
  });
  return error;
}

void load_cudnn() { MODU_CHECK(cudnn_load_error().empty(), "attention (cudnn): ", cudnn_load_error()); }

void check_status(cudnnStatus_t s, const char* what) {
  MODU_CHECK(s == CUDNN_STATUS_SUCCESS, "attention (cudnn): ", what, " failed: ", fe::detail::get_error_string(s));
}

void check_fe(fe::error_t e, const char* step) {  // by value: get_message() is not const
  MODU_CHECK(e.is_good(), "attention (cudnn): ", step, " failed: ", e.get_message(), " (cuDNN ",
             fe::detail::get_backend_version(), ")");
}

cudnnHandle_t handle_for(int dev) {  // under g_mutex
  static std::map<int, cudnnHandle_t>* handles = new std::map<int, cudnnHandle_t>();
  auto it = handles->find(dev);
  if (it == handles->end()) {
    DeviceGuard g(dev);
    cudnnHandle_t h = nullptr;
    check_status(fe::detail::create_handle(&h), "cudnnCreate");
    it = handles->emplace(dev, h).first;
  }
  check_status(fe::detail::set_stream(it->second, stream(dev)), "cudnnSetStream");
  return it->second;
}

std::vector<int64_t> dims_of(const Tensor& t) { return {t.size(0), t.size(1), t.size(2), t.size(3)}; }
std::vector<int64_t> strides_of(const Tensor& t) { return {t.stride(0), t.stride(1), t.stride(2), t.stride(3)}; }

// The tensors' ids in a graph (execution binds pointers by id).
enum Uid : int64_t { kQ = 1, kK, kV, kO, kStats, kGO, kGQ, kGK, kGV };

using GraphPtr = std::shared_ptr<fe::graph::Graph>;

// A cache key: everything a graph depends on.
std::vector<int64_t> key_of(int dev, bool backward, const AttentionAttrs& a, std::initializer_list<const Tensor*> ts) {
  std::vector<int64_t> key{dev, backward, a.causal, static_cast<int64_t>(ts.begin()[0]->dtype())};
  int64_t scale_bits;
  std::memcpy(&scale_bits, &a.scale, sizeof scale_bits);
  key.push_back(scale_bits);
  for (const Tensor* t : ts)
    for (int d = 0; d < 4; ++d) key.push_back(t->size(d)), key.push_back(t->stride(d));
  return key;
}

// sm_version > 0: the target GPU for validation without one (set before any node: nodes copy the context).
GraphPtr new_graph(DType dt, int sm_version) {
  auto g = std::make_shared<fe::graph::Graph>();
  if (sm_version > 0) g->set_sm_version(sm_version);
  g->set_io_data_type(dt == DType::BF16 ? fe::DataType_t::BFLOAT16 : fe::DataType_t::HALF)
      .set_intermediate_data_type(fe::DataType_t::FLOAT)
      .set_compute_data_type(fe::DataType_t::FLOAT);
  return g;
}

std::shared_ptr<fe::graph::Tensor_attributes> input(fe::graph::Graph& g, const char* name, Uid uid, const Tensor& t) {
  return g.tensor(
      fe::graph::Tensor_attributes().set_name(name).set_uid(uid).set_dim(dims_of(t)).set_stride(strides_of(t)));
}

// Statistics (B, NH, T, 1) f32 over lse's contiguous (B, NH, T) memory.
std::vector<int64_t> stats_dims(const Tensor& q) { return {q.size(0), q.size(1), q.size(2), 1}; }
std::vector<int64_t> stats_strides(const Tensor& q) { return {q.size(1) * q.size(2), q.size(2), 1, 1}; }

void build(fe::graph::Graph& g, cudnnHandle_t h) {
  check_fe(g.validate(), "graph validation");
  check_fe(g.build_operation_graph(h), "operation graph");
  check_fe(g.create_execution_plans({fe::HeurMode_t::A}), "execution plans (heuristics A)");
  check_fe(g.check_support(h), "support check");
  check_fe(g.build_plans(), "plan build");
}

// The forward graph for these operands, defined (not built).
GraphPtr define_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o, const AttentionAttrs& a,
                        int sm_version = 0) {
  GraphPtr g = new_graph(q.dtype(), sm_version);
  auto Q = input(*g, "q", kQ, q), K = input(*g, "k", kK, k), V = input(*g, "v", kV, v);
  auto opts = fe::graph::SDPA_attributes()
                  .set_name("attention")
                  .set_generate_stats(true)
                  .set_attn_scale(static_cast<float>(a.scale));
  if (a.causal) opts.set_causal_mask_bottom_right(true);
  auto [O, stats] = g->sdpa(Q, K, V, opts);
  O->set_output(true).set_uid(kO).set_dim(dims_of(o)).set_stride(strides_of(o));
  stats->set_output(true)
      .set_uid(kStats)
      .set_data_type(fe::DataType_t::FLOAT)
      .set_dim(stats_dims(q))
      .set_stride(stats_strides(q));
  return g;
}

// The backward graph for these operands, defined (not built).
GraphPtr define_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o, const Tensor& go,
                         const Tensor& gq, const Tensor& gk, const Tensor& gv, const AttentionAttrs& a,
                         bool deterministic, int sm_version = 0) {
  GraphPtr g = new_graph(q.dtype(), sm_version);
  auto Q = input(*g, "q", kQ, q), K = input(*g, "k", kK, k), V = input(*g, "v", kV, v);
  auto O = input(*g, "o", kO, o), GO = input(*g, "go", kGO, go);
  auto stats = g->tensor(fe::graph::Tensor_attributes()
                             .set_name("stats")
                             .set_uid(kStats)
                             .set_dim(stats_dims(q))
                             .set_stride(stats_strides(q))
                             .set_data_type(fe::DataType_t::FLOAT));
  auto opts = fe::graph::SDPA_backward_attributes()
                  .set_name("attention_backward")
                  .set_attn_scale(static_cast<float>(a.scale))
                  .set_deterministic_algorithm(deterministic);
  if (a.causal) opts.set_causal_mask_bottom_right(true);
  auto [GQ, GK, GV] = g->sdpa_backward(Q, K, V, O, GO, stats, opts);
  GQ->set_output(true).set_uid(kGQ).set_dim(dims_of(gq)).set_stride(strides_of(gq));
  GK->set_output(true).set_uid(kGK).set_dim(dims_of(gk)).set_stride(strides_of(gk));
  GV->set_output(true).set_uid(kGV).set_dim(dims_of(gv)).set_stride(strides_of(gv));
  return g;
}

// Finds or builds the graph for `key` (under g_mutex); nullptr when cuDNN refused to build it (`make` threw),
// which is cached too and said on stderr the first time: "cuDNN would not build the <what> graph".
template <class Make>
GraphPtr cached(const std::vector<int64_t>& key, const char* what, Make&& make) {
  static std::map<std::vector<int64_t>, GraphPtr>* cache = new std::map<std::vector<int64_t>, GraphPtr>();
  auto it = cache->find(key);
  if (it != cache->end()) return it->second;
  GraphPtr g;
  try {
    g = make();
  } catch (const Error& e) {
    std::fprintf(stderr,
                 "modu: attention (cudnn): cuDNN would not build the %s graph (%s); these shapes take the "
                 "GEMM path\n",
                 what, e.what());
  }
  cache->emplace(key, g);
  return g;
}

void run(const fe::graph::Graph& g, cudnnHandle_t h, int dev, std::unordered_map<int64_t, void*>& pack) {
  int64_t bytes = 0;
  check_fe(g.get_workspace_size(bytes), "workspace size");
  Tensor workspace = Tensor::empty(Dims{bytes > 0 ? bytes : 1}, DType::U8, Device::cuda(dev));
  check_fe(g.execute(h, pack, workspace.data_ptr()), "execution");
}

void require_supported(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionAttrs& a) {
  const std::string why = attention_cudnn_unsupported(q, k, v, a);
  MODU_CHECK(why.empty(), "attention (cudnn): cannot take ", describe(q), ", ", describe(k), ", ", describe(v), ": ",
             why);
}

// Said once on stderr when cuDNN cannot be used at all; false then.
bool cudnn_usable() {
  if (cudnn_load_error().empty()) return true;
  static std::once_flag said;
  std::call_once(said, [] {
    std::fprintf(stderr, "modu: attention (cudnn): %s; attention takes the GEMM path\n", cudnn_load_error().c_str());
  });
  return false;
}

}  // namespace

bool attention_forward_cudnn(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& o, Tensor& lse,
                             const AttentionAttrs& a) {
  require_supported(q, k, v, a);
  MODU_CHECK(lse.is_contiguous() && lse.dtype() == DType::F32, "attention (cudnn): lse must be contiguous f32");
  if (!cudnn_usable()) return false;
  const int dev = q.device().index;
  std::lock_guard<std::mutex> lock(g_mutex);
  cudnnHandle_t h = handle_for(dev);
  GraphPtr g = cached(key_of(dev, false, a, {&q, &k, &v, &o}), "forward", [&] {
    GraphPtr f = define_forward(q, k, v, o, a);
    build(*f, h);
    return f;
  });
  if (!g) return false;
  std::unordered_map<int64_t, void*> pack{
      {kQ, q.data_ptr()}, {kK, k.data_ptr()}, {kV, v.data_ptr()}, {kO, o.data_ptr()}, {kStats, lse.data_ptr()}};
  run(*g, h, dev, pack);
  ++g_calls;
  return true;
}

bool attention_backward_cudnn(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o, const Tensor& lse,
                              const Tensor& go, Tensor& gq, Tensor& gk, Tensor& gv, const AttentionAttrs& a) {
  require_supported(q, k, v, a);
  const std::string why_grads = attention_cudnn_unsupported(gq, gk, gv, a);
  MODU_CHECK(why_grads.empty(), "attention_backward (cudnn): the gradients: ", why_grads);
  AttentionAttrs unmasked = a;
  unmasked.causal = false;
  const std::string why_o = attention_cudnn_unsupported(o, go, go, unmasked);
  MODU_CHECK(why_o.empty(), "attention_backward (cudnn): the output or its gradient: ", why_o);
  MODU_CHECK(lse.is_contiguous() && lse.dtype() == DType::F32 && lse.numel() == q.size(0) * q.size(1) * q.size(2),
             "attention (cudnn): lse must be contiguous f32 (B, NH, T)");
  if (!cudnn_usable()) return false;
  const int dev = q.device().index;
  std::lock_guard<std::mutex> lock(g_mutex);
  cudnnHandle_t h = handle_for(dev);
  GraphPtr g = cached(key_of(dev, true, a, {&q, &k, &v, &o, &go, &gq, &gk, &gv}), "backward", [&] {
    try {
      GraphPtr b = define_backward(q, k, v, o, go, gq, gk, gv, a, true);
      build(*b, h);
      return b;
    } catch (const Error& e) {  // an older cuDNN or another GPU: the default (atomic dQ) backward, said once
      static std::once_flag warned;
      std::call_once(warned, [&] {
        std::fprintf(stderr, "modu: attention (cudnn): no deterministic backward here (%s); using cuDNN's default\n",
                     e.what());
      });
      GraphPtr b = define_backward(q, k, v, o, go, gq, gk, gv, a, false);
      build(*b, h);
      return b;
    }
  });
  if (!g) return false;
  std::unordered_map<int64_t, void*> pack{{kQ, q.data_ptr()},   {kK, k.data_ptr()},       {kV, v.data_ptr()},
                                          {kO, o.data_ptr()},   {kStats, lse.data_ptr()}, {kGO, go.data_ptr()},
                                          {kGQ, gq.data_ptr()}, {kGK, gk.data_ptr()},     {kGV, gv.data_ptr()}};
  run(*g, h, dev, pack);
  ++g_calls;
  return true;
}

std::string attention_cudnn_validate(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionAttrs& a,
                                     int sm_version) {
  // The outputs and the output gradient as dispatch allocates them: contiguous.
  auto like = [](const Tensor& t) { return Tensor::empty(t.shape(), t.dtype(), Device::cpu()); };
  return attention_cudnn_validate(q, k, v, like(q), like(q), like(q), like(k), like(v), a, sm_version);
}

std::string attention_cudnn_validate(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o,
                                     const Tensor& go, const Tensor& gq, const Tensor& gk, const Tensor& gv,
                                     const AttentionAttrs& a, int sm_version) {
  const std::string why = attention_cudnn_unsupported(q, k, v, a);
  if (!why.empty()) return "unsupported operands: " + why;
  const std::string why_out = attention_cudnn_unsupported(o, go, go, AttentionAttrs{});
  if (!why_out.empty()) return "unsupported output or output gradient: " + why_out;
  const std::string why_grads = attention_cudnn_unsupported(gq, gk, gv, a);
  if (!why_grads.empty()) return "unsupported gradients: " + why_grads;
  load_cudnn();
  std::string failures;
  auto check = [&](const char* what, const GraphPtr& g) {
    fe::error_t e = g->validate();
    if (!e.is_good()) failures += std::string(failures.empty() ? "" : "; ") + what + ": " + e.get_message();
  };
  check("forward", define_forward(q, k, v, o, a, sm_version));
  check("backward (deterministic)", define_backward(q, k, v, o, go, gq, gk, gv, a, true, sm_version));
  check("backward", define_backward(q, k, v, o, go, gq, gk, gv, a, false, sm_version));
  return failures;
}

#else  // built without the cuDNN frontend headers

bool attention_cudnn_built() { return false; }

namespace {
[[noreturn]] void not_built() {
  MODU_FAIL(
      "attention (cudnn): this build has no cuDNN path (the cuDNN frontend headers were missing at configure "
      "time); run scripts/fetch-cudnn-frontend.sh and reconfigure, or use MODU_CUDA_ATTENTION=auto|gemm|tc");
}
}  // namespace

bool attention_forward_cudnn(const Tensor&, const Tensor&, const Tensor&, Tensor&, Tensor&, const AttentionAttrs&) {
  not_built();
}
bool attention_backward_cudnn(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                              Tensor&, Tensor&, Tensor&, const AttentionAttrs&) {
  not_built();
}
std::string attention_cudnn_validate(const Tensor&, const Tensor&, const Tensor&, const AttentionAttrs&, int) {
  not_built();
}
std::string attention_cudnn_validate(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                     const Tensor&, const Tensor&, const Tensor&, const AttentionAttrs&, int) {
  not_built();
}

#endif

}  // namespace modu::cuda
