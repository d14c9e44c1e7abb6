// tests/export/onnx_reference_tool.cpp — modu's side of the ONNX Runtime comparison
// (tests/export/onnx_runtime_check.py), test-only:
//
//   modu_onnx_reference_tool make-checkpoint --arch gpt2|llama --out ROOT [--seed S]
//       a tiny GPT with GPT-2's vocabulary (50257, padded to 128), every parameter random (the init
//       scaled up, plus noise on the norm weights and biases so each tensor matters), saved as the
//       committed checkpoint ROOT/step_00000005 with the metadata keys `modu train` writes.
//   modu_onnx_reference_tool logits --checkpoint ROOT --tokens "1,2,3;4,5,6" --out FILE [--round-f16]
//       loads the checkpoint into recipes/gpt's GPT, runs forward (eval, f32, CPU) on the (B, T) token
//       rows, writes logits (B, T, V) over the real vocabulary as raw little-endian float32 to FILE.
//       --round-f16: first rounds every weight to f16 and back (what `--dtype f16` exports hold).
//
// Exit status 0 on success; errors (modu::Error) are printed and exit 1.
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "core/check.h"
#include "core/ops/dispatch.h"
#include "core/ops/ops.h"
#include "nn/module.h"
#include "recipes/gpt/model.h"

namespace {

using modu::Dims;
using modu::DType;
using modu::Tensor;
using json = nlohmann::json;
namespace fs = std::filesystem;

std::string arg(int argc, char** argv, const std::string& flag, const std::string& fallback = "") {
  for (int i = 2; i + 1 < argc; ++i)
    if (argv[i] == flag) return argv[i + 1];
  MODU_CHECK(!fallback.empty(), "onnx_reference_tool: missing ", flag);
  return fallback;
}

bool flag(int argc, char** argv, const std::string& name) {
  for (int i = 2; i < argc; ++i)
    if (argv[i] == name) return true;
  return false;
}

int make_checkpoint(int argc, char** argv) {
  modu::gpt::GptConfig c;
  c.arch = arg(argc, argv, "--arch");
  c.vocab_size = 50257;  // GPT-2's tokenizer (the checkpoint names "gpt2")
  c.pad_vocab_to = 128;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_kv_head = c.arch == "llama" ? 2 : 0;  // llama: grouped-query attention, 2 query heads per kv head
  c.n_embd = 64;
  c.block_size = 64;
  c.ffn_hidden = c.arch == "llama" ? 96 : 0;
  c.dropout = 0.0;
  c.rope_theta = 10000.0;
  c.norm_eps = 1e-5;
  const uint64_t seed = std::stoull(arg(argc, argv, "--seed", "1"));
  modu::gpt::GPT model(c);
  model.init_weights(seed);
  std::vector<modu::checkpoint::ShardTensor> tensors;
  {
    modu::NoGradGuard no_grad;
    for (const modu::nn::ParamRef& p : model.parameters()) {
      // Larger weights than the init's 0.02 so a wrong graph shows in the logits, and non-trivial
      // norm weights / biases.
      Tensor noise = modu::nn::init_normal(p.tensor->shape(), 0.05, seed + 1, p.name);
      Tensor scaled = modu::add(modu::mul_scalar(*p.tensor, 2.0), noise);
      p.tensor->copy_(scaled);
      tensors.emplace_back("model/" + p.name, *p.tensor);
    }
  }
  modu::checkpoint::CommitInfo info;
  info.metadata = json{{"step", 5}, {"model", modu::gpt::config_to_json(c)}, {"tokenizer", "gpt2"}};
  info.layout = json{{"world_size", 1}, {"dp", 1}, {"tp", 1}, {"pp", 1}};
  modu::checkpoint::save(arg(argc, argv, "--out"), 5, tensors, info);
  return 0;
}

int logits(int argc, char** argv) {
  modu::checkpoint::Checkpoint ck = modu::checkpoint::Checkpoint::open(arg(argc, argv, "--checkpoint"));
  modu::gpt::GptConfig c = modu::gpt::config_from_json(ck.metadata().at("model"));
  c.dropout = 0;
  modu::gpt::GPT model(c);
  modu::NoGradGuard no_grad;
  for (const modu::nn::ParamRef& p : model.parameters()) ck.read("model/" + p.name, *p.tensor);
  model.set_training(false);
  if (flag(argc, argv, "--round-f16")) {  // what an f16 export holds: every weight rounded to half
    for (const modu::nn::ParamRef& p : model.parameters()) p.tensor->copy_(p.tensor->to(DType::F16).to(DType::F32));
  }

  std::vector<int64_t> ids;
  int64_t rows = 0, cols = -1;
  std::stringstream all(arg(argc, argv, "--tokens"));
  for (std::string row; std::getline(all, row, ';'); ++rows) {
    std::stringstream in(row);
    int64_t n = 0;
    for (std::string tok; std::getline(in, tok, ','); ++n) ids.push_back(std::stoll(tok));
    MODU_CHECK(cols < 0 || cols == n, "onnx_reference_tool: token rows differ in length");
    cols = n;
  }
  Tensor idx = Tensor::from_vector(ids, Dims{rows, cols}, DType::I64);
  Tensor out = model.forward(idx).narrow(2, 0, c.vocab_size).contiguous();  // (B, T, V)
  std::ofstream f(arg(argc, argv, "--out"), std::ios::binary | std::ios::trunc);
  f.write(static_cast<const char*>(out.data_ptr()), static_cast<std::streamsize>(out.nbytes()));
  MODU_CHECK(f.good(), "onnx_reference_tool: writing ", arg(argc, argv, "--out"), " failed");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::string cmd = argc > 1 ? argv[1] : "";
    if (cmd == "make-checkpoint") return make_checkpoint(argc, argv);
    if (cmd == "logits") return logits(argc, argv);
    std::cerr << "usage: modu_onnx_reference_tool make-checkpoint|logits ... (see the file's header)\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "onnx_reference_tool: " << e.what() << "\n";
    return 1;
  }
}
