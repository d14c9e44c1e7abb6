// recipes/gpt/pipeline.h — pipeline parallelism for the GPT family: one rank's stage, running a
// parallel/schedule.h schedule (1F1B or interleaved 1F1B) over the micro-batches of a step.
//
// Partition. The n_layer blocks are cut into K = p*v contiguous chunks of floor/ceil equal size (virtual
// stage k holds layers [k*L/K, (k+1)*L/K)); virtual stage k runs on stage k % p as its chunk k / p. The
// embedding (wte, wpe / embed_tokens) belongs to virtual stage 0, the final norm, LM head and loss to
// virtual stage K-1. Every rank builds the whole model from the global seed (same weights as one process),
// owns, updates and checkpoints only its stage's parameters (parameters()), and frees the others once the
// whole model has been read (release_other_stages(): they become empty tensors).
//
// Traffic. Activations x (B, T, C) f32 go k -> k+1 and their gradients back, point to point (under tensor
// parallelism each TP rank to the peer with its TP index; with sequence parallelism x is its slice (B, T/t, C)).
// Each link (stage s -> s+1 mod p) and direction has its own two-rank communicator, split from the PP group: an MPI
// communicator runs its operations in issue order on one thread, so a link that only sends (or only
// receives) on each side delivers messages in the schedule's order (tests/parallel/test_schedule.cpp checks
// that both sides agree on it) and never waits behind traffic of the other direction.
//
// Tied GPT-2 head. wte is a parameter of stage 0; the last stage multiplies by a copy of it (not a parameter).
// After its backwards, the last stage sends the copy's gradient to stage 0, which adds it to wte's before its
// own last backward (the last stage is done by then); after the optimizer step, stage 0 sends the updated wte
// back (sync_tied_weights). So wte gets the same gradient as in
// one process (up to the order of the sums), is updated and counted in the gradient norm once, and is
// checkpointed once. Under TP x PP wte is vocabulary-parallel: each TP rank's copy (and its gradient) is its own
// row shard, exchanged with the stage-0 rank of the same TP index (the PP groups are per TP index).
//
// Invariants: the losses and gradients of a step equal one process's on the same global batch up to the
// rounding of the sums (scaling by 1/m, m micro-batches per DP rank, as the one-process loop does); dropout
// masks are keyed by the samples (gpt::DropoutKey), so they are one process's too.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "data/token_loader.h"
#include "parallel/comm.h"
#include "parallel/schedule.h"
#include "recipes/gpt/model.h"

namespace modu::gpt {

class PipelineStage {
 public:
  // `pp`: the PP group (rank = stage). Throws, saying what to change, when the layout cannot be run:
  // p * v > n_layer, a bad schedule name, or an interleaved schedule whose micro-batches are not a multiple of p.
  PipelineStage(GPT& model, parallel::Communicator& pp, const std::string& schedule, int virtual_stages,
                int micro_batches);
  ~PipelineStage();

  int stage() const { return stage_; }
  int stages() const { return p_; }
  bool first() const { return stage_ == 0; }
  bool last() const { return stage_ == p_ - 1; }
  const parallel::PipelineSchedule& schedule() const { return schedule_; }
  // Layers [begin, end) of this stage's chunk c.
  std::pair<int64_t, int64_t> layers(int chunk) const;
  // The parameters this stage owns (global names), in the model's order.
  std::vector<nn::ParamRef> parameters() const;

  // One step's forwards and backwards: micro_batches[i] (inputs, targets (B, T); inputs read on the first stage,
  // targets on the last, first_sample everywhere: it keys the dropout masks) is micro-batch i. Each micro-batch's
  // loss is scaled by 1/m before backward. Afterwards every owned parameter's
  // .grad holds this DP rank's gradient of the step (wte's including the tied head's part). Returns the sum of
  // the m unscaled losses on the last stage, 0 elsewhere. Seconds spent waiting in receives go to wait_seconds.
  // `before_last_backward` runs once, right before this stage's last backward, when every owned gradient but
  // that pass's part is in .grad (DP: arm the gradient hooks there, so buckets are averaged while it runs).
  double forward_backward(const std::vector<data::TokenBatch>& micro_batches, DType compute_dtype,
                          const std::function<void()>& before_last_backward = nullptr);
  // Replaces every parameter other stages own by an empty (0-element) tensor on the same device, so a rank
  // holds only its stage's weights. After the last read of the whole model (init, init_from, resume).
  void release_other_stages();
  // gpt2: stage 0's wte into the last stage's copy (after each optimizer step, resume or init). Collective
  // over the PP group; nothing for llama.
  void sync_tied_weights();
  // Forward only through the pipeline (no grad): the loss of one batch on the last stage, 0 elsewhere.
  // Collective over the PP group.
  double forward_loss(const Tensor& inputs, const Tensor& targets, DType compute_dtype);

  double wait_seconds = 0;  // receive waits of the last forward_backward (for the bubble measurement)

 private:
  int owner_of(const std::string& param_name) const;  // virtual stage of a parameter

  GPT& model_;
  parallel::Communicator& pp_;
  int p_ = 1, v_ = 1, stage_ = 0, m_ = 1;
  parallel::PipelineSchedule schedule_;
  std::vector<std::unique_ptr<parallel::Communicator>> links_;  // every split, kept alive in creation order
  parallel::Communicator *fwd_send_ = nullptr, *fwd_recv_ = nullptr, *bwd_send_ = nullptr, *bwd_recv_ = nullptr;
  Tensor tied_;  // gpt2, last stage: the copy of wte.weight the head multiplies by
};

}  // namespace modu::gpt
