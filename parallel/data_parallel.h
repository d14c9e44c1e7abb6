// parallel/data_parallel.h — data parallelism: bucketed gradient averaging overlapped with backward,
// and AdamW unsharded (ZeRO-0) or with its state sharded over the DP ranks (ZeRO-1, ZeRO-2).
//
// Buckets. The parameters, in reverse order (the order backward finishes them), are packed into
// buckets of about bucket_mb MiB; each bucket is one flat buffer of B elements padded to a multiple of
// the DP size n, cut into n equal shards: rank r owns elements [r*B/n, (r+1)*B/n) of every bucket.
//
//   bucket 0 (last params)            bucket 1                      ...
//   [ p11 | p10 | p9 |pad]            [ p8 ... p3 |pad]
//   [ r0  | r1  | r2 | r3 ]           [ r0 | r1 | r2 | r3 ]          <- shard owners for n = 4
//
// A step, with accumulation over A micro-batches:
//   prepare_backward(sync = a == A-1) before each backward: no communication on accumulation
//     micro-steps; on the last, each parameter's grad-ready hook (autograd/) counts down its bucket, and a
//     complete bucket is packed and launched non-blocking (buckets launch in index order, the same on
//     every rank): ZeRO-0/1 all-reduce (average), ZeRO-2 reduce-scatter (average) into this rank's shard;
//   finish_gradient_sync(): launches what is left, waits for everything, and writes the averaged
//     gradient back into each .grad (ZeRO-0/1; ZeRO-2 keeps only the shard and drops .grad);
//   grad_norm(): the norm of the averaged gradient, the same value on every rank (of the parameters not
//     left out by options.leave_out_of_norm);
//   step(lr, grad_scale): clipping folded into the update (optim::clip_coefficient). ZeRO-0: AdamW on
//     every parameter (replicated); ZeRO-1/2: AdamW on this rank's shard only (element-wise, so
//     bit-identical to the unsharded update), then all-gather of the updated shards.
//
// Invariants:
//  - The gradient averaged over DP equals one process's gradient of the same global batch up to the
//    rounding of the sums (the communicator's reductions are bit-identical on every rank, so the
//    parameters stay replicated bit for bit on every DP rank).
//  - With one rank and ZeRO-0 nothing is hooked and nothing copied (plain AdamW), unless
//    force_communication asks for the whole path.
//  - Optimizer state is f32, like optim::AdamW's; sharded state covers exactly the parameters' elements
//    (padding has none), and optimizer_pieces() lists it as (parameter, flat range) pieces for checkpoints.
//  - Overlap accounting (overlap(), always on: a steady_clock read per grad-ready hook, no allocation). Each
//    hook first polls the launched buckets' Work::is_completed() in launch order (collectives of one
//    communicator complete in issue order), so a bucket's communication is "in flight" from the launch of
//    its non-blocking collective until its completion is first observed (resolution: the gap between two
//    hooks). The collectives progress without the caller (the MPI backend's worker thread, NCCL's stream);
//    polling only observes. comm_s is the wall time with at least one bucket in flight (the union of the
//    buckets' intervals: they run one after the other, so a sum would count queueing twice); exposed_s the
//    time finish_gradient_sync() blocked in wait() on buckets not yet complete. Each such wait lies inside
//    its bucket's interval, so 0 <= exposed_s <= comm_s and hidden_fraction() = 1 - exposed/comm is in [0, 1].
//  - Memory, honestly: the flat bucket buffers (one gradient-sized f32 copy) persist across steps in every
//    stage; ZeRO-2 drops each .grad once packed and keeps 1/n of the averaged gradient, so it saves the
//    .grad copy but not the staging buffer (freeing buckets between steps is left for later).

#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

#include "optim/optim.h"
#include "parallel/comm.h"

namespace modu::parallel {

struct DataParallelOptions {
  int zero = 0;           // 0, 1 or 2
  double bucket_mb = 25;  // bucket size in MiB of gradient
  // Run the bucketed path (hooks, packing, collectives) even on one rank with ZeRO-0, where it is
  // otherwise skipped: for checks of a one-rank communicator (e.g. NCCL on a single GPU).
  bool force_communication = false;
  // Per parameter (empty: none): 1 = left out of grad_norm(). Tensor parallelism leaves the TP-replicated
  // parameters out on TP ranks > 0, so the norm summed over the TP group counts each of them once.
  std::vector<char> leave_out_of_norm;
};

// Optimizer state of elements [begin, end) of the flattened parameter `param` (index into the parameter list).
// Unsharded state (ZeRO-0) has one piece per parameter with m and v shaped like it; sharded state has 1-D views
// (end - begin elements) into this rank's flat state.
struct StatePiece {
  size_t param = 0;
  int64_t begin = 0, end = 0;
  Tensor m, v;
};

// Where the last synchronised step's gradient communication went (see the header comment), in seconds.
struct OverlapStats {
  double backward_s = 0;  // prepare_backward(true) to finish_gradient_sync(): the window that can hide it
  double comm_s = 0;      // wall time with at least one gradient bucket's collective in flight
  double exposed_s = 0;   // finish_gradient_sync() blocked waiting for them after backward
  double gather_s = 0;    // ZeRO-1/2: step() blocked on the parameter all-gather (never behind backward)
  // 1 - exposed / comm; 1 when nothing was communicated.
  double hidden_fraction() const { return comm_s > 0 ? 1.0 - exposed_s / comm_s : 1.0; }
};

class DataParallel {
 public:
  DataParallel(std::vector<nn::ParamRef> params, Communicator& dp, optim::AdamWConfig adamw,
               DataParallelOptions options);
  ~DataParallel();
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  void prepare_backward(bool sync);
  void finish_gradient_sync();
  double grad_norm();
  void step(double lr, double grad_scale = 1.0);

  int zero() const { return options_.zero; }
  bool sharded() const { return options_.zero > 0; }
  Communicator& comm() { return dp_; }
  const std::vector<nn::ParamRef>& params() const { return params_; }
  int64_t steps_taken() const;
  void set_steps_taken(int64_t t);

  // This rank's optimizer state (see StatePiece); creates the state when it does not exist yet.
  std::vector<StatePiece> optimizer_pieces();
  int64_t optimizer_state_bytes() const;
  int num_buckets() const { return static_cast<int>(buckets_.size()); }
  // The last synchronised step's overlap accounting, and bucket i's time in flight in it.
  const OverlapStats& overlap() const { return overlap_; }
  double bucket_in_flight_s(int i) const;

 private:
  struct Segment {
    size_t param;
    int64_t offset;  // in the bucket
    int64_t numel;
  };
  struct Bucket {
    std::vector<Segment> segments;
    int64_t padded = 0;  // elements, a multiple of the DP size
    Tensor flat;         // (padded): packed gradients, then gathered parameters
    Tensor shard_grad;   // ZeRO-2: (padded / n) averaged gradient of this rank's
                         // shard
    Tensor m, v;         // ZeRO-1/2: (padded / n) AdamW state of this rank's shard
    int pending = 0;
    bool launched = false;
    WorkHandle work;
    std::chrono::steady_clock::time_point launched_at, done_at;  // of this step's collective
  };

  void on_grad_ready(size_t param);
  void launch_ready_buckets();
  void launch(Bucket& b);
  void poll_completions();  // marks buckets [next_done_, next_launch_) found complete, in order
  int64_t shard_len(const Bucket& b) const { return b.padded / dp_.size(); }
  // This rank's shard of `b` intersected with each segment: (segment, first, last) in bucket elements.
  template <class F>
  void for_each_owned(const Bucket& b, F&& f) const;

  std::vector<nn::ParamRef> params_;
  Communicator& dp_;
  DataParallelOptions options_;
  bool active_ = false;
  optim::AdamWConfig adamw_config_;
  std::unique_ptr<optim::AdamW> replicated_;  // ZeRO-0
  optim::AdamWBatch adamw_batch_;             // ZeRO-1/2: this rank's pieces, one adamw_multi_ per step
  int64_t t_ = 0;                             // ZeRO-1/2 step counter
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_;  // param -> bucket
  std::vector<char> had_grad_;     // param got a gradient in this step's last backward
  size_t next_launch_ = 0;
  size_t next_done_ = 0;  // buckets before it were observed complete
  OverlapStats overlap_;
  std::chrono::steady_clock::time_point backward_start_;
  bool sync_ = false;
};

}  // namespace modu::parallel
