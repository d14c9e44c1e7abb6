// recipes/gpt/pipeline.cpp — one rank's pipeline stage of the GPT family (see pipeline.h).
#include "recipes/gpt/pipeline.h"

#include <chrono>

#include "core/ops/ops.h"
#include "nn/autocast.h"

namespace modu::gpt {

namespace {

using parallel::Action;
using parallel::ActionKind;

// Tags: a message is named by the virtual stage that receives it and its micro-batch (MPI guarantees tags
// up to 32767). The links deliver in order anyway; a wrong tag would hang instead of mixing data.
int tag_of(int micro, int receiver, int K) { return (micro * K + receiver) % 30000; }
constexpr int kTiedTag = 30001, kEvalTag = 30002;

int peer(const parallel::Communicator* link) { return 1 - link->rank(); }  // links have two ranks

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

}  // namespace

PipelineStage::PipelineStage(GPT& model, parallel::Communicator& pp, const std::string& schedule, int virtual_stages,
                             int micro_batches)
    : model_(model), pp_(pp), p_(pp.size()), v_(virtual_stages), stage_(pp.rank()), m_(micro_batches) {
  const GptConfig& c = model_.config();
  MODU_CHECK(p_ >= 2, "pipeline: a PP group of ", p_, " rank; set parallel.pp >= 2 or run without a pipeline");
  MODU_CHECK(static_cast<int64_t>(p_) * v_ <= c.n_layer, "pipeline: parallel.pp (", p_, ") x parallel.virtual_stages (",
             v_, ") = ", p_ * v_, " chunks, but model.n_layer is ", c.n_layer,
             "; every chunk needs at least one layer: lower parallel.pp or parallel.virtual_stages");
  schedule_ = parallel::make_schedule(schedule, p_, v_, m_);
  // One two-rank communicator per link and direction (see pipeline.h); every rank takes part in every split.
  for (int dir = 0; dir < 2; ++dir)
    for (int i = 0; i < p_; ++i) {
      const int next = (i + 1) % p_;
      const bool member = stage_ == i || stage_ == next;
      links_.push_back(pp_.split(member ? 0 : 1, stage_));
      if (!member) continue;
      parallel::Communicator* link = links_.back().get();
      if (dir == 0) {  // activations i -> next
        if (stage_ == i) fwd_send_ = link;
        if (stage_ == next) fwd_recv_ = link;
      } else {  // gradients next -> i
        if (stage_ == next) bwd_send_ = link;
        if (stage_ == i) bwd_recv_ = link;
      }
    }
  if (!c.is_llama() && last()) {
    NoGradGuard no_grad;
    for (const nn::ParamRef& r : model_.parameters())
      if (r.name == "wte.weight") tied_ = r.tensor->clone();
    tied_.set_requires_grad(true);
  }
}

PipelineStage::~PipelineStage() = default;

std::pair<int64_t, int64_t> PipelineStage::layers(int chunk) const {
  const int64_t L = model_.config().n_layer, K = static_cast<int64_t>(p_) * v_;
  const int64_t k = static_cast<int64_t>(chunk) * p_ + stage_;
  return {k * L / K, (k + 1) * L / K};
}

int PipelineStage::owner_of(const std::string& name) const {
  const int64_t L = model_.config().n_layer, K = static_cast<int64_t>(p_) * v_;
  if (starts_with(name, "wte.") || starts_with(name, "wpe.") || starts_with(name, "embed_tokens.")) return 0;
  for (const char* prefix : {"h.", "layers."})
    if (starts_with(name, prefix)) {
      const int64_t layer = std::stoll(name.substr(std::string(prefix).size()));
      for (int64_t k = 0; k < K; ++k)
        if (layer < (k + 1) * L / K) return static_cast<int>(k);
    }
  return static_cast<int>(K - 1);  // ln_f, norm, lm_head
}

std::vector<nn::ParamRef> PipelineStage::parameters() const {
  std::vector<nn::ParamRef> out;
  for (const nn::ParamRef& r : model_.parameters())
    if (owner_of(r.name) % p_ == stage_) out.push_back(r);
  return out;
}

void PipelineStage::release_other_stages() {
  NoGradGuard no_grad;
  for (const nn::ParamRef& r : model_.parameters())
    if (owner_of(r.name) % p_ != stage_) *r.tensor = Tensor::empty(Dims{0}, r.tensor->dtype(), r.tensor->device());
}

double PipelineStage::forward_backward(const std::vector<data::TokenBatch>& micro_batches, DType compute_dtype,
                                       const std::function<void()>& before_last_backward) {
  MODU_CHECK(static_cast<int>(micro_batches.size()) == m_, "pipeline: ", micro_batches.size(),
             " micro-batches given, the schedule has ", m_);
  const int K = p_ * v_;
  const Device device = model_.parameters().front().tensor->device();
  const int64_t C = model_.config().n_embd;
  struct Slot {
    Tensor in, out, grad_out;  // received activation (a leaf), this chunk's output (or scaled loss), its gradient
  };
  std::vector<Slot> slots(static_cast<size_t>(m_ * v_));
  std::vector<parallel::WorkHandle> sends;
  double loss_sum = 0;
  wait_seconds = 0;
  if (tied_.defined()) tied_.set_grad(Tensor());
  auto timed_recv = [&](parallel::Communicator* link, const Tensor& buf, int tag) {
    auto t0 = std::chrono::steady_clock::now();
    link->recv(buf, peer(link), tag);
    wait_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  // gpt2's wte: the tied head's gradient (complete: the last stage has finished) joins before the last backward.
  const bool tied = !model_.config().is_llama();
  auto receive_tied_grad = [&] {
    NoGradGuard no_grad;
    for (const nn::ParamRef& r : model_.parameters()) {
      if (r.name != "wte.weight") continue;
      Tensor buf = Tensor::empty(r.tensor->shape(), DType::F32, device);
      pp_.recv(buf, p_ - 1, kTiedTag);
      Tensor g = r.tensor->grad();
      r.tensor->set_grad(g.defined() ? add(g, buf) : buf);
    }
  };
  const std::vector<Action>& actions = schedule_.actions[static_cast<size_t>(stage_)];
  size_t last_backward = 0;
  for (size_t i = 0; i < actions.size(); ++i)
    if (actions[i].kind == ActionKind::Backward) last_backward = i;
  for (size_t i = 0; i < actions.size(); ++i) {
    const Action& a = actions[i];
    if (i == last_backward) {
      if (tied && first()) receive_tied_grad();
      if (before_last_backward) before_last_backward();
    }
    Slot& s = slots[static_cast<size_t>(a.micro * v_ + a.chunk)];
    const int k = schedule_.virtual_stage(stage_, a.chunk);
    const data::TokenBatch& mb = micro_batches[static_cast<size_t>(a.micro)];
    // x (B, T, C), or this TP rank's slice (B, T/t, C) under sequence parallelism (its peer holds the same slice)
    const Dims shape{mb.inputs.size(0), model_.local_seq_len(mb.inputs.size(1)), C};
    switch (a.kind) {
      case ActionKind::RecvForward: {
        Tensor buf = Tensor::empty(shape, DType::F32, device);
        timed_recv(fwd_recv_, buf, tag_of(a.micro, k, K));
        s.in = buf.set_requires_grad(true);
        break;
      }
      case ActionKind::Forward: {
        nn::AutocastGuard autocast(compute_dtype);  // bf16 products; the residual stream stays f32
        model_.set_dropout_samples(mb.first_sample);
        Tensor x = k == 0 ? model_.embed(mb.inputs.to(device)) : s.in;
        auto [begin, end] = layers(a.chunk);
        Tensor y = model_.blocks(x, begin, end);
        if (k == K - 1) {
          Tensor loss = model_.loss(model_.head(y, tied_), mb.targets.to(device));
          loss_sum += loss.item();
          s.out = m_ > 1 ? mul_scalar(loss, 1.0 / static_cast<double>(m_)) : loss;
        } else {
          s.out = y.contiguous();
        }
        break;
      }
      case ActionKind::SendForward:
        sends.push_back(fwd_send_->send_async(s.out, peer(fwd_send_), tag_of(a.micro, k + 1, K)));
        break;
      case ActionKind::RecvBackward: {
        s.grad_out = Tensor::empty(shape, DType::F32, device);
        timed_recv(bwd_recv_, s.grad_out, tag_of(a.micro, k, K));
        break;
      }
      case ActionKind::Backward:
        if (k == K - 1)
          s.out.backward();
        else
          s.out.backward(s.grad_out);
        s.out = Tensor();
        s.grad_out = Tensor();
        if (k == 0) s = Slot();
        break;
      case ActionKind::SendBackward:
        sends.push_back(bwd_send_->send_async(s.in.grad().contiguous(), peer(bwd_send_), tag_of(a.micro, k - 1, K)));
        s = Slot();
        break;
    }
  }
  for (parallel::WorkHandle& w : sends) w->wait();
  if (tied && last()) {  // the tied head's part of wte's gradient to stage 0
    NoGradGuard no_grad;
    Tensor g = tied_.grad();
    pp_.send(g.defined() ? g.contiguous() : Tensor::zeros(tied_.shape(), DType::F32, device), 0, kTiedTag);
  }
  return loss_sum;
}

void PipelineStage::sync_tied_weights() {
  if (model_.config().is_llama()) return;
  NoGradGuard no_grad;
  for (const nn::ParamRef& r : model_.parameters()) {
    if (r.name != "wte.weight") continue;
    if (first()) pp_.send(*r.tensor, p_ - 1, kTiedTag);
    if (last()) pp_.recv(tied_, 0, kTiedTag);
  }
}

double PipelineStage::forward_loss(const Tensor& inputs, const Tensor& targets, DType compute_dtype) {
  NoGradGuard no_grad;
  nn::AutocastGuard autocast(compute_dtype);
  const int K = p_ * v_;
  const Device device = model_.parameters().front().tensor->device();
  const Dims shape{inputs.size(0), model_.local_seq_len(inputs.size(1)), model_.config().n_embd};
  double loss = 0;
  // Virtual stages in order; each hands its output to the next one's rank over the PP group.
  for (int k = 0; k < K; ++k) {
    if (k % p_ != stage_) continue;
    Tensor x;
    if (k == 0) {
      x = model_.embed(inputs.to(device));
    } else {
      x = Tensor::empty(shape, DType::F32, device);
      pp_.recv(x, (k - 1) % p_, kEvalTag);
    }
    auto [begin, end] = layers(k / p_);
    Tensor y = model_.blocks(x, begin, end);
    if (k == K - 1)
      loss = model_.loss(model_.head(y, tied_), targets.to(device)).item();
    else
      pp_.send(y.contiguous(), (k + 1) % p_, kEvalTag);
  }
  return loss;
}

}  // namespace modu::gpt
