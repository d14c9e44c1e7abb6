// Tests of parallel/schedule.h as data, no model and no MPI: the order of 1F1B, Megatron's warm-up counts,
// every (micro-batch, chunk) forwarded and backwarded exactly once per stage with the backward after the
// forward, sends matching receives on every link, no deadlock in the simulator, and the simulated bubble equal
// to (p - 1) / m (1F1B) and (p - 1) / (v m) (interleaved) with uniform costs.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>
#include <set>

#include "parallel/schedule.h"

using namespace modu::parallel;

namespace {

std::string order(const PipelineSchedule& s, int stage, bool compute_only = true) {
  std::string out;
  for (const Action& a : s.actions[stage]) {
    if (compute_only && a.kind != ActionKind::Forward && a.kind != ActionKind::Backward) continue;
    if (!out.empty()) out += ' ';
    out += describe(a);
  }
  return out;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// Every (m, c) forwarded once and backwarded once per stage, backward after forward; sends and receives at
// the ends of the model only where they belong; warm-up forwards (+1 of the steady state) before the first backward.
void check_structure(const PipelineSchedule& s) {
  const int p = s.stages, v = s.chunks, m = s.micro_batches;
  for (int r = 0; r < p; ++r) {
    std::map<std::pair<int, int>, int> fwd_at, bwd_at;
    int forwards_before_backward = -1, forwards = 0;
    const std::vector<Action>& acts = s.actions[r];
    for (size_t i = 0; i < acts.size(); ++i) {
      const Action& a = acts[i];
      ASSERT_GE(a.micro, 0);
      ASSERT_LT(a.micro, m);
      ASSERT_GE(a.chunk, 0);
      ASSERT_LT(a.chunk, v);
      const int k = s.virtual_stage(r, a.chunk);
      const std::pair<int, int> key{a.micro, a.chunk};
      if (a.kind == ActionKind::Forward) {
        EXPECT_TRUE(fwd_at.emplace(key, static_cast<int>(i)).second) << "stage " << r << ": two " << describe(a);
        ++forwards;
      } else if (a.kind == ActionKind::Backward) {
        EXPECT_TRUE(bwd_at.emplace(key, static_cast<int>(i)).second) << "stage " << r << ": two " << describe(a);
        ASSERT_TRUE(fwd_at.count(key)) << "stage " << r << ": " << describe(a) << " before its forward";
        if (forwards_before_backward < 0) forwards_before_backward = forwards;
      } else if (a.kind == ActionKind::RecvForward) {
        EXPECT_GT(k, 0);
        ASSERT_LT(i + 1, acts.size());
        EXPECT_EQ(acts[i + 1], (Action{ActionKind::Forward, a.micro, a.chunk}));
      } else if (a.kind == ActionKind::SendForward) {
        EXPECT_LT(k, p * v - 1);
        ASSERT_GT(i, 0u);
        EXPECT_EQ(acts[i - 1], (Action{ActionKind::Forward, a.micro, a.chunk}));
      } else if (a.kind == ActionKind::RecvBackward) {
        EXPECT_LT(k, p * v - 1);
        ASSERT_LT(i + 1, acts.size());
        EXPECT_EQ(acts[i + 1], (Action{ActionKind::Backward, a.micro, a.chunk}));
      } else {
        EXPECT_GT(k, 0);
        ASSERT_GT(i, 0u);
        EXPECT_EQ(acts[i - 1], (Action{ActionKind::Backward, a.micro, a.chunk}));
      }
    }
    EXPECT_EQ(fwd_at.size(), static_cast<size_t>(m * v)) << "stage " << r;
    EXPECT_EQ(bwd_at.size(), static_cast<size_t>(m * v)) << "stage " << r;
    // Warm-up forwards, then the steady state's first forward (unless warm-up ran them all).
    EXPECT_EQ(forwards_before_backward, s.warmup[r] + (s.warmup[r] < m * v ? 1 : 0)) << "stage " << r;
  }
}

}  // namespace

TEST(Schedule, OneF1BOrderAndWarmup) {
  PipelineSchedule s = make_1f1b(4, 8);
  EXPECT_EQ(s.warmup, (std::vector<int>{3, 2, 1, 0}));
  EXPECT_EQ(order(s, 0), "F0.0 F1.0 F2.0 F3.0 B0.0 F4.0 B1.0 F5.0 B2.0 F6.0 B3.0 F7.0 B4.0 B5.0 B6.0 B7.0");
  EXPECT_EQ(order(s, 3), "F0.0 B0.0 F1.0 B1.0 F2.0 B2.0 F3.0 B3.0 F4.0 B4.0 F5.0 B5.0 F6.0 B6.0 F7.0 B7.0");
  EXPECT_EQ(order(s, 1, false),
            "recvF0.0 F0.0 sendF0.0 recvF1.0 F1.0 sendF1.0 recvF2.0 F2.0 sendF2.0 recvB0.0 B0.0 sendB0.0 "
            "recvF3.0 F3.0 sendF3.0 recvB1.0 B1.0 sendB1.0 recvF4.0 F4.0 sendF4.0 recvB2.0 B2.0 sendB2.0 "
            "recvF5.0 F5.0 sendF5.0 recvB3.0 B3.0 sendB3.0 recvF6.0 F6.0 sendF6.0 recvB4.0 B4.0 sendB4.0 "
            "recvF7.0 F7.0 sendF7.0 recvB5.0 B5.0 sendB5.0 recvB6.0 B6.0 sendB6.0 recvB7.0 B7.0 sendB7.0");
  // Fewer micro-batches than stages: warm-up is capped at m.
  EXPECT_EQ(make_1f1b(4, 2).warmup, (std::vector<int>{2, 2, 1, 0}));
}

TEST(Schedule, InterleavedOrderAndWarmup) {
  PipelineSchedule s = make_interleaved(2, 2, 4);
  // (p - s - 1) * 2 + (v - 1) * p
  EXPECT_EQ(s.warmup, (std::vector<int>{4, 2}));
  EXPECT_EQ(order(s, 0), "F0.0 F1.0 F0.1 F1.1 F2.0 B0.1 F3.0 B1.1 F2.1 B0.0 F3.1 B1.0 B2.1 B3.1 B2.0 B3.0");
  EXPECT_EQ(order(s, 1), "F0.0 F1.0 F0.1 B0.1 F1.1 B1.1 F2.0 B0.0 F3.0 B1.0 F2.1 B2.1 F3.1 B3.1 B2.0 B3.0");
  EXPECT_EQ(make_interleaved(4, 2, 8).warmup, (std::vector<int>{10, 8, 6, 4}));
  // m == p: every forward first (all m * v).
  EXPECT_EQ(make_interleaved(4, 3, 4).warmup, (std::vector<int>{12, 12, 12, 12}));
}

TEST(Schedule, StructureSendsMatchAndNoDeadlock) {
  for (int p : {1, 2, 3, 4, 8})
    for (int m : {1, 2, 3, 4, 5, 8, 16}) {
      SCOPED_TRACE("1f1b p=" + std::to_string(p) + " m=" + std::to_string(m));
      PipelineSchedule s = make_1f1b(p, m);
      check_structure(s);
      EXPECT_NO_THROW(simulate(s));
    }
  for (int p : {2, 3, 4})
    for (int v : {2, 3, 4})
      for (int g : {1, 2, 3, 4}) {
        SCOPED_TRACE("interleaved p=" + std::to_string(p) + " v=" + std::to_string(v) + " m=" + std::to_string(g * p));
        PipelineSchedule s = make_interleaved(p, v, g * p);
        check_structure(s);
        EXPECT_NO_THROW(simulate(s));
      }
}

TEST(Schedule, SimulatorCatchesMismatchAndDeadlock) {
  PipelineSchedule s = make_1f1b(2, 2);
  std::swap(s.actions[1][0], s.actions[1][3]);  // stage 1 receives micro-batch 1 first
  std::swap(s.actions[1][1], s.actions[1][4]);
  EXPECT_NE(error_of([&] { simulate(s); }).find("expects"), std::string::npos);
  PipelineSchedule d = make_1f1b(2, 1);
  // Stage 0 waits for the gradient before sending the activation it depends on.
  d.actions[0] = {{ActionKind::RecvBackward, 0, 0},
                  {ActionKind::Forward, 0, 0},
                  {ActionKind::SendForward, 0, 0},
                  {ActionKind::Backward, 0, 0}};
  EXPECT_NE(error_of([&] { simulate(d); }).find("deadlocks"), std::string::npos);
}

TEST(Schedule, BubbleMatchesFormula) {
  for (int p : {2, 4, 8})
    for (int m : {4, 8, 16, 32})
      for (double b : {1.0, 2.0}) {
        SimResult r = simulate(make_1f1b(p, m), 1.0, b);
        EXPECT_NEAR(r.bubble, static_cast<double>(p - 1) / m, 1e-12) << "1f1b p=" << p << " m=" << m << " b=" << b;
      }
  for (int p : {2, 4})
    for (int v : {2, 3, 4})
      for (int g : {2, 4}) {
        const int m = g * p;
        SimResult r = simulate(make_interleaved(p, v, m), 1.0, 1.0);
        EXPECT_NEAR(r.bubble, static_cast<double>(p - 1) / (v * m), 1e-12)
            << "interleaved p=" << p << " v=" << v << " m=" << m;
      }
}

TEST(Schedule, Refusals) {
  EXPECT_NE(error_of([] { make_interleaved(4, 2, 6); }).find("multiple of parallel.pp"), std::string::npos);
  EXPECT_NE(error_of([] { make_schedule("1f1b", 2, 2, 4); }).find("interleaved"), std::string::npos);
  EXPECT_NE(error_of([] { make_schedule("interleaved", 2, 1, 4); }).find("virtual_stages >= 2"), std::string::npos);
  EXPECT_NE(error_of([] { make_schedule("gpipe", 2, 1, 4); }).find("1f1b or interleaved"), std::string::npos);
  EXPECT_NE(error_of([] { make_1f1b(2, 0); }).find("micro-batches"), std::string::npos);
}
