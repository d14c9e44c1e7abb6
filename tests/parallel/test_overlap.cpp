// Overlap accounting of DataParallel (parallel/data_parallel.h, OverlapStats): on one process, with a
// communicator whose collectives take a known time (one after another, like the MPI backend's worker thread),
// the counters must say where that time went: all of it exposed when finish_gradient_sync() follows backward at
// once, none of it when backward (here: a sleep before finish) outlasts it; 0 <= exposed <= comm, and the
// hidden fraction in [0, 1]. No MPI.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "core/ops/ops.h"
#include "parallel/data_parallel.h"

using namespace modu;
using namespace modu::parallel;

namespace {

using Clock = std::chrono::steady_clock;

// Complete at `ready`: is_completed() says so only from then on, wait() sleeps until then.
class DelayedWork final : public Work {
 public:
  explicit DelayedWork(Clock::time_point ready) : ready_(ready) {}
  void wait() override { std::this_thread::sleep_until(ready_); }
  bool is_completed() override { return Clock::now() >= ready_; }

 private:
  Clock::time_point ready_;
};

// One rank; every collective is the identity (as the single communicator) and completes `delay` after the
// later of its launch and the previous collective's completion.
class DelayedCommunicator final : public Communicator {
 public:
  explicit DelayedCommunicator(std::chrono::milliseconds delay) : delay_(delay) {}
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend() const override { return "delayed"; }
  WorkHandle all_reduce_async(const Tensor&, ReduceOp) override { return next(); }
  WorkHandle reduce_scatter_async(const Tensor& in, const Tensor& out, ReduceOp) override {
    NoGradGuard no_grad;
    Tensor(out).copy_(in);  // the output's storage; the handle is const
    return next();
  }
  WorkHandle all_gather_async(const Tensor& in, const Tensor& out) override {
    NoGradGuard no_grad;
    Tensor(out).copy_(in);  // the output's storage; the handle is const
    return next();
  }
  WorkHandle broadcast_async(const Tensor&, int) override { return next(); }
  WorkHandle send_async(const Tensor&, int, int) override { MODU_FAIL("send on a 1-rank communicator"); }
  WorkHandle recv_async(const Tensor&, int, int) override { MODU_FAIL("recv on a 1-rank communicator"); }
  void barrier() override {}
  std::unique_ptr<Communicator> split(int, int) override { return std::make_unique<DelayedCommunicator>(delay_); }
  int64_t bytes_sent() const override { return 0; }

 private:
  WorkHandle next() {
    last_ = std::max(last_, Clock::now()) + delay_;
    return std::make_shared<DelayedWork>(last_);
  }
  std::chrono::milliseconds delay_;
  Clock::time_point last_;
};

}  // namespace

TEST(DataParallelOverlap, CountsExposedAndHiddenCommunication) {
  constexpr int kDelayMs = 50;
  for (int zero : {0, 2}) {
    std::vector<Tensor> store;
    Generator gen(5);
    for (Dims d : {Dims{5, 7}, Dims{7}, Dims{3, 4, 2}, Dims{11}}) store.push_back(normal(d, 0.0, 1.0, gen));
    std::vector<nn::ParamRef> params;
    for (size_t i = 0; i < store.size(); ++i) {
      store[i].set_requires_grad(true);
      params.push_back(nn::ParamRef{std::to_string(i).insert(0, 1, 'p'), &store[i], true});
    }
    DelayedCommunicator comm{std::chrono::milliseconds(kDelayMs)};
    // 1e-5 MiB = 2 elements: one bucket per parameter; force_communication: the bucketed path on one rank.
    DataParallelOptions options;
    options.zero = zero;
    options.bucket_mb = 1e-5;
    options.force_communication = true;
    DataParallel dp(params, comm, optim::AdamWConfig{}, options);
    const int n = dp.num_buckets();
    ASSERT_EQ(n, 4);
    EXPECT_EQ(dp.overlap().comm_s, 0.0);
    EXPECT_EQ(dp.overlap().hidden_fraction(), 1.0);   // nothing communicated yet
    const double floor = n * kDelayMs * 1e-3 * 0.99;  // the collectives run one after another
    auto run_step = [&](std::chrono::milliseconds after_backward) {
      for (Tensor& p : store) p.set_grad(Tensor());
      dp.prepare_backward(true);
      Tensor loss;
      for (Tensor& p : store) loss = loss.defined() ? add(loss, sum(mul(p, p))) : sum(mul(p, p));
      loss.backward();
      std::this_thread::sleep_for(after_backward);  // a longer backward, as far as the buckets can tell
      dp.finish_gradient_sync();
      dp.step(1e-3);
      const OverlapStats& o = dp.overlap();
      EXPECT_GE(o.backward_s, after_backward.count() * 1e-3);
      EXPECT_GE(o.comm_s, floor) << "zero " << zero;
      EXPECT_GE(o.exposed_s, 0.0);
      EXPECT_LE(o.exposed_s, o.comm_s);
      EXPECT_GE(o.hidden_fraction(), 0.0);
      EXPECT_LE(o.hidden_fraction(), 1.0);
      double sum_in_flight = 0;
      for (int i = 0; i < n; ++i) {
        EXPECT_GE(dp.bucket_in_flight_s(i), kDelayMs * 1e-3 * 0.99) << "bucket " << i;
        sum_in_flight += dp.bucket_in_flight_s(i);
      }
      EXPECT_GE(sum_in_flight, o.comm_s * (1 - 1e-9));  // queued buckets overlap: the sum counts queueing
      if (zero == 2) {
        EXPECT_GE(o.gather_s, 0.5 * floor);  // step()'s all-gather waits out (nearly) every bucket's delay
      } else {
        EXPECT_EQ(o.gather_s, 0.0);
      }
      return o;
    };
    // finish right after a backward much shorter than the communication: nearly all of it exposed.
    OverlapStats exposed = run_step(std::chrono::milliseconds(0));
    EXPECT_GE(exposed.exposed_s, 0.5 * exposed.comm_s) << "zero " << zero;
    EXPECT_LT(exposed.hidden_fraction(), 0.5) << "zero " << zero;
    // backward outlasts the communication: none of it exposed (and the counters were reset for the step).
    OverlapStats hidden = run_step(std::chrono::milliseconds(2 * n * kDelayMs));
    EXPECT_EQ(hidden.exposed_s, 0.0) << "zero " << zero;
    EXPECT_EQ(hidden.hidden_fraction(), 1.0) << "zero " << zero;
    EXPECT_THROW(dp.bucket_in_flight_s(n), Error);
  }
}

// One rank without the bucketed path communicates nothing: the counters stay zero.
TEST(DataParallelOverlap, InactiveOnOneRankCountsNothing) {
  Tensor w = Tensor::ones(Dims{3}).set_requires_grad(true);
  std::vector<nn::ParamRef> params{nn::ParamRef{"w", &w, false}};
  auto comm = make_single_communicator();
  DataParallel dp(params, *comm, optim::AdamWConfig{}, DataParallelOptions{});
  dp.prepare_backward(true);
  sum(mul(w, w)).backward();
  dp.finish_gradient_sync();
  dp.step(1e-3);
  EXPECT_EQ(dp.overlap().comm_s, 0.0);
  EXPECT_EQ(dp.overlap().exposed_s, 0.0);
  EXPECT_EQ(dp.overlap().hidden_fraction(), 1.0);
}
