// parallel/schedule.h — pipeline schedules as data: per stage, the ordered list of actions of one optimizer
// step (forward / backward of micro-batch m on model chunk c, and the sends and receives around them), for
// 1F1B and interleaved 1F1B (Megatron semantics), plus a simulator that runs them with unit costs.
//
// Terms. p stages (ranks of a PP group), v model chunks per stage, m micro-batches per step. The model is cut
// into K = p*v virtual stages; chunk c of stage s is virtual stage k = c*p + s, so activations go
// s -> s+1 (and from stage p-1, chunk c, to stage 0, chunk c+1) and gradients the other way.
//
//   1F1B (v = 1): stage s runs min(p - s - 1, m) warm-up forwards, then alternates one forward, one backward,
//     then drains the remaining backwards.
//   Interleaved (v > 1, m a multiple of p): forward number i of a stage is chunk (i / p) % v of micro-batch
//     (i / (p*v)) * p + i % p; backward number i is chunk v - 1 - (i / p) % v of the same micro-batch. Warm-up
//     forwards: (p - s - 1) * 2 + (v - 1) * p (all m*v when m == p), then 1F1B, then the remaining backwards.
//
// Actions of one stage, in order: RecvForward(m, c) before Forward(m, c) unless c is virtual stage 0;
// SendForward after it unless it is the last virtual stage; RecvBackward before Backward(m, c) unless c is the
// last virtual stage; SendBackward after it unless it is virtual stage 0. A send never blocks; a receive waits
// for its send.
//
// Invariants (tests/parallel/test_schedule.cpp): every (m, c) is forwarded and backwarded exactly once per stage,
// each backward after its forward; on every link (stage -> next or previous stage) the sender's sequence of
// messages equals the receiver's sequence (so a link that carries them in order, as one MPI communicator per
// link and direction does, matches them); the simulation finishes (no deadlock), and with uniform costs its
// bubble is (p - 1) / m for 1F1B and (p - 1) / (v * m) for interleaved 1F1B.

#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace modu::parallel {

enum class ActionKind { Forward, Backward, SendForward, RecvForward, SendBackward, RecvBackward };

struct Action {
  ActionKind kind;
  int micro = 0;  // micro-batch
  int chunk = 0;  // model chunk on this stage (0..v-1)
  bool operator==(const Action&) const = default;
};

std::string describe(const Action& a);  // "F3.1" (forward of micro-batch 3, chunk 1), "sendF3.1", ...

struct PipelineSchedule {
  int stages = 1;         // p
  int chunks = 1;         // v
  int micro_batches = 1;  // m
  bool interleaved = false;
  std::vector<std::vector<Action>> actions;  // [stage] -> ordered actions
  std::vector<int> warmup;                   // [stage] -> forwards before the first backward (by the rule)

  int virtual_stage(int stage, int chunk) const { return chunk * stages + stage; }
  int num_virtual_stages() const { return stages * chunks; }
};

// 1F1B with v = 1, or interleaved 1F1B with v chunks. Throws, saying what to change, when p < 1, m < 1,
// v < 1, v > 1 without interleaving, or interleaved with m not a multiple of p.
PipelineSchedule make_1f1b(int stages, int micro_batches);
PipelineSchedule make_interleaved(int stages, int chunks, int micro_batches);
// "1f1b" or "interleaved" (the recipe's parallel.schedule).
PipelineSchedule make_schedule(const std::string& kind, int stages, int chunks, int micro_batches);

// Runs the schedule with a forward of a whole stage costing `forward` and a backward `backward` (a chunk: 1/v
// of that), messages free and instantaneous. Each stage executes its actions in order; a receive waits for the
// matching send. Throws when the schedule deadlocks or a receive has no matching send.
struct SimResult {
  double makespan = 0;       // time until the last stage finishes
  double busy = 0;           // compute time of one stage: m * (forward + backward)
  std::vector<double> idle;  // [stage] makespan - busy
  double bubble = 0;         // max idle / busy
};
SimResult simulate(const PipelineSchedule& s, double forward = 1.0, double backward = 2.0);

}  // namespace modu::parallel
