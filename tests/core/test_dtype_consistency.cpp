// tests/core/test_dtype_consistency.cpp — each case computed in f32, bf16 and f16 agrees with f64
// within the case's tolerance, forward and (for differentiable cases) backward.
#include <gtest/gtest.h>

#include "autograd/autograd.h"
#include "core/ops/ops.h"
#include "tests/core/op_cases.h"

using namespace modu;

namespace {
struct Result {
  Tensor out;
  std::vector<Tensor> grads;
};

Result run_case(const test::OpCase& c, DType dt) {
  Generator gen(9, stream_id(c.name));
  std::vector<Tensor> in = c.make_inputs(DType::F64, gen);
  // The same values in the lower precision: convert the f64 inputs (floating ones only).
  std::vector<Tensor> targets;
  for (auto& t : in)
    if (is_floating(t.dtype()) && t.dtype() == DType::F64) t = t.to(dt);
  for (int i : c.grad_inputs) {
    in[static_cast<size_t>(i)] = in[static_cast<size_t>(i)].detach().set_requires_grad(true);
    targets.push_back(in[static_cast<size_t>(i)]);
  }
  Result r;
  r.out = c.run(in);
  if (!targets.empty()) {
    Generator wg(3, stream_id("projection"));
    Tensor w = normal(r.out.shape(), 0, 1, wg, DType::F64).to(r.out.dtype());
    Tensor roots[] = {sum(mul(r.out, w))};
    r.grads = autograd::grad(roots, targets);
  }
  return r;
}
}  // namespace

class DTypeConsistency : public ::testing::TestWithParam<std::tuple<size_t, DType>> {};

TEST_P(DTypeConsistency, MatchesF64) {
  const test::OpCase& c = test::op_cases()[std::get<0>(GetParam())];
  DType dt = std::get<1>(GetParam());
  if (!c.dtypes.has(dt) || !c.dtypes.has(DType::F64)) GTEST_SKIP() << c.name << " does not run in " << dtype_name(dt);
  double tol = dt == DType::F32 ? c.tol_f32 : c.tol_bf16;
  if (dt == DType::F16) tol = c.tol_bf16 / 4;  // f16 has 3 more mantissa bits than bf16
  Result ref = run_case(c, DType::F64), got = run_case(c, dt);
  double e = test::relative_error(got.out, ref.out);
  EXPECT_LE(e, tol) << c.name << " forward in " << dtype_name(dt);
  ASSERT_EQ(ref.grads.size(), got.grads.size());
  for (size_t i = 0; i < ref.grads.size(); ++i) {
    if (!ref.grads[i].defined()) continue;
    double ge = test::relative_error(got.grads[i], ref.grads[i]);
    EXPECT_LE(ge, tol * 2) << c.name << " gradient of input " << c.grad_inputs[i] << " in " << dtype_name(dt);
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllCases, DTypeConsistency,
    ::testing::Combine(::testing::Range<size_t>(0, test::op_cases().size()),
                       ::testing::Values(DType::F32, DType::BF16, DType::F16)),
    [](const ::testing::TestParamInfo<std::tuple<size_t, DType>>& info) {
      return test::op_cases()[std::get<0>(info.param)].name + "_" +
             std::string(dtype_name(std::get<1>(info.param)));
    });
