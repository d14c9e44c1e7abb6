// tests/export/test_onnx_export.cpp — the ONNX writer read back with the protoc-generated classes
// (no Python, no runtime): model header and opset, graph inputs/outputs, a topologically valid graph
// of standard operators, initializers equal to the source tensors (f32 bytes, f16 bits), external
// data locations/offsets/lengths/alignment, deterministic bytes, and the errors on bad input.
// The numbers themselves are checked against ONNX Runtime in tests/export/onnx_runtime_check.py.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "core/check.h"
#include "core/ops/dispatch.h"
#include "export/onnx/onnx.pb.h"
#include "export/onnx_writer.h"
#include "recipes/gpt/model.h"

namespace modu::exporting {
namespace {

namespace pb = modu::onnx;

// A tiny GPT of `arch`, as load_export_source would hand it to the writer (f32, padding stripped).
ExportSource make_source(const std::string& arch) {
  gpt::GptConfig c;
  c.arch = arch;
  c.vocab_size = 100;
  c.pad_vocab_to = 64;  // padded to 128: the writer must only see 100 rows
  c.n_layer = 2;
  c.n_head = 4;
  c.n_kv_head = arch == "llama" ? 2 : 0;
  c.n_embd = 32;
  c.block_size = 16;
  c.ffn_hidden = arch == "llama" ? 48 : 0;
  gpt::GPT model(c);
  model.init_weights(11);
  ExportSource src;
  src.checkpoint_dir = "/nonexistent/run/checkpoints/step_00000007";
  src.step = 7;
  src.arch = arch;
  src.vocab_size = c.vocab_size;
  src.tokenizer_spec = "gpt2";
  src.model = {{"arch", arch},         {"vocab_size", c.vocab_size}, {"pad_vocab_to", c.pad_vocab_to},
               {"n_layer", c.n_layer}, {"n_head", c.n_head},         {"n_kv_head", c.n_kv_head},
               {"n_embd", c.n_embd},   {"block_size", c.block_size}, {"ffn_hidden", c.ffn_hidden},
               {"dropout", 0.0},       {"rope_theta", 10000.0},      {"norm_eps", 1e-5}};
  for (const nn::ParamRef& p : model.parameters()) {
    Tensor t = p.tensor->to(DType::F32).contiguous();
    if (p.name == "wte.weight" || p.name == "embed_tokens.weight" || p.name == "lm_head.weight")
      t = t.narrow(0, 0, c.vocab_size).contiguous();
    src.tensors.emplace(p.name, t);
  }
  return src;
}

class TempDir {
 public:
  explicit TempDir(const std::string& tag)
      : path_(fs::temp_directory_path() / ("modu_onnx_test_" + std::to_string(::getpid()) + "_" + tag)) {
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::string read_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

pb::ModelProto parse(const fs::path& dir) {
  pb::ModelProto m;
  std::string bytes = read_bytes(dir / kOnnxModelFile);
  EXPECT_TRUE(m.ParseFromString(bytes)) << "model.onnx does not parse as a ModelProto";
  return m;
}

std::string external_value(const pb::TensorProto& t, const std::string& key) {
  for (const pb::StringStringEntryProto& e : t.external_data())
    if (e.key() == key) return e.value();
  return "";
}

// The bytes an initializer holds, inline or from the external file.
std::string initializer_bytes(const pb::TensorProto& t, const fs::path& dir) {
  if (t.data_location() != pb::TensorProto::EXTERNAL) return t.raw_data();
  std::string file = read_bytes(dir / external_value(t, "location"));
  return file.substr(std::stoull(external_value(t, "offset")), std::stoull(external_value(t, "length")));
}

std::vector<int64_t> dims_of(const pb::TensorProto& t) { return {t.dims().begin(), t.dims().end()}; }
std::vector<int64_t> dims_of(const Tensor& t) { return {t.shape().begin(), t.shape().end()}; }

int count_ops(const pb::GraphProto& g, const std::string& op) {
  int n = 0;
  for (const pb::NodeProto& node : g.node()) n += node.op_type() == op;
  return n;
}

const pb::AttributeProto* find_attribute(const pb::NodeProto& n, const std::string& name) {
  for (const pb::AttributeProto& a : n.attribute())
    if (a.name() == name) return &a;
  return nullptr;
}

// Structure every export must have, whatever the architecture.
void check_common(const pb::ModelProto& m, const ExportSource& src) {
  EXPECT_EQ(m.ir_version(), kOnnxIrVersion);
  EXPECT_EQ(m.producer_name(), "modu");
  ASSERT_EQ(m.opset_import_size(), 1);
  EXPECT_EQ(m.opset_import(0).domain(), "");
  EXPECT_EQ(m.opset_import(0).version(), kOnnxOpset);
  const pb::GraphProto& g = m.graph();

  ASSERT_EQ(g.input_size(), 1);
  EXPECT_EQ(g.input(0).name(), "input_ids");
  const pb::TypeProto::Tensor& in = g.input(0).type().tensor_type();
  EXPECT_EQ(in.elem_type(), pb::TensorProto::INT64);
  ASSERT_EQ(in.shape().dim_size(), 2);
  EXPECT_EQ(in.shape().dim(0).dim_param(), "batch");
  EXPECT_EQ(in.shape().dim(1).dim_param(), "sequence");
  ASSERT_EQ(g.output_size(), 1);
  EXPECT_EQ(g.output(0).name(), "logits");
  const pb::TypeProto::Tensor& out = g.output(0).type().tensor_type();
  EXPECT_EQ(out.elem_type(), pb::TensorProto::FLOAT);
  ASSERT_EQ(out.shape().dim_size(), 3);
  EXPECT_EQ(out.shape().dim(0).dim_param(), "batch");
  EXPECT_EQ(out.shape().dim(1).dim_param(), "sequence");
  EXPECT_EQ(out.shape().dim(2).dim_value(), src.vocab_size);

  // Topological order, single assignment, only standard operators of the default domain.
  static const std::set<std::string> kStandard = {"Add",
                                                  "Cast",
                                                  "Concat",
                                                  "Constant",
                                                  "ConstantOfShape",
                                                  "Div",
                                                  "Expand",
                                                  "Gather",
                                                  "Gelu",
                                                  "Gemm",
                                                  "LayerNormalization",
                                                  "MatMul",
                                                  "Mul",
                                                  "Neg",
                                                  "ReduceMean",
                                                  "Reshape",
                                                  "Shape",
                                                  "Sigmoid",
                                                  "Slice",
                                                  "Softmax",
                                                  "Split",
                                                  "Sqrt",
                                                  "Transpose",
                                                  "Trilu",
                                                  "Unsqueeze"};
  std::set<std::string> defined{"input_ids"};
  for (const pb::TensorProto& t : g.initializer()) EXPECT_TRUE(defined.insert(t.name()).second) << t.name();
  for (const pb::NodeProto& n : g.node()) {
    EXPECT_TRUE(n.domain().empty()) << n.name();
    EXPECT_TRUE(kStandard.count(n.op_type())) << "non-standard op " << n.op_type();
    for (const std::string& i : n.input()) EXPECT_TRUE(defined.count(i)) << n.name() << " reads undefined " << i;
    for (const std::string& o : n.output()) EXPECT_TRUE(defined.insert(o).second) << o << " assigned twice";
    for (const pb::AttributeProto& a : n.attribute()) EXPECT_NE(a.type(), pb::AttributeProto::UNDEFINED);
  }
  EXPECT_TRUE(defined.count("logits"));
}

// Initializers: exactly the source tensors (+ the rotary tables for llama), same shapes, same bytes.
void check_initializers(const pb::ModelProto& m, const ExportSource& src, const fs::path& dir, bool f16) {
  std::map<std::string, const pb::TensorProto*> by_name;
  for (const pb::TensorProto& t : m.graph().initializer()) by_name[t.name()] = &t;
  size_t extra = src.arch == "llama" ? 2 : 0;
  EXPECT_EQ(by_name.size(), src.tensors.size() + extra);
  for (const auto& [name, t] : src.tensors) {
    ASSERT_TRUE(by_name.count(name)) << "no initializer for " << name;
    const pb::TensorProto& init = *by_name[name];
    EXPECT_EQ(dims_of(init), dims_of(t)) << name;
    std::string bytes = initializer_bytes(init, dir);
    if (!f16) {
      EXPECT_EQ(init.data_type(), pb::TensorProto::FLOAT) << name;
      ASSERT_EQ(bytes.size(), t.nbytes()) << name;
      EXPECT_EQ(std::memcmp(bytes.data(), t.data_ptr(), t.nbytes()), 0) << name;
    } else {
      EXPECT_EQ(init.data_type(), pb::TensorProto::FLOAT16) << name;
      ASSERT_EQ(bytes.size(), static_cast<size_t>(t.numel()) * 2) << name;
      const float* values = static_cast<const float*>(t.data_ptr());
      for (int64_t i = 0; i < t.numel(); ++i) {
        uint16_t bits;
        std::memcpy(&bits, bytes.data() + 2 * i, 2);
        ASSERT_EQ(bits, float_to_f16_bits(values[i])) << name << "[" << i << "]";
      }
    }
  }
  if (src.arch == "llama") {
    const int64_t HS = src.model["n_embd"].get<int64_t>() / src.model["n_head"].get<int64_t>();
    for (const char* table : {"rope.cos", "rope.sin"}) {
      ASSERT_TRUE(by_name.count(table)) << table;
      EXPECT_EQ(by_name[table]->data_type(), pb::TensorProto::FLOAT);
      EXPECT_EQ(dims_of(*by_name[table]), (std::vector<int64_t>{src.model["block_size"].get<int64_t>(), HS}));
    }
    // Position 0: cos = 1, sin = 0; the two halves of each row are equal.
    std::string cos = initializer_bytes(*by_name["rope.cos"], dir);
    std::vector<float> row(static_cast<size_t>(2 * HS));
    std::memcpy(row.data(), cos.data(), row.size() * sizeof(float));
    for (int64_t i = 0; i < HS; ++i) EXPECT_EQ(row[static_cast<size_t>(i)], 1.0f);
    for (int64_t i = 0; i < HS / 2; ++i)
      EXPECT_EQ(row[static_cast<size_t>(HS + i)], row[static_cast<size_t>(HS + HS / 2 + i)]);
  }
}

OnnxWriteOptions options(const std::string& dtype, OnnxExternalData ext) {
  OnnxWriteOptions o;
  o.dtype = dtype;
  o.external_data = ext;
  return o;
}

TEST(OnnxExport, Gpt2GraphAndInitializers) {
  ExportSource src = make_source("gpt2");
  TempDir dir("gpt2");
  write_onnx_model(src, dir.path(), options("f32", OnnxExternalData::automatic));
  EXPECT_FALSE(fs::exists(dir.path() / kOnnxDataFile)) << "a tiny model must stay inline";
  pb::ModelProto m = parse(dir.path());
  check_common(m, src);
  check_initializers(m, src, dir.path(), false);
  const pb::GraphProto& g = m.graph();
  EXPECT_EQ(count_ops(g, "LayerNormalization"), 2 * 2 + 1);
  EXPECT_EQ(count_ops(g, "Gelu"), 2);
  EXPECT_EQ(count_ops(g, "Softmax"), 2);
  EXPECT_EQ(count_ops(g, "Trilu"), 1);   // one causal mask, shared by the layers
  EXPECT_EQ(count_ops(g, "Expand"), 0);  // no GQA in gpt2
  EXPECT_EQ(count_ops(g, "Cast"), 0);
  for (const pb::NodeProto& n : g.node()) {
    if (n.op_type() == "Gelu") {
      const pb::AttributeProto* a = find_attribute(n, "approximate");
      ASSERT_NE(a, nullptr);
      EXPECT_EQ(a->s(), "tanh");
    }
    if (n.op_type() == "Gemm") {
      const pb::AttributeProto* a = find_attribute(n, "transB");
      ASSERT_NE(a, nullptr);
      EXPECT_EQ(a->i(), 1);  // weights stay (out, in)
    }
  }
  // The tied head: wte feeds both the Gather and the last Gemm.
  int wte_users = 0;
  for (const pb::NodeProto& n : g.node())
    for (const std::string& i : n.input()) wte_users += i == "wte.weight";
  EXPECT_EQ(wte_users, 2);
  std::map<std::string, std::string> meta;
  for (const pb::StringStringEntryProto& e : m.metadata_props()) meta[e.key()] = e.value();
  EXPECT_EQ(meta["modu.arch"], "gpt2");
  EXPECT_EQ(meta["modu.step"], "7");
}

TEST(OnnxExport, LlamaGraphWithGroupedQueryAttention) {
  ExportSource src = make_source("llama");
  TempDir dir("llama");
  write_onnx_model(src, dir.path(), options("f32", OnnxExternalData::never));
  pb::ModelProto m = parse(dir.path());
  check_common(m, src);
  check_initializers(m, src, dir.path(), false);
  const pb::GraphProto& g = m.graph();
  EXPECT_EQ(count_ops(g, "LayerNormalization"), 0);
  EXPECT_EQ(count_ops(g, "ReduceMean"), 2 * 2 + 1);  // RMSNorm: two per block and the final one
  EXPECT_EQ(count_ops(g, "Sigmoid"), 2);             // SiLU of the SwiGLU gate
  EXPECT_EQ(count_ops(g, "Expand"), 2 * 2);          // keys and values, 2 kv heads -> 4 query heads
  EXPECT_EQ(count_ops(g, "Neg"), 2 * 2);             // rotary on q and k
}

TEST(OnnxExport, ExternalDataIsAlignedAndCoversEveryInitializer) {
  for (const std::string arch : {"gpt2", "llama"}) {
    ExportSource src = make_source(arch);
    TempDir dir("external_" + arch);
    write_onnx_model(src, dir.path(), options("f32", OnnxExternalData::always));
    const fs::path data = dir.path() / kOnnxDataFile;
    ASSERT_TRUE(fs::exists(data));
    pb::ModelProto m = parse(dir.path());
    check_common(m, src);
    check_initializers(m, src, dir.path(), false);
    uint64_t previous_end = 0;
    for (const pb::TensorProto& t : m.graph().initializer()) {
      EXPECT_EQ(t.data_location(), pb::TensorProto::EXTERNAL) << t.name();
      EXPECT_FALSE(t.has_raw_data()) << t.name();
      EXPECT_EQ(external_value(t, "location"), kOnnxDataFile);
      uint64_t offset = std::stoull(external_value(t, "offset")), length = std::stoull(external_value(t, "length"));
      EXPECT_EQ(offset % kOnnxExternalAlignment, 0u) << t.name();
      EXPECT_GE(offset, previous_end) << t.name() << " overlaps the tensor before it";
      EXPECT_LT(offset - previous_end, static_cast<uint64_t>(kOnnxExternalAlignment)) << "gap before " << t.name();
      int64_t numel = 1;
      for (int64_t d : t.dims()) numel *= d;
      EXPECT_EQ(length, static_cast<uint64_t>(numel) * 4) << t.name();
      previous_end = offset + length;
    }
    EXPECT_EQ(fs::file_size(data), previous_end) << "the data file ends with the last tensor";
    EXPECT_LT(fs::file_size(dir.path() / kOnnxModelFile), 64u * 1024) << "the weights must not be inline too";
  }
}

TEST(OnnxExport, ThresholdDecidesExternalData) {
  ExportSource src = make_source("gpt2");
  TempDir dir("threshold");
  OnnxWriteOptions o = options("f32", OnnxExternalData::automatic);
  o.external_threshold_bytes = 1000;  // far below the tiny model's size
  write_onnx_model(src, dir.path(), o);
  EXPECT_TRUE(fs::exists(dir.path() / kOnnxDataFile));
}

TEST(OnnxExport, F16StoresHalfWeightsAndCastsToFloat) {
  for (const std::string arch : {"gpt2", "llama"}) {
    ExportSource src = make_source(arch);
    TempDir dir("f16_" + arch);
    write_onnx_model(src, dir.path(), options("f16", OnnxExternalData::never));
    pb::ModelProto m = parse(dir.path());
    check_common(m, src);
    check_initializers(m, src, dir.path(), true);
    EXPECT_EQ(count_ops(m.graph(), "Cast"), static_cast<int>(src.tensors.size()));
    EXPECT_EQ(m.graph().output(0).type().tensor_type().elem_type(), pb::TensorProto::FLOAT);
  }
}

TEST(OnnxExport, BytesAreDeterministic) {
  ExportSource src = make_source("llama");
  TempDir a("det_a"), b("det_b");
  write_onnx_model(src, a.path(), options("f32", OnnxExternalData::always));
  write_onnx_model(src, b.path(), options("f32", OnnxExternalData::always));
  EXPECT_EQ(read_bytes(a.path() / kOnnxModelFile), read_bytes(b.path() / kOnnxModelFile));
  EXPECT_EQ(read_bytes(a.path() / kOnnxDataFile), read_bytes(b.path() / kOnnxDataFile));
}

// Runs the writer and returns the error text ("" if it did not throw).
std::string error_of(const ExportSource& src, const std::string& dtype = "f32") {
  TempDir dir("error");
  try {
    write_onnx_model(src, dir.path(), options(dtype, OnnxExternalData::automatic));
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(OnnxExport, BadInputIsAClearError) {
  ExportSource good = make_source("gpt2");

  std::string e = error_of(good, "q8_0");
  EXPECT_NE(e.find("q8_0"), std::string::npos) << e;
  EXPECT_NE(e.find("f32 or f16"), std::string::npos) << e;

  ExportSource arch = good;
  arch.arch = "mamba";
  e = error_of(arch);
  EXPECT_NE(e.find("mamba"), std::string::npos) << e;

  ExportSource missing = good;
  missing.tensors.erase("h.1.mlp.c_fc.bias");
  e = error_of(missing);
  EXPECT_NE(e.find("h.1.mlp.c_fc.bias"), std::string::npos) << e;
  EXPECT_NE(e.find("step_00000007"), std::string::npos) << "names the checkpoint: " << e;

  ExportSource shape = good;
  shape.tensors["wpe.weight"] = Tensor::zeros(Dims{8, 32}, DType::F32);
  e = error_of(shape);
  EXPECT_NE(e.find("wpe.weight"), std::string::npos) << e;
  EXPECT_NE(e.find("(8, 32)"), std::string::npos) << e;

  ExportSource extra = good;
  extra.tensors["h.2.ln_1.weight"] = Tensor::zeros(Dims{32}, DType::F32);
  e = error_of(extra);
  EXPECT_NE(e.find("h.2.ln_1.weight"), std::string::npos) << e;

  ExportSource config = good;
  config.model.erase("n_layer");
  e = error_of(config);
  EXPECT_NE(e.find("n_layer"), std::string::npos) << e;

  ExportSource heads = good;
  heads.model["n_head"] = 5;
  e = error_of(heads);
  EXPECT_NE(e.find("n_head"), std::string::npos) << e;

  ::setenv("MODU_ONNX_EXTERNAL_DATA", "sometimes", 1);
  EXPECT_THROW(onnx_external_data_from_env(), Error);
  ::setenv("MODU_ONNX_EXTERNAL_DATA", "always", 1);
  EXPECT_EQ(onnx_external_data_from_env(), OnnxExternalData::always);
  ::unsetenv("MODU_ONNX_EXTERNAL_DATA");
  EXPECT_EQ(onnx_external_data_from_env(), OnnxExternalData::automatic);
}

}  // namespace
}  // namespace modu::exporting
