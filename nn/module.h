// nn/module.h — Module: a named tree of parameters, and the building blocks models are made of.
//
// Invariants: parameters are leaf tensors (requires_grad) owned by their module; a parameter's name
// is its path in the tree ("h.3.attn.c_attn.weight"), stable across runs and layouts, and is what
// initialisation streams, checkpoints and exporters key on. Each parameter carries whether AdamW's
// weight decay applies to it (matrices yes; biases, norms and embeddings no, by default).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/rng.h"
#include "core/tensor.h"

namespace modu::nn {

struct ParamRef {
  std::string name;
  Tensor* tensor;
  bool decay;
};

class Module {
 public:
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  virtual ~Module() = default;

  // Every parameter of this module and its children, depth first in registration order.
  std::vector<ParamRef> parameters(const std::string& prefix = "");
  int64_t parameter_count();
  // Drops every parameter's .grad: the next backward writes fresh gradients (no zero-fill, no +=);
  // a parameter no backward reaches keeps no gradient, and the optimizer skips it.
  void zero_grad();
  // Moves parameters (and .grad) to a device / dtype in place of the old tensors.
  void to(Device device);

 protected:
  Tensor& register_parameter(const std::string& name, Tensor value, bool decay);
  void register_module(const std::string& name, Module* child);

 private:
  struct Entry {
    std::string name;
    Tensor* tensor;
    bool decay;
  };
  std::vector<Entry> params_;
  std::vector<std::pair<std::string, Module*>> children_;
  std::vector<std::unique_ptr<Tensor>> storage_;
};

// Initialisation: every parameter draws from its own stream keyed by (seed, name), so the values do
// not depend on construction order, device or parallel layout (initialise, then slice).
Generator init_generator(uint64_t seed, const std::string& param_name);
Tensor init_normal(const Dims& shape, double std, uint64_t seed, const std::string& name);

// ---- building blocks ---------------------------------------------------------------------------

class Linear : public Module {
 public:
  // weight (out, in); y = x @ weight^T + bias.
  Linear(int64_t in, int64_t out, bool bias);
  Tensor forward(const Tensor& x) const;
  Tensor& weight() { return *weight_; }
  Tensor& bias() { return *bias_; }
  bool has_bias() const { return bias_ != nullptr; }

 private:
  Tensor* weight_ = nullptr;
  Tensor* bias_ = nullptr;
};

class Embedding : public Module {
 public:
  Embedding(int64_t rows, int64_t dim);
  Tensor forward(const Tensor& idx) const;
  Tensor& weight() { return *weight_; }

 private:
  Tensor* weight_ = nullptr;
};

class LayerNorm : public Module {
 public:
  explicit LayerNorm(int64_t dim, double eps = 1e-5);
  Tensor forward(const Tensor& x) const;
  const Tensor& weight() const { return *weight_; }
  const Tensor& bias() const { return *bias_; }
  double eps() const { return eps_; }

 private:
  Tensor* weight_ = nullptr;
  Tensor* bias_ = nullptr;
  double eps_;
};

class RMSNorm : public Module {
 public:
  explicit RMSNorm(int64_t dim, double eps = 1e-6);
  Tensor forward(const Tensor& x) const;
  const Tensor& weight() const { return *weight_; }
  double eps() const { return eps_; }

 private:
  Tensor* weight_ = nullptr;
  double eps_;
};

}  // namespace modu::nn
