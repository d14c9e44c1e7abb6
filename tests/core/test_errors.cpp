// tests/core/test_errors.cpp — bad input raises modu::Error naming the op and the shapes.
#include <gtest/gtest.h>

#include "core/ops/ops.h"

using namespace modu;

namespace {
// Runs f, expects an Error whose message contains every fragment.
template <class F>
void expect_error(F f, std::initializer_list<const char*> fragments) {
  try {
    f();
    FAIL() << "expected modu::Error";
  } catch (const Error& e) {
    std::string msg = e.what();
    for (const char* frag : fragments) EXPECT_NE(msg.find(frag), std::string::npos) << "missing '" << frag << "' in: " << msg;
  }
}
}  // namespace

TEST(Errors, ShapeMismatchNamesOpAndShapes) {
  Tensor a = Tensor::zeros(Dims{2, 3}), b = Tensor::zeros(Dims{4});
  expect_error([&] { add(a, b); }, {"add", "(2, 3)", "(4,)", "cannot broadcast"});
  expect_error([&] { matmul(Tensor::zeros(Dims{2, 3}), Tensor::zeros(Dims{4, 5})); },
               {"matmul", "inner sizes differ", "f32(2, 3)", "f32(4, 5)"});
  expect_error([&] { layer_norm(Tensor::zeros(Dims{2, 8}), Tensor::ones(Dims{7}), Tensor::zeros(Dims{8})); },
               {"layer_norm", "weight", "(8,)", "(7,)"});
  expect_error([&] { Tensor::zeros(Dims{6}).view(Dims{4, 2}); }, {"view", "(4, 2)", "8 elements"});
  expect_error([&] { cross_entropy(Tensor::zeros(Dims{2, 3, 4}), Tensor::zeros(Dims{2}, DType::I64)); },
               {"cross_entropy", "logits (N, V)", "flatten"});
  expect_error([&] { attention(Tensor::zeros(Dims{1, 2, 3, 4}), Tensor::zeros(Dims{1, 2, 3, 5}),
                               Tensor::zeros(Dims{1, 2, 3, 5})); },
               {"attention", "(B, NH, T, HS)"});
  expect_error(
      [&] {
        attention_packed(Tensor::zeros(Dims{1, 2, 10}), 2);
      },
      {"attention_packed", "(B, T, 3 * 2 * HS)", "f32(1, 2, 10)"});
}

TEST(Errors, DTypeMismatchNamesOpAndDtypes) {
  expect_error([&] { mul(Tensor::zeros(Dims{2}), Tensor::zeros(Dims{2}, DType::F64)); }, {"mul", "f32(2,)", "f64(2,)", ".to(dtype)"});
  expect_error([&] { exp(Tensor::zeros(Dims{2}, DType::I64)); }, {"exp", "CPU kernel for i64"});
  expect_error([&] { embedding(Tensor::zeros(Dims{5, 2}), Tensor::zeros(Dims{3})); }, {"embedding", "i64 or i32", "f32(3,)"});
  expect_error([&] { where(Tensor::zeros(Dims{2}), Tensor::zeros(Dims{2}), Tensor::zeros(Dims{2})); }, {"where", "bool"});
}

TEST(Errors, BadIndicesAndArguments) {
  Tensor w = Tensor::zeros(Dims{5, 2});
  expect_error([&] { embedding(w, Tensor::from_vector<int64_t>({1, 7}, Dims{2})); }, {"embedding", "index 7", "position 1", "[0, 5)"});
  expect_error([&] { cross_entropy(Tensor::zeros(Dims{2, 3}), Tensor::from_vector<int64_t>({0, 3}, Dims{2})); },
               {"cross_entropy", "target 3", "row 1"});
  expect_error([&] { Tensor::zeros(Dims{2, 3}).transpose(0, 5); }, {"transpose dim", "out of range"});
  expect_error([&] { sum(Tensor::zeros(Dims{2, 3}), {1, 1}); }, {"sum", "twice"});
  expect_error([&] { Tensor::zeros(Dims{2}).set_requires_grad(true).add_(Tensor::ones(Dims{2})); },
               {"add_", "in-place", "requires grad"});
  expect_error([&] { group_norm(Tensor::zeros(Dims{1, 6, 2, 2}), 4, Tensor::ones(Dims{6}), Tensor::zeros(Dims{6})); },
               {"group_norm", "6 channels", "4 groups"});
}
