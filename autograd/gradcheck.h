// autograd/gradcheck.h — finite-difference gradient checking.
//
// gradcheck(f, inputs) compares, for every input that requires grad, the tape's gradient of
// L = sum(f(inputs) * W) (W a fixed random projection of f's output) with central differences
// (L(x + eps e_j) - L(x - eps e_j)) / (2 eps), element by element. Inputs may be non-contiguous views;
// elements are perturbed in place in their storage. Meant for f64 inputs.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace modu::autograd {

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-7;
  double rtol = 1e-5;
  uint64_t seed = 1234;
};

struct GradcheckResult {
  bool ok = true;
  int64_t checked = 0;          // elements compared
  double max_abs_error = 0;
  std::string first_failure;    // "input 1, element 7: tape 0.31 vs numeric 0.29"
};

using TensorFn = std::function<Tensor(const std::vector<Tensor>&)>;

GradcheckResult gradcheck(const TensorFn& f, const std::vector<Tensor>& inputs, const GradcheckOptions& opt = {});

}  // namespace modu::autograd
