// export/safetensors.cpp — `modu export --format safetensors`: a Hugging Face transformers folder
// (model.safetensors, config.json, generation_config.json, tokenizer files) that
// AutoModelForCausalLM and AutoTokenizer load offline. Names, layouts and config fields:
// export/hf_layout.h; the file format: export/safetensors_io.h.
//
// Invariants: every modu tensor is accounted for (an unmapped or missing one is an error, never
// silently dropped); output is byte-identical for the same source and dtype.
#include <fstream>
#include <set>

#include "core/check.h"
#include "core/ops/dispatch.h"
#include "export/export.h"
#include "export/hf_layout.h"
#include "export/safetensors_io.h"

namespace modu::exporting {

void write_safetensors_export(const ExportSource& src, const fs::path& dir, const std::string& dtype) {
  DType out_dtype = DType::F32;
  std::string torch_dtype = "float32";
  if (dtype == "f16") {
    out_dtype = DType::F16;
    torch_dtype = "float16";
  } else if (dtype == "bf16") {
    out_dtype = DType::BF16;
    torch_dtype = "bfloat16";
  } else {
    MODU_CHECK(dtype == "f32", "export: --dtype ", dtype,
               " is not a safetensors dtype for transformers; use f32, f16 or bf16 (q8_0 is GGUF's)");
  }
  const std::string ck = src.checkpoint_dir.string();
  NoGradGuard no_grad;
  std::vector<SafetensorsTensor> tensors;
  std::set<std::string> used;
  for (const HfParam& p : hf_param_table(src.model)) {
    auto it = src.tensors.find(p.modu);
    MODU_CHECK(it != src.tensors.end(), "export: ", ck, " lacks tensor model/", p.modu, " that a ", src.arch,
               " model of this config has");
    MODU_CHECK(it->second.shape() == p.modu_shape, "export: ", ck, ": tensor model/", p.modu, " has shape ",
               it->second.shape().str(), " but the model config needs ", p.modu_shape.str());
    Tensor t = p.transpose ? it->second.t() : it->second;
    tensors.push_back({p.hf, t.to(out_dtype).contiguous()});
    used.insert(p.modu);
  }
  for (const auto& [name, t] : src.tensors)
    MODU_CHECK(used.count(name), "export: ", ck, ": tensor model/", name, " has no place in the transformers model (",
               src.arch, "); cannot export it");
  write_safetensors(dir / "model.safetensors", tensors, {{"format", "pt"}});

  const data::BpeTokenizer& tok = *src.tokenizer;
  auto write_json = [&](const char* name, const json& j) {
    std::ofstream out(dir / name, std::ios::binary | std::ios::trunc);
    out << j.dump(2) << "\n";
    out.flush();
    MODU_CHECK(out.good(), (dir / name).string(), ": write failed");
  };
  write_json("config.json", hf_config_from_modu(src.model, tok, torch_dtype));
  write_json("generation_config.json", hf_generation_config(tok));
  write_hf_tokenizer(tok, dir, src.model.at("block_size").get<int64_t>());
}

}  // namespace modu::exporting
