// autograd/tape.cpp — the recorder the dispatcher calls, the backward engine, grad-ready hooks.
#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>

#include "autograd/autograd.h"
#include "autograd/node.h"
#include "core/ops/dispatch.h"
#include "core/ops/ops.h"

namespace modu::autograd {

namespace {

std::atomic<uint64_t> g_seq{0};
std::atomic<uint64_t> g_epoch{0};
std::atomic<int64_t> g_live{0};

struct HookTable {
  std::mutex mu;
  std::vector<GradReadyHook> hooks;
  std::vector<int32_t> free_slots;
};
HookTable& hook_table() {
  static HookTable* t = new HookTable();
  return *t;
}

void record(OpId op, const OpAttrs& attrs, std::span<const Tensor* const> in, std::span<Tensor> out) {
  if (gradient_kind(op) == GradientKind::NotDifferentiable) return;
  Node* n = Node::make();
  n->op = op;
  n->attrs = attrs;
  n->seq = g_seq.fetch_add(1, std::memory_order_relaxed);
  n->n_outputs = static_cast<uint32_t>(out.size());
  n->next.assign_default(in.size());
  n->input_meta.assign_default(in.size());
  SaveSpec spec = save_spec(op);
  n->saved_in.assign_default((spec.inputs ? in.size() : 0));
  for (size_t i = 0; i < in.size(); ++i) {
    const Tensor& t = *in[i];
    n->input_meta[i] = InputMeta{t.shape(), t.dtype(), t.device()};
    if (t.requires_grad()) {
      TensorImpl* impl = t.impl();
      if (impl->grad_fn) {
        n->next[i].node = impl->grad_fn;
        n->next[i].output_nr = impl->output_nr;
      } else {
        n->next[i].leaf = t.impl_ref();
      }
    }
    if (spec.inputs & (1u << i)) n->saved_in[i] = SavedTensor{t, t.storage()->version()};
  }
  n->saved_out.assign_default(spec.outputs ? out.size() : 0);
  Ref<GradNodeBase> self(n);
  for (size_t o = 0; o < out.size(); ++o) {
    Tensor& t = out[o];
    if (spec.outputs & (1u << o)) n->saved_out[o] = SavedTensor{t.detach(), t.storage()->version()};
    if (!is_floating(t.dtype())) continue;  // indices and masks carry no gradient
    TensorImpl* impl = t.impl();
    impl->requires_grad = true;
    impl->grad_fn = self;
    impl->output_nr = static_cast<uint32_t>(o);
  }
}

struct Installer {
  Installer() { set_tape_recorder(&record); }
};
Installer g_installer;

// One backward pass. Engines are reused per thread and nesting depth, so a steady-state pass
// allocates nothing once its vectors have grown.
struct Engine {
  uint64_t epoch = 0;
  bool retain_graph = false;
  std::vector<Node*> stack, ready, visited;
  std::vector<TensorImpl*> leaves;
  std::vector<Tensor> grad_in;  // scratch: one gradient per input of the running node
  std::vector<Tensor>* captures = nullptr;  // gradients of leaves with capture_slot >= 0

  static bool later_first(const Node* a, const Node* b) { return a->seq < b->seq; }  // max-heap on seq

  void count(Node* root) {
    if (root->epoch == epoch) return;
    root->epoch = epoch;
    root->deps = 0;
    visited.push_back(root);
    stack.push_back(root);
    while (!stack.empty()) {
      Node* n = stack.back();
      stack.pop_back();
      for (Edge& e : n->next) {
        if (e.node) {
          Node* m = as_node(e.node.get());
          if (m->epoch != epoch) {
            m->epoch = epoch;
            m->deps = 0;
            visited.push_back(m);
            stack.push_back(m);
          }
          ++m->deps;
        } else if (e.leaf) {
          TensorImpl* l = e.leaf.get();
          if (l->pending++ == 0) leaves.push_back(l);
        }
      }
    }
  }

  // A cast node's output gradient may arrive both in f32 (a master gradient, derivatives.cpp) and in the
  // output's 16-bit dtype: the sum is taken in the wider dtype (the cast's rule takes either).
  void add_to_slot(Tensor& slot, const Tensor& g) {
    if (!slot.defined()) {
      slot = g;
    } else if (slot.dtype() == g.dtype()) {
      slot = add(slot, g);
    } else {
      const DType wide = dtype_size(slot.dtype()) >= dtype_size(g.dtype()) ? slot.dtype() : g.dtype();
      slot = add(slot.dtype() == wide ? slot : cast(slot, wide), g.dtype() == wide ? g : cast(g, wide));
    }
  }

  // Gradient slots of a node's outputs, made on first use.
  static Tensor& grad_slot(Node* n, uint32_t output_nr) {
    if (n->grad_out.size() == 0) n->grad_out.assign_default(std::max<size_t>(n->n_outputs, 1));
    return n->grad_out[output_nr];
  }

  void accumulate_leaf(TensorImpl* leaf, const Tensor& g) {
    if (leaf->capture_slot >= 0) {
      add_to_slot((*captures)[static_cast<size_t>(leaf->capture_slot)], g);
      return;
    }
    MODU_CHECK(g.dtype() == leaf->dtype && g.shape() == leaf->shape, "backward: gradient ", describe(g),
               " does not match its leaf ", describe(Tensor(Ref<TensorImpl>(leaf))));
    if (!leaf->grad) {
      // The leaf needs a buffer of its own (later passes accumulate into it): take g's when nothing
      // else can see it, else copy.
      const Storage& s = *g.storage();
      bool exclusive = g.is_contiguous() && g.offset() == 0 && s.nbytes() == g.nbytes() && s.use_count() == 1 &&
                       g.impl()->use_count() == 1;
      leaf->grad = exclusive ? g.detach().impl_ref() : copy(g).impl_ref();
    } else {
      Tensor acc(leaf->grad);
      acc.add_(g);
    }
  }

  void leaf_done(TensorImpl* leaf) {
    if (leaf->capture_slot >= 0 || leaf->hook_slot < 0) return;
    GradReadyHook hook;
    {
      HookTable& t = hook_table();
      std::lock_guard<std::mutex> lock(t.mu);
      hook = t.hooks[static_cast<size_t>(leaf->hook_slot)];
    }
    if (hook) hook(Tensor(Ref<TensorImpl>(leaf)));
  }

  void run(std::span<const Tensor> roots, std::span<const Tensor> grads) {
    epoch = g_epoch.fetch_add(1) + 1;
    for (size_t i = 0; i < roots.size(); ++i)
      if (roots[i].impl()->grad_fn) count(as_node(roots[i].impl()->grad_fn.get()));
    // Seed.
    for (size_t i = 0; i < roots.size(); ++i) {
      const Tensor& r = roots[i];
      Tensor g = i < grads.size() ? grads[i] : Tensor();
      if (!g.defined()) {
        MODU_CHECK(r.numel() == 1, "backward: root ", describe(r),
                   " is not a scalar; pass its gradient explicitly");
        g = Tensor::ones(r.shape(), r.dtype(), r.device());
      }
      MODU_CHECK(g.shape() == r.shape(), "backward: gradient ", describe(g), " does not match root ", describe(r));
      TensorImpl* impl = r.impl();
      if (impl->grad_fn) {
        add_to_slot(grad_slot(as_node(impl->grad_fn.get()), impl->output_nr), g);
      } else {
        if (impl->pending++ == 0) leaves.push_back(impl);
        accumulate_leaf(impl, g);
        if (--impl->pending == 0) leaf_done(impl);
      }
    }
    for (Node* n : visited)
      if (n->deps == 0) {
        ready.push_back(n);
        std::push_heap(ready.begin(), ready.end(), later_first);
      }
    while (!ready.empty()) {
      std::pop_heap(ready.begin(), ready.end(), later_first);
      Node* n = ready.back();
      ready.pop_back();
      MODU_CHECK(!n->released, "backward through op '", op_name(n->op),
                 "' a second time: its saved tensors were freed; pass retain_graph=true to the first backward");
      grad_in.assign(n->next.size(), Tensor());
      bool any = false;
      for (const Tensor& g : n->grad_out) any = any || g.defined();
      if (any) apply_gradient_rule(*n, grad_in);
      n->grad_out.clear();
      if (!retain_graph) {
        n->saved_in.clear();
        n->saved_out.clear();
        n->released = true;
      }
      for (size_t i = 0; i < n->next.size(); ++i) {
        Edge& e = n->next[i];
        const Tensor& g = grad_in[i];
        if (g.defined()) {
          const InputMeta& m = n->input_meta[i];
          MODU_CHECK(g.shape() == m.shape, "gradient rule of '", op_name(n->op), "' produced ", describe(g),
                     " for input ", i, " of shape ", m.shape.str(), " (internal error)");
        }
        if (e.node) {
          Node* m = as_node(e.node.get());
          if (g.defined()) add_to_slot(grad_slot(m, e.output_nr), g);
          if (--m->deps == 0) {
            ready.push_back(m);
            std::push_heap(ready.begin(), ready.end(), later_first);
          }
        } else if (e.leaf) {
          TensorImpl* l = e.leaf.get();
          if (g.defined()) accumulate_leaf(l, g);
          if (--l->pending == 0) leaf_done(l);
        }
      }
      grad_in.clear();
    }
  }

  void reset() {
    for (Node* n : visited) n->grad_out.clear();
    for (TensorImpl* l : leaves) l->pending = 0;
    visited.clear();
    leaves.clear();
    stack.clear();
    ready.clear();
    captures = nullptr;
  }
};

thread_local std::vector<std::unique_ptr<Engine>> t_engines;
thread_local size_t t_depth = 0;

struct EngineLease {
  Engine* e;
  EngineLease() {
    if (t_engines.size() <= t_depth) t_engines.push_back(std::make_unique<Engine>());
    e = t_engines[t_depth++].get();
  }
  ~EngineLease() {
    e->reset();
    --t_depth;
  }
};

}  // namespace

Node::Node() { g_live.fetch_add(1, std::memory_order_relaxed); }
Node::~Node() { g_live.fetch_sub(1, std::memory_order_relaxed); }
Node* Node::make() { return ObjectPool<Node>::instance().make(); }
void Node::destroy_self() { ObjectPool<Node>::instance().recycle(this); }

uint64_t next_sequence_number() { return g_seq.fetch_add(1, std::memory_order_relaxed); }

void link_input(Node& n, size_t slot, const Tensor& t) {
  n.input_meta[slot] = InputMeta{t.shape(), t.dtype(), t.device()};
  if (!t.requires_grad()) return;
  if (t.impl()->grad_fn) {
    n.next[slot].node = t.impl()->grad_fn;
    n.next[slot].output_nr = t.impl()->output_nr;
  } else {
    n.next[slot].leaf = t.impl_ref();
  }
}

std::vector<Tensor> attach_outputs(Node* n, const std::vector<Tensor>& outputs) {
  n->n_outputs = static_cast<uint32_t>(outputs.size());
  n->seq = next_sequence_number();  // after every node the inputs came from
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

int64_t live_nodes() { return g_live.load(); }
void install() { set_tape_recorder(&record); }

void backward(std::span<const Tensor> roots, std::span<const Tensor> grads, bool retain_graph) {
  for (const Tensor& r : roots)
    MODU_CHECK(r.defined() && r.requires_grad(), "backward: a root ",
               r.defined() ? describe(r) : std::string("(undefined)"),
               " does not require grad (no op on its path read a tensor with requires_grad)");
  NoGradGuard no_grad;
  EngineLease lease;
  lease.e->retain_graph = retain_graph;
  lease.e->run(roots, grads);
}

std::vector<Tensor> grad(std::span<const Tensor> outputs, std::span<const Tensor> inputs,
                         std::span<const Tensor> grad_outputs, bool retain_graph) {
  std::vector<Tensor> result(inputs.size());
  std::vector<int32_t> previous(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    MODU_CHECK(inputs[i].requires_grad() && inputs[i].is_leaf(), "autograd::grad: input ", i, " ",
               describe(inputs[i]), " must be a leaf that requires grad");
    previous[i] = inputs[i].impl()->capture_slot;
    inputs[i].impl()->capture_slot = static_cast<int32_t>(i);
  }
  struct Restore {
    std::span<const Tensor> in;
    std::vector<int32_t>& prev;
    ~Restore() {
      for (size_t i = 0; i < in.size(); ++i) in[i].impl()->capture_slot = prev[i];
    }
  } restore{inputs, previous};
  for (const Tensor& r : outputs) MODU_CHECK(r.requires_grad(), "autograd::grad: an output does not require grad");
  NoGradGuard no_grad;
  EngineLease lease;
  lease.e->retain_graph = retain_graph;
  lease.e->captures = &result;
  lease.e->run(outputs, grad_outputs);
  return result;
}

void register_grad_ready_hook(const Tensor& leaf, GradReadyHook hook) {
  MODU_CHECK(leaf.is_leaf() && leaf.requires_grad(), "register_grad_ready_hook: ", describe(leaf),
             " is not a leaf that requires grad");
  HookTable& t = hook_table();
  std::lock_guard<std::mutex> lock(t.mu);
  TensorImpl* impl = leaf.impl();
  if (impl->hook_slot >= 0) {
    t.hooks[static_cast<size_t>(impl->hook_slot)] = std::move(hook);
    return;
  }
  if (!t.free_slots.empty()) {
    impl->hook_slot = t.free_slots.back();
    t.free_slots.pop_back();
    t.hooks[static_cast<size_t>(impl->hook_slot)] = std::move(hook);
  } else {
    impl->hook_slot = static_cast<int32_t>(t.hooks.size());
    t.hooks.push_back(std::move(hook));
  }
}

void remove_grad_ready_hook(const Tensor& leaf) {
  HookTable& t = hook_table();
  std::lock_guard<std::mutex> lock(t.mu);
  TensorImpl* impl = leaf.impl();
  if (impl->hook_slot < 0) return;
  t.hooks[static_cast<size_t>(impl->hook_slot)] = nullptr;
  t.free_slots.push_back(impl->hook_slot);
  impl->hook_slot = -1;
}

}  // namespace modu::autograd

namespace modu {
void Tensor::backward(const Tensor& grad, bool retain_graph) const {
  Tensor roots[] = {*this};
  Tensor grads[] = {grad};
  autograd::backward(roots, grads, retain_graph);
}
}  // namespace modu
