// tests/export/logits_tool.cpp — test-only: modu's side of the engine comparisons. Loads a
// checkpoint (step folder, checkpoints/ root or run folder) the way `modu generate` does and
// prints one JSON object on stdout:
//   {"vocab_size": V, "tokens": [...], "logits": [[V floats] x T], "greedy": [N ids]}
// logits: one forward over the whole token list, real vocabulary only (padding columns dropped);
// greedy: gpt::sample with temperature 0 (what `modu generate --temperature 0` does) after the tokens.
// Usage: modu_logits_tool CHECKPOINT --tokens 1,2,3 [--greedy N] [--no-logits]
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "core/ops/dispatch.h"
#include "recipes/gpt/model.h"
#include "recipes/gpt/sampling.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

int main(int argc, char** argv) {
  try {
    std::string path, token_list;
    int64_t greedy = 0;
    bool logits_wanted = true;
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "--tokens" && i + 1 < argc)
        token_list = argv[++i];
      else if (a == "--greedy" && i + 1 < argc)
        greedy = std::stoll(argv[++i]);
      else if (a == "--no-logits")
        logits_wanted = false;
      else if (path.empty())
        path = a;
      else
        throw std::runtime_error("unexpected argument " + a);
    }
    if (path.empty() || token_list.empty())
      throw std::runtime_error("usage: modu_logits_tool CHECKPOINT --tokens 1,2,3 [--greedy N] [--no-logits]");
    std::vector<int32_t> tokens;
    std::stringstream ss(token_list);
    for (std::string t; std::getline(ss, t, ',');) tokens.push_back(static_cast<int32_t>(std::stol(t)));

    fs::path p = path;
    if (fs::exists(p / "checkpoints" / "latest")) p /= "checkpoints";
    modu::checkpoint::Checkpoint ck = modu::checkpoint::Checkpoint::open(p);
    const json& m = ck.metadata().at("model");
    modu::gpt::GptConfig c = modu::gpt::config_from_json(m);
    c.dropout = 0;
    modu::gpt::GPT model(c);
    modu::NoGradGuard no_grad;
    for (const modu::nn::ParamRef& prm : model.parameters()) ck.read("model/" + prm.name, *prm.tensor);
    model.set_training(false);

    json out{{"vocab_size", c.vocab_size}, {"tokens", tokens}};
    if (logits_wanted) {
      std::vector<int64_t> ids(tokens.begin(), tokens.end());
      modu::Tensor idx = modu::Tensor::from_vector(ids, modu::Dims{1, static_cast<int64_t>(ids.size())});
      modu::Tensor logits = model.forward(idx).select(0, 0).slice(1, 0, c.vocab_size).contiguous();  // (T, V)
      std::vector<float> flat = logits.to_vector<float>();
      json rows = json::array();
      for (size_t t = 0; t < tokens.size(); ++t)
        rows.push_back(std::vector<float>(flat.begin() + static_cast<std::ptrdiff_t>(t * c.vocab_size),
                                          flat.begin() + static_cast<std::ptrdiff_t>((t + 1) * c.vocab_size)));
      out["logits"] = rows;
    }
    if (greedy > 0) {
      modu::gpt::SamplingOptions so;
      so.max_new_tokens = greedy;
      so.temperature = 0;
      out["greedy"] = modu::gpt::sample(model, tokens, so);
    }
    std::cout << out.dump() << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "modu_logits_tool: error: " << e.what() << "\n";
    return 1;
  }
}
