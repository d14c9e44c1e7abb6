// export/onnx.cpp — `modu export --format onnx`: the GPT family as an ONNX graph for ONNX Runtime
// (facts: ../shared/reference/parallel-checkpoint-export.md §3.5; messages: export/onnx/onnx.proto).
//
// The graph (B = batch, T = sequence, C = n_embd, V = vocabulary, NH/NKV/HS = query heads, key/value
// heads, head size; N = B*T). The residual stream is kept flat as (N, C) so every nn::Linear is one
// Gemm(x, W, b, transB=1) on the weight exactly as modu stores it (out, in):
//   input_ids (B, T) int64 -> Gather(wte) (B, T, C) [+ Slice(wpe, 0:T)] -> Reshape (N, C)
//   per block (pre-norm):   x += o_proj(attention(norm_1(x)));  x += mlp(norm_2(x))
//   attention: q, k, v -> Reshape (B, T, H, HS) -> Transpose (B, H, T, HS) [-> rotary (llama)]
//              [-> GQA: Unsqueeze/Expand/Reshape NKV -> NH] -> softmax(q k^T / sqrt(HS) + mask) v
//              mask (T, T): Trilu(upper, k=1) of a (T, T) tensor of -inf, i.e. -inf above the diagonal
//   gpt2: LayerNormalization, Gelu(approximate="tanh"), fused c_attn split into [Q|K|V], tied head
//   llama: RMSNorm as x / Sqrt(ReduceMean(x*x) + eps) * w, SwiGLU as (g * Sigmoid(g)) * u, rotary
//          half-split (HF convention) from cos/sin tables (block_size, HS) sliced to T, untied lm_head
//   final norm -> Gemm(head, transB=1) (N, V) -> Reshape (B, T, V) = logits
//
// Invariants: see export/onnx_writer.h (deterministic bytes; external data aligned to 4096; every
// source tensor is used exactly as one initializer, and an unused or missing one is an error).
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl.h>

#include <bit>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <set>
#include <vector>

#include "core/check.h"
#include "export/onnx/onnx.pb.h"
#include "export/onnx_writer.h"

#ifndef MODU_VERSION_STRING
#define MODU_VERSION_STRING "unknown"
#endif

namespace modu::exporting {

namespace {

namespace pb = modu::onnx;

static_assert(std::endian::native == std::endian::little, "ONNX raw_data is little-endian; so is this writer");

// Bytes a protobuf message may hold (2^31 - 1), less room for the graph itself.
constexpr uint64_t kInlineLimitBytes = (uint64_t{1} << 31) - (uint64_t{64} << 20);

// ---- the model's hyper-parameters ------------------------------------------------------------------

struct ModelHyper {
  std::string arch;
  int64_t vocab = 0, n_layer = 0, n_head = 0, n_kv_head = 0, n_embd = 0, head_size = 0, block_size = 0, ffn = 0;
  double norm_eps = 1e-5, rope_theta = 10000.0;
  bool llama() const { return arch == "llama"; }
};

int64_t config_int(const ExportSource& src, const char* key) {
  MODU_CHECK(src.model.contains(key) && src.model[key].is_number_integer(),
             "export onnx: ", (src.checkpoint_dir / "manifest.json").string(), " metadata.model has no integer '", key,
             "'; re-save the checkpoint with `modu train` or `modu import`");
  return src.model[key].get<int64_t>();
}

double config_double(const ExportSource& src, const char* key, double fallback) {
  if (!src.model.contains(key)) return fallback;
  MODU_CHECK(src.model[key].is_number(), "export onnx: metadata.model.", key, " in ",
             (src.checkpoint_dir / "manifest.json").string(), " is not a number");
  return src.model[key].get<double>();
}

ModelHyper read_hyper(const ExportSource& src) {
  ModelHyper h;
  h.arch = src.arch;
  MODU_CHECK(h.arch == "gpt2" || h.arch == "llama", "export onnx: architecture '", h.arch, "' of ",
             src.checkpoint_dir.string(), " has no ONNX graph; the ONNX writer knows gpt2 and llama");
  h.vocab = src.vocab_size;
  h.n_layer = config_int(src, "n_layer");
  h.n_head = config_int(src, "n_head");
  h.n_embd = config_int(src, "n_embd");
  h.block_size = config_int(src, "block_size");
  h.n_kv_head = src.model.contains("n_kv_head") ? config_int(src, "n_kv_head") : 0;
  if (h.n_kv_head <= 0) h.n_kv_head = h.n_head;
  h.norm_eps = config_double(src, "norm_eps", 1e-5);
  h.rope_theta = config_double(src, "rope_theta", 10000.0);
  MODU_CHECK(h.vocab > 0 && h.n_layer > 0 && h.n_head > 0 && h.n_embd > 0 && h.block_size > 0,
             "export onnx: metadata.model of ", src.checkpoint_dir.string(),
             " has a non-positive size (vocab_size, n_layer, n_head, n_embd, block_size)");
  MODU_CHECK(h.n_embd % h.n_head == 0 && h.n_head % h.n_kv_head == 0, "export onnx: metadata.model of ",
             src.checkpoint_dir.string(), ": n_embd ", h.n_embd, ", n_head ", h.n_head, ", n_kv_head ", h.n_kv_head,
             " do not divide (n_head must divide n_embd, n_kv_head must divide n_head)");
  h.head_size = h.n_embd / h.n_head;
  if (h.llama()) {
    MODU_CHECK(h.head_size % 2 == 0, "export onnx: rotary positions need an even head size, got ", h.head_size, " in ",
               src.checkpoint_dir.string());
    // The same rule as recipes/gpt GptConfig::ffn(): ffn_hidden, or 8C/3 rounded up to a multiple of 64.
    int64_t ffn_hidden = src.model.contains("ffn_hidden") ? config_int(src, "ffn_hidden") : 0;
    h.ffn = ffn_hidden > 0 ? ffn_hidden : (8 * h.n_embd / 3 + 63) / 64 * 64;
  } else {
    h.ffn = 4 * h.n_embd;
  }
  return h;
}

// ---- attributes and constants -----------------------------------------------------------------------

pb::AttributeProto attr_int(const char* name, int64_t value) {
  pb::AttributeProto a;
  a.set_name(name);
  a.set_type(pb::AttributeProto::INT);
  a.set_i(value);
  return a;
}
pb::AttributeProto attr_float(const char* name, float value) {
  pb::AttributeProto a;
  a.set_name(name);
  a.set_type(pb::AttributeProto::FLOAT);
  a.set_f(value);
  return a;
}
pb::AttributeProto attr_string(const char* name, const std::string& value) {
  pb::AttributeProto a;
  a.set_name(name);
  a.set_type(pb::AttributeProto::STRING);
  a.set_s(value);
  return a;
}
pb::AttributeProto attr_ints(const char* name, const std::vector<int64_t>& values) {
  pb::AttributeProto a;
  a.set_name(name);
  a.set_type(pb::AttributeProto::INTS);
  for (int64_t v : values) a.add_ints(v);
  return a;
}
pb::AttributeProto attr_tensor(const char* name, pb::TensorProto value) {
  pb::AttributeProto a;
  a.set_name(name);
  a.set_type(pb::AttributeProto::TENSOR);
  *a.mutable_t() = std::move(value);
  return a;
}

// A small constant tensor (a Constant node's value): int64 of the given dims, or a float scalar.
pb::TensorProto int64_tensor(const std::vector<int64_t>& values, bool scalar) {
  pb::TensorProto t;
  t.set_data_type(pb::TensorProto::INT64);
  if (!scalar) t.add_dims(static_cast<int64_t>(values.size()));
  t.set_raw_data(values.data(), values.size() * sizeof(int64_t));
  return t;
}
pb::TensorProto float_tensor(float value, std::vector<int64_t> dims) {
  pb::TensorProto t;
  t.set_data_type(pb::TensorProto::FLOAT);
  for (int64_t d : dims) t.add_dims(d);
  t.set_raw_data(&value, sizeof(float));
  return t;
}

void set_tensor_type(pb::ValueInfoProto* v, const std::string& name, int32_t elem_type,
                     const std::vector<std::string>& symbolic, const std::vector<int64_t>& fixed) {
  v->set_name(name);
  pb::TypeProto::Tensor* tt = v->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(elem_type);
  pb::TensorShapeProto* shape = tt->mutable_shape();
  for (const std::string& s : symbolic) shape->add_dim()->set_dim_param(s);
  for (int64_t d : fixed) shape->add_dim()->set_dim_value(d);
}

// ---- where the weights go -----------------------------------------------------------------------------

// Appends initializers to the graph, inline or into the external data file (aligned, in order).
class InitializerSink {
 public:
  InitializerSink(pb::GraphProto* graph, const fs::path& dir, bool external) : graph_(graph), external_(external) {
    if (external_) {
      data_path_ = dir / kOnnxDataFile;
      data_.open(data_path_, std::ios::binary | std::ios::trunc);
      MODU_CHECK(data_.good(), "export onnx: cannot create ", data_path_.string(), " (check the --out folder)");
    }
  }

  // `bytes` of a tensor of `dims` and ONNX `data_type`.
  void add(const std::string& name, int32_t data_type, const Dims& dims, const void* bytes, size_t size) {
    pb::TensorProto* t = graph_->add_initializer();
    t->set_name(name);
    t->set_data_type(data_type);
    for (int64_t d : dims) t->add_dims(d);
    if (!external_) {
      t->set_raw_data(bytes, size);
      return;
    }
    const uint64_t padding = (kOnnxExternalAlignment - offset_ % kOnnxExternalAlignment) % kOnnxExternalAlignment;
    static const char zeros[kOnnxExternalAlignment] = {};
    data_.write(zeros, static_cast<std::streamsize>(padding));
    offset_ += padding;
    data_.write(static_cast<const char*>(bytes), static_cast<std::streamsize>(size));
    MODU_CHECK(data_.good(), "export onnx: writing tensor '", name, "' to ", data_path_.string(),
               " failed (disk full?)");
    t->set_data_location(pb::TensorProto::EXTERNAL);
    auto entry = [&](const char* key, const std::string& value) {
      pb::StringStringEntryProto* e = t->add_external_data();
      e->set_key(key);
      e->set_value(value);
    };
    entry("location", kOnnxDataFile);
    entry("offset", std::to_string(offset_));
    entry("length", std::to_string(size));
    offset_ += size;
  }

  void finish() {
    if (!external_) return;
    data_.close();
    MODU_CHECK(!data_.fail(), "export onnx: closing ", data_path_.string(), " failed (disk full?)");
  }

 private:
  pb::GraphProto* graph_;
  bool external_;
  fs::path data_path_;
  std::ofstream data_;
  uint64_t offset_ = 0;
};

// ---- the graph builder ------------------------------------------------------------------------------

class GraphBuilder {
 public:
  GraphBuilder(const ExportSource& src, const ModelHyper& hyper, pb::GraphProto* graph, InitializerSink* sink, bool f16)
      : src_(src), hyper_(hyper), graph_(graph), sink_(sink), f16_(f16) {}

  // One node with one output named `out` (unique in the graph); returns `out`.
  std::string node(const std::string& op_type, const std::vector<std::string>& inputs, const std::string& out,
                   std::vector<pb::AttributeProto> attributes = {}) {
    return nodes(op_type, inputs, {out}, std::move(attributes))[0];
  }

  std::vector<std::string> nodes(const std::string& op_type, const std::vector<std::string>& inputs,
                                 const std::vector<std::string>& outs,
                                 std::vector<pb::AttributeProto> attributes = {}) {
    pb::NodeProto* n = graph_->add_node();
    n->set_op_type(op_type);
    n->set_name(outs[0] + "/" + op_type);
    for (const std::string& i : inputs) n->add_input(i);
    for (const std::string& o : outs) {
      MODU_CHECK(defined_.insert(o).second, "export onnx: internal error: value '", o, "' defined twice");
      n->add_output(o);
    }
    for (pb::AttributeProto& a : attributes) *n->add_attribute() = std::move(a);
    return outs;
  }

  std::string const_i64(const std::string& name, const std::vector<int64_t>& values, bool scalar = false) {
    return node("Constant", {}, name, {attr_tensor("value", int64_tensor(values, scalar))});
  }
  std::string const_f32(const std::string& name, float value) {
    return node("Constant", {}, name, {attr_tensor("value", float_tensor(value, {}))});
  }

  // The value name of source tensor `name` checked to have `shape`; adds its initializer (and, for
  // f16, a Cast to float) the first time it is used.
  std::string weight(const std::string& name, const Dims& shape) {
    if (auto it = weight_values_.find(name); it != weight_values_.end()) return it->second;
    auto found = src_.tensors.find(name);
    MODU_CHECK(found != src_.tensors.end(), "export onnx: ", src_.checkpoint_dir.string(), " has no tensor '", name,
               "', which the ", hyper_.arch, " graph needs; the checkpoint is incomplete or not a ", hyper_.arch,
               " model");
    const Tensor& t = found->second;
    MODU_CHECK(t.shape() == shape, "export onnx: tensor '", name, "' of ", src_.checkpoint_dir.string(), " has shape ",
               t.shape().str(), " but metadata.model says ", shape.str(), "; the checkpoint and its config disagree");
    MODU_CHECK(t.dtype() == DType::F32 && t.is_contiguous(), "export onnx: tensor '", name,
               "' is not a contiguous f32 CPU tensor (load it with load_export_source)");
    std::string value = name;
    if (f16_) {
      Tensor half = t.to(DType::F16).contiguous();
      sink_->add(name, pb::TensorProto::FLOAT16, shape, half.data_ptr(), half.nbytes());
      value = node("Cast", {name}, name + "/f32", {attr_int("to", pb::TensorProto::FLOAT)});
    } else {
      sink_->add(name, pb::TensorProto::FLOAT, shape, t.data_ptr(), t.nbytes());
    }
    used_.insert(name);
    weight_values_.emplace(name, value);
    return value;
  }

  // A float32 table that is not a source tensor (the rotary cos/sin): always stored as float.
  std::string table(const std::string& name, const std::vector<float>& values, const Dims& shape) {
    sink_->add(name, pb::TensorProto::FLOAT, shape, values.data(), values.size() * sizeof(float));
    return name;
  }

  // Every source tensor must have become an initializer: one left over means the checkpoint holds
  // something this graph would silently drop.
  void check_all_used() const {
    for (const auto& [name, t] : src_.tensors) {
      MODU_CHECK(used_.count(name), "export onnx: tensor '", name, "' of ", src_.checkpoint_dir.string(),
                 " is not part of the ", hyper_.arch, " graph; the checkpoint holds a different model than its ",
                 "metadata.model describes");
    }
  }

 private:
  const ExportSource& src_;
  const ModelHyper& hyper_;
  pb::GraphProto* graph_;
  InitializerSink* sink_;
  bool f16_;
  std::set<std::string> defined_{"input_ids"};
  std::set<std::string> used_;
  std::map<std::string, std::string> weight_values_;
};

// ---- the GPT graph ------------------------------------------------------------------------------------

class GptGraph {
 public:
  GptGraph(GraphBuilder& g, const ModelHyper& h) : g_(g), h_(h) {}

  void build() {
    const int64_t C = h_.n_embd;
    // Shapes computed once from input_ids: (B, T), (T), and the targets of the Reshapes.
    ids_shape_ = g_.node("Shape", {"input_ids"}, "shape/BT");
    seq_len_ = g_.node("Shape", {"input_ids"}, "shape/T", {attr_int("start", 1), attr_int("end", 2)});
    flat_shape_ = g_.const_i64("shape/NC", {-1, C});
    q_shape_ = g_.node("Concat", {ids_shape_, g_.const_i64("shape/heads_q", {h_.n_head, h_.head_size})}, "shape/BTHd_q",
                       {attr_int("axis", 0)});
    kv_shape_ = q_shape_;
    if (h_.n_kv_head != h_.n_head) {
      kv_shape_ = g_.node("Concat", {ids_shape_, g_.const_i64("shape/heads_kv", {h_.n_kv_head, h_.head_size})},
                          "shape/BTHd_kv", {attr_int("axis", 0)});
    }
    zero_ = g_.const_i64("const/zero", {0});
    if (h_.llama()) last_axis_ = g_.const_i64("const/last_axis", {-1});  // RMSNorm's ReduceMean axes
    // Causal mask (T, T): -inf strictly above the diagonal, 0 elsewhere.
    std::string tt = g_.node("Concat", {seq_len_, seq_len_}, "mask/shape", {attr_int("axis", 0)});
    std::string neg_inf = g_.node("ConstantOfShape", {tt}, "mask/neg_inf",
                                  {attr_tensor("value", float_tensor(-std::numeric_limits<float>::infinity(), {1}))});
    mask_ = g_.node("Trilu", {neg_inf, g_.const_i64("mask/k", {1}, /*scalar=*/true)}, "mask", {attr_int("upper", 1)});
    scale_ = g_.const_f32("attn/scale", static_cast<float>(1.0 / std::sqrt(static_cast<double>(h_.head_size))));

    std::string x = embeddings();
    for (int64_t l = 0; l < h_.n_layer; ++l) x = h_.llama() ? llama_block(x, l) : gpt2_block(x, l);
    std::string head_in, head;
    if (h_.llama()) {
      head_in = rms_norm(x, "norm");
      head = g_.weight("lm_head.weight", Dims{h_.vocab, C});
    } else {
      head_in = layer_norm(x, "ln_f");
      head = g_.weight("wte.weight", Dims{h_.vocab, C});  // tied head
    }
    std::string flat_logits = g_.node("Gemm", {head_in, head}, "logits/flat", {attr_int("transB", 1)});  // (N, V)
    std::string logits_shape =
        g_.node("Concat", {ids_shape_, g_.const_i64("shape/vocab", {h_.vocab})}, "shape/BTV", {attr_int("axis", 0)});
    g_.node("Reshape", {flat_logits, logits_shape}, "logits");
  }

 private:
  // (B, T) ids -> (N, C)
  std::string embeddings() {
    const int64_t C = h_.n_embd;
    std::string wte = g_.weight(h_.llama() ? "embed_tokens.weight" : "wte.weight", Dims{h_.vocab, C});
    std::string x = g_.node("Gather", {wte, "input_ids"}, "embed/tokens", {attr_int("axis", 0)});  // (B, T, C)
    if (!h_.llama()) {
      std::string wpe = g_.weight("wpe.weight", Dims{h_.block_size, C});
      std::string pos = g_.node("Slice", {wpe, zero_, seq_len_, zero_}, "embed/positions");  // (T, C)
      x = g_.node("Add", {x, pos}, "embed/sum");
    } else {
      rotary_tables();
    }
    return g_.node("Reshape", {x, flat_shape_}, "embed/flat");
  }

  // Rotary cos/sin (block_size, HS), each half-table repeated twice along HS (computed in double as
  // core/ops rotary_tables does, then rounded to float), sliced to (T, HS) once.
  void rotary_tables() {
    const int64_t half = h_.head_size / 2, HS = h_.head_size;
    std::vector<float> cos_table(static_cast<size_t>(h_.block_size * HS)), sin_table(cos_table.size());
    for (int64_t t = 0; t < h_.block_size; ++t)
      for (int64_t i = 0; i < half; ++i) {
        double angle = static_cast<double>(t) * std::pow(h_.rope_theta, -2.0 * static_cast<double>(i) / HS);
        float c = static_cast<float>(std::cos(angle)), s = static_cast<float>(std::sin(angle));
        for (int64_t at : {t * HS + i, t * HS + half + i}) {
          cos_table[static_cast<size_t>(at)] = c;
          sin_table[static_cast<size_t>(at)] = s;
        }
      }
    std::string cos_all = g_.table("rope.cos", cos_table, Dims{h_.block_size, HS});
    std::string sin_all = g_.table("rope.sin", sin_table, Dims{h_.block_size, HS});
    cos_ = g_.node("Slice", {cos_all, zero_, seq_len_, zero_}, "rope/cos_T");
    sin_ = g_.node("Slice", {sin_all, zero_, seq_len_, zero_}, "rope/sin_T");
  }

  std::string linear(const std::string& x, const std::string& prefix, int64_t in, int64_t out, bool bias) {
    std::vector<std::string> inputs{x, g_.weight(prefix + ".weight", Dims{out, in})};
    if (bias) inputs.push_back(g_.weight(prefix + ".bias", Dims{out}));
    return g_.node("Gemm", inputs, prefix + "/out", {attr_int("transB", 1)});
  }

  std::string layer_norm(const std::string& x, const std::string& prefix) {
    const int64_t C = h_.n_embd;
    return g_.node("LayerNormalization",
                   {x, g_.weight(prefix + ".weight", Dims{C}), g_.weight(prefix + ".bias", Dims{C})}, prefix + "/out",
                   {attr_int("axis", -1), attr_float("epsilon", static_cast<float>(h_.norm_eps))});
  }

  std::string rms_norm(const std::string& x, const std::string& prefix) {
    std::string sq = g_.node("Mul", {x, x}, prefix + "/square");
    std::string mean = g_.node("ReduceMean", {sq, last_axis_}, prefix + "/mean", {attr_int("keepdims", 1)});
    std::string eps = g_.const_f32(prefix + "/eps", static_cast<float>(h_.norm_eps));
    std::string rms = g_.node("Sqrt", {g_.node("Add", {mean, eps}, prefix + "/mean_eps")}, prefix + "/rms");
    std::string normed = g_.node("Div", {x, rms}, prefix + "/normed");
    return g_.node("Mul", {normed, g_.weight(prefix + ".weight", Dims{h_.n_embd})}, prefix + "/out");
  }

  // (N, H*HS) -> (B, H, T, HS)
  std::string heads(const std::string& x, const std::string& shape, const std::string& name) {
    std::string split = g_.node("Reshape", {x, shape}, name + "/BTHd");
    return g_.node("Transpose", {split}, name + "/BHTd", {attr_ints("perm", {0, 2, 1, 3})});
  }

  // x (B, H, T, HS): x * cos + rotate_half(x) * sin, rotate_half(x) = [-x2, x1].
  std::string rotary(const std::string& x, const std::string& name) {
    auto halves =
        g_.nodes("Split", {x}, {name + "/x1", name + "/x2"}, {attr_int("axis", -1), attr_int("num_outputs", 2)});
    std::string neg = g_.node("Neg", {halves[1]}, name + "/neg_x2");
    std::string rotated = g_.node("Concat", {neg, halves[0]}, name + "/rotated", {attr_int("axis", -1)});
    std::string a = g_.node("Mul", {x, cos_}, name + "/x_cos");
    std::string b = g_.node("Mul", {rotated, sin_}, name + "/rot_sin");
    return g_.node("Add", {a, b}, name + "/out");
  }

  // (B, NKV, T, HS) -> (B, NH, T, HS): each kv head serves NH / NKV consecutive query heads.
  std::string repeat_kv(const std::string& x, const std::string& name) {
    if (h_.n_kv_head == h_.n_head) return x;
    if (rep_shape_.empty()) {
      rep_shape_ = g_.const_i64("shape/gqa_expand", {1, 1, h_.n_head / h_.n_kv_head, 1, 1});
      gqa_shape_ = g_.const_i64("shape/gqa_heads", {0, h_.n_head, -1, h_.head_size});
      axis2_ = g_.const_i64("const/axis2", {2});
    }
    std::string u = g_.node("Unsqueeze", {x, axis2_}, name + "/unsqueeze");
    std::string e = g_.node("Expand", {u, rep_shape_}, name + "/expand");
    return g_.node("Reshape", {e, gqa_shape_}, name + "/heads");
  }

  // q (N, NH*HS), k and v (N, NKV*HS) -> (N, C)
  std::string attention(const std::string& q_flat, const std::string& k_flat, const std::string& v_flat,
                        const std::string& p) {
    std::string q = heads(q_flat, q_shape_, p + "/q"), k = heads(k_flat, kv_shape_, p + "/k"),
                v = heads(v_flat, kv_shape_, p + "/v");
    if (h_.llama()) {
      q = rotary(q, p + "/q_rope");
      k = rotary(k, p + "/k_rope");
    }
    k = repeat_kv(k, p + "/k");
    v = repeat_kv(v, p + "/v");
    std::string kt = g_.node("Transpose", {k}, p + "/kT", {attr_ints("perm", {0, 1, 3, 2})});
    std::string scores = g_.node("MatMul", {q, kt}, p + "/scores");  // (B, NH, T, T)
    std::string scaled = g_.node("Mul", {scores, scale_}, p + "/scaled");
    std::string masked = g_.node("Add", {scaled, mask_}, p + "/masked");
    std::string probs = g_.node("Softmax", {masked}, p + "/probs", {attr_int("axis", -1)});
    std::string o = g_.node("MatMul", {probs, v}, p + "/context");  // (B, NH, T, HS)
    std::string bthd = g_.node("Transpose", {o}, p + "/context_BTHd", {attr_ints("perm", {0, 2, 1, 3})});
    return g_.node("Reshape", {bthd, flat_shape_}, p + "/context_flat");
  }

  std::string gpt2_block(const std::string& x, int64_t l) {
    const int64_t C = h_.n_embd;
    const std::string p = "h." + std::to_string(l);
    std::string qkv = linear(layer_norm(x, p + ".ln_1"), p + ".attn.c_attn", C, 3 * C, true);
    auto parts = g_.nodes("Split", {qkv}, {p + "/q_flat", p + "/k_flat", p + "/v_flat"},
                          {attr_int("axis", 1), attr_int("num_outputs", 3)});
    std::string a = linear(attention(parts[0], parts[1], parts[2], p + "/attn"), p + ".attn.c_proj", C, C, true);
    std::string x1 = g_.node("Add", {x, a}, p + "/resid_attn");
    std::string up = linear(layer_norm(x1, p + ".ln_2"), p + ".mlp.c_fc", C, h_.ffn, true);
    std::string act = g_.node("Gelu", {up}, p + "/gelu", {attr_string("approximate", "tanh")});
    std::string m = linear(act, p + ".mlp.c_proj", h_.ffn, C, true);
    return g_.node("Add", {x1, m}, p + "/resid_mlp");
  }

  std::string llama_block(const std::string& x, int64_t l) {
    const int64_t C = h_.n_embd, KV = h_.n_kv_head * h_.head_size;
    const std::string p = "layers." + std::to_string(l);
    std::string hn = rms_norm(x, p + ".input_layernorm");
    std::string q = linear(hn, p + ".self_attn.q_proj", C, C, false);
    std::string k = linear(hn, p + ".self_attn.k_proj", C, KV, false);
    std::string v = linear(hn, p + ".self_attn.v_proj", C, KV, false);
    std::string a = linear(attention(q, k, v, p + "/attn"), p + ".self_attn.o_proj", C, C, false);
    std::string x1 = g_.node("Add", {x, a}, p + "/resid_attn");
    std::string h2 = rms_norm(x1, p + ".post_attention_layernorm");
    std::string gate = linear(h2, p + ".mlp.gate_proj", C, h_.ffn, false);
    std::string up = linear(h2, p + ".mlp.up_proj", C, h_.ffn, false);
    std::string silu = g_.node("Mul", {gate, g_.node("Sigmoid", {gate}, p + "/gate_sigmoid")}, p + "/silu");
    std::string m = linear(g_.node("Mul", {silu, up}, p + "/swiglu"), p + ".mlp.down_proj", h_.ffn, C, false);
    return g_.node("Add", {x1, m}, p + "/resid_mlp");
  }

  GraphBuilder& g_;
  const ModelHyper& h_;
  std::string ids_shape_, seq_len_, flat_shape_, q_shape_, kv_shape_, zero_, last_axis_, mask_, scale_;
  std::string cos_, sin_, rep_shape_, gqa_shape_, axis2_;
};

uint64_t weight_bytes(const ExportSource& src, const ModelHyper& h, bool f16) {
  uint64_t total = 0;
  for (const auto& [name, t] : src.tensors) total += static_cast<uint64_t>(t.numel()) * (f16 ? 2 : 4);
  if (h.llama()) total += 2 * static_cast<uint64_t>(h.block_size * h.head_size) * 4;
  return total;
}

void write_model_file(const pb::ModelProto& model, const fs::path& path) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  MODU_CHECK(out.good(), "export onnx: cannot create ", path.string(), " (check the --out folder)");
  {
    google::protobuf::io::OstreamOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    MODU_CHECK(model.SerializeToCodedStream(&coded) && !coded.HadError(), "export onnx: serializing ", path.string(),
               " failed");
  }
  out.close();
  MODU_CHECK(!out.fail(), "export onnx: writing ", path.string(), " failed (disk full?)");
}

}  // namespace

OnnxExternalData onnx_external_data_from_env() {
  const char* env = std::getenv("MODU_ONNX_EXTERNAL_DATA");
  if (env == nullptr || *env == 0) return OnnxExternalData::automatic;
  std::string v = env;
  if (v == "auto") return OnnxExternalData::automatic;
  if (v == "always") return OnnxExternalData::always;
  if (v == "never") return OnnxExternalData::never;
  MODU_FAIL("export onnx: MODU_ONNX_EXTERNAL_DATA='", v, "' is unknown; use auto, always or never");
}

void write_onnx_model(const ExportSource& src, const fs::path& dir, const OnnxWriteOptions& options) {
  MODU_CHECK(options.dtype == "f32" || options.dtype == "f16", "export onnx: --dtype ", options.dtype,
             " is not written to ONNX; use f32 or f16 (f16 stores the weights as FLOAT16 and computes in f32)");
  const ModelHyper hyper = read_hyper(src);
  const bool f16 = options.dtype == "f16";
  const uint64_t bytes = weight_bytes(src, hyper, f16);
  bool external = options.external_data == OnnxExternalData::always ||
                  (options.external_data == OnnxExternalData::automatic && bytes > options.external_threshold_bytes);
  MODU_CHECK(external || bytes < kInlineLimitBytes, "export onnx: the weights of ", src.checkpoint_dir.string(),
             " take ", bytes, " bytes, more than one protobuf message holds (2 GiB); ",
             "unset MODU_ONNX_EXTERNAL_DATA=never so they go to ", kOnnxDataFile);

  pb::ModelProto model;
  model.set_ir_version(kOnnxIrVersion);
  model.set_producer_name("modu");
  model.set_producer_version(MODU_VERSION_STRING);
  model.set_model_version(src.step);
  pb::OperatorSetIdProto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(kOnnxOpset);
  auto meta = [&](const char* key, const std::string& value) {
    pb::StringStringEntryProto* e = model.add_metadata_props();
    e->set_key(key);
    e->set_value(value);
  };
  meta("modu.arch", hyper.arch);
  meta("modu.model", src.model.dump());
  meta("modu.step", std::to_string(src.step));
  meta("modu.tokenizer", src.tokenizer_spec);
  meta("modu.dtype", options.dtype);

  pb::GraphProto* graph = model.mutable_graph();
  graph->set_name("modu_" + hyper.arch);
  graph->set_doc_string(
      "input_ids (batch, sequence) int64 token ids -> logits (batch, sequence, vocab) float, causal, "
      "all positions; sequence <= " +
      std::to_string(hyper.block_size));
  set_tensor_type(graph->add_input(), "input_ids", pb::TensorProto::INT64, {"batch", "sequence"}, {});
  set_tensor_type(graph->add_output(), "logits", pb::TensorProto::FLOAT, {"batch", "sequence"}, {hyper.vocab});

  InitializerSink sink(graph, dir, external);
  GraphBuilder builder(src, hyper, graph, &sink, f16);
  GptGraph(builder, hyper).build();
  builder.check_all_used();
  sink.finish();
  write_model_file(model, dir / kOnnxModelFile);
}

void write_onnx_export(const ExportSource& src, const fs::path& dir, const std::string& dtype) {
  OnnxWriteOptions options;
  options.dtype = dtype;
  options.external_data = onnx_external_data_from_env();
  write_onnx_model(src, dir, options);
}

}  // namespace modu::exporting
