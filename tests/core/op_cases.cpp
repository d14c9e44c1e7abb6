// tests/core/op_cases.cpp — the cases of every op in core/ops/op_table.def (see op_cases.h).
//
// Conventions: shapes are small and odd; inputs that ops read through strides come as transposed
// views; inputs of ops with kinks stay away from the kinks; random functions build their Generator
// inside `run`, so repeated runs (finite differences) draw the same numbers.
#include "tests/core/op_cases.h"

#include <cmath>

#include "core/ops/ops.h"

namespace modu::test {

Tensor rand_tensor(const Dims& shape, DType dtype, Generator& gen, double lo, double hi, bool transposed) {
  Dims storage_shape = shape;
  if (transposed && shape.size() >= 2) std::swap(storage_shape[shape.size() - 1], storage_shape[shape.size() - 2]);
  Tensor t = uniform(storage_shape, lo, hi, gen, DType::F64);
  if (transposed && shape.size() >= 2) t = t.transpose(-2, -1);
  return dtype == DType::F64 ? t : t.to(dtype);
}

Tensor rand_away_from_zero(const Dims& shape, DType dtype, Generator& gen, double margin, bool transposed) {
  Tensor mag = rand_tensor(shape, DType::F64, gen, margin, 1.0, transposed);
  Tensor sgn = sign(rand_tensor(shape, DType::F64, gen, -1, 1, false));
  Tensor t = mul(mag, sgn);
  if (transposed && shape.size() >= 2) {  // keep the non-contiguous layout
    Tensor base = t.transpose(-2, -1).contiguous();
    t = base.transpose(-2, -1);
  }
  return dtype == DType::F64 ? t : t.to(dtype);
}

Tensor rand_indices(const Dims& shape, int64_t limit, Generator& gen, DType dtype) {
  std::vector<int64_t> v(static_cast<size_t>(shape.numel()));
  for (auto& x : v) x = static_cast<int64_t>(gen.next_below(static_cast<uint64_t>(limit)));
  return Tensor::from_vector(v, shape, dtype);
}

double relative_error(const Tensor& a, const Tensor& b, double floor) {
  MODU_CHECK(a.shape() == b.shape(), "relative_error: shapes differ: ", describe(a), " vs ", describe(b));
  Tensor x = a.to(Device::cpu()).to(DType::F64), y = b.to(Device::cpu()).to(DType::F64);
  double max_diff = 0, max_ref = floor;
  for (int64_t i = 0; i < x.numel(); ++i) {
    double p = read_element(x, i), q = read_element(y, i);
    if (std::isnan(p) != std::isnan(q)) return INFINITY;
    if (std::isnan(p)) continue;
    if (std::isinf(p) || std::isinf(q)) {
      if (p != q) return INFINITY;
      continue;
    }
    max_diff = std::max(max_diff, std::abs(p - q));
    max_ref = std::max(max_ref, std::abs(q));
  }
  return max_diff / max_ref;
}

namespace {

using Inputs = std::vector<Tensor>;
using Maker = std::function<Inputs(DType, Generator&)>;
using Runner = std::function<Tensor(const Inputs&)>;

OpCase make(std::string name, std::vector<OpId> covers, Maker inputs, Runner run, std::vector<int> grads) {
  OpCase c;
  c.name = std::move(name);
  c.covers = std::move(covers);
  c.make_inputs = std::move(inputs);
  c.run = std::move(run);
  c.grad_inputs = std::move(grads);
  return c;
}

// y = f(x) on a (3, 5) transposed view with values in [lo, hi).
OpCase unary(std::string name, std::vector<OpId> covers, Tensor (*f)(const Tensor&), double lo, double hi) {
  return make(
      std::move(name), std::move(covers),
      [lo, hi](DType dt, Generator& g) { return Inputs{rand_tensor(Dims{3, 5}, dt, g, lo, hi, true)}; },
      [f](const Inputs& x) { return f(x[0]); }, {0});
}
OpCase unary_kinked(std::string name, std::vector<OpId> covers, Tensor (*f)(const Tensor&)) {
  return make(
      std::move(name), std::move(covers),
      [](DType dt, Generator& g) { return Inputs{rand_away_from_zero(Dims{3, 5}, dt, g, 0.1, true)}; },
      [f](const Inputs& x) { return f(x[0]); }, {0});
}
OpCase binary(std::string name, std::vector<OpId> covers, Tensor (*f)(const Tensor&, const Tensor&),
              double lo_a = -1, double hi_a = 1, double lo_b = -1, double hi_b = 1) {
  return make(
      std::move(name), std::move(covers),
      [=](DType dt, Generator& g) {
        return Inputs{rand_tensor(Dims{3, 1, 5}, dt, g, lo_a, hi_a), rand_tensor(Dims{4, 5}, dt, g, lo_b, hi_b, true)};
      },
      [f](const Inputs& x) { return f(x[0], x[1]); }, {0, 1});
}
// Small integer-valued floats, so comparisons see ties.
Tensor small_ints(const Dims& shape, DType dt, Generator& g) {
  return add_scalar(rand_indices(shape, 3, g).to(dt), -1.0);
}
OpCase compare(std::string name, OpId op, Tensor (*f)(const Tensor&, const Tensor&)) {
  return make(
      std::move(name), {op, OpId::where},
      [](DType dt, Generator& g) {
        return Inputs{small_ints(Dims{3, 4}, dt, g), small_ints(Dims{4}, dt, g),
                      rand_tensor(Dims{3, 4}, dt, g), rand_tensor(Dims{3, 4}, dt, g)};
      },
      [f](const Inputs& x) { return where(f(x[0], x[1]), x[2], x[3]); }, {2, 3});
}

std::vector<OpCase> build_cases() {
  std::vector<OpCase> cs;
  // ---- unary ----
  cs.push_back(unary("neg", {OpId::neg}, neg, -1, 1));
  cs.push_back(unary("exp", {OpId::exp}, exp, -1, 1));
  cs.push_back(unary("log", {OpId::log}, log, 0.5, 2));
  cs.push_back(unary("sqrt", {OpId::sqrt}, sqrt, 0.5, 2));
  cs.push_back(unary("rsqrt", {OpId::rsqrt}, rsqrt, 0.5, 2));
  cs.push_back(unary_kinked("abs", {OpId::abs}, abs));
  cs.push_back(unary_kinked("sign", {OpId::sign}, sign));
  cs.push_back(unary("sin", {OpId::sin}, sin, -3, 3));
  cs.push_back(unary("cos", {OpId::cos}, cos, -3, 3));
  cs.push_back(unary("tanh", {OpId::tanh, OpId::tanh_backward}, tanh, -2, 2));
  cs.push_back(unary("sigmoid", {OpId::sigmoid, OpId::sigmoid_backward}, sigmoid, -3, 3));
  cs.push_back(unary("log_sigmoid", {OpId::log_sigmoid, OpId::log_sigmoid_backward}, log_sigmoid, -4, 4));
  cs.push_back(unary_kinked("relu", {OpId::relu, OpId::relu_backward}, relu));
  cs.push_back(unary("silu", {OpId::silu, OpId::silu_backward}, silu, -3, 3));
  cs.push_back(unary("gelu_tanh", {OpId::gelu_tanh, OpId::gelu_tanh_backward}, gelu_tanh, -3, 3));
  cs.push_back(unary("gelu_erf", {OpId::gelu_erf, OpId::gelu_erf_backward}, gelu_erf, -3, 3));
  cs.push_back(make(
      "add_scalar", {OpId::add_scalar}, [](DType dt, Generator& g) { return Inputs{rand_tensor(Dims{3, 5}, dt, g)}; },
      [](const Inputs& x) { return add_scalar(x[0], 0.75); }, {0}));
  cs.push_back(make(
      "mul_scalar", {OpId::mul_scalar}, [](DType dt, Generator& g) { return Inputs{rand_tensor(Dims{3, 5}, dt, g)}; },
      [](const Inputs& x) { return mul_scalar(x[0], -1.5); }, {0}));
  cs.push_back(make(
      "pow_scalar", {OpId::pow_scalar},
      [](DType dt, Generator& g) { return Inputs{rand_tensor(Dims{3, 5}, dt, g, 0.5, 2, true)}; },
      [](const Inputs& x) { return add(pow_scalar(x[0], 3.0), pow_scalar(x[0], 2.0)); }, {0}));
  cs.push_back(make(
      "clamp", {OpId::clamp}, [](DType dt, Generator& g) { return Inputs{rand_tensor(Dims{4, 5}, dt, g)}; },
      [](const Inputs& x) { return clamp(x[0], -0.5, 0.5); }, {0}));

  // ---- binary with broadcasting (3, 1, 5) op (4, 5)^T-view ----
  cs.push_back(binary("add", {OpId::add}, add));
  cs.push_back(binary("sub", {OpId::sub}, sub));
  cs.push_back(binary("mul", {OpId::mul}, mul));
  cs.push_back(binary("div", {OpId::div}, div, -1, 1, 0.5, 2));
  cs.push_back(binary("pow", {OpId::pow}, pow, 0.5, 2, -1, 2));
  cs.push_back(binary("maximum", {OpId::maximum}, maximum));
  cs.push_back(binary("minimum", {OpId::minimum}, minimum));
  cs.push_back(compare("eq", OpId::eq, eq));
  cs.push_back(compare("ne", OpId::ne, ne));
  cs.push_back(compare("lt", OpId::lt, lt));
  cs.push_back(compare("le", OpId::le, le));
  cs.push_back(compare("gt", OpId::gt, gt));
  cs.push_back(compare("ge", OpId::ge, ge));
  cs.push_back(make(
      "masked_fill", {OpId::masked_fill},
      [](DType dt, Generator& g) {
        return Inputs{rand_tensor(Dims{3, 5}, dt, g, -1, 1, true), gt(rand_tensor(Dims{5}, DType::F32, g),
                                                                       Tensor::scalar(0.0, DType::F32))};
      },
      [](const Inputs& x) { return masked_fill(x[0], x[1], 0.25); }, {0}));

  // ---- reductions ----
  cs.push_back(make(
      "sum_dims", {OpId::sum}, [](DType dt, Generator& g) { return Inputs{rand_tensor(Dims{3, 4, 5}, dt, g, -1, 1, true)}; },
      [](const Inputs& x) { return sum(x[0], {0, 2}); }, {0}));
  cs.push_back(make(
      "sum_leading_keepdim", {OpId::sum},
      [](DType dt, Generator& g) { return Inputs{rand_tensor(Dims{6, 3, 5}, dt, g)}; },
      [](const Inputs& x) { return sum(x[0], {0, 1}, true); }, {0}));
  cs.push_back(make(
      "sum_all", {OpId::sum}, [](DType dt, Generator& g) { return Inputs{rand_tensor(Dims{3, 5}, dt, g, -1, 1, true)}; },
      [](const Inputs& x) { return sum(x[0]); }, {0}));
  // The result in the accumulation dtype (f32 for bf16/f16): bias gradients under autocast (a column reduction)
  // and a row reduction.
  cs.push_back(make(
      "sum_accumulate_columns", {OpId::sum},
      [](DType dt, Generator& g) {
        return Inputs{rand_tensor(Dims{7, 5}, dt, g)};
      },
      [](const Inputs& x) { return sum_accumulate(x[0], {0}); }, {0}));
  cs.push_back(make(
      "sum_accumulate_rows", {OpId::sum},
      [](DType dt, Generator& g) {
        return Inputs{rand_tensor(Dims{3, 9}, dt, g, -1, 1, true)};
      },
      [](const Inputs& x) { return sum_accumulate(x[0], {-1}, true); }, {0}));
  cs.push_back(make(
      "mean_keepdim", {OpId::mean}, [](DType dt, Generator& g) { return Inputs{rand_tensor(Dims{3, 4, 5}, dt, g)}; },
      [](const Inputs& x) { return mean(x[0], {1}, true); }, {0}));
  cs.push_back(make(
      "var", {OpId::var}, [](DType dt, Generator& g) { return Inputs{rand_tensor(Dims{3, 7}, dt, g, -1, 1, true)}; },
      [](const Inputs& x) { return var(x[0], {-1}, 1); }, {0}));
  cs.push_back(make(
      "max_dim", {OpId::max}, [](DType dt, Generator& g) { return Inputs{rand_tensor(Dims{3, 6, 4}, dt, g)}; },
      [](const Inputs& x) { return max(x[0], 1).first; }, {0}));
  cs.push_back(make(
      "argmax", {OpId::argmax, OpId::cast}, [](DType dt, Generator& g) { return Inputs{rand_tensor(Dims{3, 6}, dt, g, -1, 1, true)}; },
      [](const Inputs& x) { return cast(argmax(x[0], 1), x[0].dtype()); }, {}));
  cs.push_back(make(  // 35 inputs: more than one launch group on CUDA; a large one split over blocks; a strided one
      "sum_squares", {OpId::sum_squares, OpId::cast},
      [](DType dt, Generator& g) {
        Inputs in{rand_tensor(Dims{70, 300}, dt, g), rand_tensor(Dims{3, 6}, dt, g, -1, 1, true)};
        for (int i = 0; i < 33; ++i) in.push_back(rand_tensor(Dims{2, 3}, dt, g));
        return in;
      },
      [](const Inputs& x) { return cast(sum_squares(std::span<const Tensor>(x.data(), x.size())), x[0].dtype()); },
      {}));

  // ---- linear algebra ----
  cs.push_back(make(
      "matmul_fold", {OpId::matmul},
      [](DType dt, Generator& g) { return Inputs{rand_tensor(Dims{2, 3, 4}, dt, g), rand_tensor(Dims{4, 5}, dt, g, -1, 1, true)}; },
      [](const Inputs& x) { return matmul(x[0], x[1]); }, {0, 1}));
  cs.push_back(make(
      "matmul_batched_broadcast", {OpId::matmul},
      [](DType dt, Generator& g) {
        return Inputs{rand_tensor(Dims{2, 1, 3, 4}, dt, g, -1, 1, true), rand_tensor(Dims{3, 4, 5}, dt, g)};
      },
      [](const Inputs& x) { return matmul(x[0], x[1]); }, {0, 1}));
  // An empty inner dim: the product is zeros (a sum over nothing), on every backend and dtype.
  cs.push_back(make(
      "matmul_empty_inner", {OpId::matmul},
      [](DType dt, Generator& g) {
        return Inputs{rand_tensor(Dims{3, 0}, dt, g), rand_tensor(Dims{0, 4}, dt, g)};
      },
      [](const Inputs& x) { return matmul(x[0], x[1]); }, {}));  // both inputs empty: no gradient to check
  // The product in the accumulation dtype (f32 for bf16/f16): autocast's weight gradients. Folded into one GEMM,
  // and batched with a broadcast (the strided-batched path, whose output pointer steps in f32 elements).
  cs.push_back(make(
      "matmul_accumulate_fold", {OpId::matmul},
      [](DType dt, Generator& g) {
        return Inputs{rand_tensor(Dims{2, 3, 4}, dt, g), rand_tensor(Dims{4, 5}, dt, g, -1, 1, true)};
      },
      [](const Inputs& x) { return matmul_accumulate(x[0], x[1]); }, {0, 1}));
  cs.push_back(make(
      "matmul_accumulate_batched", {OpId::matmul},
      [](DType dt, Generator& g) {
        return Inputs{rand_tensor(Dims{2, 1, 3, 4}, dt, g), rand_tensor(Dims{3, 4, 5}, dt, g, -1, 1, true)};
      },
      [](const Inputs& x) { return matmul_accumulate(x[0], x[1]); }, {0, 1}));
  cs.push_back(make(
      "linear", {OpId::linear},
      [](DType dt, Generator& g) {
        return Inputs{rand_tensor(Dims{2, 3, 4}, dt, g), rand_tensor(Dims{5, 4}, dt, g), rand_tensor(Dims{5}, dt, g)};
      },
      [](const Inputs& x) { return linear(x[0], x[1], x[2]); }, {0, 1, 2}));

  // ---- softmax and losses ----
  cs.push_back(make(
      "softmax_middle_dim", {OpId::softmax, OpId::softmax_backward},
      [](DType dt, Generator& g) { return Inputs{rand_tensor(Dims{3, 5, 4}, dt, g, -2, 2)}; },
      [](const Inputs& x) { return softmax(x[0], 1); }, {0}));
  cs.push_back(make(
      "log_softmax", {OpId::log_softmax, OpId::log_softmax_backward},
      [](DType dt, Generator& g) { return Inputs{rand_tensor(Dims{3, 7}, dt, g, -2, 2, true)}; },
      [](const Inputs& x) { return log_softmax(x[0], -1); }, {0}));
  cs.push_back(make(
      "cross_entropy_ignore", {OpId::cross_entropy, OpId::cross_entropy_backward},
      [](DType dt, Generator& g) {
        return Inputs{rand_tensor(Dims{6, 7}, dt, g, -2, 2),
                      Tensor::from_vector<int64_t>({3, -100, 0, 6, 2, 3}, Dims{6})};
      },
      [](const Inputs& x) { return cross_entropy(x[0], x[1]); }, {0}));
  cs.push_back(make(
      "cross_entropy_sum", {OpId::cross_entropy, OpId::cross_entropy_backward},
      [](DType dt, Generator& g) {
        return Inputs{rand_tensor(Dims{5, 4}, dt, g, -2, 2, true), rand_indices(Dims{5}, 4, g, DType::I32)};
      },
      [](const Inputs& x) { return cross_entropy(x[0], x[1], -100, /*mean=*/false); }, {0}));
  cs.push_back(make(  // a padded vocabulary: columns 7 and 8 are no classes (gradient 0)
      "cross_entropy_padded", {OpId::cross_entropy, OpId::cross_entropy_backward},
      [](DType dt, Generator& g) {
        return Inputs{rand_tensor(Dims{5, 9}, dt, g, -2, 2), rand_indices(Dims{5}, 7, g, DType::I64)};
      },
      [](const Inputs& x) { return cross_entropy(x[0], x[1], -100, /*mean=*/true, /*valid_classes=*/7); }, {0}));

  // ---- normalisation ----
  cs.push_back(make(
      "layer_norm", {OpId::layer_norm, OpId::layer_norm_backward},
      [](DType dt, Generator& g) {
        return Inputs{rand_tensor(Dims{2, 3, 8}, dt, g, -2, 2), rand_tensor(Dims{8}, dt, g, 0.5, 1.5),
                      rand_tensor(Dims{8}, dt, g)};
      },
      [](const Inputs& x) { return layer_norm(x[0], x[1], x[2]); }, {0, 1, 2}));
  // Mixed precision: an f32 input normalised into a bf16/f16 output (for f32 and f64 the output is in x's dtype).
  cs.push_back(make(
      "layer_norm_mixed", {OpId::layer_norm, OpId::layer_norm_backward},
      [](DType dt, Generator& g) {
        DType xt = dt == DType::F64 ? DType::F64 : DType::F32;
        return Inputs{rand_tensor(Dims{3, 2, 10}, xt, g, -2, 2), rand_tensor(Dims{10}, xt, g, 0.5, 1.5),
                      rand_tensor(Dims{10}, xt, g), Tensor::zeros(Dims{1}, dt)};
      },
      // x[3] only carries the output dtype.
      [](const Inputs& x) { return layer_norm(x[0], x[1], x[2], 1e-5, x[3].dtype()); }, {0, 1, 2}));
  // The residual add and the layer norm after it. The function reads both outputs (the sum and y), so both
  // gradients reach the backward.
  cs.push_back(make(
      "add_layer_norm", {OpId::add_layer_norm, OpId::add_layer_norm_backward},
      [](DType dt, Generator& g) {
        return Inputs{rand_tensor(Dims{2, 3, 8}, dt, g, -2, 2), rand_tensor(Dims{2, 3, 8}, dt, g, -1, 1, true),
                      rand_tensor(Dims{8}, dt, g, 0.5, 1.5), rand_tensor(Dims{8}, dt, g)};
      },
      [](const Inputs& x) {
        AddNorm o = add_layer_norm(x[0], x[1], x[2], x[3]);
        return add(mul_scalar(o.sum, 0.5), o.y);
      },
      {0, 1, 2, 3}));
  // Mixed precision, as the GPT blocks use it: an f32 stream plus a bf16/f16 branch, y in the branch's dtype.
  cs.push_back(make(
      "add_layer_norm_mixed", {OpId::add_layer_norm, OpId::add_layer_norm_backward},
      [](DType dt, Generator& g) {
        DType xt = dt == DType::F64 ? DType::F64 : DType::F32;
        return Inputs{rand_tensor(Dims{5, 12}, xt, g, -2, 2), rand_tensor(Dims{5, 12}, dt, g, -1, 1),
                      rand_tensor(Dims{12}, xt, g, 0.5, 1.5), rand_tensor(Dims{12}, xt, g)};
      },
      [](const Inputs& x) {
        AddNorm o = add_layer_norm(x[0], x[1], x[2], x[3], 1e-5, x[1].dtype());
        return add(mul_scalar(o.sum, -0.75), o.y.to(o.sum.dtype()));
      },
      {0, 1, 2, 3}));
  cs.push_back(make(
      "rms_norm", {OpId::rms_norm, OpId::rms_norm_backward},
      [](DType dt, Generator& g) {
        return Inputs{rand_tensor(Dims{3, 5, 6}, dt, g, -2, 2, true), rand_tensor(Dims{6}, dt, g, 0.5, 1.5)};
      },
      [](const Inputs& x) { return rms_norm(x[0], x[1]); }, {0, 1}));
  cs.push_back(make(
      "group_norm", {OpId::group_norm, OpId::group_norm_backward},
      [](DType dt, Generator& g) {
        return Inputs{rand_tensor(Dims{2, 6, 3, 3}, dt, g, -2, 2), rand_tensor(Dims{6}, dt, g, 0.5, 1.5),
                      rand_tensor(Dims{6}, dt, g)};
      },
      [](const Inputs& x) { return group_norm(x[0], 3, x[1], x[2]); }, {0, 1, 2}));

  // ---- indexing ----
  cs.push_back(make(
      "embedding", {OpId::embedding, OpId::embedding_backward},
      [](DType dt, Generator& g) {
        return Inputs{rand_tensor(Dims{7, 5}, dt, g), Tensor::from_vector<int64_t>({1, 4, 1, 6, 0, 4}, Dims{2, 3})};
      },
      [](const Inputs& x) { return embedding(x[0], x[1]); }, {0}));
  cs.push_back(make(
      "index_select", {OpId::index_select, OpId::index_add},
      [](DType dt, Generator& g) {
        return Inputs{rand_tensor(Dims{4, 5}, dt, g, -1, 1, true), Tensor::from_vector<int64_t>({4, 0, 4}, Dims{3})};
      },
      [](const Inputs& x) { return index_select(x[0], 1, x[1]); }, {0}));
  cs.push_back(make(
      "index_add", {OpId::index_add, OpId::index_select},
      [](DType dt, Generator& g) {
        return Inputs{rand_tensor(Dims{5, 4}, dt, g), Tensor::from_vector<int32_t>({2, 0, 2}, Dims{3}),
                      rand_tensor(Dims{3, 4}, dt, g)};
      },
      [](const Inputs& x) { return index_add(x[0], 0, x[1], x[2]); }, {0, 2}));
  cs.push_back(make(
      "gather", {OpId::gather, OpId::scatter_add},
      [](DType dt, Generator& g) {
        return Inputs{rand_tensor(Dims{3, 5}, dt, g, -1, 1, true), rand_indices(Dims{3, 4}, 5, g)};
      },
      [](const Inputs& x) { return gather(x[0], 1, x[1]); }, {0}));
  cs.push_back(make(
      "scatter_add", {OpId::scatter_add, OpId::gather},
      [](DType dt, Generator& g) {
        return Inputs{rand_tensor(Dims{4, 3}, dt, g), rand_indices(Dims{6, 3}, 4, g), rand_tensor(Dims{6, 3}, dt, g)};
      },
      [](const Inputs& x) { return scatter_add(x[0], 0, x[1], x[2]); }, {0, 2}));
  cs.push_back(make(
      "concat", {OpId::concat},
      [](DType dt, Generator& g) {
        return Inputs{rand_tensor(Dims{2, 3, 4}, dt, g), rand_tensor(Dims{2, 1, 4}, dt, g),
                      rand_tensor(Dims{2, 4, 4}, dt, g, -1, 1, true)};
      },
      [](const Inputs& x) { return concat({x[0], x[1], x[2]}, 1); }, {0, 1, 2}));

  // ---- randomness ----
  cs.push_back(make(
      "dropout", {OpId::dropout}, [](DType dt, Generator& g) { return Inputs{rand_tensor(Dims{5, 7}, dt, g, -1, 1, true)}; },
      [](const Inputs& x) {
        Generator gen(42, stream_id("dropout-case"));
        return dropout(x[0], 0.3, gen);
      },
      {0}));
  {
    OpCase c = make(
        "random_factories", {OpId::uniform, OpId::normal}, [](DType, Generator&) { return Inputs{}; },
        [](const Inputs&) {
          Generator gen(7, stream_id("factory-case"));
          Tensor u = uniform(Dims{3, 5}, -2, 3, gen, DType::F32);
          Tensor n = normal(Dims{3, 5}, 1, 2, gen, DType::F32);
          return add(u, n);
        },
        {});
    c.dtypes = DTypeSet{DType::F32};
    cs.push_back(c);
  }
  {
    OpCase c = make(
        "full_arange", {OpId::full, OpId::arange}, [](DType, Generator&) { return Inputs{}; },
        [](const Inputs&) {
          return add(Tensor::full(Dims{2, 5}, 1.5), Tensor::arange(5, DType::F32).view(Dims{1, 5}));
        },
        {});
    c.dtypes = DTypeSet{DType::F32};
    cs.push_back(c);
  }

  // ---- attention ----
  cs.push_back(make(
      "attention_causal", {OpId::attention, OpId::attention_backward},
      [](DType dt, Generator& g) {
        // q as a (B, T, NH, HS) tensor viewed as (B, NH, T, HS), as the model does
        return Inputs{rand_tensor(Dims{2, 5, 3, 4}, dt, g).permute(Dims{0, 2, 1, 3}),
                      rand_tensor(Dims{2, 3, 5, 4}, dt, g), rand_tensor(Dims{2, 3, 5, 4}, dt, g)};
      },
      [](const Inputs& x) { return attention(x[0], x[1], x[2], true); }, {0, 1, 2}));
  cs.push_back(make(
      "attention_cached_keys", {OpId::attention, OpId::attention_backward},
      [](DType dt, Generator& g) {
        return Inputs{rand_tensor(Dims{1, 2, 3, 4}, dt, g), rand_tensor(Dims{1, 2, 6, 4}, dt, g),
                      rand_tensor(Dims{1, 2, 6, 4}, dt, g)};
      },
      [](const Inputs& x) { return attention(x[0], x[1], x[2], true, 0.7); }, {0, 1, 2}));
  cs.push_back(make(
      "attention_full", {OpId::attention, OpId::attention_backward},
      [](DType dt, Generator& g) {
        return Inputs{rand_tensor(Dims{1, 2, 4, 3}, dt, g), rand_tensor(Dims{1, 2, 5, 3}, dt, g),
                      rand_tensor(Dims{1, 2, 5, 3}, dt, g)};
      },
      [](const Inputs& x) { return attention(x[0], x[1], x[2], false); }, {0, 1, 2}));
  // No queries (T = 0) over some keys: an empty output, and zero key and value gradients on every backend.
  cs.push_back(make(
      "attention_no_queries", {OpId::attention, OpId::attention_backward},
      [](DType dt, Generator& g) {
        return Inputs{rand_tensor(Dims{1, 2, 0, 8}, dt, g), rand_tensor(Dims{1, 2, 5, 8}, dt, g),
                      rand_tensor(Dims{1, 2, 5, 8}, dt, g)};
      },
      [](const Inputs& x) { return attention(x[0], x[1], x[2], true); }, {0, 1, 2}));
  // Packed q | k | v (B, T, 3 NH HS) as GPT-2's c_attn writes it: NH = 2, HS = 4.
  cs.push_back(make(
      "attention_packed_causal", {OpId::attention_packed, OpId::attention_packed_backward},
      [](DType dt, Generator& g) {
        return Inputs{rand_tensor(Dims{2, 5, 24}, dt, g)};
      },
      [](const Inputs& x) { return attention_packed(x[0], 2, true); }, {0}));
  // A strided qkv (a window of a wider tensor, as if the projection wrote more columns) without the mask, own scale.
  cs.push_back(make(
      "attention_packed_full_window", {OpId::attention_packed, OpId::attention_packed_backward},
      [](DType dt, Generator& g) {
        return Inputs{rand_tensor(Dims{1, 4, 27}, dt, g).narrow(2, 1, 18)};
      },
      [](const Inputs& x) { return attention_packed(x[0], 3, false, 0.6); }, {0}));
  cs.push_back(make(
      "rotary", {OpId::rotary},
      [](DType dt, Generator& g) {
        auto [c, s] = rotary_tables(2, 5, 6, 10000.0, dt);
        return Inputs{rand_tensor(Dims{2, 5, 3, 6}, dt, g), c, s};
      },
      [](const Inputs& x) { return rotary(x[0], x[1], x[2]); }, {0}));

  // ---- images ----
  cs.push_back(make(
      "conv2d_stride2_pad1", {OpId::conv2d, OpId::conv2d_backward},
      [](DType dt, Generator& g) {
        return Inputs{rand_tensor(Dims{2, 3, 6, 5}, dt, g), rand_tensor(Dims{4, 3, 3, 3}, dt, g, -0.5, 0.5),
                      rand_tensor(Dims{4}, dt, g)};
      },
      [](const Inputs& x) { return conv2d(x[0], x[1], x[2], 2, 1); }, {0, 1, 2}));
  cs.push_back(make(
      "conv2d_1x1", {OpId::conv2d, OpId::conv2d_backward},
      [](DType dt, Generator& g) {
        return Inputs{rand_tensor(Dims{1, 4, 3, 3}, dt, g), rand_tensor(Dims{2, 4, 1, 1}, dt, g),
                      rand_tensor(Dims{2}, dt, g)};
      },
      [](const Inputs& x) { return conv2d(x[0], x[1], x[2], 1, 0); }, {0, 1, 2}));
  cs.push_back(make(
      "upsample_nearest2d", {OpId::upsample_nearest2d, OpId::upsample_nearest2d_backward},
      [](DType dt, Generator& g) { return Inputs{rand_tensor(Dims{1, 2, 3, 4}, dt, g)}; },
      [](const Inputs& x) { return upsample_nearest2d(x[0], 2); }, {0}));
  cs.push_back(make(
      "avg_pool2d", {OpId::avg_pool2d, OpId::avg_pool2d_backward},
      [](DType dt, Generator& g) { return Inputs{rand_tensor(Dims{2, 2, 4, 6}, dt, g)}; },
      [](const Inputs& x) { return avg_pool2d(x[0], 2); }, {0}));
  cs.push_back(make(
      "avg_pool2d_overlap", {OpId::avg_pool2d, OpId::avg_pool2d_backward},
      [](DType dt, Generator& g) { return Inputs{rand_tensor(Dims{1, 2, 5, 5}, dt, g)}; },
      [](const Inputs& x) { return avg_pool2d(x[0], 3, 1); }, {0}));

  // ---- conversion ----
  {
    OpCase c = make(
        "cast_roundtrip", {OpId::cast}, [](DType dt, Generator& g) { return Inputs{rand_tensor(Dims{3, 5}, dt, g)}; },
        [](const Inputs& x) { return cast(mul_scalar(cast(x[0], DType::F32), 2.0), x[0].dtype()); }, {0});
    c.gradcheck.eps = 1e-2;  // the f32 detour rounds at ~1e-7: a large step keeps the difference exact
    c.gradcheck.atol = 1e-4;
    cs.push_back(c);
  }
  cs.push_back(make(
      "copy_transposed", {OpId::copy}, [](DType dt, Generator& g) { return Inputs{rand_tensor(Dims{3, 5}, dt, g, -1, 1, true)}; },
      [](const Inputs& x) { return copy(x[0]); }, {0}));
  cs.push_back(make(
      "to_device_cpu", {OpId::to_device}, [](DType dt, Generator& g) { return Inputs{rand_tensor(Dims{3, 5}, dt, g, -1, 1, true)}; },
      [](const Inputs& x) { return mul_scalar(to_device(x[0], x[0].device()), 3.0); }, {0}));

  // ---- views ----
  cs.push_back(make(
      "view_reshape", {OpId::view}, [](DType dt, Generator& g) { return Inputs{rand_tensor(Dims{2, 3, 4}, dt, g)}; },
      [](const Inputs& x) { return mul(x[0].view(Dims{6, 4}), x[0].reshape(Dims{4, 6}).t()); }, {0}));
  cs.push_back(make(
      "permute", {OpId::permute}, [](DType dt, Generator& g) { return Inputs{rand_tensor(Dims{2, 3, 4}, dt, g)}; },
      [](const Inputs& x) { return mul_scalar(x[0].permute(Dims{2, 0, 1}), 2.0).contiguous(); }, {0}));
  cs.push_back(make(
      "expand", {OpId::expand}, [](DType dt, Generator& g) { return Inputs{rand_tensor(Dims{3, 1}, dt, g)}; },
      [](const Inputs& x) { return mul(x[0].expand(Dims{2, 3, 4}), Tensor::arange(4, DType::I64, x[0].device()).to(x[0].dtype())); },
      {0}));
  cs.push_back(make(
      "slice_step", {OpId::slice}, [](DType dt, Generator& g) { return Inputs{rand_tensor(Dims{4, 7}, dt, g)}; },
      [](const Inputs& x) { return mul_scalar(x[0].slice(1, 1, 7, 2), 1.5); }, {0}));
  cs.push_back(make(
      "split", {OpId::split, OpId::concat}, [](DType dt, Generator& g) { return Inputs{rand_tensor(Dims{3, 7}, dt, g)}; },
      [](const Inputs& x) {
        auto parts = x[0].split_sizes({2, 3, 2}, 1);
        return mul(parts[0], parts[2]);  // the middle piece gets no gradient: zeros are filled in
      },
      {0}));

  // ---- in place and optimizer (no gradient: inputs are not differentiated) ----
  cs.push_back(make(
      "inplace_updates", {OpId::copy_, OpId::fill_, OpId::add_, OpId::mul_scalar_},
      [](DType dt, Generator& g) { return Inputs{rand_tensor(Dims{3, 4}, dt, g), rand_tensor(Dims{4}, dt, g)}; },
      [](const Inputs& x) {
        Tensor y = Tensor::empty(Dims{3, 4}, x[0].dtype(), x[0].device());
        y.fill_(0.5);
        y.add_(x[0], 2.0);
        y.mul_(0.5);
        Tensor z = Tensor::empty(Dims{3, 4}, x[0].dtype(), x[0].device());
        z.copy_(x[1]);
        return add(y, z);
      },
      {}));
  cs.push_back(make(
      "adamw_step", {OpId::adamw_},
      [](DType dt, Generator& g) {
        return Inputs{rand_tensor(Dims{5, 3}, dt, g), rand_tensor(Dims{5, 3}, dt, g),
                      rand_tensor(Dims{5, 3}, DType::F32, g), rand_tensor(Dims{5, 3}, DType::F32, g, 0.1, 1)};
      },
      [](const Inputs& x) {
        Tensor p = x[0].clone(), m = x[2].clone(), v = x[3].clone();
        AdamWAttrs a;
        a.lr = 0.1;
        a.weight_decay = 0.1;
        a.bias_correction1 = 1 - 0.9 * 0.9;
        a.bias_correction2 = 1 - 0.999 * 0.999;
        adamw_(p, x[1], m, v, a);
        return add(p, add(m, v).to(p.dtype()));
      },
      {}));
  // Three tensors of other shapes, the first two decayed; the result packs every updated p, m and v.
  cs.push_back(make(
      "adamw_multi_step", {OpId::adamw_multi_, OpId::concat},
      [](DType dt, Generator& g) {
        Inputs x;
        const Dims shapes[] = {Dims{5, 3}, Dims{7}, Dims{2, 2, 3}};
        for (const Dims& s : shapes) x.push_back(rand_tensor(s, dt, g));  // parameters
        for (const Dims& s : shapes) x.push_back(rand_tensor(s, dt, g));  // gradients
        for (const Dims& s : shapes) x.push_back(rand_tensor(s, DType::F32, g));
        for (const Dims& s : shapes) x.push_back(rand_tensor(s, DType::F32, g, 0.1, 1));
        return x;
      },
      [](const Inputs& x) {
        std::vector<Tensor> p, gr, m, v;
        for (int i = 0; i < 3; ++i) {
          p.push_back(x[i].clone());
          gr.push_back(x[3 + i]);
          m.push_back(x[6 + i].clone());
          v.push_back(x[9 + i].clone());
        }
        AdamWAttrs a;
        a.lr = 0.1;
        a.weight_decay = 0.1;
        a.decayed = 2;
        a.grad_scale = 0.5;
        a.bias_correction1 = 1 - 0.9 * 0.9;
        a.bias_correction2 = 1 - 0.999 * 0.999;
        adamw_multi_(p, gr, m, v, a);
        std::vector<Tensor> parts;
        for (int i = 0; i < 3; ++i) parts.push_back(add(p[i], add(m[i], v[i]).to(p[i].dtype())).reshape(Dims{-1}));
        return concat(parts, 0);
      },
      {}));
  // More tensors than one CUDA launch's table holds (kAdamWMultiMaxTensors = 192), some empty: each tensor is
  // updated exactly once, whichever launch group it falls in.
  cs.push_back(make(
      "adamw_multi_many_tensors", {OpId::adamw_multi_, OpId::concat},
      [](DType dt, Generator& g) {
        constexpr int kTensors = 260;
        auto shape = [](int i) { return i % 50 == 5 ? Dims{0} : Dims{1 + i % 4}; };
        Inputs x;
        for (int i = 0; i < kTensors; ++i) x.push_back(rand_tensor(shape(i), dt, g));  // parameters
        for (int i = 0; i < kTensors; ++i) x.push_back(rand_tensor(shape(i), dt, g));  // gradients
        for (int i = 0; i < kTensors; ++i) x.push_back(rand_tensor(shape(i), DType::F32, g));
        for (int i = 0; i < kTensors; ++i) x.push_back(rand_tensor(shape(i), DType::F32, g, 0.1, 1));
        return x;
      },
      [](const Inputs& x) {
        const size_t n = x.size() / 4;
        std::vector<Tensor> p, gr, m, v;
        for (size_t i = 0; i < n; ++i) {
          p.push_back(x[i].clone());
          gr.push_back(x[n + i]);
          m.push_back(x[2 * n + i].clone());
          v.push_back(x[3 * n + i].clone());
        }
        AdamWAttrs a;
        a.lr = 0.1;
        a.weight_decay = 0.1;
        a.decayed = 200;
        a.bias_correction1 = 1 - 0.9 * 0.9;
        a.bias_correction2 = 1 - 0.999 * 0.999;
        adamw_multi_(p, gr, m, v, a);
        std::vector<Tensor> parts;
        for (size_t i = 0; i < n; ++i) parts.push_back(add(p[i], add(m[i], v[i]).to(p[i].dtype())).reshape(Dims{-1}));
        return concat(parts, 0);
      },
      {}));
  return cs;
}

}  // namespace

const std::vector<OpCase>& op_cases() {
  static const std::vector<OpCase>* cases = new std::vector<OpCase>(build_cases());
  return *cases;
}

}  // namespace modu::test
