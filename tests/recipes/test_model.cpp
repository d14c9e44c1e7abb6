// tests/recipes/test_model.cpp — the GPT family's invariants: decoding with the KV cache gives the
// logits of the full forward pass (both architectures, several chunkings), initialisation depends only
// on (seed, parameter name), and the padded vocabulary never enters the loss.
#include <gtest/gtest.h>

#include "core/ops/dispatch.h"
#include "core/ops/ops.h"
#include "optim/optim.h"
#include "recipes/gpt/model.h"
#include "recipes/gpt/sampling.h"
#include "tests/core/op_cases.h"

using namespace modu;

namespace {
gpt::GptConfig tiny(const std::string& arch) {
  gpt::GptConfig c;
  c.arch = arch;
  c.vocab_size = 97;
  c.pad_vocab_to = 64;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_kv_head = arch == "llama" ? 2 : 0;
  c.n_embd = 32;
  c.block_size = 24;
  return c;
}
Tensor tokens(int64_t B, int64_t T, uint64_t seed) {
  Generator g(seed);
  return test::rand_indices(Dims{B, T}, 97, g);
}
}  // namespace

class ModelTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ModelTest, CachedDecodingMatchesTheFullForward) {
  gpt::GPT m(tiny(GetParam()));
  m.init_weights(3);
  m.set_training(false);
  NoGradGuard no_grad;
  Tensor idx = tokens(2, 20, 5);
  Tensor full = m.forward(idx);  // (2, 20, Vp)
  for (std::vector<int64_t> chunks : {std::vector<int64_t>{20}, {1, 19}, {7, 1, 1, 11}, {5, 5, 5, 5}}) {
    gpt::KVCache cache = m.make_cache(2, 24);
    std::vector<Tensor> parts;
    int64_t at = 0;
    for (int64_t n : chunks) {
      parts.push_back(m.forward(idx.narrow(1, at, n).contiguous(), &cache));
      at += n;
    }
    EXPECT_EQ(cache.length, 20);
    double e = test::relative_error(concat(parts, 1), full);
    EXPECT_LT(e, 1e-5) << GetParam() << " chunks " << chunks.size();
  }
}

TEST_P(ModelTest, InitialisationDependsOnSeedAndNameOnly) {
  gpt::GPT a(tiny(GetParam())), b(tiny(GetParam())), c(tiny(GetParam()));
  a.init_weights(11);
  b.init_weights(11);
  c.init_weights(12);
  auto pa = a.parameters(), pb = b.parameters(), pc = c.parameters();
  ASSERT_EQ(pa.size(), pb.size());
  bool any_differs = false;
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_EQ(pa[i].tensor->to_vector<float>(), pb[i].tensor->to_vector<float>()) << pa[i].name;
    any_differs |= pa[i].tensor->to_vector<float>() != pc[i].tensor->to_vector<float>();
  }
  EXPECT_TRUE(any_differs);
}

TEST_P(ModelTest, PaddedVocabularyIsOutsideTheLoss) {
  gpt::GPT m(tiny(GetParam()));
  m.init_weights(3);
  Tensor idx = tokens(2, 8, 1), tgt = tokens(2, 8, 2);
  Tensor logits = m.forward(idx);
  ASSERT_EQ(logits.size(-1), 128);
  // Shifting the padding logits changes nothing: the loss reads only the first 97 columns.
  Tensor shifted = concat({logits.narrow(2, 0, 97), add_scalar(logits.narrow(2, 97, 31), 50.0)}, 2);
  EXPECT_EQ(m.loss(logits, tgt).item(), m.loss(shifted, tgt).item());
  Tensor ref = cross_entropy(logits.reshape(Dims{-1, 128}).narrow(1, 0, 97).contiguous(), tgt.reshape(Dims{-1}));
  EXPECT_NEAR(m.loss(logits, tgt).item(), ref.item(), 1e-6);
}

TEST_P(ModelTest, GreedySamplingIsDeterministicAndSeeded) {
  gpt::GPT m(tiny(GetParam()));
  m.init_weights(3);
  gpt::SamplingOptions greedy;
  greedy.max_new_tokens = 30;  // runs past block_size: the cache restarts from the newest half
  greedy.temperature = 0;
  std::vector<int32_t> prompt = {1, 2, 3};
  EXPECT_EQ(gpt::sample(m, prompt, greedy), gpt::sample(m, prompt, greedy));
  gpt::SamplingOptions s1;
  s1.max_new_tokens = 12;
  s1.top_k = 10;
  s1.top_p = 0.9;
  s1.seed = 4;
  gpt::SamplingOptions s2 = s1;
  s2.seed = 5;
  std::vector<int32_t> a = gpt::sample(m, prompt, s1);
  EXPECT_EQ(a, gpt::sample(m, prompt, s1));
  EXPECT_NE(a, gpt::sample(m, prompt, s2));
  for (int32_t t : a) EXPECT_LT(t, 97);
}

// Clipping folded into the update (AdamW::step(lr, clip_coefficient(norm, max))) is the same arithmetic as
// scaling the gradients first (clip_grad_norm) and stepping: the parameters stay bit-identical.
TEST_P(ModelTest, FoldedClippingEqualsClipThenStep) {
  gpt::GPT a(tiny(GetParam())), b(tiny(GetParam()));
  a.init_weights(5);
  b.init_weights(5);
  optim::AdamWConfig oc;
  oc.weight_decay = 0.1;
  optim::AdamW oa(a.parameters(), oc), ob(b.parameters(), oc);
  const double max_norm = 0.05;  // small enough that every step clips
  for (int step = 0; step < 3; ++step) {
    Tensor idx = tokens(2, 8, 10 + step), tgt = tokens(2, 8, 20 + step);
    a.zero_grad();
    b.zero_grad();
    a.loss(a.forward(idx), tgt).backward();
    b.loss(b.forward(idx), tgt).backward();
    double na = optim::clip_grad_norm(a.parameters(), max_norm);
    oa.step(1e-2);
    double nb = optim::grad_norm(b.parameters());
    double coef = optim::clip_coefficient(nb, max_norm);
    ASSERT_LT(coef, 1.0) << "the test needs clipping to be active";
    ob.step(1e-2, coef);
    EXPECT_EQ(na, nb);
  }
  auto pa = a.parameters(), pb = b.parameters();
  for (size_t i = 0; i < pa.size(); ++i)
    EXPECT_EQ(pa[i].tensor->to_vector<float>(), pb[i].tensor->to_vector<float>()) << pa[i].name;
  EXPECT_EQ(optim::clip_coefficient(3.0, 0.0), 1.0);  // max_norm 0: no clipping
  EXPECT_EQ(optim::clip_coefficient(0.5, 1.0), 1.0);  // below the limit: unchanged
  EXPECT_NEAR(optim::clip_coefficient(4.0, 1.0), 0.25, 1e-6);
}

// AdamW::step runs the whole model as adamw_multi_ ops (optim::AdamWBatch): the same bits as one adamw_ per
// parameter with its own weight decay (decayed and undecayed parameters interleaved in the model's order).
TEST_P(ModelTest, MultiTensorAdamWEqualsOneUpdatePerParameter) {
  gpt::GPT a(tiny(GetParam())), b(tiny(GetParam()));
  a.init_weights(6);
  b.init_weights(6);
  optim::AdamWConfig oc;
  oc.weight_decay = 0.1;
  optim::AdamW oa(a.parameters(), oc);
  auto pb = b.parameters();
  std::vector<Tensor> m, v;
  for (const nn::ParamRef& p : pb) {
    m.push_back(Tensor::zeros(p.tensor->shape()));
    v.push_back(Tensor::zeros(p.tensor->shape()));
  }
  int decayed = 0;
  for (int step = 1; step <= 3; ++step) {
    Tensor idx = tokens(2, 8, 30 + step), tgt = tokens(2, 8, 40 + step);
    a.zero_grad();
    b.zero_grad();
    a.loss(a.forward(idx), tgt).backward();
    b.loss(b.forward(idx), tgt).backward();
    oa.step(1e-2, 0.7);
    NoGradGuard no_grad;
    AdamWAttrs at = optim::adamw_attrs(oc, step, 1e-2, 0.7);
    for (size_t i = 0; i < pb.size(); ++i) {
      at.weight_decay = pb[i].decay ? oc.weight_decay : 0.0;
      decayed += step == 1 && pb[i].decay;
      adamw_(*pb[i].tensor, pb[i].tensor->grad(), m[i], v[i], at);
    }
  }
  ASSERT_GT(decayed, 0);
  ASSERT_LT(decayed, static_cast<int>(pb.size()));  // both kinds present
  auto pa = a.parameters();
  auto state = oa.state_tensors();
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_EQ(pa[i].tensor->to_vector<float>(), pb[i].tensor->to_vector<float>()) << pa[i].name;
    EXPECT_EQ(state[2 * i].second->to_vector<float>(), m[i].to_vector<float>()) << pa[i].name;
    EXPECT_EQ(state[2 * i + 1].second->to_vector<float>(), v[i].to_vector<float>()) << pa[i].name;
  }
}

INSTANTIATE_TEST_SUITE_P(Arch, ModelTest, ::testing::Values("gpt2", "llama"));
