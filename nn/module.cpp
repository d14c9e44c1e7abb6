// nn/module.cpp — parameter registry, initialisation streams and the basic layers.
#include "nn/module.h"

#include "nn/autocast.h"

#include "core/ops/dispatch.h"
#include "core/ops/ops.h"

namespace modu::nn {

std::vector<ParamRef> Module::parameters(const std::string& prefix) {
  std::vector<ParamRef> out;
  for (const Entry& e : params_) out.push_back({prefix + e.name, e.tensor, e.decay});
  for (auto& [name, child] : children_) {
    std::vector<ParamRef> sub = child->parameters(prefix + name + ".");
    out.insert(out.end(), sub.begin(), sub.end());
  }
  return out;
}

int64_t Module::parameter_count() {
  int64_t n = 0;
  for (const ParamRef& p : parameters()) n += p.tensor->numel();
  return n;
}

void Module::zero_grad() {  // walks the tree without building names: no allocation
  for (const Entry& e : params_) e.tensor->set_grad(Tensor());
  for (auto& [name, child] : children_) child->zero_grad();
}

void Module::to(Device device) {
  NoGradGuard no_grad;
  for (const ParamRef& p : parameters()) {
    if (p.tensor->device() == device) continue;
    Tensor moved = p.tensor->detach().to(device);
    moved.set_requires_grad(true);
    *p.tensor = moved;
  }
}

Tensor& Module::register_parameter(const std::string& name, Tensor value, bool decay) {
  MODU_CHECK(value.is_leaf(), "register_parameter: '", name, "' must be a leaf tensor");
  if (!value.requires_grad()) value.set_requires_grad(true);
  storage_.push_back(std::make_unique<Tensor>(std::move(value)));
  params_.push_back({name, storage_.back().get(), decay});
  return *storage_.back();
}

void Module::register_module(const std::string& name, Module* child) { children_.emplace_back(name, child); }

Generator init_generator(uint64_t seed, const std::string& param_name) {
  return Generator(seed, stream_id("init/" + param_name));
}

Tensor init_normal(const Dims& shape, double std, uint64_t seed, const std::string& name) {
  Generator g = init_generator(seed, name);
  return normal(shape, 0.0, std, g);
}

namespace {
thread_local DType t_autocast = DType::F32;
}  // namespace

DType autocast_dtype() { return t_autocast; }
bool autocast_enabled() { return t_autocast != DType::F32; }
AutocastGuard::AutocastGuard(DType compute) : prev_(t_autocast) {
  MODU_CHECK(compute == DType::F32 || compute == DType::BF16 || compute == DType::F16,
             "autocast: compute dtype must be f32 (off), bf16 or f16, got ", dtype_name(compute));
  t_autocast = compute;
}
AutocastGuard::~AutocastGuard() { t_autocast = prev_; }

Tensor autocast(const Tensor& x) {
  if (t_autocast == DType::F32 || !is_floating(x.dtype()) || x.dtype() == t_autocast) return x;
  return x.to(t_autocast);
}

Linear::Linear(int64_t in, int64_t out, bool bias) {
  weight_ = &register_parameter("weight", Tensor::zeros(Dims{out, in}), /*decay=*/true);
  if (bias) bias_ = &register_parameter("bias", Tensor::zeros(Dims{out}), /*decay=*/false);
}

Tensor Linear::forward(const Tensor& x) const {
  Tensor xx = autocast(x), w = autocast(*weight_);
  return bias_ ? linear(xx, w, autocast(*bias_)) : matmul(xx, w.t());
}

Embedding::Embedding(int64_t rows, int64_t dim) {
  weight_ = &register_parameter("weight", Tensor::zeros(Dims{rows, dim}), /*decay=*/false);
}

Tensor Embedding::forward(const Tensor& idx) const { return embedding(*weight_, idx); }

LayerNorm::LayerNorm(int64_t dim, double eps) : eps_(eps) {
  weight_ = &register_parameter("weight", Tensor::ones(Dims{dim}), false);
  bias_ = &register_parameter("bias", Tensor::zeros(Dims{dim}), false);
}

Tensor LayerNorm::forward(const Tensor& x) const { return layer_norm(x, *weight_, *bias_, eps_); }

RMSNorm::RMSNorm(int64_t dim, double eps) : eps_(eps) {
  weight_ = &register_parameter("weight", Tensor::ones(Dims{dim}), false);
}

Tensor RMSNorm::forward(const Tensor& x) const { return rms_norm(x, *weight_, eps_); }

}  // namespace modu::nn
