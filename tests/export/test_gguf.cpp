// tests/export/test_gguf.cpp — the GGUF container (export/gguf_file.h) and
// the gguf writer of `modu export` (export/gguf.cpp), read back with the
// container's own reader: header, every key, tensor names/dims/types/offsets
// and alignment, f16/bf16/q8_0 error bounds against the f32 source, the
// rotary row permutation for llama.cpp (checked against modu's own rotary op),
// determinism, and the errors on bad input. No Python: the engine checks are
// tests/export/gguf_engines.py.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <unistd.h>

#include "checkpoint/checkpoint.h"
#include "core/ops/ops.h"
#include "export/export.h"
#include "export/gguf_file.h"
#include "recipes/gpt/model.h"

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace modu;
using namespace modu::exporting;
namespace g = modu::exporting::gguf;

namespace {

fs::path scratch_root() { return fs::temp_directory_path() / ("modu_gguf_test_" + std::to_string(::getpid())); }

fs::path scratch(const std::string& name) {
  fs::path p = scratch_root() / name;
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

// Removes the scratch folder when the test program ends.
struct ScratchCleanup : ::testing::Environment {
  void TearDown() override { fs::remove_all(scratch_root()); }
};
const auto* const kCleanup = ::testing::AddGlobalTestEnvironment(new ScratchCleanup);

std::vector<uint8_t> file_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// A small byte-level BPE: the 256 bytes, a few merges, <|endoftext|> last.
data::BpeTokenizer tiny_tokenizer() {
  std::vector<std::string> tokens;
  for (int b = 0; b < 256; ++b) tokens.emplace_back(1, static_cast<char>(b));
  for (const char* t : {"th", "he", "the", " t", " the", "in", "ing"}) tokens.emplace_back(t);
  const auto eot = static_cast<int32_t>(tokens.size());
  return data::BpeTokenizer::from_ranks(tokens, {data::SpecialToken{"<|endoftext|>", eot}});
}

gpt::GptConfig tiny_config(const std::string& arch, int64_t n_embd = 64) {
  gpt::GptConfig c;
  c.arch = arch;
  c.vocab_size = 264;  // tiny_tokenizer's ids
  c.pad_vocab_to = 64;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_kv_head = arch == "llama" ? 2 : 0;
  c.n_embd = n_embd;
  c.block_size = 32;
  c.norm_eps = 1e-5;
  c.rope_theta = 10000.0;
  return c;
}

bool vocab_rows(const std::string& name) {
  return name == "wte.weight" || name == "embed_tokens.weight" || name == "lm_head.weight";
}

// What load_export_source makes of a checkpoint of this model, built in
// memory. Norm weights and biases get random values too, so that a mix-up
// between tensors cannot go unnoticed.
ExportSource source_of(const gpt::GptConfig& c, uint64_t seed = 1) {
  gpt::GPT model(c);
  model.init_weights(seed);
  ExportSource s;
  s.checkpoint_dir = "/in-memory/step_00000007";
  s.step = 7;
  s.model = gpt::config_to_json(c);
  s.arch = c.arch;
  s.vocab_size = c.vocab_size;
  s.tokenizer_spec = "<memory>";
  s.tokenizer = tiny_tokenizer();
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::normal_distribution<float> noise(0.0f, 0.1f);
  for (const nn::ParamRef& p : model.parameters()) {
    Tensor t = Tensor::from_blob_copy(p.tensor->contiguous().data_ptr(), p.tensor->shape(), DType::F32);
    if (t.dim() == 1) {
      float* x = t.data<float>();
      for (int64_t k = 0; k < t.numel(); ++k) x[k] += noise(rng);
    }
    if (vocab_rows(p.name)) t = t.narrow(0, 0, c.vocab_size).contiguous();
    s.tensors.emplace(p.name, t);
  }
  return s;
}

g::File export_and_read(const ExportSource& src, const std::string& dtype, const std::string& name) {
  const fs::path dir = scratch(name);
  write_gguf_export(src, dir, dtype);
  return g::File::read(dir / "model.gguf");
}

std::vector<int64_t> reversed_shape(const Tensor& t) {
  std::vector<int64_t> ne;
  for (int d = t.dim() - 1; d >= 0; --d) ne.push_back(t.shape()[d]);
  return ne;
}

// Expects `fn` to throw modu::Error whose message contains every part.
template <class Fn>
void expect_error(Fn fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "expected an error mentioning '" << *parts.begin() << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const std::string& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << "the error '" << msg << "' does not mention '" << p << "'";
  }
}

// The modu tensors each GGUF tensor comes from.
std::map<std::string, std::string> gpt2_names(int64_t n_layer) {
  std::map<std::string, std::string> m{{"token_embd.weight", "wte.weight"},
                                       {"position_embd.weight", "wpe.weight"},
                                       {"output_norm.weight", "ln_f.weight"},
                                       {"output_norm.bias", "ln_f.bias"},
                                       {"output.weight", "wte.weight"}};
  for (int64_t l = 0; l < n_layer; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".", h = "h." + std::to_string(l) + ".";
    for (const char* wb : {"weight", "bias"}) {
      const std::string s = wb;
      m[b + "attn_norm." + s] = h + "ln_1." + s;
      m[b + "attn_qkv." + s] = h + "attn.c_attn." + s;
      m[b + "attn_output." + s] = h + "attn.c_proj." + s;
      m[b + "ffn_norm." + s] = h + "ln_2." + s;
      m[b + "ffn_up." + s] = h + "mlp.c_fc." + s;
      m[b + "ffn_down." + s] = h + "mlp.c_proj." + s;
    }
  }
  return m;
}

std::map<std::string, std::string> llama_names(int64_t n_layer) {
  std::map<std::string, std::string> m{{"token_embd.weight", "embed_tokens.weight"},
                                       {"output_norm.weight", "norm.weight"},
                                       {"output.weight", "lm_head.weight"}};
  for (int64_t l = 0; l < n_layer; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".", h = "layers." + std::to_string(l) + ".";
    m[b + "attn_norm.weight"] = h + "input_layernorm.weight";
    m[b + "attn_q.weight"] = h + "self_attn.q_proj.weight";
    m[b + "attn_k.weight"] = h + "self_attn.k_proj.weight";
    m[b + "attn_v.weight"] = h + "self_attn.v_proj.weight";
    m[b + "attn_output.weight"] = h + "self_attn.o_proj.weight";
    m[b + "ffn_norm.weight"] = h + "post_attention_layernorm.weight";
    m[b + "ffn_gate.weight"] = h + "mlp.gate_proj.weight";
    m[b + "ffn_up.weight"] = h + "mlp.up_proj.weight";
    m[b + "ffn_down.weight"] = h + "mlp.down_proj.weight";
  }
  return m;
}

uint64_t u32_of(const g::File& f, const std::string& key) { return f.get(key, g::ValueType::U32).u; }

// The largest |a - b| / (tol_abs + tol_rel * |b|) over two arrays (<= 1 is
// within tolerance).
double worst_ratio(const std::vector<float>& a, const float* b, size_t n, double tol_abs, double tol_rel) {
  double worst = 0;
  for (size_t k = 0; k < n; ++k)
    worst = std::max(worst, std::fabs(double(a[k]) - double(b[k])) / (tol_abs + tol_rel * std::fabs(double(b[k]))));
  return worst;
}

}  // namespace

// ---- codecs
// ------------------------------------------------------------------------------

TEST(GgufCodec, F16AndBf16AreWithinHalfAnUlp) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-8.0f, 8.0f);
  std::vector<float> x(4096);
  for (float& v : x) v = u(rng);
  for (auto [type, rel] : {std::pair{g::TensorType::F16, 0x1p-11}, std::pair{g::TensorType::BF16, 0x1p-8}}) {
    std::vector<uint8_t> bytes;
    g::encode(type, x.data(), static_cast<int64_t>(x.size()), bytes);
    ASSERT_EQ(bytes.size(), x.size() * 2);
    std::vector<float> back(x.size());
    g::decode(type, bytes.data(), static_cast<int64_t>(x.size()), back.data());
    // Half an ulp relative, plus f16's subnormal spacing near zero.
    EXPECT_LE(worst_ratio(back, x.data(), x.size(), 0x1p-25, rel), 1.0) << g::tensor_type_name(type);
  }
}

TEST(GgufCodec, Q8_0IsGgmlReferenceQuantisation) {
  // One block: x[k] = (k - 16) / 4, so max|x| = 4, d = 4/127, q =
  // round(x*127/4).
  std::vector<float> x(32);
  for (int k = 0; k < 32; ++k) x[k] = static_cast<float>(k - 16) / 4.0f;
  std::vector<uint8_t> bytes;
  g::encode(g::TensorType::Q8_0, x.data(), 32, bytes);
  ASSERT_EQ(bytes.size(), 34u);
  uint16_t d_bits;
  std::memcpy(&d_bits, bytes.data(), 2);
  EXPECT_EQ(d_bits, float_to_f16_bits(4.0f / 127.0f));
  for (int k = 0; k < 32; ++k) {
    const auto q = static_cast<int8_t>(bytes[2 + k]);
    const float inv_d = 1.0f / (4.0f / 127.0f);
    EXPECT_EQ(q, static_cast<int8_t>(std::round(x[k] * inv_d))) << k;
  }
  EXPECT_EQ(static_cast<int8_t>(bytes[2]), -127);  // x = -4
  EXPECT_EQ(static_cast<int8_t>(bytes[2 + 16]), 0);
  EXPECT_EQ(static_cast<int8_t>(bytes[2 + 17]), 8);  // 0.25 * 31.75 = 7.94

  // A block of values near the smallest normal float: 1/d overflows, and the
  // quantiser still gives int8 values in range (no undefined conversion).
  std::vector<float> tiny(32, 0.0f);
  tiny[3] = 1e-38f;
  bytes.clear();
  g::encode(g::TensorType::Q8_0, tiny.data(), 32, bytes);
  EXPECT_EQ(static_cast<int8_t>(bytes[2 + 3]), 127);
  EXPECT_EQ(static_cast<int8_t>(bytes[2 + 4]), 0);
  bytes.clear();

  // An all-zero block has d = 0 and q = 0.
  std::vector<float> zeros(32, 0.0f);
  bytes.clear();
  g::encode(g::TensorType::Q8_0, zeros.data(), 32, bytes);
  for (uint8_t b : bytes) EXPECT_EQ(b, 0);

  // Error bound on random data: |x - q*d16| <= d/2 + 127 * |d - d16|
  // <= d * (1/2 + 127 * 2^-11) per block of d = max|x|/127.
  std::mt19937 rng(5);
  std::normal_distribution<float> n(0.0f, 0.05f);
  std::vector<float> r(32 * 64);
  for (float& v : r) v = n(rng);
  bytes.clear();
  g::encode(g::TensorType::Q8_0, r.data(), static_cast<int64_t>(r.size()), bytes);
  ASSERT_EQ(bytes.size(), 64u * 34u);
  std::vector<float> back(r.size());
  g::decode(g::TensorType::Q8_0, bytes.data(), static_cast<int64_t>(r.size()), back.data());
  for (size_t b = 0; b < 64; ++b) {
    float amax = 0;
    for (size_t k = 0; k < 32; ++k) amax = std::max(amax, std::fabs(r[b * 32 + k]));
    const double bound = amax / 127.0 * (0.5 + 127.0 * 0x1p-11) + 1e-9;
    for (size_t k = 0; k < 32; ++k)
      ASSERT_LE(std::fabs(back[b * 32 + k] - r[b * 32 + k]), bound) << "block " << b << " element " << k;
  }

  // A length that is not whole blocks is refused.
  expect_error([&] { g::encode(g::TensorType::Q8_0, r.data(), 31, bytes); }, {"31 elements", "q8_0"});
}

// ---- container
// ---------------------------------------------------------------------------

namespace {
// Two tensors of each type, odd sizes so that padding is needed.
g::Writer sample_writer(uint32_t alignment, std::vector<float>& values) {
  g::Writer w(alignment);
  w.add_string("general.architecture", "test");
  w.add_u32("test.count", 7);
  w.add_i32("test.signed", -3);
  w.add_u64("test.big", uint64_t(1) << 40);
  w.add_f32("test.eps", 1e-5f);
  w.add_bool("test.flag", true);
  w.add_string_array("test.words", {"a", "", "\xc4\xa0the"});
  w.add_i32_array("test.ints", {1, -2, 3});
  values.resize(96);
  for (size_t k = 0; k < values.size(); ++k) values[k] = std::sin(static_cast<float>(k)) * 3.0f;
  const std::vector<float>* v = &values;
  auto producer = [v](g::TensorType t, int64_t n) {
    return [v, t, n] {
      std::vector<uint8_t> out;
      g::encode(t, v->data(), n, out);
      return out;
    };
  };
  w.add_tensor("a.f32", g::TensorType::F32, {3}, producer(g::TensorType::F32, 3));
  w.add_tensor("b.f16", g::TensorType::F16, {5, 3}, producer(g::TensorType::F16, 15));
  w.add_tensor("c.bf16", g::TensorType::BF16, {7}, producer(g::TensorType::BF16, 7));
  w.add_tensor("d.q8_0", g::TensorType::Q8_0, {32, 3}, producer(g::TensorType::Q8_0, 96));
  return w;
}
}  // namespace

TEST(GgufFile, WriterAndReaderAgreeOnEveryKeyAndTensor) {
  for (uint32_t alignment : {32u, 64u}) {
    SCOPED_TRACE(alignment);
    std::vector<float> values;
    const fs::path path = scratch("container") / "t.gguf";
    sample_writer(alignment, values).write(path);
    const std::vector<uint8_t> raw = file_bytes(path);
    // Header: "GGUF", version 3, 4 tensors, 8 keys (+ general.alignment).
    ASSERT_GE(raw.size(), 24u);
    EXPECT_EQ(std::string(raw.begin(), raw.begin() + 4), "GGUF");
    uint32_t version;
    uint64_t n_tensors, n_kv;
    std::memcpy(&version, raw.data() + 4, 4);
    std::memcpy(&n_tensors, raw.data() + 8, 8);
    std::memcpy(&n_kv, raw.data() + 16, 8);
    EXPECT_EQ(version, 3u);
    EXPECT_EQ(n_tensors, 4u);
    EXPECT_EQ(n_kv, alignment == 32 ? 8u : 9u);

    const g::File f = g::File::read(path);
    EXPECT_EQ(f.version, 3u);
    EXPECT_EQ(f.alignment, alignment);
    std::vector<std::string> keys = {
        "general.architecture", "test.count", "test.signed", "test.big", "test.eps", "test.flag",
        "test.words",           "test.ints"};
    if (alignment != 32) keys.insert(keys.begin(), "general.alignment");
    EXPECT_EQ(f.key_order, keys);
    EXPECT_EQ(f.get("general.architecture", g::ValueType::String).s, "test");
    EXPECT_EQ(f.get("test.count", g::ValueType::U32).u, 7u);
    EXPECT_EQ(f.get("test.signed", g::ValueType::I32).i, -3);
    EXPECT_EQ(f.get("test.big", g::ValueType::U64).u, uint64_t(1) << 40);
    EXPECT_EQ(f.get("test.eps", g::ValueType::F32).f, double(1e-5f));
    EXPECT_EQ(f.get("test.flag", g::ValueType::Bool).u, 1u);
    const g::Value& words = f.get("test.words", g::ValueType::Array);
    ASSERT_EQ(words.element_type, g::ValueType::String);
    ASSERT_EQ(words.items.size(), 3u);
    EXPECT_EQ(words.items[2].s, "\xc4\xa0the");
    const g::Value& ints = f.get("test.ints", g::ValueType::Array);
    ASSERT_EQ(ints.element_type, g::ValueType::I32);
    EXPECT_EQ(ints.items[1].i, -2);
    if (alignment != 32) {
      EXPECT_EQ(f.get("general.alignment", g::ValueType::U32).u, alignment);
    }

    EXPECT_EQ(f.data_start % alignment, 0u);
    ASSERT_EQ(f.tensors.size(), 4u);
    const std::vector<std::string> names = {"a.f32", "b.f16", "c.bf16", "d.q8_0"};
    const std::vector<std::vector<int64_t>> dims = {{3}, {5, 3}, {7}, {32, 3}};
    const std::vector<int64_t> sizes = {12, 30, 14, 102};
    uint64_t expected_offset = 0;
    for (size_t k = 0; k < 4; ++k) {
      const g::TensorInfo& t = f.tensors[k];
      EXPECT_EQ(t.name, names[k]);
      EXPECT_EQ(t.ne, dims[k]);
      EXPECT_EQ(t.nbytes(), sizes[k]);
      EXPECT_EQ(t.offset, expected_offset) << t.name;
      EXPECT_EQ(t.offset % alignment, 0u);
      expected_offset += (static_cast<uint64_t>(sizes[k]) + alignment - 1) / alignment * alignment;
    }
    // The file ends with the last tensor; padding bytes are zero.
    EXPECT_EQ(f.file_size(), f.data_start + f.tensors[3].offset + 102);
    for (uint64_t p = f.data_start + 12; p < f.data_start + f.tensors[1].offset; ++p)
      EXPECT_EQ(raw[p], 0) << "padding byte " << p;
    // Data: f32 exact; f16/bf16/q8_0 as the codecs give them.
    const std::vector<float> a = f.tensor_f32("a.f32");
    for (size_t k = 0; k < 3; ++k) EXPECT_EQ(a[k], values[k]);
    EXPECT_LE(worst_ratio(f.tensor_f32("b.f16"), values.data(), 15, 0, 0x1p-11), 1.0);
    EXPECT_LE(worst_ratio(f.tensor_f32("c.bf16"), values.data(), 7, 0, 0x1p-8), 1.0);
    EXPECT_LE(worst_ratio(f.tensor_f32("d.q8_0"), values.data(), 96, 3.0 / 127 * 0.57, 0), 1.0);
  }
}

TEST(GgufFile, EveryTruncationAndCorruptionIsAnError) {
  std::vector<float> values;
  const fs::path path = scratch("corrupt") / "t.gguf";
  sample_writer(32, values).write(path);
  const std::vector<uint8_t> good = file_bytes(path);
  ASSERT_NO_THROW(g::File::parse(good, path));
  // Every strict prefix is refused (the last tensor's data ends the file).
  for (size_t n = 0; n < good.size(); ++n)
    EXPECT_THROW(g::File::parse({good.begin(), good.begin() + n}, path), Error) << "prefix of " << n << " bytes";

  auto patched = [&](size_t at, std::vector<uint8_t> with) {
    std::vector<uint8_t> b = good;
    std::copy(with.begin(), with.end(), b.begin() + at);
    return b;
  };
  expect_error([&] { g::File::parse(patched(0, {'G', 'G', 'M', 'L'}), path); }, {path.string(), "not a GGUF file"});
  expect_error([&] { g::File::parse(patched(4, {2, 0, 0, 0}), path); }, {"GGUF v2"});
  const g::File f = g::File::parse(good, path);
  std::vector<uint8_t> misaligned = good;
  {
    // Find "a.f32" in the tensor infos and step over to its offset.
    const std::string name = "a.f32";
    auto it = std::search(misaligned.begin(), misaligned.end(), name.begin(), name.end());
    ASSERT_NE(it, misaligned.end());
    const size_t offset_at = static_cast<size_t>(it - misaligned.begin()) + 5 + 4 + 8 + 4;
    const uint64_t bad = 4;
    std::memcpy(misaligned.data() + offset_at, &bad, 8);
    // and its type to an unknown one
    std::vector<uint8_t> bad_type = good;
    const uint32_t q4 = 2;
    std::memcpy(bad_type.data() + offset_at - 4, &q4, 4);
    expect_error([&] { g::File::parse(bad_type, path); }, {"'a.f32'", "ggml type 2"});
  }
  expect_error([&] { g::File::parse(misaligned, path); }, {"'a.f32'", "not a multiple of the alignment"});
  // Dimensions whose product would overflow 64 bits are refused by name.
  {
    const std::string name = "b.f16";
    std::vector<uint8_t> b = good;
    auto it = std::search(b.begin(), b.end(), name.begin(), name.end());
    ASSERT_NE(it, b.end());
    const size_t dims_at = static_cast<size_t>(it - b.begin()) + 5 + 4;
    const uint64_t huge = uint64_t(1) << 39;
    std::memcpy(b.data() + dims_at, &huge, 8);
    std::memcpy(b.data() + dims_at + 8, &huge, 8);
    expect_error([&] { g::File::parse(b, path); }, {"'b.f16'", "more elements than the file"});
  }
  // A bool byte other than 0/1.
  {
    const std::string key = "test.flag";
    std::vector<uint8_t> b = good;
    auto it = std::search(b.begin(), b.end(), key.begin(), key.end());
    ASSERT_NE(it, b.end());
    *(it + static_cast<long>(key.size()) + 4) = 2;
    expect_error([&] { g::File::parse(b, path); }, {"test.flag", "bool"});
  }
  // Asking for a key with the wrong type names both.
  expect_error([&] { f.get("test.count", g::ValueType::I32); }, {"test.count", "u32", "i32"});
  expect_error([&] { f.tensor("missing"); }, {"missing"});
}

TEST(GgufFile, WriterRefusesWhatGgufCannotHold) {
  g::Writer w;
  auto none = [] { return std::vector<uint8_t>(); };
  w.add_u32("a.key", 1);
  expect_error([&] { w.add_u32("a.key", 2); }, {"a.key", "twice"});
  expect_error([&] { w.add_tensor(std::string(65, 'x'), g::TensorType::F32, {1}, none); }, {"64 bytes"});
  expect_error([&] { w.add_tensor("odd", g::TensorType::Q8_0, {48, 2}, none); }, {"'odd'", "48", "q8_0"});
  expect_error([&] { w.add_tensor("five", g::TensorType::F32, {1, 1, 1, 1, 1}, none); }, {"'five'", "5 dims"});
  w.add_tensor("short", g::TensorType::F32, {4}, none);
  expect_error([&] { w.write(scratch("short") / "t.gguf"); }, {"'short'", "produced 0 bytes"});
  expect_error([] { g::Writer bad(12); }, {"alignment 12"});
}

// ---- the gguf export
// ---------------------------------------------------------------------

TEST(GgufExport, Gpt2KeysTokenizerNamesAndF32Bytes) {
  const gpt::GptConfig c = tiny_config("gpt2");
  const ExportSource src = source_of(c);
  const g::File f = export_and_read(src, "f32", "gpt2_f32");

  EXPECT_EQ(f.key_order.front(), "general.architecture");
  EXPECT_EQ(f.get("general.architecture", g::ValueType::String).s, "gpt2");
  EXPECT_EQ(f.get("general.name", g::ValueType::String).s, "modu-gpt2-step7");
  EXPECT_EQ(u32_of(f, "general.file_type"), 0u);
  EXPECT_FALSE(f.has("general.quantization_version"));
  EXPECT_FALSE(f.has("general.alignment"));
  EXPECT_EQ(f.alignment, 32u);
  EXPECT_EQ(u32_of(f, "gpt2.context_length"), 32u);
  EXPECT_EQ(u32_of(f, "gpt2.embedding_length"), 64u);
  EXPECT_EQ(u32_of(f, "gpt2.block_count"), 2u);
  EXPECT_EQ(u32_of(f, "gpt2.feed_forward_length"), 256u);
  EXPECT_EQ(u32_of(f, "gpt2.attention.head_count"), 4u);
  EXPECT_EQ(u32_of(f, "gpt2.attention.head_count_kv"), 4u);
  EXPECT_EQ(u32_of(f, "gpt2.vocab_size"), 264u);
  EXPECT_FLOAT_EQ(f.get("gpt2.attention.layer_norm_epsilon", g::ValueType::F32).f, 1e-5f);
  EXPECT_FALSE(f.has("gpt2.rope.freq_base"));

  // Tokenizer: GPT-2 BPE, tokens in byte-to-unicode form, <|endoftext|> a
  // control token used as BOS and EOS, merges in rank order.
  const data::BpeTokenizer& tok = *src.tokenizer;
  EXPECT_EQ(f.get("tokenizer.ggml.model", g::ValueType::String).s, "gpt2");
  EXPECT_EQ(f.get("tokenizer.ggml.pre", g::ValueType::String).s, "gpt-2");
  const g::Value& tokens = f.get("tokenizer.ggml.tokens", g::ValueType::Array);
  const g::Value& types = f.get("tokenizer.ggml.token_type", g::ValueType::Array);
  ASSERT_EQ(tokens.items.size(), 264u);
  ASSERT_EQ(types.items.size(), 264u);
  EXPECT_EQ(types.element_type, g::ValueType::I32);
  for (int32_t id = 0; id < 264; ++id) {
    EXPECT_EQ(tokens.items[id].s, tok.token_string(id)) << id;
    EXPECT_EQ(types.items[id].i, id == 263 ? 3 : 1) << id;
  }
  EXPECT_EQ(tokens.items[32].s, "\xc4\xa0");  // the space byte
  EXPECT_EQ(tokens.items[263].s, "<|endoftext|>");
  const g::Value& merges = f.get("tokenizer.ggml.merges", g::ValueType::Array);
  ASSERT_EQ(merges.items.size(), 7u);
  EXPECT_EQ(merges.items[0].s, "t h");
  EXPECT_EQ(merges.items[2].s, "th e");
  EXPECT_EQ(merges.items[4].s, "\xc4\xa0 the");  // BPE of " the": " " + "the"
  EXPECT_EQ(u32_of(f, "tokenizer.ggml.bos_token_id"), 263u);
  EXPECT_EQ(u32_of(f, "tokenizer.ggml.eos_token_id"), 263u);
  EXPECT_EQ(f.get("tokenizer.ggml.add_bos_token", g::ValueType::Bool).u, 0u);

  // Tensors: exactly the llama.cpp names, dims reversed, f32 bytes as in modu.
  const auto names = gpt2_names(2);
  ASSERT_EQ(f.tensors.size(), names.size());
  EXPECT_EQ(f.tensors.front().name, "token_embd.weight");
  for (const g::TensorInfo& t : f.tensors) {
    SCOPED_TRACE(t.name);
    ASSERT_TRUE(names.count(t.name));
    const Tensor& m = src.tensors.at(names.at(t.name));
    EXPECT_EQ(t.ne, reversed_shape(m));
    EXPECT_EQ(t.type, g::TensorType::F32);
    const auto bytes = f.tensor_bytes(t.name);
    ASSERT_EQ(bytes.size(), m.nbytes());
    EXPECT_EQ(std::memcmp(bytes.data(), m.data_ptr(), m.nbytes()), 0);
  }
  EXPECT_EQ(f.tensor("blk.1.attn_qkv.weight").ne, (std::vector<int64_t>{64, 192}));
  EXPECT_EQ(f.tensor("token_embd.weight").ne, (std::vector<int64_t>{64, 264}));
}

TEST(GgufExport, LlamaKeysAndRotaryRowsGiveModuAttentionScores) {
  const gpt::GptConfig c = tiny_config("llama");
  const ExportSource src = source_of(c);
  const g::File f = export_and_read(src, "f32", "llama_f32");

  EXPECT_EQ(f.get("general.architecture", g::ValueType::String).s, "llama");
  EXPECT_EQ(u32_of(f, "llama.context_length"), 32u);
  EXPECT_EQ(u32_of(f, "llama.embedding_length"), 64u);
  EXPECT_EQ(u32_of(f, "llama.block_count"), 2u);
  EXPECT_EQ(u32_of(f, "llama.feed_forward_length"), 192u);
  EXPECT_EQ(u32_of(f, "llama.attention.head_count"), 4u);
  EXPECT_EQ(u32_of(f, "llama.attention.head_count_kv"), 2u);
  EXPECT_EQ(u32_of(f, "llama.rope.dimension_count"), 16u);
  EXPECT_EQ(u32_of(f, "llama.vocab_size"), 264u);
  EXPECT_FLOAT_EQ(f.get("llama.rope.freq_base", g::ValueType::F32).f, 10000.0f);
  EXPECT_FLOAT_EQ(f.get("llama.attention.layer_norm_rms_epsilon", g::ValueType::F32).f, 1e-5f);
  EXPECT_FALSE(f.has("llama.attention.layer_norm_epsilon"));

  const auto names = llama_names(2);
  ASSERT_EQ(f.tensors.size(), names.size());
  for (const g::TensorInfo& t : f.tensors) {
    SCOPED_TRACE(t.name);
    ASSERT_TRUE(names.count(t.name));
    const Tensor& m = src.tensors.at(names.at(t.name));
    EXPECT_EQ(t.ne, reversed_shape(m));
    const bool rotary = t.name.find("attn_q.") != std::string::npos || t.name.find("attn_k.") != std::string::npos;
    const auto bytes = f.tensor_bytes(t.name);
    if (!rotary) {
      EXPECT_EQ(std::memcmp(bytes.data(), m.data_ptr(), m.nbytes()), 0);
    } else {  // the same rows, reordered
      EXPECT_NE(std::memcmp(bytes.data(), m.data_ptr(), m.nbytes()), 0);
    }
  }
  EXPECT_EQ(f.tensor("blk.0.attn_k.weight").ne, (std::vector<int64_t>{64, 32}));

  // llama.cpp rotates (2j, 2j+1) of each head by t * theta^(-2j/HS); modu
  // rotates (j, j + HS/2) by the same angle. With the exported rows, the
  // rotated queries/keys must be modu's, reordered within each head, so every
  // attention score q_t . k_s is modu's.
  const int64_t T = 5, C = 64, HS = 16, NH = 4, NKV = 2;
  Tensor x = Tensor::from_vector(
      [&] {
        std::vector<float> v(T * C);
        std::mt19937 rng(11);
        std::normal_distribution<float> n(0.0f, 1.0f);
        for (float& e : v) e = n(rng);
        return v;
      }(),
      Dims{T, C});
  auto [cos, sin] = rotary_tables(0, T, HS, 10000.0);
  for (const char* which : {"q", "k"}) {
    SCOPED_TRACE(which);
    const int64_t heads = std::string(which) == "q" ? NH : NKV;
    const Tensor& w = src.tensors.at(std::string("layers.1.self_attn.") + which + "_proj.weight");
    Tensor modu_rot = rotary(matmul(x, w.t()).view(Dims{1, T, heads, HS}), cos, sin).contiguous();
    const std::vector<float> wg = f.tensor_f32(std::string("blk.1.attn_") + which + ".weight");
    Tensor ggml_in = matmul(x, Tensor::from_vector(wg, Dims{heads * HS, C}).t()).contiguous();
    const float* a = ggml_in.data<float>();
    const float* ref = modu_rot.data<float>();
    double worst = 0;
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t j = 0; j < HS / 2; ++j) {
          const double angle = static_cast<double>(t) * std::pow(10000.0, -2.0 * j / HS);
          const int64_t base = t * heads * HS + h * HS;
          const double x0 = a[base + 2 * j], x1 = a[base + 2 * j + 1];
          const double y0 = x0 * std::cos(angle) - x1 * std::sin(angle);
          const double y1 = x0 * std::sin(angle) + x1 * std::cos(angle);
          worst = std::max(worst, std::fabs(y0 - ref[base + j]));
          worst = std::max(worst, std::fabs(y1 - ref[base + HS / 2 + j]));
        }
    EXPECT_LT(worst, 1e-4);
  }
}

TEST(GgufExport, DtypesFollowLlamaCppRulesAndErrorBounds) {
  for (const std::string arch : {"gpt2", "llama"}) {
    const gpt::GptConfig c = tiny_config(arch);
    const ExportSource src = source_of(c);
    const auto names = arch == "gpt2" ? gpt2_names(2) : llama_names(2);
    for (const std::string dtype : {"f16", "bf16", "q8_0"}) {
      SCOPED_TRACE(arch + " " + dtype);
      const g::File f = export_and_read(src, dtype, arch + "_" + dtype);
      const auto want = dtype == "f16"    ? g::TensorType::F16
                        : dtype == "bf16" ? g::TensorType::BF16
                                          : g::TensorType::Q8_0;
      EXPECT_EQ(u32_of(f, "general.file_type"), dtype == "f16" ? 1u : dtype == "bf16" ? 32u : 7u);
      EXPECT_EQ(f.has("general.quantization_version"), dtype == "q8_0");
      if (dtype == "q8_0") {
        EXPECT_EQ(u32_of(f, "general.quantization_version"), 2u);
      }
      for (const g::TensorInfo& t : f.tensors) {
        SCOPED_TRACE(t.name);
        const bool keep_f32 = t.ne.size() == 1 || t.name == "position_embd.weight";
        EXPECT_EQ(t.type, keep_f32 ? g::TensorType::F32 : want);
        EXPECT_EQ(t.offset % 32, 0u);
        if (t.name.find("attn_q.") != std::string::npos || t.name.find("attn_k.") != std::string::npos)
          continue;  // rows reordered: compared in the rotary test
        const Tensor& m = src.tensors.at(names.at(t.name));
        const std::vector<float> back = f.tensor_f32(t.name);
        const float* ref = m.data<float>();
        const size_t n = static_cast<size_t>(m.numel());
        ASSERT_EQ(back.size(), n);
        if (t.type == g::TensorType::F32) {
          EXPECT_EQ(std::memcmp(back.data(), ref, n * 4), 0);
        } else if (t.type == g::TensorType::F16) {
          EXPECT_LE(worst_ratio(back, ref, n, 0x1p-25, 0x1p-11), 1.0);
        } else if (t.type == g::TensorType::BF16) {
          EXPECT_LE(worst_ratio(back, ref, n, 0, 0x1p-8), 1.0);
        } else {  // per-block bound of the codec test
          for (size_t b = 0; b < n / 32; ++b) {
            float amax = 0;
            for (size_t k = 0; k < 32; ++k) amax = std::max(amax, std::fabs(ref[b * 32 + k]));
            const double bound = amax / 127.0 * 0.57 + 1e-12;
            for (size_t k = 0; k < 32; ++k) ASSERT_LE(std::fabs(back[b * 32 + k] - ref[b * 32 + k]), bound);
          }
        }
      }
    }
  }
}

TEST(GgufExport, Q8_0KeepsRowsThatAreNotWholeBlocksInF16) {
  const gpt::GptConfig c = tiny_config("gpt2", /*n_embd=*/48);  // ne0 48: not 32k
  const g::File f = export_and_read(source_of(c), "q8_0", "gpt2_q8_odd");
  EXPECT_EQ(f.tensor("blk.0.attn_qkv.weight").type, g::TensorType::F16);
  EXPECT_EQ(f.tensor("token_embd.weight").type, g::TensorType::F16);
  // ffn_down's rows are 4C = 192 long: quantised.
  EXPECT_EQ(f.tensor("blk.0.ffn_down.weight").type, g::TensorType::Q8_0);
}

TEST(GgufExport, SameCheckpointSameBytes) {
  const ExportSource src = source_of(tiny_config("llama"));
  for (const std::string dtype : {"f32", "q8_0"}) {
    const fs::path a = scratch("det_a_" + dtype), b = scratch("det_b_" + dtype);
    write_gguf_export(src, a, dtype);
    write_gguf_export(src, b, dtype);
    EXPECT_EQ(file_bytes(a / "model.gguf"), file_bytes(b / "model.gguf"));
  }
  // A different seed changes them (the comparison can fail).
  const fs::path c = scratch("det_c");
  write_gguf_export(source_of(tiny_config("llama"), 2), c, "f32");
  write_gguf_export(src, scratch("det_a"), "f32");
  EXPECT_NE(file_bytes(c / "model.gguf"), file_bytes(scratch("det_a").parent_path() / "det_a" / "model.gguf"));
}

TEST(GgufExport, BadInputNamesTheProblem) {
  const ExportSource good = source_of(tiny_config("gpt2"));
  const fs::path dir = scratch("bad");
  expect_error([&] { write_gguf_export(good, dir, "int4"); }, {"--dtype 'int4'", "f32, f16, bf16 or q8_0"});

  ExportSource other = good;
  other.arch = "mamba";
  expect_error([&] { write_gguf_export(other, dir, "f32"); }, {"'mamba'", "gpt2 and llama"});

  ExportSource missing = good;
  missing.tensors.erase("h.1.mlp.c_fc.bias");
  expect_error([&] { write_gguf_export(missing, dir, "f32"); },
               {"model/h.1.mlp.c_fc.bias", "/in-memory/step_00000007"});

  ExportSource extra = good;
  extra.tensors.emplace("h.2.ln_1.weight", Tensor::ones(Dims{64}));
  expect_error([&] { write_gguf_export(extra, dir, "f32"); }, {"model/h.2.ln_1.weight", "no place"});

  ExportSource reshaped = good;
  reshaped.tensors["h.0.attn.c_proj.weight"] = Tensor::zeros(Dims{64, 32});
  expect_error([&] { write_gguf_export(reshaped, dir, "f32"); },
               {"model/h.0.attn.c_proj.weight", "(64, 32)", "(64, 64)"});

  ExportSource nan = good;
  nan.tensors["ln_f.weight"] = Tensor::from_vector(std::vector<float>(64, std::nanf("")), Dims{64});
  expect_error([&] { write_gguf_export(nan, dir, "f32"); }, {"model/ln_f.weight", "non-finite"});
  EXPECT_FALSE(fs::exists(dir / "model.gguf"));
}

TEST(GgufExport, EndToEndFromACheckpointThroughRunExport) {
  // A committed checkpoint with a padded vocabulary, as `modu train` saves it.
  const fs::path root = scratch("e2e");
  const fs::path tok_dir = root / "tokenizer";
  tiny_tokenizer().save(tok_dir.string());
  gpt::GptConfig c = tiny_config("llama");
  gpt::GPT model(c);
  model.init_weights(3);
  std::vector<checkpoint::ShardTensor> tensors;
  for (const nn::ParamRef& p : model.parameters()) tensors.emplace_back("model/" + p.name, *p.tensor);
  checkpoint::CommitInfo info;
  info.metadata = json{{"step", 5}, {"model", gpt::config_to_json(c)}, {"tokenizer", tok_dir.string()}};
  checkpoint::save(root / "checkpoints", 5, tensors, info);

  ExportOptions o;
  o.checkpoint_dir = root;
  o.format = "gguf";
  o.out_dir = root / "out";
  o.dtype = "q8_0";
  ASSERT_EQ(run_export(o), 0);
  const g::File f = g::File::read(root / "out" / "model.gguf");
  EXPECT_EQ(f.tensor("token_embd.weight").ne, (std::vector<int64_t>{64, 264}));
  EXPECT_EQ(f.tensor("output.weight").ne, (std::vector<int64_t>{64, 264}));
  EXPECT_EQ(f.get("general.name", g::ValueType::String).s, "modu-llama-step5");
  const auto before = file_bytes(root / "out" / "model.gguf");

  // A later checkpoint whose weights diverged: the writer fails, and the good
  // export stays in place.
  tensors.clear();
  for (const nn::ParamRef& p : model.parameters()) {
    Tensor t = p.tensor->contiguous();
    if (p.name == "norm.weight") t = Tensor::full(t.shape(), std::nan(""));
    tensors.emplace_back("model/" + p.name, t);
  }
  info.metadata["step"] = 6;
  checkpoint::save(root / "checkpoints", 6, tensors, info);
  expect_error([&] { run_export(o); }, {"model/norm.weight", "non-finite"});
  EXPECT_EQ(file_bytes(root / "out" / "model.gguf"), before);
  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(root)) left.push_back(e.path().filename().string());
  std::sort(left.begin(), left.end());
  EXPECT_EQ(left, (std::vector<std::string>{"checkpoints", "out", "tokenizer"}));
}
