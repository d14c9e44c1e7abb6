// export/hf_import.cpp — `modu import hf HF_DIR --out CKPT`: a Hugging Face GPT-2 or Llama folder
// (config.json + model.safetensors, or shards + model.safetensors.index.json, + tokenizer files)
// into a committed modu checkpoint at step 0 that `modu generate` samples and `modu train`
// fine-tunes (train.init_from). Mapping: export/hf_layout.h.
//
// Out:  CKPT/step_00000000/ (tensors "model/<modu name>" in f32, vocabulary rows padded with
//       zeros to model.pad_vocab_to; metadata.model as recipes/gpt/train.cpp's model_config_json
//       writes it; metadata.tokenizer = the absolute path of CKPT/tokenizer), CKPT/latest,
//       CKPT/tokenizer/ (modu's tokenizer files: encoder.json, vocab.bpe, modu-tokenizer.json).
// Invariants: everything is read and checked before anything is written; every HF tensor is
// either used or a known buffer (an unknown one is an error, not silently dropped); errors name
// the file and the tensor.
#include <fstream>
#include <iostream>
#include <set>

#include "checkpoint/checkpoint.h"
#include "core/check.h"
#include "core/ops/dispatch.h"
#include "data/tokenizers.h"
#include "export/export.h"
#include "export/hf_layout.h"
#include "export/safetensors_io.h"

namespace modu::exporting {

namespace {

json read_json_file(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  MODU_CHECK(in.good(), file.string(), ": cannot open");
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    MODU_CHECK(false, file.string(), ": not valid JSON: ", e.what());
  }
  return {};
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The HF folder's tensors: name -> the shard file holding it.
struct HfWeights {
  std::vector<SafetensorsFile> files;
  std::map<std::string, size_t> where;  // tensor -> index into files
  std::string describe;                 // for messages: the file or the index

  const SafetensorsFile& file_of(const std::string& name) const { return files[where.at(name)]; }
};

HfWeights open_weights(const fs::path& dir) {
  HfWeights w;
  const fs::path index = dir / "model.safetensors.index.json", single = dir / "model.safetensors";
  if (fs::exists(index)) {
    w.describe = index.string();
    json j = read_json_file(index);
    MODU_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(), index.string(),
               ": no \"weight_map\" object {tensor: file}");
    std::map<std::string, size_t> file_ids;
    for (const auto& [tensor, file] : j["weight_map"].items()) {
      MODU_CHECK(file.is_string(), index.string(), ": weight_map[\"", tensor, "\"] is not a file name");
      const std::string f = file.get<std::string>();
      const fs::path rel(f);
      MODU_CHECK(!f.empty() && rel.is_relative() && rel.filename() == rel, index.string(), ": weight_map[\"", tensor,
                 "\"] = \"", f, "\" is not a file name inside ", dir.string());
      auto it = file_ids.find(f);
      if (it == file_ids.end()) {
        MODU_CHECK(fs::exists(dir / rel), index.string(), ": shard ", (dir / rel).string(), " (holding '", tensor,
                   "') does not exist");
        it = file_ids.emplace(f, w.files.size()).first;
        w.files.push_back(SafetensorsFile::open(dir / rel));
      }
      MODU_CHECK(w.files[it->second].has(tensor), index.string(), " maps tensor '", tensor, "' to ",
                 (dir / rel).string(), ", which has no such tensor");
      w.where[tensor] = it->second;
    }
    return w;
  }
  MODU_CHECK(fs::exists(single), "import hf: ", dir.string(),
             " has neither model.safetensors nor model.safetensors.index.json (PyTorch .bin weights are not "
             "read: re-save them with save_pretrained(..., safe_serialization=True))");
  w.describe = single.string();
  w.files.push_back(SafetensorsFile::open(single));
  for (const SafetensorsFile::Entry& e : w.files[0].entries()) w.where[e.name] = 0;
  return w;
}

// The folder's byte-level BPE tokenizer, loaded by modu. vocab.json + merges.txt are read as they
// are; a tokenizer.json alone is unpacked into them first (in `scratch`).
std::optional<data::BpeTokenizer> load_hf_tokenizer(const fs::path& dir, const fs::path& scratch) {
  if (fs::exists(dir / "vocab.json") && fs::exists(dir / "merges.txt")) {
    fs::create_directories(scratch);
    fs::copy_file(dir / "vocab.json", scratch / "vocab.json", fs::copy_options::overwrite_existing);
    fs::copy_file(dir / "merges.txt", scratch / "merges.txt", fs::copy_options::overwrite_existing);
    return data::BpeTokenizer::load(scratch.string());
  }
  const fs::path tj = dir / "tokenizer.json";
  if (!fs::exists(tj)) return std::nullopt;
  json j = read_json_file(tj);
  const json* model = j.contains("model") ? &j["model"] : nullptr;
  MODU_CHECK(model && model->is_object() && model->value("type", std::string()) == "BPE" &&
                 j.value("pre_tokenizer", json()).dump().find("ByteLevel") != std::string::npos,
             tj.string(), ": not a byte-level BPE tokenizer (GPT-2 style); modu's tokenizer cannot express it");
  MODU_CHECK(model->contains("vocab") && (*model)["vocab"].is_object() && model->contains("merges") &&
                 (*model)["merges"].is_array(),
             tj.string(), ": model.vocab / model.merges missing");
  json vocab = (*model)["vocab"];
  if (j.contains("added_tokens") && j["added_tokens"].is_array())
    for (const json& t : j["added_tokens"])
      if (t.contains("content") && t.contains("id")) vocab[t["content"].get<std::string>()] = t["id"];
  std::string merges = "#version: 0.2\n";
  for (const json& m : (*model)["merges"]) {
    if (m.is_string()) {
      merges += m.get<std::string>() + "\n";
    } else {
      MODU_CHECK(m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string(), tj.string(),
                 ": a merge is neither \"a b\" nor [\"a\", \"b\"]: ", m.dump());
      merges += m[0].get<std::string>() + " " + m[1].get<std::string>() + "\n";
    }
  }
  fs::create_directories(scratch);
  std::ofstream(scratch / "vocab.json", std::ios::binary) << vocab.dump();
  std::ofstream(scratch / "merges.txt", std::ios::binary) << merges;
  return data::BpeTokenizer::load(scratch.string());
}

}  // namespace

int run_import_hf(const ImportHfOptions& opts) {
  const fs::path dir = opts.hf_dir;
  MODU_CHECK(fs::is_directory(dir), "import hf: ", dir.string(),
             " is not a folder (expected a Hugging Face model folder: config.json + model.safetensors)");
  MODU_CHECK(!opts.out_dir.empty(), "import hf: --out is empty");
  const fs::path out = fs::absolute(opts.out_dir).lexically_normal();
  MODU_CHECK(!fs::exists(out / "latest") && !fs::exists(checkpoint::step_dir(out, 0)), "import hf: ", out.string(),
             " already holds a checkpoint; pass a new --out folder (nothing is overwritten)");
  const fs::path config_path = dir / "config.json";
  MODU_CHECK(fs::exists(config_path), "import hf: ", dir.string(), " has no config.json");
  const json hf = read_json_file(config_path);
  const json model = modu_model_from_hf_config(hf, config_path);
  const std::string arch = model["arch"].get<std::string>();
  const bool llama = arch == "llama";
  const bool tied_llama = llama && hf.value("tie_word_embeddings", false) == true;

  // ---- weights: every parameter found, shape-checked, laid out as modu holds it
  HfWeights w = open_weights(dir);
  auto lookup = [&](const std::string& name) -> std::optional<std::string> {
    if (w.where.count(name)) return name;
    const std::string prefix = llama ? "model." : "transformer.";
    if (name.rfind(prefix, 0) == 0 && w.where.count(name.substr(prefix.size()))) return name.substr(prefix.size());
    return std::nullopt;
  };
  const int64_t V = model["vocab_size"].get<int64_t>(), pad = model["pad_vocab_to"].get<int64_t>();
  const int64_t Vp = (V + pad - 1) / pad * pad;
  NoGradGuard no_grad;
  std::vector<checkpoint::ShardTensor> tensors;
  std::set<std::string> used;
  std::map<std::string, Tensor> by_modu;
  for (const HfParam& p : hf_param_table(model)) {
    std::optional<std::string> name = lookup(p.hf);
    if (!name && tied_llama && p.modu == "lm_head.weight") name = lookup("model.embed_tokens.weight");
    MODU_CHECK(name.has_value(), "import hf: ", w.describe, " lacks tensor '", p.hf, "' (modu's ", p.modu, ") that ",
               config_path.string(), " implies");
    const SafetensorsFile& f = w.file_of(*name);
    const SafetensorsFile::Entry& e = f.entry(*name);
    Dims want = p.modu_shape;
    if (p.transpose) std::swap(want[0], want[1]);
    MODU_CHECK(e.shape == want, "import hf: ", f.path().string(), ": tensor '", *name, "' has shape ", e.shape.str(),
               " but ", config_path.string(), " implies ", want.str());
    Tensor t = f.read(*name).to(DType::F32);
    if (p.transpose) t = t.t();
    t = t.contiguous();
    if (p.vocab_rows && Vp > V) {
      Tensor padded = Tensor::zeros(Dims{Vp, t.size(1)});
      padded.narrow(0, 0, V).copy_(t);
      t = padded;
    }
    used.insert(*name);
    by_modu[p.modu] = t;
    tensors.emplace_back("model/" + p.modu, t);
  }
  for (const auto& [name, idx] : w.where) {
    if (used.count(name)) continue;
    // Buffers, not parameters: GPT-2's causal masks, old Llama rotary tables.
    if (ends_with(name, ".attn.bias") || ends_with(name, ".attn.masked_bias") || ends_with(name, "rotary_emb.inv_freq"))
      continue;
    if (!llama && name == "lm_head.weight") {  // tied: must equal wte
      Tensor head = w.files[idx].read(name).to(DType::F32);
      Tensor wte = by_modu.at("wte.weight").narrow(0, 0, V).contiguous();
      const bool same = head.shape() == wte.shape() &&
                        std::equal(head.data<float>(), head.data<float>() + head.numel(), wte.data<float>());
      MODU_CHECK(same, "import hf: ", w.files[idx].path().string(),
                 ": lm_head.weight differs from transformer.wte.weight; modu's GPT-2 ties them");
      continue;
    }
    MODU_CHECK(false, "import hf: ", w.files[idx].path().string(), ": tensor '", name, "' has no place in modu's ",
               arch, " model (", config_path.string(), " describes no such parameter)");
  }

  // ---- tokenizer
  const fs::path tok_dir = out / "tokenizer";
  const fs::path scratch = out / ".tokenizer-import";
  std::error_code ec;
  fs::remove_all(scratch, ec);
  std::string tokenizer_spec;
  try {
    std::optional<data::BpeTokenizer> tok = load_hf_tokenizer(dir, scratch);
    if (tok) {
      MODU_CHECK(tok->vocab_size() <= V, "import hf: the tokenizer in ", dir.string(), " has ", tok->vocab_size(),
                 " ids but ", config_path.string(), " has vocab_size ", V);
      if (tok->vocab_size() < V)
        std::cerr << "import hf: note: the tokenizer has " << tok->vocab_size() << " ids, the model " << V
                  << " rows (`modu export` needs them equal)\n";
      fs::remove_all(tok_dir, ec);
      tok->save(tok_dir.string());
      tokenizer_spec = tok_dir.string();
    } else {
      MODU_CHECK(V == 50257, "import hf: ", dir.string(),
                 " has no tokenizer (vocab.json + merges.txt, or tokenizer.json); add GPT-2-style byte-level BPE "
                 "tokenizer files");
      std::cerr << "import hf: note: no tokenizer files in " << dir.string()
                << "; the 50257-row model gets GPT-2's tokenizer (\"gpt2\")\n";
      tokenizer_spec = "gpt2";
    }
  } catch (...) {
    fs::remove_all(scratch, ec);
    throw;
  }
  fs::remove_all(scratch, ec);

  // ---- the checkpoint
  checkpoint::CommitInfo info;
  info.metadata = json{{"step", 0},
                       {"model", model},
                       {"tokenizer", tokenizer_spec},
                       {"imported_from", {{"format", "hf"}, {"dir", fs::absolute(dir).lexically_normal().string()}}}};
  info.layout = json{{"world_size", 1}, {"dp", 1}, {"tp", 1}, {"pp", 1}};
  const fs::path step = checkpoint::save(out, 0, tensors, info);
  std::cerr << "import hf: wrote " << step.string() << " (" << arch << ", " << tensors.size() << " tensors, vocabulary "
            << V << " padded to " << Vp << ") from " << dir.string() << "; tokenizer " << tokenizer_spec << "\n";
  return 0;
}

}  // namespace modu::exporting
