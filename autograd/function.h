// autograd/function.h — custom functions on the tape: a forward the caller computes, a backward it supplies.
//
// record_function(inputs, outputs, backward): `outputs` were computed from `inputs` by the caller (typically
// with grad mode off, e.g. a collective); they come back as new tensors sharing the outputs' storage whose
// gradient is given by one tape node: when backward reaches it, backward(grad_outputs) runs (with grad mode
// off) and must return one gradient per input, shaped like it (an undefined tensor: no gradient).
// grad_outputs holds one entry per output; an entry no path reached is undefined.
//
// Invariants: nothing is recorded when grad mode is off or no input requires grad (the outputs are returned
// as given); only floating outputs carry gradients; the node runs after every node that consumed its outputs
// (it is created after the nodes the inputs came from, as recompute's scopes are).
#pragma once

#include <functional>
#include <vector>

#include "core/tensor.h"

namespace modu::autograd {

using FunctionBackward = std::function<std::vector<Tensor>(const std::vector<Tensor>& grad_outputs)>;

std::vector<Tensor> record_function(const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs,
                                    FunctionBackward backward);

}  // namespace modu::autograd
