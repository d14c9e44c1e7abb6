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
  for (size_t i = 0; i < inputs.size(); ++i) link_input(*n, i, inputs[i]);
  n->function = std::make_unique<FunctionBackward>(std::move(backward));
  return attach_outputs(n, outputs);
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
