// parallel/schedule.cpp — 1F1B and interleaved 1F1B action lists, and their simulator (see schedule.h).
#include "parallel/schedule.h"

#include <algorithm>
#include <map>
#include <sstream>
#include <utility>

#include "core/check.h"

namespace modu::parallel {

std::string describe(const Action& a) {
  static const char* names[] = {"F", "B", "sendF", "recvF", "sendB", "recvB"};
  std::ostringstream os;
  os << names[static_cast<int>(a.kind)] << a.micro << "." << a.chunk;
  return os.str();
}

namespace {

void check_sizes(int p, int v, int m) {
  MODU_CHECK(p >= 1, "pipeline: ", p, " stages; parallel.pp must be at least 1");
  MODU_CHECK(v >= 1, "pipeline: parallel.virtual_stages = ", v, "; it must be at least 1");
  MODU_CHECK(m >= 1, "pipeline: ", m,
             " micro-batches per step; it must be at least 1 (train.batch_size / "
             "(DP x train.micro_batch_size))");
}

// Appends a compute action with its receive before and its send after (none at the ends of the model).
void emit(PipelineSchedule& s, int stage, ActionKind kind, int micro, int chunk) {
  std::vector<Action>& out = s.actions[stage];
  const int k = s.virtual_stage(stage, chunk), last = s.num_virtual_stages() - 1;
  if (kind == ActionKind::Forward) {
    if (k > 0) out.push_back({ActionKind::RecvForward, micro, chunk});
    out.push_back({ActionKind::Forward, micro, chunk});
    if (k < last) out.push_back({ActionKind::SendForward, micro, chunk});
  } else {
    if (k < last) out.push_back({ActionKind::RecvBackward, micro, chunk});
    out.push_back({ActionKind::Backward, micro, chunk});
    if (k > 0) out.push_back({ActionKind::SendBackward, micro, chunk});
  }
}

// The warm-up / steady / cool-down pattern shared by both schedules: `fwd(i)` and `bwd(i)` give the
// (micro, chunk) of the i-th forward and backward of the stage.
template <class F, class B>
void build_stage(PipelineSchedule& s, int stage, int total, int warmup, F fwd, B bwd) {
  s.warmup[stage] = warmup;
  for (int i = 0; i < warmup; ++i) {
    auto [mb, c] = fwd(i);
    emit(s, stage, ActionKind::Forward, mb, c);
  }
  for (int i = 0; i < total - warmup; ++i) {
    auto [fm, fc] = fwd(warmup + i);
    emit(s, stage, ActionKind::Forward, fm, fc);
    auto [bm, bc] = bwd(i);
    emit(s, stage, ActionKind::Backward, bm, bc);
  }
  for (int i = std::max(0, total - warmup); i < total; ++i) {
    auto [bm, bc] = bwd(i);
    emit(s, stage, ActionKind::Backward, bm, bc);
  }
}

}  // namespace

PipelineSchedule make_1f1b(int p, int m) {
  check_sizes(p, 1, m);
  PipelineSchedule s;
  s.stages = p;
  s.chunks = 1;
  s.micro_batches = m;
  s.actions.resize(p);
  s.warmup.resize(p);
  auto id = [](int i) { return std::pair<int, int>{i, 0}; };
  for (int r = 0; r < p; ++r) build_stage(s, r, m, std::min(p - r - 1, m), id, id);
  return s;
}

PipelineSchedule make_interleaved(int p, int v, int m) {
  check_sizes(p, v, m);
  MODU_CHECK(m % p == 0, "pipeline: the interleaved schedule needs the micro-batches per step (", m,
             ") to be a multiple of parallel.pp (", p,
             "): change train.batch_size or train.micro_batch_size, "
             "or use parallel.schedule = \"1f1b\"");
  PipelineSchedule s;
  s.stages = p;
  s.chunks = v;
  s.micro_batches = m;
  s.interleaved = true;
  s.actions.resize(p);
  s.warmup.resize(p);
  const int total = m * v;
  auto micro = [=](int i) { return (i / (p * v)) * p + i % p; };
  auto fwd = [=](int i) { return std::pair<int, int>{micro(i), (i / p) % v}; };
  auto bwd = [=](int i) { return std::pair<int, int>{micro(i), v - 1 - (i / p) % v}; };
  for (int r = 0; r < p; ++r) {
    const int warmup = m == p ? total : std::min((p - r - 1) * 2 + (v - 1) * p, total);
    build_stage(s, r, total, warmup, fwd, bwd);
  }
  return s;
}

PipelineSchedule make_schedule(const std::string& kind, int p, int v, int m) {
  if (kind == "1f1b") {
    MODU_CHECK(v == 1, "parallel.virtual_stages = ", v,
               " needs parallel.schedule = \"interleaved\"; set "
               "parallel.virtual_stages = 1 for 1f1b");
    return make_1f1b(p, m);
  }
  MODU_CHECK(kind == "interleaved", "parallel.schedule = \"", kind, "\": use 1f1b or interleaved");
  MODU_CHECK(v >= 2,
             "parallel.schedule = \"interleaved\" needs parallel.virtual_stages >= 2 (model chunks per "
             "stage), got ",
             v);
  return make_interleaved(p, v, m);
}

SimResult simulate(const PipelineSchedule& s, double forward, double backward) {
  const int p = s.stages, v = s.chunks;
  // Messages in flight per (from stage, to stage, is_backward): (micro, chunk at the receiver, time sent).
  struct Msg {
    int micro, chunk;
    double time;
  };
  std::map<std::tuple<int, int, bool>, std::vector<Msg>> sent;
  std::map<std::tuple<int, int, bool>, size_t> received;
  std::vector<size_t> pc(p, 0);
  std::vector<double> clock(p, 0.0);
  const double f = forward / v, b = backward / v;
  for (bool progress = true; progress;) {
    progress = false;
    for (int r = 0; r < p; ++r) {
      const std::vector<Action>& acts = s.actions[r];
      while (pc[r] < acts.size()) {
        const Action& a = acts[pc[r]];
        if (a.kind == ActionKind::Forward) {
          clock[r] += f;
        } else if (a.kind == ActionKind::Backward) {
          clock[r] += b;
        } else if (a.kind == ActionKind::SendForward) {
          const int to = (r + 1) % p, c = r == p - 1 ? a.chunk + 1 : a.chunk;
          sent[{r, to, false}].push_back({a.micro, c, clock[r]});
        } else if (a.kind == ActionKind::SendBackward) {
          const int to = (r + p - 1) % p, c = r == 0 ? a.chunk - 1 : a.chunk;
          sent[{r, to, true}].push_back({a.micro, c, clock[r]});
        } else {
          const bool bwd = a.kind == ActionKind::RecvBackward;
          const int from = bwd ? (r + 1) % p : (r + p - 1) % p;
          const auto key = std::make_tuple(from, r, bwd);
          size_t& n = received[key];
          const std::vector<Msg>& q = sent[key];
          if (n >= q.size()) break;  // not sent yet: wait
          MODU_CHECK(q[n].micro == a.micro && q[n].chunk == a.chunk, "pipeline schedule: stage ", r, " expects ",
                     describe(a), " from stage ", from, " but the next message on that link is micro-batch ",
                     q[n].micro, " chunk ", q[n].chunk);
          clock[r] = std::max(clock[r], q[n].time);
          ++n;
        }
        ++pc[r];
        progress = true;
      }
    }
  }
  for (int r = 0; r < p; ++r)
    MODU_CHECK(pc[r] == s.actions[r].size(), "pipeline schedule deadlocks: stage ", r, " waits at action ", pc[r], " (",
               describe(s.actions[r][pc[r]]), ")");
  for (const auto& [key, q] : sent)
    MODU_CHECK(received[key] == q.size(), "pipeline schedule: ", q.size() - received[key], " messages from stage ",
               std::get<0>(key), " to stage ", std::get<1>(key), " are never received");
  SimResult res;
  res.makespan = *std::max_element(clock.begin(), clock.end());
  res.busy = s.micro_batches * (forward + backward);
  for (int r = 0; r < p; ++r) {
    res.idle.push_back(res.makespan - res.busy);
    res.bubble = std::max(res.bubble, res.idle.back() / res.busy);
  }
  return res;
}

}  // namespace modu::parallel
