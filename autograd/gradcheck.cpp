// autograd/gradcheck.cpp — see gradcheck.h.
#include "autograd/gradcheck.h"

#include <cmath>
#include <sstream>

#include "autograd/autograd.h"
#include "core/ops/dispatch.h"
#include "core/ops/ops.h"
#include "core/rng.h"

namespace modu::autograd {

namespace {
double* element_ptr(const Tensor& t, int64_t linear) {
  int64_t off = 0;
  for (int d = t.dim() - 1; d >= 0; --d) {
    off += (linear % t.size(d)) * t.stride(d);
    linear /= t.size(d);
  }
  return static_cast<double*>(t.data_ptr()) + off;
}
}  // namespace

GradcheckResult gradcheck(const TensorFn& f, const std::vector<Tensor>& inputs, const GradcheckOptions& opt) {
  GradcheckResult res;
  std::vector<Tensor> targets;
  std::vector<size_t> target_index;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].requires_grad()) {
      MODU_CHECK(inputs[i].dtype() == DType::F64 && inputs[i].device().is_cpu(),
                 "gradcheck: input ", i, " must be an f64 CPU tensor, got ", describe(inputs[i]));
      targets.push_back(inputs[i]);
      target_index.push_back(i);
    }
  }
  MODU_CHECK(!targets.empty(), "gradcheck: no input requires grad");

  Tensor out = f(inputs);
  MODU_CHECK(is_floating(out.dtype()), "gradcheck: the function's output must be floating");
  Generator gen(opt.seed, stream_id("gradcheck"));
  Tensor w = normal(out.shape(), 0.0, 1.0, gen, out.dtype());
  Tensor loss = sum(mul(out, w));
  Tensor roots[] = {loss};
  std::vector<Tensor> tape = grad(roots, targets);

  NoGradGuard no_grad;
  auto objective = [&]() { return sum(mul(f(inputs), w)).item(); };
  for (size_t k = 0; k < targets.size(); ++k) {
    const Tensor& x = targets[k];
    Tensor g = tape[k].defined() ? tape[k].contiguous() : Tensor::zeros(x.shape(), DType::F64);
    for (int64_t j = 0; j < x.numel(); ++j) {
      double* p = element_ptr(x, j);
      double orig = *p;
      *p = orig + opt.eps;
      double lp = objective();
      *p = orig - opt.eps;
      double lm = objective();
      *p = orig;
      double numeric = (lp - lm) / (2 * opt.eps);
      double analytic = read_element(g, j);
      double err = std::abs(analytic - numeric);
      res.max_abs_error = std::max(res.max_abs_error, err);
      ++res.checked;
      if (!(err <= opt.atol + opt.rtol * std::abs(numeric)) && res.ok) {
        res.ok = false;
        std::ostringstream os;
        os << "input " << target_index[k] << " " << describe(x) << ", element " << j << ": tape " << analytic
           << " vs numeric " << numeric << " (error " << err << ")";
        res.first_failure = os.str();
      }
    }
  }
  return res;
}

}  // namespace modu::autograd
