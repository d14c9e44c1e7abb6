// autograd/autograd.h — reverse-mode automatic differentiation over the op table.
//
// Recording: when grad mode is on and an op reads a tensor that requires grad, the dispatcher calls
// the tape recorder (installed by this layer), which makes one pooled Node holding the op, its
// attributes, edges to the producers of its inputs, and the tensors its gradient rule needs
// (autograd/derivatives.cpp), each with the storage version it had when saved.
//
// backward(): dependency counting over the graph, then nodes run in a ready queue ordered by creation
// (latest first), so parameters' gradients become ready in reverse forward order, which is what
// data-parallel bucketing wants. Rules run with grad mode off (no higher-order gradients).
//
// The gradient rule of ARCHITECTURE §4: gradients of leaves (parameters) ACCUMULATE into .grad (+=);
// gradients of activations are WRITTEN (a fresh tensor per contribution, summed if several).
#pragma once

#include <functional>
#include <span>
#include <vector>

#include "core/ops/op_attrs.h"
#include "core/tensor.h"

namespace modu::autograd {

// Runs backward from `roots`; grads[i] seeds roots[i] (an undefined grad means ones for a scalar root).
void backward(std::span<const Tensor> roots, std::span<const Tensor> grads = {}, bool retain_graph = false);

// Gradients of `outputs` with respect to the leaf tensors `inputs` (which must require grad), returned
// rather than accumulated into .grad. Unreached inputs give undefined tensors.
std::vector<Tensor> grad(std::span<const Tensor> outputs, std::span<const Tensor> inputs,
                         std::span<const Tensor> grad_outputs = {}, bool retain_graph = false);

// A hook called once per backward pass when a leaf's gradient is complete (all its uses seen).
using GradReadyHook = std::function<void(const Tensor& leaf)>;
void register_grad_ready_hook(const Tensor& leaf, GradReadyHook hook);
void remove_grad_ready_hook(const Tensor& leaf);

// What autograd knows of an op (derivatives.cpp).
enum class GradientKind { Differentiable, NotDifferentiable };
GradientKind gradient_kind(OpId op);
// Why an op has no gradient (for the coverage report); empty for differentiable ops.
const char* not_differentiable_reason(OpId op);

// Master gradients (on by default; MODU_MASTER_GRADIENTS=0 in the environment turns them off at start): when a
// product's operand is autocast's 16-bit copy of an f32 parameter (nn/autocast.h), the product writes that
// parameter's gradient in f32 directly (matmul_accumulate / sum_accumulate), and the copy's cast passes it on,
// instead of rounding the gradient to 16 bits and widening it again with a cast. The f32 result is the same
// number before rounding, so with them off each such gradient is exactly the bf16 rounding of the one with them
// on. Process-wide.
void set_master_gradients(bool on);
bool master_gradients();

// Number of tape nodes alive (tests; a freed graph drops to zero).
int64_t live_nodes();

// Makes sure the recorder is installed (the layer installs it at load; this is for explicit use).
void install();

}  // namespace modu::autograd
