// tests/recipes/test_gpt_fidelity.cpp — modu's GPT family (recipes/gpt/model.*) against PyTorch.
//
// The fixtures tests/fixtures/gpt_{gpt2,llama}.{json,bin} are written by tests/fixtures/gen_gpt_fixtures.py
// (pinned torch, fp32; format in tests/fixtures/README.md). For each architecture this test builds modu's
// GPT with the fixture's config, loads the fixture's weights by parameter name, and compares in fp32:
//   the logits (B, T, Vp) and the loss; every parameter gradient; the loss of each of 10 AdamW steps
//   (lr constant, no clipping, same batch each step) and every parameter after them.
// MODU_GPT_FIXTURE_DIR, when set, names another folder holding the pair (e.g. a freshly regenerated one).
// Error measure: max|modu - torch| / max|torch| per tensor (|a - b| / |b| for a scalar); tolerance 1e-5.
// Each measured error is printed beside torch's own fp32-vs-fp64 error (recorded in the fixture).
//
// Invariants checked besides the tolerances: modu's parameter names, shapes and weight-decay flags equal
// the fixture's exactly (nothing missing, nothing extra); the gradient and the final value of the
// vocabulary's padding rows are exactly zero.
//
// The one stated exception: the key third of GPT-2's attn.c_attn.bias. Its gradient is zero in exact
// arithmetic (q·b_k adds the same constant to every score of a query, which softmax ignores), so both
// frameworks produce rounding noise there (~1e-9 against gradients ~1e-1; checked to be below 1e-6
// relative), and AdamW normalises that noise into updates of up to lr per step with arbitrary signs:
// torch fp32 itself differs from torch fp64 by ~1e-2 relative on that slice after 10 steps. Its final
// values are therefore only checked to have moved by at most ~steps * lr; the query and value thirds are
// compared at 1e-5 like everything else.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "core/ops/dispatch.h"
#include "core/ops/ops.h"
#include "optim/optim.h"
#include "recipes/gpt/model.h"

namespace {

using modu::DType;
using modu::Dims;
using modu::Tensor;
using json = nlohmann::json;

constexpr double kTol = 1e-5;

// ---- fixture loading ----------------------------------------------------------------------------------

uint64_t fnv1a64(const std::vector<char>& data) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (char c : data) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001B3ull;
  }
  return h;
}

struct GptFixture {
  json header;
  std::vector<char> blob;
  std::map<std::string, json> index;  // tensor name -> {dtype, shape, offset, nbytes}

  bool has(const std::string& name) const { return index.count(name) != 0; }

  Dims shape(const std::string& name) const {
    std::vector<int64_t> s = index.at(name).at("shape").get<std::vector<int64_t>>();
    return Dims(std::span<const int64_t>(s));
  }

  Tensor tensor(const std::string& name) const {
    auto it = index.find(name);
    if (it == index.end()) throw std::runtime_error("fixture has no tensor '" + name + "'");
    const json& e = it->second;
    DType dt = e.at("dtype") == "f32" ? DType::F32 : DType::I64;
    return Tensor::from_blob_copy(blob.data() + e.at("offset").get<size_t>(), shape(name), dt);
  }
};

// Loads gpt_<arch>.{json,bin}; checks format, version, blob size, checksum and every tensor's extent.
GptFixture load_fixture(const std::string& arch) {
  GptFixture f;
  const char* env = std::getenv("MODU_GPT_FIXTURE_DIR");  // to try a regenerated pair without replacing it
  std::string dir = env && *env ? std::string(env) + "/" : std::string(MODU_SOURCE_DIR) + "/tests/fixtures/";
  std::string jpath = dir + "gpt_" + arch + ".json";
  std::ifstream js(jpath);
  if (!js) throw std::runtime_error("cannot open " + jpath + " (run tests/fixtures/gen_gpt_fixtures.py)");
  js >> f.header;
  if (f.header.value("format", "") != "modu-gpt-fixture" || f.header.value("version", 0) != 1)
    throw std::runtime_error(jpath + ": expected format modu-gpt-fixture version 1, got " +
                             f.header.value("format", "?") + " version " +
                             std::to_string(f.header.value("version", 0)));
  std::string bpath = dir + f.header.at("blob").at("file").get<std::string>();
  std::ifstream bs(bpath, std::ios::binary);
  if (!bs) throw std::runtime_error("cannot open " + bpath);
  f.blob.assign(std::istreambuf_iterator<char>(bs), std::istreambuf_iterator<char>());
  size_t want = f.header.at("blob").at("nbytes").get<size_t>();
  if (f.blob.size() != want)
    throw std::runtime_error(bpath + ": " + std::to_string(f.blob.size()) + " bytes, header says " +
                             std::to_string(want));
  char sum[17];
  std::snprintf(sum, sizeof sum, "%016llx", static_cast<unsigned long long>(fnv1a64(f.blob)));
  if (f.header.at("blob").at("fnv1a64").get<std::string>() != sum)
    throw std::runtime_error(bpath + ": checksum " + sum + " differs from the header's (stale .bin?)");
  for (const json& e : f.header.at("tensors")) {
    std::string name = e.at("name");
    std::string dt = e.at("dtype");
    if (dt != "f32" && dt != "i64") throw std::runtime_error(name + ": unknown dtype " + dt);
    int64_t n = 1;
    for (int64_t d : e.at("shape").get<std::vector<int64_t>>()) n *= d;
    size_t nbytes = static_cast<size_t>(n) * (dt == "f32" ? 4 : 8), off = e.at("offset");
    if (e.at("nbytes").get<size_t>() != nbytes || off + nbytes > f.blob.size())
      throw std::runtime_error(name + ": extent does not fit its shape or the blob");
    f.index[name] = e;
  }
  return f;
}

modu::gpt::GptConfig config_of(const json& c) {
  modu::gpt::GptConfig g;
  g.arch = c.at("arch");
  g.vocab_size = c.at("vocab_size");
  g.pad_vocab_to = c.at("pad_vocab_to");
  g.n_layer = c.at("n_layer");
  g.n_head = c.at("n_head");
  g.n_kv_head = c.at("n_kv_head");
  g.n_embd = c.at("n_embd");
  g.block_size = c.at("block_size");
  g.ffn_hidden = c.at("ffn_hidden");
  g.dropout = c.at("dropout");
  g.rope_theta = c.at("rope_theta");
  g.norm_eps = c.at("norm_eps");
  return g;
}

// ---- measures -----------------------------------------------------------------------------------------

// max|a - b| / max|b| (max|a - b| when b is all zero).
double rel_err(const Tensor& a, const Tensor& b) {
  std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  EXPECT_EQ(x.size(), y.size());
  double diff = 0, scale = 0;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
    diff = std::max(diff, std::abs(x[i] - y[i]));
    scale = std::max(scale, std::abs(y[i]));
  }
  return scale > 0 ? diff / scale : diff;
}

double max_abs(const Tensor& a) {
  double m = 0;
  for (double v : a.to_vector<double>()) m = std::max(m, std::abs(v));
  return m;
}

// MODU_TEST_DEVICE (e.g. "cuda") runs the same comparison on another device (tests/gpu/run.sh).
modu::Device test_device() {
  const char* env = std::getenv("MODU_TEST_DEVICE");
  return env && *env ? modu::parse_device(env) : modu::Device::cpu();
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The key slice [C, 2C) of GPT-2's fused attn.c_attn.bias (see the header comment).
bool is_fused_qkv_bias(const modu::gpt::GptConfig& c, const std::string& name) {
  return !c.is_llama() && ends_with(name, "attn.c_attn.bias");
}

// One line of the report: "<arch> <quantity> modu-vs-torch32 <e> (torch32-vs-torch64 <r>)".
void report(const std::string& arch, const std::string& what, double err, double torch_ref) {
  std::printf("[%s] %-44s modu vs torch fp32 %.3e   (torch fp32 vs fp64 %.3e)%s\n", arch.c_str(), what.c_str(), err,
              torch_ref, err <= kTol ? "" : "   <-- over 1e-5");
}

// ---- the test -----------------------------------------------------------------------------------------

void check_fidelity(const std::string& arch) {
  GptFixture fx = load_fixture(arch);
  const json& ref = fx.header.at("torch_fp32_vs_fp64");
  modu::gpt::GptConfig cfg = config_of(fx.header.at("config"));
  modu::gpt::GPT model(cfg);
  const modu::Device dev = test_device();
  model.to(dev);
  std::printf("[%s] device %s\n", arch.c_str(), dev.str().c_str());
  model.set_training(true);  // dropout is 0: training mode changes nothing but is what training runs
  std::vector<modu::nn::ParamRef> params = model.parameters();
  int64_t V = cfg.vocab_size, Vp = cfg.padded_vocab(), C = cfg.n_embd;

  // Names, shapes and decay flags: exactly the fixture's set.
  std::map<std::string, json> fparams;
  for (const json& p : fx.header.at("params")) fparams[p.at("name")] = p;
  std::set<std::string> seen;
  for (const auto& p : params) {
    seen.insert(p.name);
    auto it = fparams.find(p.name);
    ASSERT_NE(it, fparams.end()) << arch << ": modu parameter '" << p.name << "' is not in the fixture";
    ASSERT_TRUE(fx.has("param/" + p.name)) << "fixture lacks param/" << p.name;
    ASSERT_EQ(p.tensor->shape(), fx.shape("param/" + p.name)) << arch << ": shape of " << p.name;
    EXPECT_EQ(p.decay, it->second.at("decay").get<bool>()) << arch << ": weight-decay flag of " << p.name;
    EXPECT_EQ(p.tensor->dtype(), DType::F32) << p.name;
  }
  for (const auto& [name, _] : fparams)
    ASSERT_TRUE(seen.count(name)) << arch << ": fixture parameter '" << name << "' is not in modu's model";

  auto load_weights = [&] {
    modu::NoGradGuard no_grad;
    for (const auto& p : params) p.tensor->copy_(fx.tensor("param/" + p.name).to(dev));
  };
  load_weights();
  Tensor tokens = fx.tensor("tokens"), targets = fx.tensor("targets");

  // ---- forward
  Tensor logits = model.forward(tokens);
  Tensor want_logits = fx.tensor("logits");
  ASSERT_EQ(logits.shape(), want_logits.shape());
  double e_logits = rel_err(logits, want_logits);
  report(arch, "logits", e_logits, ref.at("logits"));
  EXPECT_LE(e_logits, kTol) << arch << " logits";

  Tensor loss = model.loss(logits, targets);
  double want_loss = fx.header.at("loss");
  double e_loss = std::abs(loss.item() - want_loss) / std::abs(want_loss);
  report(arch, "loss", e_loss, ref.at("loss"));
  EXPECT_LE(e_loss, kTol) << arch << " loss " << loss.item() << " vs torch " << want_loss;

  // ---- backward
  loss.backward();
  double worst = 0;
  std::string worst_name;
  for (const auto& p : params) {
    Tensor g = p.tensor->grad();
    ASSERT_TRUE(g.defined()) << arch << ": no gradient for " << p.name;
    double e = rel_err(g, fx.tensor("grad/" + p.name));
    report(arch, "grad " + p.name, e, ref.at("grads").at(p.name));
    EXPECT_LE(e, kTol) << arch << " gradient of " << p.name;
    if (e > worst) worst = e, worst_name = p.name;
    if (is_fused_qkv_bias(cfg, p.name)) {  // the key third's gradient is zero in exact arithmetic
      double k = max_abs(g.narrow(0, C, C)), all = max_abs(g);
      std::printf("[%s] %-44s max|g_k| / max|g| = %.3e (exactly 0 in exact arithmetic)\n", arch.c_str(),
                  (p.name + " [key third]").c_str(), k / all);
      EXPECT_LE(k, 1e-6 * all) << p.name << ": key-bias gradient should be rounding noise";
    }
    if (p.name == "wte.weight" || p.name == "embed_tokens.weight" || p.name == "lm_head.weight") {
      EXPECT_EQ(max_abs(g.narrow(0, V, Vp - V)), 0.0) << p.name << ": padding rows got a gradient";
    }
  }
  std::printf("[%s] worst gradient: %.3e (%s)\n", arch.c_str(), worst, worst_name.c_str());

  // ---- 10 AdamW steps on the same batch, from the fixture's weights
  const json& o = fx.header.at("optim");
  ASSERT_EQ(o.at("lr_schedule"), "constant");
  ASSERT_EQ(o.at("grad_clip").get<double>(), 0.0);
  modu::optim::AdamWConfig ocfg;
  ocfg.lr = o.at("lr");
  ocfg.beta1 = o.at("beta1");
  ocfg.beta2 = o.at("beta2");
  ocfg.eps = o.at("eps");
  ocfg.weight_decay = o.at("weight_decay");
  load_weights();
  model.zero_grad();
  modu::optim::AdamW opt(params, ocfg);
  std::vector<double> want_losses = fx.header.at("losses").get<std::vector<double>>();
  int64_t steps = fx.header.at("steps");
  ASSERT_EQ(static_cast<int64_t>(want_losses.size()), steps);
  double worst_step = 0;
  for (int64_t s = 0; s < steps; ++s) {
    model.zero_grad();
    Tensor l = model.loss(model.forward(tokens), targets);
    double got = l.item(), want = want_losses[static_cast<size_t>(s)], e = std::abs(got - want) / std::abs(want);
    std::printf("[%s] step %2lld loss modu %.7f torch %.7f rel %.3e\n", arch.c_str(), static_cast<long long>(s), got,
                want, e);
    EXPECT_LE(e, kTol) << arch << " loss of step " << s;
    worst_step = std::max(worst_step, e);
    l.backward();
    opt.step(ocfg.lr);
  }
  report(arch, "losses of the AdamW steps (worst)", worst_step, ref.at("losses"));

  double worst_final = 0;
  worst_name.clear();
  for (const auto& p : params) {
    Tensor want = fx.tensor("final/" + p.name);
    double e;
    if (is_fused_qkv_bias(cfg, p.name)) {  // compare the query and value thirds; bound the key third
      e = rel_err(modu::concat({p.tensor->narrow(0, 0, C), p.tensor->narrow(0, 2 * C, C)}, 0),
                  modu::concat({want.narrow(0, 0, C), want.narrow(0, 2 * C, C)}, 0));
      Tensor moved = modu::sub(p.tensor->narrow(0, C, C), fx.tensor("param/" + p.name).narrow(0, C, C).to(dev));
      // |m_hat| / sqrt(v_hat) <= 1.012 for betas (0.9, 0.95) and t <= 10 (Cauchy-Schwarz on the sums).
      double bound = 1.02 * static_cast<double>(steps) * ocfg.lr;
      double k_err = rel_err(p.tensor->narrow(0, C, C), want.narrow(0, C, C));
      std::printf("[%s] %-44s moved %.3e (bound 1.02*steps*lr = %.2e); vs torch fp32 %.3e, torch fp32 vs fp64 "
                  "%.3e (not compared: see the header comment)\n",
                  arch.c_str(), ("final " + p.name + " [key third]").c_str(), max_abs(moved), bound, k_err,
                  ref.at("final_key_third").at(p.name).get<double>());
      EXPECT_LE(max_abs(moved), bound) << p.name;
      report(arch, "final " + p.name + " [query, value]", e, ref.at("final").at(p.name));
    } else {
      e = rel_err(*p.tensor, want);
      report(arch, "final " + p.name, e, ref.at("final").at(p.name));
    }
    EXPECT_LE(e, kTol) << arch << " weights of " << p.name << " after " << steps << " AdamW steps";
    if (e > worst_final) worst_final = e, worst_name = p.name;
    if (p.name == "wte.weight" || p.name == "embed_tokens.weight" || p.name == "lm_head.weight") {
      EXPECT_EQ(max_abs(p.tensor->narrow(0, V, Vp - V)), 0.0) << p.name << ": padding rows moved";
    }
  }
  std::printf("[%s] worst final weight: %.3e (%s)\n", arch.c_str(), worst_final, worst_name.c_str());
}

TEST(GptFidelity, Gpt2) { check_fidelity("gpt2"); }
TEST(GptFidelity, Llama) { check_fidelity("llama"); }

}  // namespace
