// tests/core/test_autograd.cpp — the backward engine: accumulation rule, grad-ready hooks and their
// order, saved-tensor version checks, no-grad scopes, retain_graph, detach, activation recomputation.
#include <gtest/gtest.h>

#include "autograd/autograd.h"
#include "autograd/function.h"
#include "autograd/recompute.h"
#include "core/ops/ops.h"
#include "tests/core/op_cases.h"

using namespace modu;

namespace {
Tensor param(const Dims& shape, uint64_t seed) {
  Generator g(seed);
  return normal(shape, 0, 1, g, DType::F64).set_requires_grad(true);
}
}  // namespace

TEST(Autograd, LeafGradientsAccumulateAcrossBackwards) {
  Tensor w = param(Dims{3}, 1);
  Tensor x = Tensor::from_vector<double>({1, 2, 3}, Dims{3});
  sum(mul(w, x)).backward();
  EXPECT_EQ(w.grad().to_vector<double>(), (std::vector<double>{1, 2, 3}));
  sum(mul(w, x)).backward();
  EXPECT_EQ(w.grad().to_vector<double>(), (std::vector<double>{2, 4, 6}));
  // A leaf used twice in one graph receives both contributions.
  Tensor v = param(Dims{3}, 2);
  sum(add(mul(v, x), v)).backward();
  EXPECT_EQ(v.grad().to_vector<double>(), (std::vector<double>{2, 3, 4}));
}

TEST(Autograd, GradReadyHooksFireOncePerLeafInReverseOrder) {
  Tensor w1 = param(Dims{4, 4}, 1), w2 = param(Dims{4, 4}, 2), w3 = param(Dims{4, 4}, 3);
  std::vector<int> order;
  autograd::register_grad_ready_hook(w1, [&](const Tensor&) { order.push_back(1); });
  autograd::register_grad_ready_hook(w2, [&](const Tensor&) { order.push_back(2); });
  autograd::register_grad_ready_hook(w3, [&](const Tensor& leaf) {
    EXPECT_TRUE(leaf.grad().defined());  // the gradient is complete when the hook runs
    order.push_back(3);
  });
  Tensor x = param(Dims{2, 4}, 4).detach();
  Tensor h = tanh(matmul(x, w1));
  h = tanh(matmul(h, w2));
  h = matmul(h, w3);
  sum(h).backward();
  EXPECT_EQ(order, (std::vector<int>{3, 2, 1}));
  for (auto* w : {&w1, &w2, &w3}) autograd::remove_grad_ready_hook(*w);
}

TEST(Autograd, HookWaitsForEveryUseOfALeaf) {
  Tensor w = param(Dims{3}, 1);
  double seen = 0;
  autograd::register_grad_ready_hook(w, [&](const Tensor& leaf) { seen = sum(leaf.grad()).item(); });
  Tensor a = mul(w, Tensor::full(Dims{3}, 2.0, DType::F64));
  Tensor b = exp(mul(w, Tensor::zeros(Dims{3}, DType::F64)));  // d/dw = 0
  Tensor c = mul(w, w);
  sum(add(add(a, b), c)).backward();
  double expected = 3 * 2.0 + 2 * sum(w).item();
  EXPECT_NEAR(seen, expected, 1e-12);
  autograd::remove_grad_ready_hook(w);
}

TEST(Autograd, InPlaceModificationOfSavedTensorIsReported) {
  Tensor w = param(Dims{3}, 1);
  Tensor x = Tensor::from_vector<double>({1, 2, 3}, Dims{3});
  Tensor y = mul(w, x);  // saves x
  x.add_(Tensor::ones(Dims{3}, DType::F64));
  try {
    sum(y).backward();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("backward of 'mul'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("modified in place"), std::string::npos) << msg;
  }
  // The engine recovers: a fresh graph works.
  sum(mul(w, x)).backward();
  EXPECT_EQ(w.grad().to_vector<double>(), (std::vector<double>{2, 3, 4}));
}

TEST(Autograd, NoGradDetachAndRetainGraph) {
  Tensor w = param(Dims{3}, 1);
  {
    NoGradGuard g;
    Tensor y = mul(w, w);
    EXPECT_FALSE(y.requires_grad());
  }
  Tensor d = mul(w, w).detach();
  EXPECT_FALSE(d.requires_grad());
  EXPECT_TRUE(d.is_leaf());
  Tensor y = sum(exp(w));
  y.backward(Tensor(), /*retain_graph=*/true);
  y.backward();
  Tensor once = exp(w);
  EXPECT_LT(test::relative_error(w.grad(), mul_scalar(once.detach(), 2.0)), 1e-12);
  EXPECT_THROW(y.backward(), Error);  // the graph was freed by the second call
  EXPECT_THROW(sum(mul(w.detach(), w.detach())).backward(), Error);  // nothing requires grad
}

TEST(Autograd, GraphIsFreedWithItsOutputs) {
  int64_t before = autograd::live_nodes();
  {
    Tensor w = param(Dims{8, 8}, 1);
    Tensor h = w;
    for (int i = 0; i < 50; ++i) h = tanh(matmul(h, w));
    EXPECT_GE(autograd::live_nodes() - before, 100);
    sum(h).backward();
  }
  EXPECT_EQ(autograd::live_nodes(), before);
}

TEST(Autograd, GradientOfNonScalarNeedsExplicitSeed) {
  Tensor w = param(Dims{2, 3}, 1);
  Tensor y = mul_scalar(w, 3.0);
  EXPECT_THROW(y.backward(), Error);
  y.backward(Tensor::ones(Dims{2, 3}, DType::F64));
  EXPECT_EQ(w.grad().to_vector<double>(), std::vector<double>(6, 3.0));
}

// A custom function (autograd/function.h): the caller's forward, its backward (here deliberately not the
// derivative of the forward, so the test sees which rule ran); an output no path reaches gets an undefined
// gradient; nothing is recorded under no-grad.
TEST(Function, RunsTheSuppliedBackward) {
  Tensor w = param(Dims{3}, 3);
  Tensor x = mul_scalar(w, 1.0);  // non-leaf input
  std::vector<Tensor> outs;
  {
    NoGradGuard no_grad;
    outs = {mul_scalar(x, 2.0), mul_scalar(x, 5.0)};
  }
  bool second_undefined = false;
  outs = autograd::record_function({x}, outs, [&](const std::vector<Tensor>& g) {
    second_undefined = !g[1].defined();
    return std::vector<Tensor>{mul_scalar(g[0], 3.0)};
  });
  ASSERT_TRUE(outs[0].requires_grad());
  sum(outs[0]).backward();
  EXPECT_TRUE(second_undefined);
  EXPECT_EQ(w.grad().to_vector<double>(), (std::vector<double>{3, 3, 3}));
  {
    NoGradGuard no_grad;
    Tensor z = autograd::record_function({w}, {mul_scalar(w, 2.0)}, nullptr)[0];
    EXPECT_FALSE(z.requires_grad());
  }
}

TEST(Recompute, SameGradientsAsStoredActivationsIncludingDropout) {
  Tensor w1 = param(Dims{6, 6}, 1), w2 = param(Dims{6, 6}, 2);
  Tensor x = param(Dims{4, 6}, 3);
  Generator drop(99, stream_id("dropout"));
  auto block = [&](const std::vector<Tensor>& in) {
    Tensor h = gelu_tanh(matmul(in[0], w1));
    h = dropout(h, 0.3, drop);
    return std::vector<Tensor>{matmul(h, w2)};
  };
  Generator::State s = drop.state();
  Tensor plain = block({x})[0];
  sum(mul(plain, plain)).backward();
  std::vector<double> g1 = w1.grad().to_vector<double>(), g2 = w2.grad().to_vector<double>(),
                      gx = x.grad().to_vector<double>();
  for (Tensor* t : {&w1, &w2, &x}) t->set_grad(Tensor());

  drop.set_state(s);
  int hooks = 0;
  autograd::register_grad_ready_hook(w1, [&](const Tensor&) { ++hooks; });
  Tensor ck = autograd::checkpoint(block, {x})[0];
  EXPECT_EQ(ck.to_vector<double>(), plain.to_vector<double>());
  // Use the random stream between forward and backward: the recomputation must not be affected.
  normal(Dims{10}, 0, 1, drop);
  sum(mul(ck, ck)).backward();
  EXPECT_EQ(w1.grad().to_vector<double>(), g1);
  EXPECT_EQ(w2.grad().to_vector<double>(), g2);
  EXPECT_EQ(x.grad().to_vector<double>(), gx);
  EXPECT_EQ(hooks, 1);
  autograd::remove_grad_ready_hook(w1);
}

TEST(Recompute, ScopeStoresOnlyItsInputs) {
  Tensor w = param(Dims{16, 16}, 1);
  Tensor x = param(Dims{16, 16}, 2);
  int64_t before = autograd::live_nodes();
  Tensor y = autograd::checkpoint(
      [&](const std::vector<Tensor>& in) {
        Tensor h = in[0];
        for (int i = 0; i < 20; ++i) h = tanh(matmul(h, w));
        return std::vector<Tensor>{h};
      },
      {x})[0];
  EXPECT_EQ(autograd::live_nodes() - before, 1);  // one node for the whole scope
  sum(y).backward();
  EXPECT_TRUE(w.grad().defined());
  EXPECT_TRUE(x.grad().defined());
}

// cross_entropy(..., valid_classes = V) on (N, Vp) logits is the loss of the (N, V) slice, with a zero gradient
// on the padding columns (what the GPT head uses for its padded vocabulary).
TEST(PaddedCrossEntropy, SameLossAndGradientAsTheSlice) {
  const int64_t N = 6, V = 5, Vp = 8;
  Tensor target = Tensor::from_vector<int64_t>({0, 4, 2, -100, 1, 4}, Dims{N});
  for (DType dt : {DType::F64, DType::F32}) {
    Tensor a = param(Dims{N, Vp}, 7).detach().to(dt).set_requires_grad(true);
    Tensor b = a.detach().clone().set_requires_grad(true);
    Tensor la = cross_entropy(a, target, -100, true, V);
    Tensor lb = cross_entropy(b.slice(1, 0, V), target);
    EXPECT_EQ(la.item(), lb.item()) << dtype_name(dt);
    la.backward();
    lb.backward();
    std::vector<double> ga = a.grad().to(DType::F64).to_vector<double>(),
                        gb = b.grad().to(DType::F64).to_vector<double>();
    for (int64_t i = 0; i < N * Vp; ++i) {
      EXPECT_NEAR(ga[i], gb[i], dt == DType::F64 ? 1e-15 : 1e-7) << dtype_name(dt) << " element " << i;
      if (i % Vp >= V) {
        EXPECT_EQ(ga[i], 0.0) << "padding column got a gradient at " << i;
      }
    }
  }
  // A target in the padding is refused by name.
  Tensor bad = Tensor::from_vector<int64_t>({0, 6, 0, 0, 0, 0}, Dims{N});
  Tensor x = param(Dims{N, Vp}, 8);
  try {
    cross_entropy(x, bad, -100, true, V);
    ADD_FAILURE() << "a target in the padding was accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("outside [0, 5)"), std::string::npos) << e.what();
  }
}

namespace {
// f32 values rounded to bf16 and back.
std::vector<float> bf16_rounded(const Tensor& t) { return t.to(DType::BF16).to(DType::F32).to_vector<float>(); }
int64_t cpu_calls(OpId op) {
  return dispatch_counters().calls[static_cast<int>(DeviceType::CPU)][static_cast<int>(op)];
}
}  // namespace

// Master gradients (autograd.h): a linear whose weight and bias are bf16 casts of f32 parameters, and a tied-head
// style product through cast -> t() -> matmul of a parameter also used in f32. With them on, the products write the
// f32 gradients and no cast runs for them; with them off, each such gradient is exactly the bf16 rounding of the
// f32 one (the same product, rounded), then widened by a cast. The tied parameter's gradient adds its f32 use.
TEST(Autograd, MasterGradientsWriteF32ParameterGradientsDirectly) {
  Generator gen(21);
  Tensor x = uniform(Dims{2, 6, 8}, -1, 1, gen).to(DType::BF16);
  Tensor w = uniform(Dims{5, 8}, -1, 1, gen).set_requires_grad(true);
  Tensor b = uniform(Dims{5}, -1, 1, gen).set_requires_grad(true);
  Tensor head = uniform(Dims{7, 5}, -1, 1, gen).set_requires_grad(true);
  const bool was = autograd::master_gradients();
  std::vector<float> gw[2], gb[2], gh[2];
  int64_t casts[2];
  for (int on = 0; on < 2; ++on) {
    autograd::set_master_gradients(on == 1);
    w.set_grad(Tensor()), b.set_grad(Tensor()), head.set_grad(Tensor());
    Tensor y = linear(x, cast(w, DType::BF16), cast(b, DType::BF16));  // (2, 6, 5) bf16
    Tensor z = matmul(y, cast(head, DType::BF16).t());                 // (2, 6, 7) bf16
    Tensor loss = add(sum(cast(mul(z, z), DType::F32)), sum(mul(head, head)));
    const int64_t before = cpu_calls(OpId::cast);
    loss.backward();
    casts[on] = cpu_calls(OpId::cast) - before;
    for (const Tensor* p : {&w, &b, &head}) EXPECT_EQ(p->grad().dtype(), DType::F32);
    gw[on] = w.grad().to_vector<float>(), gb[on] = b.grad().to_vector<float>(), gh[on] = head.grad().to_vector<float>();
  }
  autograd::set_master_gradients(was);
  EXPECT_EQ(casts[0] - casts[1], 3) << "one cast fewer per parameter gradient (w, b, head)";
  Tensor gw_on = Tensor::from_vector(gw[1], Dims{5, 8}), gb_on = Tensor::from_vector(gb[1], Dims{5});
  EXPECT_EQ(gw[0], bf16_rounded(gw_on)) << "off: the on gradient rounded to bf16";
  EXPECT_EQ(gb[0], bf16_rounded(gb_on));
  EXPECT_NE(gw[0], gw[1]) << "the f32 gradient keeps bits that bf16 drops";
  double scale = 0, worst = 0;
  for (size_t i = 0; i < gh[0].size(); ++i) {
    scale = std::max(scale, static_cast<double>(std::abs(gh[1][i])));
    worst = std::max(worst, static_cast<double>(std::abs(gh[1][i] - gh[0][i])));
  }
  EXPECT_GT(worst, 0.0);
  EXPECT_LE(worst, scale / 256) << "the tied parameter: its product part differs by bf16 rounding at most";
}

// A cast whose output feeds both a product (f32 master gradient) and another op (a bf16 gradient): the engine sums
// the two in f32 and the parameter's gradient matches the f64 computation to bf16 accuracy.
TEST(Autograd, GradientsOfMixedDtypesMeetingAtACastAreSummedInF32) {
  Generator gen(22);
  Tensor x = uniform(Dims{2, 4, 8}, -1, 1, gen).to(DType::BF16);  // 3-D: the product folds (a master gradient)
  Tensor w = uniform(Dims{3, 8}, -1, 1, gen).set_requires_grad(true);
  const bool was = autograd::master_gradients();
  autograd::set_master_gradients(true);
  Tensor wc = cast(w, DType::BF16);
  Tensor loss = add(sum(cast(linear(x, wc, Tensor()), DType::F32)), sum(cast(mul(wc, wc), DType::F32)));
  loss.backward();
  autograd::set_master_gradients(was);
  // d/dw [sum(x w^T) + sum(w^2)] = colsum(x) (per row of w) + 2 w
  Tensor ref = add(sum(x.to(DType::F64), {0, 1}, true).view(Dims{1, 8}).expand(Dims{3, 8}),
                   mul_scalar(w.detach().to(DType::F64), 2.0));
  EXPECT_EQ(w.grad().dtype(), DType::F32);
  EXPECT_LT(test::relative_error(w.grad(), ref.to(DType::F32)), 1.0 / 64);
}
