// autograd/node.h — the tape node (internal to autograd/).
//
// Invariants: a Node owns no heap memory for ops with at most 4 inputs and 3 outputs (SmallVec inline
// storage); nodes are pooled. Saved tensors keep the storage version they had when saved; using one
// whose version moved raises an error naming the op. grad_out holds the gradients of the node's
// outputs while a backward pass is running and is emptied once the node has run.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "core/ops/op_attrs.h"
#include "core/rng.h"
#include "core/small_vector.h"
#include "core/tensor.h"

namespace modu::autograd {

class Node;

// Where an input's gradient goes: the producing node's output, or a leaf tensor.
struct Edge {
  Ref<GradNodeBase> node;  // a Node; null for leaves and inputs that need no gradient
  Ref<TensorImpl> leaf;    // set for leaf inputs that require grad
  uint32_t output_nr = 0;
  bool defined() const { return node || leaf; }
};

struct InputMeta {
  Dims shape;
  DType dtype = DType::F32;
  Device device;
};

struct SavedTensor {
  Tensor tensor;
  uint64_t version = 0;
};

// State of an activation-recomputation scope (autograd/recompute.cpp).
struct RecomputeState {
  std::function<std::vector<Tensor>(const std::vector<Tensor>&)> fn;
  std::vector<Tensor> inputs;        // as given (detached copies made at backward)
  std::vector<uint64_t> input_versions;
  std::vector<Tensor> leaves;        // parameters read inside the scope
  RngSnapshot rng_before, rng_after;
  size_t n_outputs = 0;
};

class Node final : public GradNodeBase {
 public:
  OpId op = OpId::neg;
  OpAttrs attrs;
  uint64_t seq = 0;
  uint32_t n_outputs = 1;  // outputs the op produced (variadic ops: this call's count)
  SmallVec<Edge, 4> next;
  SmallVec<InputMeta, 4> input_meta;
  SmallVec<SavedTensor, 4> saved_in;   // indexed by input position; undefined when not saved
  SmallVec<SavedTensor, 4> saved_out;  // indexed by output position (4: add_layer_norm, inline)
  SmallVec<Tensor, 4> grad_out;        // during backward
  std::unique_ptr<RecomputeState> recompute;
  // A custom function's backward (autograd/function.h): grad_outputs -> one gradient per input.
  std::unique_ptr<std::function<std::vector<Tensor>(const std::vector<Tensor>&)>> function;
  // Backward engine bookkeeping.
  uint64_t epoch = 0;
  int32_t deps = 0;
  bool released = false;

  Node();
  ~Node() override;
  static Node* make();

 protected:
  void destroy_self() override;
};

inline Node* as_node(GradNodeBase* b) { return static_cast<Node*>(b); }

// The gradient rule: fills grad_in (one per input) from node.grad_out. Defined in derivatives.cpp.
void apply_gradient_rule(Node& node, std::vector<Tensor>& grad_in);
// Which inputs / outputs a rule needs saved (bit i = input or output i).
struct SaveSpec {
  uint32_t inputs = 0;
  uint32_t outputs = 0;
};
SaveSpec save_spec(OpId op);

// Creation order of nodes (the ready queue runs later nodes first).
uint64_t next_sequence_number();

// For nodes built by hand (record_function, checkpoint scopes): edge `slot` of n records t's shape, dtype
// and device, and points at t's grad_fn (or t itself, a leaf) when t requires grad.
void link_input(Node& n, size_t slot, const Tensor& t);
// Stamps n's sequence number and output count and returns `outputs` detached, the floating ones made
// outputs of n (requires_grad, grad_fn, output_nr).
std::vector<Tensor> attach_outputs(Node* n, const std::vector<Tensor>& outputs);

}  // namespace modu::autograd
