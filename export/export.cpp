// export/export.cpp — the format-independent half of `modu export`: reading a checkpoint into an ExportSource
// (gather, f32, padding stripped) and the staged, all-or-nothing write of DIR. Invariant: DIR is replaced only after
// the writer returned; on any failure the staging folder is removed and an existing DIR is untouched.
#include "export/export.h"

#include <unistd.h>

#include <iostream>

#include "checkpoint/checkpoint.h"
#include "core/check.h"
#include "data/tokenizers.h"

namespace modu::exporting {

namespace {

// A step folder, a checkpoint root with `latest`, or a run folder with checkpoints/latest.
fs::path resolve_step_dir(const fs::path& given) {
  fs::path p = given;
  if (fs::exists(p / "checkpoints" / "latest")) p /= "checkpoints";
  if (fs::exists(p / "latest")) {
    std::optional<int64_t> step = checkpoint::latest_step(p);
    MODU_CHECK(step.has_value(), "export: ", (p / "latest").string(),
               " names no committed checkpoint; pass a step_NNNNNNNN folder");
    p = checkpoint::step_dir(p, *step);
  }
  return p;
}

}  // namespace

ExportSource load_export_source(const fs::path& checkpoint_dir) {
  MODU_CHECK(fs::exists(checkpoint_dir), "export: ", checkpoint_dir.string(),
             " does not exist; pass a checkpoint folder (a run's ",
             "out_dir, its checkpoints/ folder, or a step_NNNNNNNN folder)");
  ExportSource src;
  src.checkpoint_dir = resolve_step_dir(checkpoint_dir);
  checkpoint::Checkpoint ck = checkpoint::Checkpoint::open(src.checkpoint_dir);
  const json& meta = ck.metadata();
  MODU_CHECK(meta.contains("model") && meta["model"].is_object(),
             "export: ", (src.checkpoint_dir / "manifest.json").string(),
             " has no metadata.model; only model checkpoints written by `modu "
             "train` or ",
             "`modu import` can be exported");
  src.model = meta["model"];
  src.arch = src.model.at("arch").get<std::string>();
  src.vocab_size = src.model.at("vocab_size").get<int64_t>();
  src.step = ck.step();
  src.tokenizer_spec = meta.value("tokenizer", std::string("gpt2"));
  // Vocabulary-sized tensors: the first dimension is the padded vocabulary; keep the real rows.
  for (const std::string& full : ck.tensor_names()) {
    if (full.rfind("model/", 0) != 0) continue;
    std::string name = full.substr(6);
    Tensor t = ck.read(full).to(DType::F32).contiguous();
    const bool vocab_rows = name == "wte.weight" || name == "embed_tokens.weight" || name == "lm_head.weight";
    if (vocab_rows && t.shape()[0] > src.vocab_size) t = t.narrow(0, 0, src.vocab_size).contiguous();
    src.tensors.emplace(std::move(name), std::move(t));
  }
  MODU_CHECK(!src.tensors.empty(), "export: ", src.checkpoint_dir.string(), " holds no model/ tensors");
  src.tokenizer = data::load_tokenizer(src.tokenizer_spec);
  MODU_CHECK(src.tokenizer->vocab_size() == src.vocab_size, "export: the tokenizer '", src.tokenizer_spec, "' has ",
             src.tokenizer->vocab_size(), " ids but the model's vocab_size is ", src.vocab_size);
  return src;
}

int run_export(const ExportOptions& opts) {
  static const char* kFormats[] = {"safetensors", "gguf", "onnx"};
  bool known = false;
  for (const char* f : kFormats) known |= opts.format == f;
  MODU_CHECK(known, "export: unknown --format '", opts.format, "'; use safetensors, gguf or onnx");
  MODU_CHECK(opts.dtype == "f32" || opts.dtype == "f16" || opts.dtype == "bf16" || opts.dtype == "q8_0",
             "export: unknown --dtype '", opts.dtype, "'; use f32, f16, bf16 or q8_0");
  MODU_CHECK(!opts.out_dir.empty(), "export: --out is empty");

  ExportSource src = load_export_source(opts.checkpoint_dir);

  const fs::path out = fs::absolute(opts.out_dir).lexically_normal();
  const fs::path parent = out.has_filename() ? out.parent_path() : out.parent_path().parent_path();
  const std::string base = out.has_filename() ? out.filename().string() : out.parent_path().filename().string();
  fs::create_directories(parent);
  const fs::path staging = parent / ("." + base + ".export-tmp-" + std::to_string(::getpid()));
  const fs::path old = parent / ("." + base + ".export-old-" + std::to_string(::getpid()));
  fs::remove_all(staging);
  fs::create_directories(staging);
  try {
    if (opts.format == "safetensors") write_safetensors_export(src, staging, opts.dtype);
    if (opts.format == "gguf") write_gguf_export(src, staging, opts.dtype);
    if (opts.format == "onnx") write_onnx_export(src, staging, opts.dtype);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(staging, ec);
    throw;
  }
  // Swap: an existing DIR moves aside, the staging folder takes its name, then the old one goes.
  const fs::path target = parent / base;
  const bool had_old = fs::exists(target);
  if (had_old) fs::rename(target, old);
  fs::rename(staging, target);
  if (had_old) fs::remove_all(old);
  std::cerr << "export: wrote " << opts.format << " (" << opts.dtype << ") of " << src.checkpoint_dir.string()
            << " (step " << src.step << ") to " << target.string() << "\n";
  return 0;
}

}  // namespace modu::exporting
