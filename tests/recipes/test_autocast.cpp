// tests/recipes/test_autocast.cpp — bf16 autocast with f32 master weights: parameters and gradients
// stay f32, the loss and every gradient agree with the f32 computation to bf16 accuracy, and a few
// AdamW steps under autocast track the f32 steps. MODU_TEST_DEVICE=cuda runs it on a GPU.
#include <gtest/gtest.h>

#include <cmath>

#include "core/ops/dispatch.h"
#include "core/ops/ops.h"
#include "autograd/autograd.h"
#include "nn/autocast.h"
#include "optim/optim.h"
#include "recipes/gpt/model.h"
#include "tests/core/op_cases.h"

using namespace modu;

namespace {
Device test_device() {
  const char* env = std::getenv("MODU_TEST_DEVICE");
  return env && *env ? parse_device(env) : Device::cpu();
}
gpt::GptConfig tiny(const std::string& arch) {
  gpt::GptConfig c;
  c.arch = arch;
  c.vocab_size = 97;
  c.pad_vocab_to = 64;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_kv_head = arch == "llama" ? 2 : 0;
  c.n_embd = 64;
  c.block_size = 32;
  return c;
}
// Cosine similarity of two tensors (as f64 on the CPU).
double cosine(const Tensor& a, const Tensor& b) {
  std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  double xy = 0, xx = 0, yy = 0;
  for (size_t i = 0; i < x.size(); ++i) xy += x[i] * y[i], xx += x[i] * x[i], yy += y[i] * y[i];
  return xy / std::sqrt(xx * yy + 1e-300);
}
}  // namespace

class Autocast : public ::testing::TestWithParam<std::string> {};

TEST_P(Autocast, MasterWeightsStayF32AndGradientsMatch) {
  Device dev = test_device();
  gpt::GPT model(tiny(GetParam()));
  model.init_weights(3);
  model.to(dev);
  Generator g(1);
  Tensor x = test::rand_indices(Dims{2, 16}, 97, g).to(dev), y = test::rand_indices(Dims{2, 16}, 97, g).to(dev);
  std::vector<nn::ParamRef> params = model.parameters();

  Tensor ref_loss = model.loss(model.forward(x), y);
  ref_loss.backward();
  std::vector<Tensor> ref_grads;
  for (const auto& p : params) ref_grads.push_back(p.tensor->grad().clone());
  model.zero_grad();

  Tensor loss;
  {
    nn::AutocastGuard ac(DType::BF16);
    Tensor logits = model.forward(x);
    EXPECT_EQ(logits.dtype(), DType::BF16);
    loss = model.loss(logits, y);
  }
  loss.backward();
  EXPECT_NEAR(loss.item(), ref_loss.item(), 2e-2 * ref_loss.item());
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor& p = *params[i].tensor;
    EXPECT_EQ(p.dtype(), DType::F32) << params[i].name;
    ASSERT_TRUE(p.grad().defined()) << params[i].name;
    EXPECT_EQ(p.grad().dtype(), DType::F32) << params[i].name;
    double cs = cosine(p.grad(), ref_grads[i]);
    if (params[i].name.find("c_attn.bias") == std::string::npos) {  // its key third is rounding noise
      EXPECT_GT(cs, 0.98) << params[i].name << " gradient direction under autocast";
    }
  }
}

TEST_P(Autocast, TrainingTracksF32) {
  Device dev = test_device();
  Generator g(2);
  Tensor x = test::rand_indices(Dims{4, 16}, 97, g).to(dev), y = test::rand_indices(Dims{4, 16}, 97, g).to(dev);
  std::vector<double> losses[2];
  for (int mode = 0; mode < 2; ++mode) {
    gpt::GPT model(tiny(GetParam()));
    model.init_weights(3);
    model.to(dev);
    optim::AdamW opt(model.parameters(), {3e-3, 0.9, 0.95, 1e-8, 0.1});
    for (int s = 0; s < 15; ++s) {
      model.zero_grad();
      Tensor loss;
      {
        nn::AutocastGuard ac(mode == 1 ? DType::BF16 : DType::F32);
        loss = model.loss(model.forward(x), y);
      }
      loss.backward();
      optim::clip_grad_norm(model.parameters(), 1.0);
      opt.step(3e-3);
      losses[mode].push_back(loss.item());
    }
  }
  EXPECT_LT(losses[1].back(), losses[1].front() - 1.0) << "autocast training must learn";
  for (size_t s = 0; s < losses[0].size(); ++s)
    EXPECT_NEAR(losses[1][s], losses[0][s], 0.05 * losses[0][s]) << "step " << s;
}

INSTANTIATE_TEST_SUITE_P(Arch, Autocast, ::testing::Values("gpt2", "llama"));

namespace {
// One forward and backward of a fresh tiny model (init seed 5) under autocast to `compute`: the loss, every
// parameter's gradient (on the CPU) and how many times each op of `counted` was dispatched on dev.
struct StepResult {
  double loss = 0;
  std::vector<Tensor> grads;
  std::vector<int64_t> calls;
};
StepResult one_step(const std::string& arch, Device dev, DType compute, const Tensor& x, const Tensor& y,
                    const std::vector<OpId>& counted) {
  gpt::GPT model(tiny(arch));
  model.init_weights(5);
  model.to(dev);
  auto count = [&](OpId op) { return dispatch_counters().calls[static_cast<int>(dev.type)][static_cast<int>(op)]; };
  StepResult r;
  for (OpId op : counted) r.calls.push_back(count(op));
  Tensor loss;
  {
    nn::AutocastGuard ac(compute);
    loss = model.loss(model.forward(x), y);
  }
  loss.backward();
  for (size_t i = 0; i < counted.size(); ++i) r.calls[i] = count(counted[i]) - r.calls[i];
  r.loss = loss.item();
  for (const nn::ParamRef& p : model.parameters()) r.grads.push_back(p.tensor->grad().to(Device::cpu()));
  return r;
}
// The same loss and gradients: bit for bit when tol is 0, else within tol of the loss and of each gradient's largest
// element.
void expect_same_step(const StepResult& a, const StepResult& b, double tol, const std::string& what) {
  EXPECT_LE(std::abs(b.loss - a.loss), tol * std::abs(a.loss)) << what << ": loss " << a.loss << " vs " << b.loss;
  ASSERT_EQ(a.grads.size(), b.grads.size());
  for (size_t i = 0; i < a.grads.size(); ++i) {
    std::vector<float> u = a.grads[i].to_vector<float>(), v = b.grads[i].to_vector<float>();
    size_t differ = 0;
    double scale = 0, worst = 0;
    for (size_t k = 0; k < u.size(); ++k) {
      differ += u[k] != v[k];
      scale = std::max(scale, static_cast<double>(std::abs(u[k])));
      worst = std::max(worst, static_cast<double>(std::abs(u[k] - v[k])));
    }
    EXPECT_LE(worst, tol * scale) << what << ": gradient " << i << " differs in " << differ << " of " << u.size()
                                  << " elements, by up to " << worst;
  }
}
}  // namespace

// Norm fusion (recipes/gpt/model.h) changes which ops run, not what they compute: under autocast and in f32, one
// forward and backward give the same loss and the same gradients with the fused add_layer_norm (both residual adds
// of a GPT-2 block, the MLP's carried into the next block's ln_1 or ln_f) and bf16-writing norms as with the
// separate add, norm and cast ops. On the CPU bit for bit (core/cpu/nn.cpp is built without
// multiply-add contraction); on CUDA, where the compiler may contract each kernel instantiation differently, to
// within 1e-6 of the largest gradient (f32 rounding).
TEST_P(Autocast, FusedNormsGiveTheSameLossAndGradients) {
  Device dev = test_device();
  Generator g(4);
  Tensor x = test::rand_indices(Dims{2, 16}, 97, g).to(dev), y = test::rand_indices(Dims{2, 16}, 97, g).to(dev);
  const bool was = gpt::norm_fusion();
  const bool gpt2 = GetParam() == "gpt2";
  for (DType compute : {DType::BF16, DType::F32}) {
    StepResult r[2];
    for (int fused = 0; fused < 2; ++fused) {
      gpt::set_norm_fusion(fused == 1);
      r[fused] = one_step(GetParam(), dev, compute, x, y, {OpId::add_layer_norm});
    }
    gpt::set_norm_fusion(was);
    EXPECT_EQ(r[0].calls[0], 0);
    // Two GPT-2 blocks: ln_2 of each (the attention residual), ln_1 of the second and ln_f (the MLP residual
    // carried over from the block before).
    EXPECT_EQ(r[1].calls[0], gpt2 ? 4 : 0) << "add_layer_norm: ln_2 per block, ln_1 after the first, ln_f";
    expect_same_step(r[0], r[1], dev.is_cpu() ? 0.0 : 1e-6, "fused norms, " + std::string(dtype_name(compute)));
  }
}

// Packed attention (recipes/gpt/model.h) likewise: attention_packed on c_attn's output gives the loss and gradients
// of attention on the permuted head views, bit for bit on the CPU (the same kernel code on views of the same
// memory), and removes the permute copies (4 per block: o, and the q, k, v gradients) and the concat of the q, k, v
// gradients (1 per block). On CUDA the paths may pick different GEMM algorithms for the new strides: 1e-6.
TEST_P(Autocast, PackedAttentionGivesTheSameLossAndGradients) {
  Device dev = test_device();
  Generator g(6);
  Tensor x = test::rand_indices(Dims{2, 16}, 97, g).to(dev), y = test::rand_indices(Dims{2, 16}, 97, g).to(dev);
  const bool was = gpt::packed_attention();
  const bool gpt2 = GetParam() == "gpt2";
  const std::vector<OpId> counted{OpId::attention_packed, OpId::attention, OpId::copy, OpId::concat};
  for (DType compute : {DType::BF16, DType::F32}) {
    StepResult r[2];
    for (int packed = 0; packed < 2; ++packed) {
      gpt::set_packed_attention(packed == 1);
      r[packed] = one_step(GetParam(), dev, compute, x, y, counted);
    }
    gpt::set_packed_attention(was);
    const std::string what = "packed attention, " + std::string(dtype_name(compute));
    EXPECT_EQ(r[0].calls[0], 0) << what;
    EXPECT_EQ(r[1].calls[0], gpt2 ? 2 : 0) << what << ": one attention_packed per GPT-2 block";
    EXPECT_EQ(r[1].calls[1], gpt2 ? 0 : 2) << what;
    if (gpt2) {
      EXPECT_EQ(r[0].calls[2] - r[1].calls[2], 4 * 2) << what << ": copies saved";
      EXPECT_EQ(r[0].calls[3] - r[1].calls[3], 2) << what << ": concats saved";
    } else {
      EXPECT_EQ(r[0].calls, r[1].calls) << what << ": Llama keeps its path";
    }
    expect_same_step(r[0], r[1], dev.is_cpu() ? 0.0 : 1e-6, what);
  }
}

// Master gradients (autograd/autograd.h) change only how the parameters' gradients come back: the loss is the
// same, and each gradient is either the same (norms, embeddings) or, with them off, exactly the bf16 rounding of
// the f32 gradient the product writes with them on (every matrix and bias of the blocks, and Llama's lm_head). The
// tied GPT-2 wte adds its embedding gradient, so it differs from that rounding by at most bf16's. One cast fewer
// per such parameter. On CUDA the f32 and bf16 products may pick different GEMM algorithms: relation within 2^-8.
TEST_P(Autocast, MasterGradientsAreTheUnroundedParameterGradients) {
  Device dev = test_device();
  Generator g(8);
  Tensor x = test::rand_indices(Dims{2, 16}, 97, g).to(dev), y = test::rand_indices(Dims{2, 16}, 97, g).to(dev);
  const bool was = autograd::master_gradients();
  const bool gpt2 = GetParam() == "gpt2";
  StepResult r[2];
  for (int on = 0; on < 2; ++on) {
    autograd::set_master_gradients(on == 1);
    r[on] = one_step(GetParam(), dev, DType::BF16, x, y, {OpId::cast});
  }
  autograd::set_master_gradients(was);
  EXPECT_EQ(r[0].loss, r[1].loss);
  gpt::GPT names(tiny(GetParam()));
  std::vector<nn::ParamRef> params = names.parameters();
  ASSERT_EQ(params.size(), r[0].grads.size());
  int same = 0, rounded = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    std::vector<float> off = r[0].grads[i].to_vector<float>(), on = r[1].grads[i].to_vector<float>();
    std::vector<float> on_rounded = r[1].grads[i].to(DType::BF16).to(DType::F32).to_vector<float>();
    const std::string& name = params[i].name;
    if (off == on) {
      ++same;
    } else if (name == "wte.weight") {
      double scale = 0, worst = 0;
      for (size_t k = 0; k < on.size(); ++k) {
        scale = std::max(scale, static_cast<double>(std::abs(on[k])));
        worst = std::max(worst, static_cast<double>(std::abs(on[k] - off[k])));
      }
      EXPECT_LE(worst, scale / 256) << name;
    } else {
      ++rounded;
      if (dev.is_cpu()) {
        EXPECT_EQ(off, on_rounded) << name << ": off must be on's gradient rounded to bf16";
      } else {
        for (size_t k = 0; k < on.size(); ++k)
          EXPECT_NEAR(off[k], on[k], std::abs(on[k]) / 256 + 1e-12) << name << " element " << k;
      }
    }
  }
  // gpt2 (2 blocks): c_attn, attn.c_proj, c_fc, mlp.c_proj weights and biases = 16; llama: q, k, v, o, gate, up,
  // down per block = 14, and lm_head.
  EXPECT_EQ(rounded, gpt2 ? 16 : 15);
  EXPECT_EQ(r[0].calls[0] - r[1].calls[0], gpt2 ? 17 : 15) << "casts saved (the tied head's wte in gpt2)";
  EXPECT_GT(same, 0);
}
