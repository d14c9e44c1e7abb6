// recipes/gpt/model.cpp — GPT-2 and Llama-style blocks, forward with optional KV cache, init; under tensor
// parallelism the split blocks and the vocabulary-parallel embedding, head and loss (see model.h).
#include "recipes/gpt/model.h"

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <string>
#include <tuple>

#include "autograd/recompute.h"
#include "core/ops/dispatch.h"
#include "core/ops/ops.h"
#include "nn/autocast.h"
#include "parallel/comm.h"
#include "parallel/tensor_parallel.h"
#include "recipes/gpt/tensor_parallel.h"

namespace modu::gpt {

int64_t GptConfig::ffn() const {
  if (!is_llama()) return 4 * n_embd;
  if (ffn_hidden > 0) return ffn_hidden;
  int64_t h = 8 * n_embd / 3;
  return (h + 63) / 64 * 64;
}

nlohmann::json config_to_json(const GptConfig& m) {
  return nlohmann::json{{"arch", m.arch},       {"vocab_size", m.vocab_size}, {"pad_vocab_to", m.pad_vocab_to},
                        {"n_layer", m.n_layer}, {"n_head", m.n_head},         {"n_kv_head", m.n_kv_head},
                        {"n_embd", m.n_embd},   {"block_size", m.block_size}, {"ffn_hidden", m.ffn_hidden},
                        {"dropout", m.dropout}, {"rope_theta", m.rope_theta}, {"norm_eps", m.norm_eps}};
}

GptConfig config_from_json(const nlohmann::json& j) {
  GptConfig m;
  m.arch = j.at("arch").get<std::string>();
  m.vocab_size = j.at("vocab_size").get<int64_t>();
  m.pad_vocab_to = j.at("pad_vocab_to").get<int64_t>();
  m.n_layer = j.at("n_layer").get<int64_t>();
  m.n_head = j.at("n_head").get<int64_t>();
  m.n_kv_head = j.at("n_kv_head").get<int64_t>();
  m.n_embd = j.at("n_embd").get<int64_t>();
  m.block_size = j.at("block_size").get<int64_t>();
  m.ffn_hidden = j.at("ffn_hidden").get<int64_t>();
  m.dropout = j.at("dropout").get<double>();
  m.rope_theta = j.at("rope_theta").get<double>();
  m.norm_eps = j.at("norm_eps").get<double>();
  m.validate();
  return m;
}

void GptConfig::validate() const {
  MODU_CHECK(arch == "gpt2" || arch == "llama", "model.arch '", arch, "' is unknown: use gpt2 or llama");
  MODU_CHECK(vocab_size > 0 && n_layer > 0 && n_head > 0 && n_embd > 0 && block_size > 0,
             "model sizes must be positive (vocab_size, n_layer, n_head, n_embd, block_size)");
  MODU_CHECK(n_embd % n_head == 0, "model.n_embd ", n_embd, " is not divisible by model.n_head ", n_head);
  MODU_CHECK(pad_vocab_to > 0, "model.pad_vocab_to must be positive");
  MODU_CHECK(n_head % kv_heads() == 0, "model.n_kv_head ", kv_heads(), " must divide model.n_head ", n_head);
  MODU_CHECK(!is_llama() || head_size() % 2 == 0, "rotary positions need an even head size, got ", head_size());
  MODU_CHECK(dropout >= 0 && dropout < 1, "model.dropout must be in [0, 1), got ", dropout);
}

namespace {
// x (B, T, C): dropout of site `site` keyed by the samples x holds (DropoutKey). Row b starts at uniform number
// (first_sample + b)*T*C, so a batch is one dropout op whenever first_sample*T*C is a multiple of 4 (a Philox
// block); otherwise the keep/scale factors are drawn over the enclosing blocks and multiplied in.
// Sequence parallelism: x (B, T', C) holds positions [seq_offset, seq_offset + T') of sequences of seq_total
// positions; the keep factors are drawn for the whole sequences and this slice of them multiplied in.
// `gen` is scratch: its state is set here.
Tensor keyed_dropout(const Tensor& x, double p, const DropoutKey& key, int64_t site, Generator& gen,
                     int64_t seq_offset = 0, int64_t seq_total = 0) {
  const bool slice = seq_total > 0 && seq_total != x.size(1);
  const int64_t B = x.size(0), per_sample = slice ? seq_total * (x.numel() / (B * x.size(1))) : x.numel() / B;
  const uint64_t start = key.first_sample * static_cast<uint64_t>(per_sample);
  gen.set_state({key.seed, stream_id("dropout", site), start / 4});
  const int64_t skip = static_cast<int64_t>(start % 4);
  if (skip == 0 && !slice) return dropout(x, p, gen);
  Tensor keep;  // keep / (1 - p) per element, no gradient
  {
    NoGradGuard no_grad;
    const int64_t n = B * per_sample;
    keep = dropout(Tensor::ones(Dims{skip + n}, x.dtype(), x.device()), p, gen).narrow(0, skip, n).contiguous();
    if (slice) keep = keep.view(Dims{B, seq_total, x.numel() / (B * x.size(1))}).narrow(1, seq_offset, x.size(1));
    keep = keep.contiguous().view(x.shape());
  }
  return mul(x, keep);
}
}  // namespace

namespace {
std::atomic<bool> g_norm_fusion{[] {
  const char* e = std::getenv("MODU_NORM_FUSION");
  return !(e && std::string(e) == "0");
}()};
bool fused_norms() { return g_norm_fusion.load(std::memory_order_relaxed); }

std::optional<DType> norm_output_dtype(const Tensor& x, bool allowed) {
  if (!allowed || !fused_norms() || !nn::autocast_enabled() || x.dtype() != DType::F32) return std::nullopt;
  return nn::autocast_dtype();
}
}  // namespace

void set_norm_fusion(bool on) { g_norm_fusion.store(on); }
bool norm_fusion() { return fused_norms(); }

namespace {
std::atomic<bool> g_packed_attention{[] {
  const char* e = std::getenv("MODU_PACKED_ATTENTION");
  return !(e && std::string(e) == "0");
}()};
}  // namespace

void set_packed_attention(bool on) { g_packed_attention.store(on); }
bool packed_attention() { return g_packed_attention.load(std::memory_order_relaxed); }

Tensor stream_sum(const ResidualStream& s) { return s.r.defined() ? add(s.x, s.r.to(s.x.dtype())) : s.x; }

namespace detail {
// A named group of sub-modules (gives parameters their dotted names).
struct Group : nn::Module {
  using nn::Module::register_module;
};
}  // namespace detail
using detail::Group;

class Block : public nn::Module {
 public:
  Block(const GptConfig& c) : c_(c) {
    int64_t C = c.n_embd, HS = c.head_size();
    if (!c.is_llama()) {
      ln_1 = std::make_unique<nn::LayerNorm>(C, c.norm_eps);
      ln_2 = std::make_unique<nn::LayerNorm>(C, c.norm_eps);
      c_attn = std::make_unique<nn::Linear>(C, 3 * C, true);
      attn_proj = std::make_unique<nn::Linear>(C, C, true);
      c_fc = std::make_unique<nn::Linear>(C, c.ffn(), true);
      mlp_proj = std::make_unique<nn::Linear>(c.ffn(), C, true);
      register_module("ln_1", ln_1.get());
      attn.register_module("c_attn", c_attn.get());
      attn.register_module("c_proj", attn_proj.get());
      register_module("attn", &attn);
      register_module("ln_2", ln_2.get());
      mlp.register_module("c_fc", c_fc.get());
      mlp.register_module("c_proj", mlp_proj.get());
      register_module("mlp", &mlp);
    } else {
      int64_t kv = c.kv_heads() * HS;
      in_norm = std::make_unique<nn::RMSNorm>(C, c.norm_eps);
      post_norm = std::make_unique<nn::RMSNorm>(C, c.norm_eps);
      q_proj = std::make_unique<nn::Linear>(C, C, false);
      k_proj = std::make_unique<nn::Linear>(C, kv, false);
      v_proj = std::make_unique<nn::Linear>(C, kv, false);
      attn_proj = std::make_unique<nn::Linear>(C, C, false);
      gate = std::make_unique<nn::Linear>(C, c.ffn(), false);
      up = std::make_unique<nn::Linear>(C, c.ffn(), false);
      mlp_proj = std::make_unique<nn::Linear>(c.ffn(), C, false);
      register_module("input_layernorm", in_norm.get());
      attn.register_module("q_proj", q_proj.get());
      attn.register_module("k_proj", k_proj.get());
      attn.register_module("v_proj", v_proj.get());
      attn.register_module("o_proj", attn_proj.get());
      register_module("self_attn", &attn);
      register_module("post_attention_layernorm", post_norm.get());
      mlp.register_module("gate_proj", gate.get());
      mlp.register_module("up_proj", up.get());
      mlp.register_module("down_proj", mlp_proj.get());
      register_module("mlp", &mlp);
    }
  }

  // Stream (B, T, C) -> stream (B, T, C). `cache` (with this block's layer index) holds earlier keys/values. A
  // pending branch in `in` is added by ln_1 (GPT-2 with norm fusion); GPT-2 with norm fusion also leaves its own MLP
  // branch pending in the result.
  ResidualStream forward(const ResidualStream& in, KVCache* cache, size_t layer, const DropoutKey& drop,
                         Generator& drop_gen, bool training, const Tensor& rope_cos, const Tensor& rope_sin) {
    const int64_t site = 1 + 2 * static_cast<int64_t>(layer);  // attention branch; the MLP's is site + 1
    double p = training ? c_.dropout : 0.0;
    const bool fuse = !c_.is_llama() && fused_norms();
    Tensor x, h;
    if (fuse && in.r.defined()) {
      std::tie(x, h) = add_norm(*ln_1, in.x, in.r);
    } else {
      x = stream_sum(in);
      h = c_.is_llama() ? norm(*in_norm, x) : norm(*ln_1, x);
    }
    h = to_tp(h);
    Tensor a = attention_part(h, cache, layer, rope_cos, rope_sin);  // the residual stream x stays f32
    // Sequence parallelism: x holds positions [r*T', (r+1)*T') of T = t*T'.
    const int64_t seq_offset = sp ? tp->rank() * x.size(1) : 0, seq_total = sp ? tp_size() * x.size(1) : 0;
    if (p > 0) a = keyed_dropout(a.to(x.dtype()), p, drop, site, drop_gen, seq_offset, seq_total);
    Tensor x1, m;
    if (c_.is_llama()) {
      x1 = add(x, a.to(x.dtype()));
      Tensor hn = to_tp(norm(*post_norm, x1));
      m = row_parallel(*mlp_proj, mul(silu(gate->forward(hn)), up->forward(hn)));
    } else {
      Tensor h2;
      if (fused_norms()) {  // x1 = x + a and ln_2 of it in one op (a may be bf16: added in f32)
        std::tie(x1, h2) = add_norm(*ln_2, x, a);
      } else {
        x1 = add(x, a.to(x.dtype()));
        h2 = norm(*ln_2, x1);
      }
      m = row_parallel(*mlp_proj, gelu_tanh(c_fc->forward(to_tp(h2))));
    }
    // Without dropout a pending branch stays in the compute dtype (add_layer_norm adds it in f32).
    if (!fuse || p > 0) m = m.to(x1.dtype());
    if (p > 0) m = keyed_dropout(m, p, drop, site + 1, drop_gen, seq_offset, seq_total);
    if (fuse) return {x1, m};
    return {add(x1, m), Tensor()};
  }

  parallel::Communicator* tp = nullptr;  // GPT::shard_tensor_parallel
  bool sp = false;                       // sequence parallelism: x is this rank's slice (B, T/t, C)

 private:
  int tp_size() const { return tp ? tp->size() : 1; }
  // Input of column-parallel matrices: identity forward, gradient summed over the TP group backward; with
  // sequence parallelism the slices (B, T/t, C) all-gathered into (B, T, C), gradient reduce-scattered backward.
  Tensor to_tp(const Tensor& h) const {
    if (!tp) return h;
    return sp ? parallel::gather_from_sequence_region(h, *tp) : parallel::copy_to_tp_region(h, *tp);
  }
  // A row-parallel linear: each rank's partial product summed over the TP group (sequence parallelism: summed and
  // scattered, rank r keeps its slice of positions), then the bias once.
  Tensor row_parallel(nn::Linear& l, const Tensor& x) const {
    if (!tp) return l.forward(x);
    Tensor y = matmul(nn::autocast(x), nn::autocast(l.weight()).t());
    y = sp ? parallel::reduce_scatter_to_sequence_region(y, *tp) : parallel::reduce_from_tp_region(y, *tp);
    return l.has_bias() ? add(y, nn::autocast(sp_param(l.bias()))) : y;
  }
  // A replicated parameter used in the sequence-parallel region sees only this rank's positions: its gradient,
  // partial on each rank, is summed over the TP group on the tape (per backward, before DataParallel's hooks see
  // it), so it comes out whole and bit-identical on every TP rank, as without sequence parallelism.
  Tensor sp_param(const Tensor& w) const { return sp ? parallel::copy_to_tp_region(w, *tp) : w; }
  // The GPT-2 norms' output dtype: under autocast (and without TP, whose collectives then stay in f32) ln_1 and
  // ln_2 write the compute dtype straight away, since each output feeds one matrix product; nullopt: x's dtype.
  // The Llama norms keep x's dtype: each output feeds two or three products, whose gradients must be summed in
  // f32 (each product casts its own copy, so its gradient comes back as f32).
  std::optional<DType> norm_out(const Tensor& x) const { return norm_output_dtype(x, tp == nullptr); }
  Tensor norm(nn::LayerNorm& n, const Tensor& x) const {
    return layer_norm(x, sp_param(n.weight()), sp_param(n.bias()), n.eps(), norm_out(x));
  }
  Tensor norm(nn::RMSNorm& n, const Tensor& x) const { return rms_norm(x, sp_param(n.weight()), n.eps()); }
  // (x + r, layer norm of it): r (the branch, maybe bf16) is added in x's dtype.
  std::pair<Tensor, Tensor> add_norm(nn::LayerNorm& n, const Tensor& x, const Tensor& r) const {
    AddNorm o = add_layer_norm(x, r, sp_param(n.weight()), sp_param(n.bias()), n.eps(), norm_out(x));
    return {o.sum, o.y};
  }

  Tensor attention_part(const Tensor& h, KVCache* cache, size_t layer, const Tensor& rope_cos,
                        const Tensor& rope_sin) {
    // This rank's heads: NH and NKV are per TP rank (whole heads; C the width they cover).
    int64_t B = h.size(0), T = h.size(1), NH = c_.n_head / tp_size(), NKV = c_.kv_heads() / tp_size(),
            HS = c_.head_size(), C = NH * HS;
    int64_t past = cache ? cache->length : 0;
    if (!c_.is_llama() && !cache && packed_attention()) {  // heads read and o written in place: no copies
      Tensor o = attention_packed(c_attn->forward(h), NH, /*causal=*/true);  // (B, T, 3C) -> (B, T, C)
      return row_parallel(*attn_proj, o);
    }
    Tensor q, k, v;  // (B, T, heads, HS)
    if (!c_.is_llama()) {
      Tensor qkv = c_attn->forward(h);  // (B, T, 3C)
      auto [qs, ks, vs] = qkv.chunk<3>(2);  // (B, T, C) views
      q = qs.view(Dims{B, T, NH, HS});
      k = ks.view(Dims{B, T, NH, HS});
      v = vs.view(Dims{B, T, NH, HS});
    } else {
      q = q_proj->forward(h).view(Dims{B, T, NH, HS});
      k = k_proj->forward(h).view(Dims{B, T, NKV, HS});
      v = v_proj->forward(h).view(Dims{B, T, NKV, HS});
      MODU_CHECK(past + T <= rope_cos.size(0), "sequence of ", past + T, " positions exceeds model.block_size ",
                 rope_cos.size(0));
      Tensor cs = rope_cos.narrow(0, past, T).to(q.dtype()), sn = rope_sin.narrow(0, past, T).to(q.dtype());
      q = rotary(q, cs, sn);
      k = rotary(k, cs, sn);
    }
    q = q.permute(Dims{0, 2, 1, 3});  // (B, NH, T, HS)
    k = k.permute(Dims{0, 2, 1, 3});  // (B, NKV, T, HS)
    v = v.permute(Dims{0, 2, 1, 3});
    if (cache) {
      NoGradGuard no_grad;
      MODU_CHECK(cache->k[layer].dtype() == k.dtype(), "KV cache holds ", dtype_name(cache->k[layer].dtype()),
                 " but keys are ", dtype_name(k.dtype()), ": make the cache inside the same autocast scope");
      MODU_CHECK(past + T <= cache->capacity, "KV cache full: ", past + T, " positions > capacity ", cache->capacity);
      cache->k[layer].narrow(2, past, T).copy_(k);
      cache->v[layer].narrow(2, past, T).copy_(v);
      k = cache->k[layer].narrow(2, 0, past + T);
      v = cache->v[layer].narrow(2, 0, past + T);
    }
    if (NKV != NH) {  // grouped-query attention: each kv head serves NH / NKV query heads
      int64_t S = k.size(2), rep = NH / NKV;
      k = k.unsqueeze(2).expand(Dims{B, NKV, rep, S, HS}).reshape(Dims{B, NH, S, HS});
      v = v.unsqueeze(2).expand(Dims{B, NKV, rep, S, HS}).reshape(Dims{B, NH, S, HS});
    }
    Tensor o = attention(q, k, v, /*causal=*/true);              // (B, NH, T, HS)
    o = o.permute(Dims{0, 2, 1, 3}).reshape(Dims{B, T, C});      // (B, T, C)
    return row_parallel(*attn_proj, o);
  }

  GptConfig c_;
  Group attn, mlp;
  std::unique_ptr<nn::LayerNorm> ln_1, ln_2;
  std::unique_ptr<nn::RMSNorm> in_norm, post_norm;
  std::unique_ptr<nn::Linear> c_attn, attn_proj, c_fc, mlp_proj, q_proj, k_proj, v_proj, gate, up;
};

GPT::GPT(const GptConfig& config) : config_(config) {
  config_.validate();
  int64_t C = config_.n_embd, Vp = config_.padded_vocab();
  if (!config_.is_llama()) {
    wte_ = std::make_unique<nn::Embedding>(Vp, C);
    wpe_ = std::make_unique<nn::Embedding>(config_.block_size, C);
    register_module("wte", wte_.get());
    register_module("wpe", wpe_.get());
  } else {
    wte_ = std::make_unique<nn::Embedding>(Vp, C);
    register_module("embed_tokens", wte_.get());
  }
  for (int64_t l = 0; l < config_.n_layer; ++l) {
    blocks_.push_back(std::make_unique<Block>(config_));
    register_module((config_.is_llama() ? "layers." : "h.") + std::to_string(l), blocks_.back().get());
  }
  if (!config_.is_llama()) {
    ln_f_ = std::make_unique<nn::LayerNorm>(C, config_.norm_eps);
    register_module("ln_f", ln_f_.get());
  } else {
    norm_f_ = std::make_unique<nn::RMSNorm>(C, config_.norm_eps);
    register_module("norm", norm_f_.get());
    lm_head_ = std::make_unique<nn::Linear>(C, Vp, false);
    register_module("lm_head", lm_head_.get());
    auto [c, s] = rotary_tables(0, config_.block_size, config_.head_size(), config_.rope_theta);
    rope_cos_ = c;
    rope_sin_ = s;
  }
}

GPT::~GPT() = default;

void GPT::init_weights(uint64_t seed) {
  NoGradGuard no_grad;
  double std = 0.02, proj_std = 0.02 / std::sqrt(2.0 * static_cast<double>(config_.n_layer));
  for (const nn::ParamRef& p : parameters()) {
    const std::string& n = p.name;
    auto ends_with = [&](const std::string& s) { return n.size() >= s.size() && n.compare(n.size() - s.size(), s.size(), s) == 0; };
    Tensor& t = *p.tensor;
    if (ends_with("norm.weight") || ends_with("ln_1.weight") || ends_with("ln_2.weight") || ends_with("ln_f.weight")) {
      t.fill_(1.0);
    } else if (ends_with(".bias")) {
      t.zero_();
    } else {
      bool residual = ends_with("attn.c_proj.weight") || ends_with("mlp.c_proj.weight") ||
                      ends_with("o_proj.weight") || ends_with("down_proj.weight");
      Tensor v = nn::init_normal(t.shape(), residual ? proj_std : std, seed, n).to(t.dtype()).to(t.device());
      t.copy_(v);
    }
  }
  // Padding rows of the vocabulary stay zero: they are never looked up and never enter the loss.
  int64_t V = config_.vocab_size, Vp = config_.padded_vocab();
  if (Vp > V) {
    wte_->weight().narrow(0, V, Vp - V).zero_();
    if (lm_head_) lm_head_->weight().narrow(0, V, Vp - V).zero_();
  }
  dropout_key_.seed = seed;
}

Tensor GPT::forward(const Tensor& idx, KVCache* cache) {
  MODU_CHECK(idx.dim() == 2 && (idx.dtype() == DType::I64 || idx.dtype() == DType::I32),
             "GPT.forward: tokens must be (B, T) integers, got ", describe(idx));
  int64_t T = idx.size(1), past = cache ? cache->length : 0;
  MODU_CHECK(past + T <= config_.block_size, "GPT.forward: ", past + T, " positions exceed model.block_size ",
             config_.block_size);
  ResidualStream x = blocks_stream({embed(idx, past), Tensor()}, 0, config_.n_layer, cache);
  if (cache) cache->length += T;
  return head_stream(x, Tensor());
}

Tensor GPT::embed(const Tensor& idx, int64_t past) {
  int64_t T = idx.size(1);
  MODU_CHECK(!sp_ || T % tp_->size() == 0, "sequence parallelism: a sequence of ", T,
             " tokens is not divisible by parallel.tp = ", tp_->size(),
             "; set train.seq_len to a multiple of it, or parallel.sequence_parallel = false");
  Device dev = wte_->weight().device();
  // Sequence parallelism: this rank's positions [first, first + Tl) of the T (the lookup's partial rows are
  // reduce-scattered along T, so x is already the slice; its backward all-gathers the gradient for wte's rows).
  const int64_t Tl = local_seq_len(T), first = sp_ ? tp_->rank() * Tl : 0;
  Tensor x = tp_ ? parallel::vocab_parallel_embedding(idx.to(dev), wte_->weight(), vocab_begin(), *tp_, sp_)
                 : wte_->forward(idx.to(dev));  // (B, Tl, C)
  if (!config_.is_llama()) {
    Tensor positions = add_scalar(Tensor::arange(Tl, DType::I64, dev), static_cast<double>(past + first));
    // (Tl, C) broadcast over B. Under sequence parallelism wpe sees this rank's positions only: its gradient is
    // summed over the TP group on the tape (copy_to_tp_region), whole and the same on every rank.
    x = add(x,
            sp_ ? embedding(parallel::copy_to_tp_region(wpe_->weight(), *tp_), positions) : wpe_->forward(positions));
  }
  double p = training_ ? config_.dropout : 0.0;
  if (p > 0) x = keyed_dropout(x, p, dropout_key_, 0, dropout_gen_, first, sp_ ? T : 0);
  return x;
}

Tensor GPT::blocks(const Tensor& input, int64_t begin, int64_t end, KVCache* cache) {
  return stream_sum(blocks_stream({input, Tensor()}, begin, end, cache));
}

ResidualStream GPT::blocks_stream(ResidualStream s, int64_t begin, int64_t end, KVCache* cache) {
  MODU_CHECK(0 <= begin && begin <= end && end <= config_.n_layer, "GPT.blocks: layers [", begin, ", ", end,
             ") are not within the model's ", config_.n_layer);
  Device dev = wte_->weight().device();
  Tensor cos = rope_cos_.defined() ? rope_cos_.to(dev) : Tensor();  // cast to the queries' dtype per use
  Tensor sin = rope_sin_.defined() ? rope_sin_.to(dev) : Tensor();
  for (size_t l = static_cast<size_t>(begin); l < static_cast<size_t>(end); ++l) {
    Block* b = blocks_[l].get();
    if (config_.recompute && training_ && !cache && grad_mode_enabled()) {
      // A recomputed block takes and gives one tensor (the stream summed on both sides).
      bool train = training_;
      DropoutKey key = dropout_key_;  // recomputation (maybe after later forwards, under PP) replays these samples
      s = {autograd::checkpoint(
               [this, b, l, train, key, cos, sin](const std::vector<Tensor>& in) {
                 return std::vector<Tensor>{
                     stream_sum(b->forward({in[0], Tensor()}, nullptr, l, key, dropout_gen_, train, cos, sin))};
               },
               {stream_sum(s)})[0],
           Tensor()};
    } else {
      s = b->forward(s, cache, l, dropout_key_, dropout_gen_, training_, cos, sin);
    }
  }
  return s;
}

Tensor GPT::head(const Tensor& slice_or_input, const Tensor& tied) {
  return head_stream({slice_or_input, Tensor()}, tied);
}

Tensor GPT::head_stream(const ResidualStream& s, const Tensor& tied) {
  // Sequence parallelism: the slices gathered, the final norm replicated; the vocabulary-parallel head's
  // copy_to_tp_region sums the gradient of x over the ranks, so the gradient of the gathered x is whole on every
  // rank and the gather's backward keeps this rank's slice.
  const bool fuse = !config_.is_llama() && !sp_ && s.r.defined() && fused_norms();
  const Tensor input = fuse  ? s.x
                       : sp_ ? parallel::gather_from_sequence_region(stream_sum(s), *tp_, false)
                             : stream_sum(s);
  // Without TP the final norm writes the autocast dtype directly (its output only feeds the head's product).
  const std::optional<DType> y_dtype = norm_output_dtype(input, tp_ == nullptr);
  Tensor x = fuse                 ? add_layer_norm(s.x, s.r, ln_f_->weight(), ln_f_->bias(), ln_f_->eps(), y_dtype).y
             : config_.is_llama() ? rms_norm(input, norm_f_->weight(), norm_f_->eps(), y_dtype)
                                  : layer_norm(input, ln_f_->weight(), ln_f_->bias(), ln_f_->eps(), y_dtype);
  if (tp_) {  // vocabulary-parallel: (B, T, C) @ (C, Vp/t), the gradient of x summed over the TP group
    const Tensor& w = config_.is_llama() ? lm_head_->weight() : (tied.defined() ? tied : wte_->weight());
    return matmul(nn::autocast(parallel::copy_to_tp_region(x, *tp_)), nn::autocast(w).t());
  }
  if (config_.is_llama()) return lm_head_->forward(x);
  const Tensor& w = tied.defined() ? tied : wte_->weight();
  return matmul(nn::autocast(x), nn::autocast(w).t());  // tied head: (B, T, C) @ (C, Vp)
}

// From the config, not wte's shard: under PP the last stage has released wte (it multiplies by a copy).
int64_t GPT::vocab_begin() const { return tp_ ? tp_->rank() * (config_.padded_vocab() / tp_->size()) : 0; }

Tensor GPT::loss(const Tensor& logits, const Tensor& targets) const {
  int64_t V = config_.vocab_size, Vp = logits.size(-1);
  Tensor flat = logits.reshape(Dims{-1, Vp});
  if (tp_)  // this rank's columns [vocab_begin, vocab_begin + Vp/t) of the logits (here Vp is Vp/t)
    return parallel::vocab_parallel_cross_entropy(flat, targets.reshape(Dims{-1}).to(flat.device()), vocab_begin(), V,
                                                  *tp_);
  // The padded columns [V, Vp) are no classes: the op skips them (no slice, no copy of the logits).
  return cross_entropy(flat, targets.reshape(Dims{-1}).to(flat.device()), -100, true, Vp > V ? V : 0);
}

void GPT::shard_tensor_parallel(parallel::Communicator& tp, bool sequence_parallel) {
  if (tp.size() == 1) return;  // sequence parallelism too: nothing to split
  MODU_CHECK(config_.n_head % tp.size() == 0 && config_.kv_heads() % tp.size() == 0 && config_.ffn() % tp.size() == 0,
             "tensor parallelism: parallel.tp = ", tp.size(), " must divide model.n_head (", config_.n_head,
             "), the key/value heads (", config_.kv_heads(), ") and the MLP width (", config_.ffn(), ")");
  MODU_CHECK(config_.padded_vocab() % tp.size() == 0, "tensor parallelism: parallel.tp = ", tp.size(),
             " does not divide the padded vocabulary of ", config_.padded_vocab(),
             " rows; build the model with GptConfig::tp = ", tp.size(), " (pads to a multiple of model.pad_vocab_to x ",
             tp.size(), ")");
  NoGradGuard no_grad;
  for (const nn::ParamRef& p : parameters()) {
    TpSplit split = tp_split_of(p.name);
    if (!split.sharded()) continue;
    *p.tensor = tp_shard(*p.tensor, split, tp.size(), tp.rank()).clone().set_requires_grad(true);
  }
  tp_ = &tp;
  sp_ = sequence_parallel;
  for (auto& b : blocks_) {
    b->tp = &tp;
    b->sp = sequence_parallel;
  }
}

int GPT::tp_size() const { return tp_ ? tp_->size() : 1; }

KVCache GPT::make_cache(int64_t batch, int64_t capacity) const {
  MODU_CHECK(tp_ == nullptr, "GPT.make_cache: no KV cache under tensor parallelism; generate with one process");
  KVCache c;
  c.capacity = std::min(capacity, config_.block_size);
  Device dev = wte_->weight().device();
  DType dt = nn::autocast_enabled() ? nn::autocast_dtype() : wte_->weight().dtype();
  for (int64_t l = 0; l < config_.n_layer; ++l) {
    c.k.push_back(Tensor::zeros(Dims{batch, config_.kv_heads(), c.capacity, config_.head_size()}, dt, dev));
    c.v.push_back(Tensor::zeros(Dims{batch, config_.kv_heads(), c.capacity, config_.head_size()}, dt, dev));
  }
  return c;
}

int64_t GPT::flops_per_token(int64_t seq_len) {
  return 6 * parameter_count() + 6 * config_.n_layer * config_.n_embd * seq_len;
}

}  // namespace modu::gpt
