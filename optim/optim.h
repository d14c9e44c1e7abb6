// optim/optim.h — AdamW (decoupled weight decay, fused per parameter), global-norm gradient clipping
// and learning-rate schedules.
//
// Invariants: optimizer state (m, v) is f32 for f32/bf16/f16 parameters (f64 for f64), shaped like
// its parameter, created lazily on the first step; the step counter t starts at 0 and bias corrections
// use 1 - beta^t after increment. Parameters whose gradient is undefined are skipped (not decayed).
// Everything runs under no-grad.
#pragma once

#include <string>
#include <vector>

#include "core/ops/op_attrs.h"
#include "nn/module.h"

namespace modu::optim {

struct AdamWConfig {
  double lr = 3e-4;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
};

// A set of AdamW updates (parameter, gradient, m, v, decayed or not) run as adamw_multi_ ops: one op per
// (device, parameter dtype, moment dtype) group, its decayed tensors first (on CUDA one launch for up to
// kAdamWMultiMaxTensors tensors). The same numbers as one adamw_ per tensor, bit for bit. Its vectors keep their
// capacity: no heap allocation per step once warm.
class AdamWBatch {
 public:
  void add(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, bool decay);
  // Runs and clears the batch: decayed tensors with attrs.weight_decay, the others with none.
  void run(const AdamWAttrs& attrs);

 private:
  struct Item {
    Tensor p, g, m, v;
    bool decay;
  };
  std::vector<Item> items_;
  std::vector<Tensor> p_, g_, m_, v_;
  std::vector<char> done_;
};

class AdamW {
 public:
  AdamW(std::vector<nn::ParamRef> params, AdamWConfig config);

  // One update with learning rate `lr` (the schedule's value for this step); every gradient is
  // multiplied by `grad_scale` first (clip_coefficient(), folded into the update: no pass of its own).
  void step(double lr, double grad_scale = 1.0);
  int64_t steps_taken() const { return t_; }
  const AdamWConfig& config() const { return config_; }

  // State for checkpoints: ("m/<param name>", tensor), ("v/<param name>", tensor) for every parameter
  // (states not created yet are created as zeros so the set is complete), and the step counter.
  std::vector<std::pair<std::string, Tensor*>> state_tensors();
  void set_steps_taken(int64_t t) { t_ = t; }
  // Bytes of optimizer state (for the ZeRO measurements).
  int64_t state_bytes() const;

 private:
  void ensure_state(size_t i);
  std::vector<nn::ParamRef> params_;
  std::vector<Tensor> m_, v_;
  AdamWBatch batch_;
  AdamWConfig config_;
  int64_t t_ = 0;
};

// Scales every gradient by min(1, max_norm / (total_norm + 1e-6)) when max_norm > 0.
// Returns the total L2 norm before clipping.
double clip_grad_norm(const std::vector<nn::ParamRef>& params, double max_norm);
// The total L2 norm of the gradients.
double grad_norm(const std::vector<nn::ParamRef>& params);
// Sum of squares of every element of every tensor (any mix of devices and dtypes), accumulated in f64 within
// each (device, dtype) group: one sum_squares op and one read-back per group.
double sum_of_squares(const std::vector<Tensor>& tensors);
// The factor global-norm clipping multiplies the gradients by: min(1, max_norm / (norm + 1e-6)), or 1
// when max_norm <= 0. AdamW::step(lr, clip_coefficient(grad_norm(params), max_norm)) is clip_grad_norm
// followed by step(lr) without the extra pass over the gradients.
double clip_coefficient(double norm, double max_norm);
// The adamw_ op's attributes for update number `t` (1-based: bias corrections 1 - beta^t) at learning rate
// `lr`, gradients scaled by `grad_scale`; weight_decay is left 0 for the caller to set per parameter.
AdamWAttrs adamw_attrs(const AdamWConfig& config, int64_t t, double lr, double grad_scale);

// Linear warmup from 0 to max_lr over `warmup` steps, then cosine or linear decay to min_lr at
// `total` steps, constant min_lr after; "constant" keeps max_lr after warmup.
struct LrSchedule {
  std::string kind = "cosine";  // cosine | linear | constant
  int64_t warmup = 0;
  int64_t total = 1;
  double max_lr = 3e-4;
  double min_lr = 3e-5;
  double at(int64_t step) const;  // step counts from 0
};

}  // namespace modu::optim
