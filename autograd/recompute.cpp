// autograd/recompute.cpp — the checkpoint scope and its backward (see recompute.h).
#include "autograd/recompute.h"

#include <algorithm>

#include "autograd/autograd.h"
#include "autograd/node.h"
#include "core/ops/dispatch.h"

namespace modu::autograd {

namespace {
struct LeafCollector {
  std::vector<Tensor> leaves;
};
void collect_leaves(void* ctx, OpId, std::span<const Tensor* const> in) {
  auto* c = static_cast<LeafCollector*>(ctx);
  for (const Tensor* t : in) {
    if (!t->requires_grad() || !t->is_leaf()) continue;
    bool seen = std::any_of(c->leaves.begin(), c->leaves.end(),
                            [&](const Tensor& l) { return l.impl() == t->impl(); });
    if (!seen) c->leaves.push_back(*t);
  }
}
}  // namespace

std::vector<Tensor> checkpoint(const RecomputeFn& fn, const std::vector<Tensor>& inputs) {
  bool any_input_grad = std::any_of(inputs.begin(), inputs.end(), [](const Tensor& t) { return t.requires_grad(); });
  if (!grad_mode_enabled()) return fn(inputs);

  auto state = std::make_unique<RecomputeState>();
  state->rng_before = rng_snapshot();
  LeafCollector collector;
  std::vector<Tensor> outputs;
  {
    NoGradGuard no_grad;
    set_input_observer(&collect_leaves, &collector);
    try {
      outputs = fn(inputs);
    } catch (...) {
      set_input_observer(nullptr, nullptr);
      throw;
    }
    set_input_observer(nullptr, nullptr);
  }
  // Inputs passed to fn are not leaves of the scope unless they are leaves outright.
  std::erase_if(collector.leaves, [&](const Tensor& l) {
    return std::any_of(inputs.begin(), inputs.end(), [&](const Tensor& t) { return t.impl() == l.impl(); });
  });
  if (!any_input_grad && collector.leaves.empty()) return outputs;

  state->rng_after = rng_snapshot();
  state->fn = fn;
  state->inputs = inputs;
  for (const Tensor& t : inputs) state->input_versions.push_back(t.storage()->version());
  state->leaves = collector.leaves;
  state->n_outputs = outputs.size();

  Node* n = Node::make();
  n->op = OpId::copy;  // unused: recompute nodes are recognised by `recompute`
  size_t edges = inputs.size() + state->leaves.size();
  n->next.assign_default(edges);
  n->input_meta.assign_default(edges);
  for (size_t i = 0; i < inputs.size(); ++i) link_input(*n, i, inputs[i]);
  for (size_t j = 0; j < state->leaves.size(); ++j) link_input(*n, inputs.size() + j, state->leaves[j]);
  n->recompute = std::move(state);
  return attach_outputs(n, outputs);  // sequence number after every node the scope's inputs came from
}

void recompute_backward(Node& n, std::vector<Tensor>& grad_in) {
  RecomputeState& s = *n.recompute;
  for (size_t i = 0; i < s.inputs.size(); ++i)
    MODU_CHECK(s.inputs[i].storage()->version() == s.input_versions[i], "backward of a checkpoint scope: input ",
               i, " ", describe(s.inputs[i]), " was modified in place after the forward pass");
  // Fresh leaves standing for the scope's inputs.
  std::vector<Tensor> fresh;
  for (const Tensor& t : s.inputs) {
    Tensor d = t.detach();
    if (t.requires_grad()) d.set_requires_grad(true);
    fresh.push_back(d);
  }
  RngSnapshot now = rng_snapshot();
  rng_restore(s.rng_before);
  std::vector<Tensor> outputs;
  {
    EnableGradGuard grad_on;
    outputs = s.fn(fresh);
  }
  rng_restore(now);
  MODU_CHECK(outputs.size() == s.n_outputs, "checkpoint: the recomputed function returned ", outputs.size(),
             " outputs, the first run ", s.n_outputs);
  std::vector<Tensor> roots, seeds;
  for (size_t o = 0; o < outputs.size(); ++o) {
    if (o < n.grad_out.size() && n.grad_out[o].defined() && outputs[o].requires_grad()) {
      roots.push_back(outputs[o]);
      seeds.push_back(n.grad_out[o]);
    }
  }
  std::vector<Tensor> targets;
  std::vector<size_t> slot_of_target;
  for (size_t i = 0; i < fresh.size(); ++i)
    if (fresh[i].requires_grad()) targets.push_back(fresh[i]), slot_of_target.push_back(i);
  for (size_t j = 0; j < s.leaves.size(); ++j)
    targets.push_back(s.leaves[j]), slot_of_target.push_back(s.inputs.size() + j);
  if (roots.empty()) return;
  std::vector<Tensor> grads = grad(roots, targets, seeds);
  for (size_t k = 0; k < targets.size(); ++k) grad_in[slot_of_target[k]] = grads[k];
}

}  // namespace modu::autograd
