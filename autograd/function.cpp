// autograd/function.cpp — custom-function tape nodes (see function.h).
#include "autograd/function.h"

#include <algorithm>

#include "autograd/node.h"
#include "core/ops/dispatch.h"

namespace modu::autograd {

std::vector<Tensor> record_function(const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs,
                                    FunctionBackward backward) {
  const bool any_grad =
      std::any_of(inputs.begin(), inputs.end(), [](const Tensor& t) { return t.defined() && t.requires_grad(); });
  if (!grad_mode_enabled() || !any_grad) return outputs;
  Node* n = Node::make();
  n->op = OpId::copy;  // unused: function nodes are recognised by `function`
  n->next.assign_default(inputs.size());
  n->input_meta.assign_default(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& t = inputs[i];
    n->input_meta[i] = InputMeta{t.shape(), t.dtype(), t.device()};
    if (!t.requires_grad()) continue;
    if (t.impl()->grad_fn) {
      n->next[i].node = t.impl()->grad_fn;
      n->next[i].output_nr = t.impl()->output_nr;
    } else {
      n->next[i].leaf = t.impl_ref();
    }
  }
  n->n_outputs = static_cast<uint32_t>(outputs.size());
  n->function = std::make_unique<FunctionBackward>(std::move(backward));
  n->seq = next_sequence_number();
  Ref<GradNodeBase> self(n);
  std::vector<Tensor> result;
  for (size_t o = 0; o < outputs.size(); ++o) {
    Tensor t = outputs[o].detach();
    if (is_floating(t.dtype())) {
      t.impl()->requires_grad = true;
      t.impl()->grad_fn = self;
      t.impl()->output_nr = static_cast<uint32_t>(o);
    }
    result.push_back(t);
  }
  return result;
}

void function_backward(Node& n, std::vector<Tensor>& grad_in) {
  std::vector<Tensor> grad_out(n.n_outputs);
  for (size_t o = 0; o < n.grad_out.size() && o < grad_out.size(); ++o) grad_out[o] = n.grad_out[o];
  std::vector<Tensor> g = (*n.function)(grad_out);
  MODU_CHECK(g.size() == grad_in.size(), "autograd::record_function: the backward returned ", g.size(),
             " gradients for ", grad_in.size(), " inputs");
  for (size_t i = 0; i < g.size(); ++i) grad_in[i] = g[i];
}

}  // namespace modu::autograd
