// optim/optim.cpp — AdamW, clipping and schedules (see optim.h).
#include "optim/optim.h"

#include <algorithm>
#include <cmath>

#include "core/ops/dispatch.h"
#include "core/ops/ops.h"

namespace modu::optim {

AdamW::AdamW(std::vector<nn::ParamRef> params, AdamWConfig config)
    : params_(std::move(params)), m_(params_.size()), v_(params_.size()), config_(config) {}

void AdamW::ensure_state(size_t i) {
  if (m_[i].defined()) return;
  const Tensor& p = *params_[i].tensor;
  DType st = p.dtype() == DType::F64 ? DType::F64 : DType::F32;
  m_[i] = Tensor::zeros(p.shape(), st, p.device());
  v_[i] = Tensor::zeros(p.shape(), st, p.device());
}

void AdamWBatch::add(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, bool decay) {
  items_.push_back(Item{param, grad, m, v, decay});
}

void AdamWBatch::run(const AdamWAttrs& attrs) {
  NoGradGuard no_grad;
  done_.assign(items_.size(), 0);
  for (size_t first = 0; first < items_.size(); ++first) {
    if (done_[first]) continue;
    const Item& lead = items_[first];
    auto same = [&](const Item& it) {
      return it.p.device() == lead.p.device() && it.p.dtype() == lead.p.dtype() && it.m.dtype() == lead.m.dtype();
    };
    p_.clear();
    g_.clear();
    m_.clear();
    v_.clear();
    AdamWAttrs a = attrs;
    a.decayed = 0;
    for (bool decayed : {true, false}) {  // the op decays a prefix of its tensors
      for (size_t i = first; i < items_.size(); ++i) {
        Item& it = items_[i];
        if (done_[i] || it.decay != decayed || !same(it)) continue;
        done_[i] = 1;
        p_.push_back(it.p);
        g_.push_back(it.g);
        m_.push_back(it.m);
        v_.push_back(it.v);
        a.decayed += decayed;
      }
    }
    adamw_multi_(p_, g_, m_, v_, a);
  }
  items_.clear();  // drop the references, keep the capacity
  p_.clear();
  g_.clear();
  m_.clear();
  v_.clear();
}

void AdamW::step(double lr, double grad_scale) {
  NoGradGuard no_grad;
  ++t_;
  AdamWAttrs a = adamw_attrs(config_, t_, lr, grad_scale);
  a.weight_decay = config_.weight_decay;
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor& p = *params_[i].tensor;
    const Tensor& g = p.grad();
    if (!g.defined()) continue;
    ensure_state(i);
    batch_.add(p, g.contiguous(), m_[i], v_[i], params_[i].decay);
  }
  batch_.run(a);
}

std::vector<std::pair<std::string, Tensor*>> AdamW::state_tensors() {
  std::vector<std::pair<std::string, Tensor*>> out;
  for (size_t i = 0; i < params_.size(); ++i) {
    ensure_state(i);
    out.emplace_back("m/" + params_[i].name, &m_[i]);
    out.emplace_back("v/" + params_[i].name, &v_[i]);
  }
  return out;
}

int64_t AdamW::state_bytes() const {
  int64_t b = 0;
  for (size_t i = 0; i < m_.size(); ++i)
    if (m_[i].defined()) b += static_cast<int64_t>(m_[i].nbytes() + v_[i].nbytes());
  return b;
}

double sum_of_squares(const std::vector<Tensor>& tensors) {
  // One sum_squares op per (device, dtype) group (a few launches on CUDA, whatever the number of tensors);
  // each group's result is read back once. The group list is reused across calls: no heap allocation per
  // training step once warm (tests/recipes/test_step_allocations.cpp).
  NoGradGuard no_grad;
  thread_local std::vector<Tensor> group;
  double total = 0;
  for (size_t first = 0; first < tensors.size(); ++first) {
    const Tensor& lead = tensors[first];
    auto same = [&](const Tensor& t) { return t.device() == lead.device() && t.dtype() == lead.dtype(); };
    if (std::any_of(tensors.begin(), tensors.begin() + static_cast<std::ptrdiff_t>(first), same)) continue;
    group.clear();
    for (size_t i = first; i < tensors.size(); ++i)
      if (same(tensors[i])) group.push_back(tensors[i]);
    total += sum_squares(group).item();
  }
  group.clear();  // drop the references
  return total;
}

double grad_norm(const std::vector<nn::ParamRef>& params) {
  thread_local std::vector<Tensor> grads;
  grads.clear();
  for (const nn::ParamRef& p : params)
    if (p.tensor->grad().defined()) grads.push_back(p.tensor->grad());
  double norm = std::sqrt(sum_of_squares(grads));
  grads.clear();
  return norm;
}

AdamWAttrs adamw_attrs(const AdamWConfig& config, int64_t t, double lr, double grad_scale) {
  AdamWAttrs a;
  a.lr = lr;
  a.beta1 = config.beta1;
  a.beta2 = config.beta2;
  a.eps = config.eps;
  a.bias_correction1 = 1 - std::pow(config.beta1, static_cast<double>(t));
  a.bias_correction2 = 1 - std::pow(config.beta2, static_cast<double>(t));
  a.grad_scale = grad_scale;
  return a;
}

double clip_coefficient(double norm, double max_norm) {
  return max_norm > 0 && norm > max_norm ? max_norm / (norm + 1e-6) : 1.0;
}

double clip_grad_norm(const std::vector<nn::ParamRef>& params, double max_norm) {
  double norm = grad_norm(params);
  double scale = clip_coefficient(norm, max_norm);
  if (scale != 1.0) {
    NoGradGuard no_grad;
    for (const nn::ParamRef& p : params) {
      Tensor g = p.tensor->grad();
      if (g.defined()) g.mul_(scale);
    }
  }
  return norm;
}

double LrSchedule::at(int64_t step) const {
  if (warmup > 0 && step < warmup) return max_lr * static_cast<double>(step + 1) / static_cast<double>(warmup);
  if (kind == "constant") return max_lr;
  if (step >= total) return min_lr;
  double progress = static_cast<double>(step - warmup) / static_cast<double>(std::max<int64_t>(1, total - warmup));
  if (kind == "linear") return max_lr + (min_lr - max_lr) * progress;
  MODU_CHECK(kind == "cosine", "unknown learning-rate schedule '", kind, "': use cosine, linear or constant");
  return min_lr + 0.5 * (max_lr - min_lr) * (1 + std::cos(M_PI * progress));
}

}  // namespace modu::optim
