// tests/core/test_gradcheck.cpp — every case's tape gradients against central differences, in f64.
#include <gtest/gtest.h>

#include "autograd/gradcheck.h"
#include "tests/core/op_cases.h"

using namespace modu;

class Gradcheck : public ::testing::TestWithParam<size_t> {};

TEST_P(Gradcheck, TapeMatchesFiniteDifferences) {
  const test::OpCase& c = test::op_cases()[GetParam()];
  if (c.grad_inputs.empty()) {
    GTEST_SKIP() << c.name << ": no differentiable inputs (forward-only case; values are checked by "
                 << "dtype_consistency, the PyTorch fixtures and backend_parity)";
  }
  Generator gen(5, stream_id(c.name));
  std::vector<Tensor> in = c.make_inputs(DType::F64, gen);
  for (int i : c.grad_inputs) in[static_cast<size_t>(i)] = in[static_cast<size_t>(i)].detach().set_requires_grad(true);
  // Keep the inputs' layouts (transposed views stay views): detach() shares storage and strides.
  autograd::GradcheckResult r = autograd::gradcheck(c.run, in, c.gradcheck);
  EXPECT_TRUE(r.ok) << c.name << ": " << r.first_failure;
  EXPECT_GT(r.checked, 0);
  RecordProperty("max_abs_error", std::to_string(r.max_abs_error));
}

INSTANTIATE_TEST_SUITE_P(AllCases, Gradcheck, ::testing::Range<size_t>(0, test::op_cases().size()),
                         [](const ::testing::TestParamInfo<size_t>& info) { return test::op_cases()[info.param].name; });
