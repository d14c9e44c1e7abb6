// autograd/recompute.h — activation recomputation (gradient checkpointing).
//
// checkpoint(fn, inputs) runs fn without recording; it keeps only the inputs. In backward it runs fn
// again with recording on (random streams restored, so dropout draws the same masks) and back-propagates
// through that fresh graph. Parameters that fn reads are found while it first runs, so their gradients
// and grad-ready hooks behave as if no checkpoint were there.
#pragma once

#include <functional>
#include <vector>

#include "core/tensor.h"

namespace modu::autograd {

using RecomputeFn = std::function<std::vector<Tensor>(const std::vector<Tensor>& inputs)>;

std::vector<Tensor> checkpoint(const RecomputeFn& fn, const std::vector<Tensor>& inputs);

}  // namespace modu::autograd
