// tests/export/test_safetensors.cpp — the safetensors format (export/safetensors_io.h), the Hugging
// Face export (`modu export --format safetensors`) and `modu import hf`, without Python: round trips,
// the byte layout of the header, export -> import -> export byte-identity, bad input naming the file
// and tensor, and the all-or-nothing output folder. The comparison against transformers itself is
// tests/export/hf_transformers_test.py (label "engines").
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "checkpoint/checkpoint.h"
#include "core/ops/dispatch.h"
#include "data/tokenizer/trainer.h"
#include "export/export.h"
#include "export/hf_layout.h"
#include "export/safetensors_io.h"
#include "recipes/gpt/model.h"

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace modu;
using namespace modu::exporting;

namespace {

// A fresh folder per test under the system temp dir.
struct TempDir {
  fs::path path;
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name =
        std::string("modu_st_") + info->test_suite_name() + "_" + info->name() + "_" + std::to_string(::getpid());
    for (char& ch : name)
      if (ch == '/') ch = '_';
    path = fs::temp_directory_path() / name;
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
void write_bytes(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << s;
}

// A safetensors file from a header given as text (padded to 8) and `data_bytes` zero bytes.
void write_raw(const fs::path& p, std::string header, size_t data_bytes, int64_t length_override = -1) {
  header.append((8 - header.size() % 8) % 8, ' ');
  uint64_t n = length_override >= 0 ? static_cast<uint64_t>(length_override) : header.size();
  std::string s(reinterpret_cast<const char*>(&n), 8);
  s += header;
  s.append(data_bytes, '\0');
  write_bytes(p, s);
}

// The error message of f(), or "" when it did not throw.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  Tensor x = a.contiguous(), y = b.contiguous();
  return x.dtype() == y.dtype() && x.shape() == y.shape() &&
         (x.nbytes() == 0 || std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()) == 0);
}

Tensor iota(const Dims& shape, DType dt, double scale = 0.25) {
  std::vector<float> v(static_cast<size_t>(shape.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>((static_cast<double>(i) - 7.0) * scale);
  return Tensor::from_vector(v, shape).to(dt);
}

// ---- the format ----------------------------------------------------------------------------------

TEST(SafetensorsIo, RoundTripEveryDtypeAndShape) {
  TempDir tmp;
  const fs::path f = tmp.path / "a.safetensors";
  std::vector<SafetensorsTensor> ts = {
      {"w.f32", iota(Dims{3, 5}, DType::F32)},
      {"w.f16", iota(Dims{4, 2}, DType::F16)},
      {"w.bf16", iota(Dims{7}, DType::BF16)},
      {"ids", Tensor::from_vector(std::vector<int64_t>{1, -2, 3}, Dims{3})},
      {"scalar", Tensor::scalar(3.5)},
      {"empty", Tensor::zeros(Dims{0, 4})},
      {"strided", iota(Dims{5, 3}, DType::F32).t()},  // written as its contiguous values
  };
  write_safetensors(f, ts, {{"format", "pt"}, {"note", "x\"y"}});
  SafetensorsFile r = SafetensorsFile::open(f);
  EXPECT_EQ(r.metadata().at("format"), "pt");
  EXPECT_EQ(r.metadata().at("note"), "x\"y");
  ASSERT_EQ(r.entries().size(), ts.size());
  for (const SafetensorsTensor& t : ts) {
    ASSERT_TRUE(r.has(t.name)) << t.name;
    EXPECT_TRUE(same_bytes(r.read(t.name), t.tensor)) << t.name;
  }
  EXPECT_EQ(r.entry("w.bf16").dtype, "BF16");
  EXPECT_EQ(r.entry("ids").dtype, "I64");
  EXPECT_EQ(r.entry("scalar").shape.size(), 0);
}

TEST(SafetensorsIo, HeaderLayoutIsTheSpecs) {
  TempDir tmp;
  const fs::path f = tmp.path / "b.safetensors";
  write_safetensors(f, {{"b", iota(Dims{2}, DType::F16)},
                        {"a", iota(Dims{3}, DType::F16)},
                        {"z", iota(Dims{1, 2}, DType::F32)},
                        {"i", Tensor::from_vector(std::vector<int64_t>{4}, Dims{1})}});
  const std::string bytes = read_bytes(f);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);  // little-endian u64
  EXPECT_EQ(n % 8, 0u);
  ASSERT_LE(8 + n, bytes.size());
  const std::string header = bytes.substr(8, n);
  EXPECT_EQ(header.rfind("{\"__metadata__\":{\"format\":\"pt\"},", 0), 0u) << header;
  const size_t close = header.find_last_of('}');
  EXPECT_EQ(header.find_first_not_of(' ', close + 1), std::string::npos) << "padding must be spaces";
  // Compact JSON, tensors by descending dtype size then name, offsets contiguous from 0.
  EXPECT_EQ(header.substr(0, close + 1),
            "{\"__metadata__\":{\"format\":\"pt\"},"
            "\"i\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]},"
            "\"z\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[8,16]},"
            "\"a\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[16,22]},"
            "\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[22,26]}}");
  EXPECT_EQ(bytes.size(), 8 + n + 26);
  // Deterministic: the same tensors in another order give the same bytes.
  const fs::path g = tmp.path / "c.safetensors";
  write_safetensors(g, {{"z", iota(Dims{1, 2}, DType::F32)},
                        {"i", Tensor::from_vector(std::vector<int64_t>{4}, Dims{1})},
                        {"a", iota(Dims{3}, DType::F16)},
                        {"b", iota(Dims{2}, DType::F16)}});
  EXPECT_EQ(read_bytes(g), bytes);
}

TEST(SafetensorsIo, BadFilesAreRefusedNamingFileAndTensor) {
  TempDir tmp;
  const fs::path f = tmp.path / "bad.safetensors";
  const std::string name = f.string();
  auto open_error = [&] { return error_of([&] { SafetensorsFile::open(f); }); };
  const std::string ok_entry = "\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";

  write_bytes(f, "abc");
  EXPECT_NE(open_error().find("shorter than the 8-byte header length"), std::string::npos) << open_error();

  write_raw(f, "{" + ok_entry + "}", 8, /*length_override=*/4096);
  EXPECT_NE(open_error().find("runs past the end of the file"), std::string::npos) << open_error();
  EXPECT_NE(open_error().find(name), std::string::npos);

  write_raw(f, "{" + ok_entry + "}", 8, /*length_override=*/200'000'000);
  EXPECT_NE(open_error().find("exceeds safetensors' limit"), std::string::npos) << open_error();

  write_raw(f, " {" + ok_entry + "}", 8);
  EXPECT_NE(open_error().find("does not start with '{'"), std::string::npos) << open_error();

  write_raw(f, "{\"t\":{\"dtype\":\"F32\",", 8);
  EXPECT_NE(open_error().find("not valid JSON"), std::string::npos) << open_error();

  write_raw(f, "{\"t\":{\"dtype\":\"F31\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
  EXPECT_NE(open_error().find("tensor 't': unknown dtype \"F31\""), std::string::npos) << open_error();

  write_raw(f, "{" + ok_entry + ",\"u\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12);
  EXPECT_NE(open_error().find("tensor 'u'"), std::string::npos) << open_error();
  EXPECT_NE(open_error().find("overlaps tensor 't'"), std::string::npos) << open_error();

  write_raw(f, "{" + ok_entry + ",\"u\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}", 20);
  EXPECT_NE(open_error().find("a gap in data_offsets"), std::string::npos) << open_error();

  write_raw(f, "{" + ok_entry + "}", 16);
  EXPECT_NE(open_error().find("not fully covered"), std::string::npos) << open_error();

  write_raw(f, "{\"t\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8);
  EXPECT_NE(open_error().find("tensor 't': data_offsets [0, 8] hold 8 bytes but shape [3] of F32 needs 12"),
            std::string::npos)
      << open_error();

  write_raw(f,
            "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"t\":{\"dtype\":\"F32\",\"shape\":[2],"
            "\"data_offsets\":[0,8]}}",
            8);
  EXPECT_NE(open_error().find("names tensor 't' twice"), std::string::npos) << open_error();

  write_raw(f, "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,80]}}", 8);
  EXPECT_NE(open_error().find("run past the end of the data"), std::string::npos) << open_error();

  write_raw(f, "{\"t\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8);
  EXPECT_NE(open_error().find("non-negative"), std::string::npos) << open_error();

  // A valid file with a dtype modu cannot hold: opens, and reading that tensor names it.
  write_raw(f, "{\"q\":{\"dtype\":\"F8_E4M3\",\"shape\":[8],\"data_offsets\":[0,8]}}", 8);
  SafetensorsFile r = SafetensorsFile::open(f);
  std::string e = error_of([&] { r.read("q"); });
  EXPECT_NE(e.find(name + ": tensor 'q' has dtype F8_E4M3"), std::string::npos) << e;
}

// ---- the Hugging Face export and import ------------------------------------------------------------

// A tiny byte-level BPE (300 ids) trained on generated text, saved as a modu tokenizer folder.
fs::path make_tokenizer(const fs::path& dir) {
  data::BpeTrainer trainer(data::BpeTrainerOptions{300});
  std::string text;
  const char* words[] = {"the",    "quick", "brown", "fox",  "jumps", "over",  "lazy", "dog",    "and",     "then",
                         "sleeps", "under", "a",     "tree", "while", "birds", "sing", "softly", "überall", "naïve"};
  for (int i = 0; i < 3000; ++i) text += std::string(words[(i * 7 + i / 5) % 20]) + (i % 11 == 0 ? ".\n" : " ");
  trainer.add_text(text);
  data::BpeTokenizer tok = trainer.train();
  tok.save((dir / "tokenizer").string());
  return dir / "tokenizer";
}

json model_json(const std::string& arch) {
  return json{{"arch", arch},   {"vocab_size", 300},     {"pad_vocab_to", 128},
              {"n_layer", 2},   {"n_head", 4},           {"n_kv_head", arch == "llama" ? 2 : 0},
              {"n_embd", 16},   {"block_size", 24},      {"ffn_hidden", 0},
              {"dropout", 0.0}, {"rope_theta", 10000.0}, {"norm_eps", 1e-5}};
}

// A committed checkpoint as `modu train` writes it (model/ tensors, metadata.model and .tokenizer).
fs::path make_checkpoint(const fs::path& root, const std::string& arch, const fs::path& tokenizer) {
  json m = model_json(arch);
  gpt::GptConfig c;
  c.arch = arch;
  c.vocab_size = m["vocab_size"];
  c.pad_vocab_to = m["pad_vocab_to"];
  c.n_layer = m["n_layer"];
  c.n_head = m["n_head"];
  c.n_kv_head = m["n_kv_head"];
  c.n_embd = m["n_embd"];
  c.block_size = m["block_size"];
  gpt::GPT model(c);
  model.init_weights(arch == "llama" ? 7 : 3);
  std::vector<checkpoint::ShardTensor> tensors;
  for (const nn::ParamRef& p : model.parameters()) tensors.emplace_back("model/" + p.name, *p.tensor);
  checkpoint::CommitInfo info;
  info.metadata = json{{"step", 5}, {"model", m}, {"tokenizer", tokenizer.string()}};
  checkpoint::save(root, 5, tensors, info);
  return root;
}

struct HfFixture : ::testing::TestWithParam<std::string> {
  TempDir tmp;
  fs::path tokenizer, ckpt;
  void SetUp() override {
    tokenizer = make_tokenizer(tmp.path);
    ckpt = make_checkpoint(tmp.path / "run", GetParam(), tokenizer);
  }
  fs::path do_export(const fs::path& from, const std::string& name, const std::string& dtype = "f32") {
    ExportOptions o{from, "safetensors", tmp.path / name, dtype};
    EXPECT_EQ(run_export(o), 0);
    return tmp.path / name;
  }
};

TEST_P(HfFixture, ExportHasTransformersNamesLayoutsAndConfig) {
  const std::string arch = GetParam();
  const fs::path out = do_export(ckpt, "hf");
  for (const char* f : {"model.safetensors", "config.json", "generation_config.json", "vocab.json", "merges.txt",
                        "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"})
    EXPECT_TRUE(fs::exists(out / f)) << f;
  SafetensorsFile st = SafetensorsFile::open(out / "model.safetensors");
  EXPECT_EQ(st.metadata().at("format"), "pt");
  checkpoint::Checkpoint ck = checkpoint::Checkpoint::open(ckpt);
  std::ifstream cf(out / "config.json");
  json cfg = json::parse(cf);
  EXPECT_EQ(cfg["vocab_size"], 300);
  EXPECT_EQ(cfg["bos_token_id"], 299);
  EXPECT_EQ(cfg["eos_token_id"], 299);
  if (arch == "gpt2") {
    EXPECT_EQ(st.entries().size(), 2u + 2 * 12 + 2);  // wte, wpe, 12 per block, ln_f; no lm_head (tied)
    EXPECT_FALSE(st.has("lm_head.weight"));
    // Conv1D: (in, out); c_attn = [Q|K|V] along out.
    Tensor modu_qkv = ck.read("model/h.1.attn.c_attn.weight");  // (3C, C)
    Tensor hf_qkv = st.read("transformer.h.1.attn.c_attn.weight");
    EXPECT_EQ(hf_qkv.shape(), (Dims{16, 48}));
    EXPECT_TRUE(same_bytes(hf_qkv, modu_qkv.t().contiguous()));
    EXPECT_EQ(st.read("transformer.h.0.mlp.c_proj.weight").shape(), (Dims{64, 16}));
    // The vocabulary padding (384 rows) is stripped.
    Tensor wte = st.read("transformer.wte.weight");
    EXPECT_EQ(wte.shape(), (Dims{300, 16}));
    EXPECT_TRUE(same_bytes(wte, ck.read("model/wte.weight").narrow(0, 0, 300)));
    EXPECT_EQ(cfg["model_type"], "gpt2");
    EXPECT_EQ(cfg["architectures"][0], "GPT2LMHeadModel");
    EXPECT_EQ(cfg["n_ctx"], 24);
    EXPECT_EQ(cfg["n_positions"], 24);
    EXPECT_EQ(cfg["n_embd"], 16);
    EXPECT_EQ(cfg["activation_function"], "gelu_new");
    EXPECT_EQ(cfg["tie_word_embeddings"], true);
  } else {
    EXPECT_EQ(st.entries().size(), 1u + 2 * 9 + 2);
    EXPECT_TRUE(same_bytes(st.read("model.layers.1.self_attn.k_proj.weight"),
                           ck.read("model/layers.1.self_attn.k_proj.weight")));
    EXPECT_EQ(st.read("model.layers.0.self_attn.k_proj.weight").shape(), (Dims{8, 16}));  // 2 kv heads of 4
    EXPECT_EQ(st.read("lm_head.weight").shape(), (Dims{300, 16}));
    EXPECT_EQ(cfg["model_type"], "llama");
    EXPECT_EQ(cfg["architectures"][0], "LlamaForCausalLM");
    EXPECT_EQ(cfg["num_key_value_heads"], 2);
    EXPECT_EQ(cfg["intermediate_size"], 64);  // 8 * 16 / 3 rounded up to 64
    EXPECT_EQ(cfg["tie_word_embeddings"], false);
    EXPECT_EQ(cfg["rms_norm_eps"], 1e-5);
  }
  std::ifstream tf(out / "tokenizer_config.json");
  json tc = json::parse(tf);
  EXPECT_EQ(tc["tokenizer_class"], "GPT2Tokenizer");
  EXPECT_EQ(tc["eos_token"], "<|endoftext|>");
  std::ifstream tj(out / "tokenizer.json");
  json tok = json::parse(tj);
  EXPECT_EQ(tok["model"]["vocab"].size(), 300u);
  EXPECT_EQ(tok["model"]["merges"].size(), 300u - 257);
}

TEST_P(HfFixture, ExportImportExportIsByteIdentical) {
  const fs::path first = do_export(ckpt, "hf1");
  ImportHfOptions io{first, tmp.path / "imported"};
  ASSERT_EQ(run_import_hf(io), 0);
  // The import is a committed step-0 checkpoint with the padded vocabulary and the same weights.
  checkpoint::Checkpoint orig = checkpoint::Checkpoint::open(ckpt);
  checkpoint::Checkpoint imp = checkpoint::Checkpoint::open(tmp.path / "imported");
  EXPECT_EQ(imp.step(), 0);
  EXPECT_EQ(imp.metadata()["model"]["arch"], GetParam());
  EXPECT_TRUE(fs::exists(fs::path(imp.metadata()["tokenizer"].get<std::string>()) / "modu-tokenizer.json"));
  for (const std::string& n : orig.tensor_names()) EXPECT_TRUE(same_bytes(orig.read(n), imp.read(n))) << n;
  EXPECT_EQ(orig.tensor_names().size(), imp.tensor_names().size());

  const fs::path second = do_export(tmp.path / "imported", "hf2");
  size_t files = 0;
  for (const auto& e : fs::directory_iterator(first)) {
    ++files;
    EXPECT_EQ(read_bytes(e.path()), read_bytes(second / e.path().filename())) << e.path().filename();
  }
  EXPECT_EQ(files, 8u);
  // f16 and bf16 exports of the import are identical too.
  for (const char* dt : {"f16", "bf16"})
    EXPECT_EQ(read_bytes(do_export(ckpt, std::string("a") + dt, dt) / "model.safetensors"),
              read_bytes(do_export(tmp.path / "imported", std::string("b") + dt, dt) / "model.safetensors"))
        << dt;
}

TEST_P(HfFixture, ShardedImportEqualsSingleFile) {
  const fs::path hf = do_export(ckpt, "hf");
  SafetensorsFile st = SafetensorsFile::open(hf / "model.safetensors");
  // Split into two shards + index, as save_pretrained(max_shard_size=...) writes them.
  std::vector<SafetensorsTensor> a, b;
  json weight_map = json::object();
  for (size_t i = 0; i < st.entries().size(); ++i) {
    const std::string& n = st.entries()[i].name;
    (i % 2 ? b : a).push_back({n, st.read(n)});
    weight_map[n] = i % 2 ? "model-00002-of-00002.safetensors" : "model-00001-of-00002.safetensors";
  }
  const fs::path sharded = tmp.path / "sharded";
  fs::create_directories(sharded);
  for (const auto& e : fs::directory_iterator(hf))
    if (e.path().filename() != "model.safetensors") fs::copy_file(e.path(), sharded / e.path().filename());
  write_safetensors(sharded / "model-00001-of-00002.safetensors", a);
  write_safetensors(sharded / "model-00002-of-00002.safetensors", b);
  std::ofstream(sharded / "model.safetensors.index.json")
      << json{{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}}.dump();
  ASSERT_EQ(run_import_hf({sharded, tmp.path / "from_shards"}), 0);
  ASSERT_EQ(run_import_hf({hf, tmp.path / "from_single"}), 0);
  checkpoint::Checkpoint x = checkpoint::Checkpoint::open(tmp.path / "from_shards");
  checkpoint::Checkpoint y = checkpoint::Checkpoint::open(tmp.path / "from_single");
  for (const std::string& n : y.tensor_names()) EXPECT_TRUE(same_bytes(x.read(n), y.read(n))) << n;

  // An index naming a shard that is not there.
  weight_map[st.entries()[0].name] = "model-00003-of-00002.safetensors";
  std::ofstream(sharded / "model.safetensors.index.json", std::ios::trunc) << json{{"weight_map", weight_map}}.dump();
  std::string e = error_of([&] { run_import_hf({sharded, tmp.path / "bad"}); });
  EXPECT_NE(e.find("model-00003-of-00002.safetensors"), std::string::npos) << e;
  EXPECT_NE(e.find(st.entries()[0].name), std::string::npos) << e;
}

TEST_P(HfFixture, ImportRefusesBadFoldersNamingFileAndTensor) {
  const std::string arch = GetParam();
  const fs::path hf = do_export(ckpt, "hf");
  SafetensorsFile st = SafetensorsFile::open(hf / "model.safetensors");
  const std::string victim = arch == "gpt2" ? "transformer.h.1.mlp.c_fc.weight" : "model.layers.1.mlp.up_proj.weight";
  auto variant = [&](const std::string& name) {
    const fs::path d = tmp.path / name;
    fs::create_directories(d);
    for (const auto& e : fs::directory_iterator(hf)) fs::copy_file(e.path(), d / e.path().filename());
    return d;
  };
  auto import_error = [&](const fs::path& d) {
    return error_of([&] { run_import_hf({d, tmp.path / ("out_" + d.filename().string())}); });
  };
  {  // a missing tensor
    const fs::path d = variant("missing");
    std::vector<SafetensorsTensor> ts;
    for (const auto& e : st.entries())
      if (e.name != victim) ts.push_back({e.name, st.read(e.name)});
    write_safetensors(d / "model.safetensors", ts);
    std::string e = import_error(d);
    EXPECT_NE(e.find((d / "model.safetensors").string()), std::string::npos) << e;
    EXPECT_NE(e.find("lacks tensor '" + victim + "'"), std::string::npos) << e;
    EXPECT_FALSE(fs::exists(tmp.path / "out_missing" / "latest"));
  }
  {  // a wrong shape
    const fs::path d = variant("shape");
    std::vector<SafetensorsTensor> ts;
    for (const auto& e : st.entries())
      ts.push_back({e.name, e.name == victim ? st.read(e.name).t().contiguous() : st.read(e.name)});
    write_safetensors(d / "model.safetensors", ts);
    std::string e = import_error(d);
    EXPECT_NE(e.find("tensor '" + victim + "' has shape"), std::string::npos) << e;
  }
  {  // an unexpected tensor
    const fs::path d = variant("extra");
    std::vector<SafetensorsTensor> ts;
    for (const auto& e : st.entries()) ts.push_back({e.name, st.read(e.name)});
    ts.push_back({"transformer.h.9.mystery.weight", Tensor::zeros(Dims{2})});
    write_safetensors(d / "model.safetensors", ts);
    std::string e = import_error(d);
    EXPECT_NE(e.find("'transformer.h.9.mystery.weight' has no place"), std::string::npos) << e;
  }
  {  // an unknown model_type, and one modu's model cannot express
    const fs::path d = variant("type");
    std::ifstream in(d / "config.json");
    json cfg = json::parse(in);
    cfg["model_type"] = "t5";
    std::ofstream(d / "config.json", std::ios::trunc) << cfg.dump();
    std::string e = import_error(d);
    EXPECT_NE(e.find((d / "config.json").string()), std::string::npos) << e;
    EXPECT_NE(e.find("model_type \"t5\" is not importable"), std::string::npos) << e;
    cfg["model_type"] = arch;
    cfg[arch == "gpt2" ? "activation_function" : "hidden_act"] = "relu";
    std::ofstream(d / "config.json", std::ios::trunc) << cfg.dump();
    e = import_error(d);
    EXPECT_NE(e.find("relu"), std::string::npos) << e;
  }
  {  // a corrupt safetensors header
    const fs::path d = variant("corrupt");
    std::string bytes = read_bytes(d / "model.safetensors");
    write_bytes(d / "model.safetensors", bytes.substr(0, bytes.size() - 4));
    std::string e = import_error(d);
    EXPECT_NE(e.find((d / "model.safetensors").string()), std::string::npos) << e;
  }
  {  // no config.json
    const fs::path d = variant("noconfig");
    fs::remove(d / "config.json");
    EXPECT_NE(import_error(d).find("has no config.json"), std::string::npos);
  }
  // An existing checkpoint is never overwritten.
  ASSERT_EQ(run_import_hf({hf, tmp.path / "once"}), 0);
  std::string e = error_of([&] { run_import_hf({hf, tmp.path / "once"}); });
  EXPECT_NE(e.find("already holds a checkpoint"), std::string::npos) << e;
}

TEST_P(HfFixture, FailedExportLeavesTheOldFolderUntouched) {
  const fs::path out = do_export(ckpt, "hf");
  const std::string before = read_bytes(out / "model.safetensors");
  write_bytes(out / "marker", "keep me");
  // q8_0 is GGUF's: the safetensors writer refuses it after the staging folder exists.
  ExportOptions bad{ckpt, "safetensors", out, "q8_0"};
  std::string e = error_of([&] { run_export(bad); });
  EXPECT_NE(e.find("q8_0"), std::string::npos) << e;
  EXPECT_EQ(read_bytes(out / "marker"), "keep me");
  EXPECT_EQ(read_bytes(out / "model.safetensors"), before);
  for (const auto& entry : fs::directory_iterator(tmp.path))
    EXPECT_EQ(entry.path().filename().string().find(".hf.export-"), std::string::npos) << entry.path();
  // A checkpoint lacking a tensor: the error names it, and the old export stays.
  const fs::path broken_root = tmp.path / "broken";
  {
    checkpoint::Checkpoint ck = checkpoint::Checkpoint::open(ckpt);
    std::vector<checkpoint::ShardTensor> ts;
    for (const std::string& n : ck.tensor_names())
      if (n.find(".1.mlp.") == std::string::npos || n.find("bias") != std::string::npos) ts.emplace_back(n, ck.read(n));
    checkpoint::CommitInfo info;
    info.metadata = ck.metadata();
    checkpoint::save(broken_root, 5, ts, info);
  }
  e = error_of([&] { run_export({broken_root, "safetensors", out, "f32"}); });
  EXPECT_NE(e.find("lacks tensor model/"), std::string::npos) << e;
  EXPECT_NE(e.find(".1.mlp."), std::string::npos) << e;
  EXPECT_EQ(read_bytes(out / "marker"), "keep me");
}

INSTANTIATE_TEST_SUITE_P(Arch, HfFixture, ::testing::Values("gpt2", "llama"));

TEST(HfConfig, DefaultsOfTransformersApplyWhenKeysAreAbsent) {
  // save_pretrained omits fields equal to the class defaults.
  json m = modu_model_from_hf_config(json{{"model_type", "gpt2"}, {"n_layer", 2}}, "cfg.json");
  EXPECT_EQ(m["n_embd"], 768);
  EXPECT_EQ(m["block_size"], 1024);
  EXPECT_EQ(m["vocab_size"], 50257);
  EXPECT_EQ(m["norm_eps"], 1e-5);
  m = modu_model_from_hf_config(json{{"model_type", "llama"}, {"hidden_size", 64}, {"num_attention_heads", 4}},
                                "cfg.json");
  EXPECT_EQ(m["n_kv_head"], 4);
  EXPECT_EQ(m["norm_eps"], 1e-6);
  EXPECT_EQ(m["ffn_hidden"], 11008);
  std::string e = error_of([] {
    modu_model_from_hf_config(json{{"model_type", "llama"}, {"rope_scaling", {{"rope_type", "yarn"}}}}, "c.json");
  });
  EXPECT_NE(e.find("c.json: rope_scaling.rope_type \"yarn\""), std::string::npos) << e;
  e = error_of([] { modu_model_from_hf_config(json{{"n_layer", 2}}, "c.json"); });
  EXPECT_NE(e.find("c.json: no 'model_type'"), std::string::npos) << e;
}

}  // namespace
