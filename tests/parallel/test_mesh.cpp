// Tests of parallel/mesh.h (layouts, groups, refusals) and of the single-process communicator and
// DataParallel on one rank (ZeRO-1/2 bit-identical to plain AdamW). Single process, no MPI.
#include <gtest/gtest.h>

#include <algorithm>

#include "core/ops/ops.h"
#include "optim/optim.h"
#include "parallel/comm.h"
#include "parallel/data_parallel.h"
#include "parallel/mesh.h"

using namespace modu;
using namespace modu::parallel;

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Mesh, TpFastestThenDpThenPp) {
  Mesh m = Mesh::make(16, 2, 2);
  EXPECT_EQ(m.dp(), 4);
  EXPECT_EQ(m.coord(0), (MeshCoord{0, 0, 0}));
  EXPECT_EQ(m.coord(1), (MeshCoord{1, 0, 0}));
  EXPECT_EQ(m.coord(2), (MeshCoord{0, 1, 0}));
  EXPECT_EQ(m.coord(7), (MeshCoord{1, 3, 0}));
  EXPECT_EQ(m.coord(8), (MeshCoord{0, 0, 1}));
  EXPECT_EQ(m.coord(15), (MeshCoord{1, 3, 1}));
  for (int r = 0; r < 16; ++r) EXPECT_EQ(m.rank_of(m.coord(r)), r);
  // The groups drawn in mesh.h's header.
  EXPECT_EQ(m.tp_group(5), (std::vector<int>{4, 5}));
  EXPECT_EQ(m.dp_group(9), (std::vector<int>{9, 11, 13, 15}));
  EXPECT_EQ(m.dp_group(0), (std::vector<int>{0, 2, 4, 6}));
  EXPECT_EQ(m.pp_group(6), (std::vector<int>{6, 14}));
  EXPECT_EQ(m.describe(), "TP2 x DP4 x PP2 = 16 ranks");
}

TEST(Mesh, GroupsPartitionTheWorld) {
  for (auto [world, tp, pp] : {std::tuple{8, 2, 2}, {12, 3, 2}, {6, 1, 3}, {1, 1, 1}, {4, 4, 1}}) {
    Mesh m = Mesh::make(world, tp, pp);
    std::vector<int> seen(world, 0);
    for (int r = 0; r < world; ++r) {
      auto dp = m.dp_group(r), t = m.tp_group(r), p = m.pp_group(r);
      EXPECT_EQ(static_cast<int>(dp.size()), m.dp());
      EXPECT_EQ(static_cast<int>(t.size()), tp);
      EXPECT_EQ(static_cast<int>(p.size()), pp);
      // A rank's index in each group is its coordinate.
      EXPECT_EQ(dp[m.coord(r).dp], r);
      EXPECT_EQ(t[m.coord(r).tp], r);
      EXPECT_EQ(p[m.coord(r).pp], r);
      // Each DP x TP x PP product of groups through r is consistent.
      for (int q : dp) EXPECT_EQ(m.coord(q).tp, m.coord(r).tp);
      seen[r]++;
    }
    EXPECT_TRUE(std::all_of(seen.begin(), seen.end(), [](int s) { return s == 1; }));
  }
}

TEST(Mesh, DrawShowsEveryRankOnce) {
  Mesh m = Mesh::make(16, 2, 2);
  std::string d = m.draw();
  EXPECT_NE(d.find("pp=1"), std::string::npos) << d;
  EXPECT_NE(d.find("15"), std::string::npos) << d;
  EXPECT_EQ(std::count(d.begin(), d.end(), '\n'), 1 + 8) << d;
}

TEST(Mesh, BadLayoutsSayWhatToChange) {
  std::string e = error_of([] { Mesh::make(6, 4, 1); });
  EXPECT_NE(e.find("does not divide"), std::string::npos) << e;
  EXPECT_NE(e.find("mpirun -np"), std::string::npos) << e;
  e = error_of([] { Mesh::make(4, 0, 1); });
  EXPECT_NE(e.find("parallel.tp"), std::string::npos) << e;

  Mesh tp4 = Mesh::make(4, 4, 1);
  e = error_of([&] { tp4.check_model({6, 6, 4, 4096}); });
  EXPECT_NE(e.find("model.n_head = 6"), std::string::npos) << e;
  e = error_of([&] { tp4.check_model({8, 2, 4, 4096}); });
  EXPECT_NE(e.find("model.n_kv_head"), std::string::npos) << e;
  e = error_of([&] { tp4.check_model({8, 8, 4, 4098}); });
  EXPECT_NE(e.find("pad_vocab_to"), std::string::npos) << e;
  EXPECT_NO_THROW(tp4.check_model({8, 8, 4, 4096}));
  Mesh pp8 = Mesh::make(8, 1, 8);
  e = error_of([&] { pp8.check_model({6, 6, 4, 4096}); });
  EXPECT_NE(e.find("parallel.pp = 8"), std::string::npos) << e;

  Mesh dp4 = Mesh::make(4, 1, 1);
  EXPECT_NO_THROW(dp4.check_batch(16, 2));
  e = error_of([&] { dp4.check_batch(16, 8); });
  EXPECT_NE(e.find("train.micro_batch_size (at most 4"), std::string::npos) << e;
  e = error_of([&] { dp4.check_batch(10, 1); });
  EXPECT_NE(e.find("train.batch_size = 10"), std::string::npos) << e;
}

TEST(SingleCommunicator, IdentityCollectives) {
  auto c = make_single_communicator();
  EXPECT_EQ(c->size(), 1);
  EXPECT_EQ(c->rank(), 0);
  Tensor x = Tensor::from_vector(std::vector<float>{1, 2, 3}, Dims{3});
  c->all_reduce(x, ReduceOp::Avg);
  EXPECT_EQ(x.to_vector<float>(), (std::vector<float>{1, 2, 3}));
  Tensor y = Tensor::zeros(Dims{3});
  c->reduce_scatter(x, y);
  EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{1, 2, 3}));
  Tensor z = Tensor::zeros(Dims{3});
  c->all_gather(x, z);
  EXPECT_EQ(z.to_vector<float>(), (std::vector<float>{1, 2, 3}));
  EXPECT_EQ(c->sum(2.5), 2.5);
  EXPECT_THROW(c->send(x, 1), Error);
  EXPECT_EQ(c->split(0, 0)->size(), 1);
  MeshGroups g = make_groups(*c, Mesh::make(1, 1, 1));
  EXPECT_EQ(g.dp->size(), 1);
}

TEST(World, PlainProcessIsSingle) {
  if (launched_by_mpi()) GTEST_SKIP() << "this test checks the no-launcher case";
  EXPECT_EQ(world().backend(), "single");
}

// On one rank, ZeRO-1 and ZeRO-2 (sharded code path, bucket packing, flat state) update exactly like
// optim::AdamW, bit for bit, across several steps with clipping.
TEST(DataParallel, ZeroOnOneRankIsBitIdenticalToAdamW) {
  auto make_params = [](std::vector<Tensor>& store) {
    store.clear();
    Generator gen(3);
    for (Dims d : {Dims{5, 7}, Dims{7}, Dims{3, 4, 2}, Dims{11}}) {
      store.push_back(normal(d, 0.0, 1.0, gen).set_requires_grad(true));
    }
    std::vector<nn::ParamRef> refs;
    for (size_t i = 0; i < store.size(); ++i)
      refs.push_back(nn::ParamRef{std::to_string(i).insert(0, 1, 'p'), &store[i], store[i].dim() > 1});
    return refs;
  };
  auto loss_of = [](std::vector<Tensor>& ps, int step) {
    Tensor total;
    for (Tensor& p : ps) {
      Tensor s = sum(mul(mul(p, p), Tensor::scalar(0.5 + step)));
      total = total.defined() ? add(total, s) : s;
    }
    return total;
  };
  optim::AdamWConfig cfg;
  auto reference = [&](double clip) {
    std::vector<Tensor> ref_store;
    auto ref_params = make_params(ref_store);
    optim::AdamW ref(ref_params, cfg);
    for (int step = 0; step < 4; ++step) {
      for (Tensor& p : ref_store) p.set_grad(Tensor());
      loss_of(ref_store, step).backward();
      ref.step(1e-2, optim::clip_coefficient(optim::grad_norm(ref_params), clip));
    }
    return ref_store;
  };
  // ZeRO-2's norm is summed over shards, not per tensor: equal up to rounding when clipping is active.
  for (auto [zero, clip] : {std::pair{0, 5.0}, {-1, 5.0}, {1, 5.0}, {2, 0.0}, {2, 5.0}}) {
    std::vector<Tensor> ref_store = reference(clip);
    std::vector<Tensor> store;
    auto params = make_params(store);
    auto comm = make_single_communicator();
    // zero = -1: ZeRO-0 with the bucketed path forced on (what a one-GPU NCCL check runs).
    DataParallelOptions options;
    options.zero = std::max(zero, 0);
    options.bucket_mb = 1e-4;
    options.force_communication = zero < 0;
    DataParallel dp(params, *comm, cfg, options);
    if (zero > 0) {
      EXPECT_GT(dp.num_buckets(), 1);
    }
    for (int step = 0; step < 4; ++step) {
      for (Tensor& p : store) p.set_grad(Tensor());
      dp.prepare_backward(true);
      loss_of(store, step).backward();
      dp.finish_gradient_sync();
      dp.step(1e-2, optim::clip_coefficient(dp.grad_norm(), clip));
    }
    for (size_t i = 0; i < store.size(); ++i) {
      std::vector<float> got = store[i].to_vector<float>(), want = ref_store[i].to_vector<float>();
      if (zero < 2 || clip == 0) {  // ZeRO-0 (plain or forced), ZeRO-1, or ZeRO-2 without clipping
        EXPECT_EQ(got, want) << "zero " << zero << " param " << i;
      } else {
        for (size_t k = 0; k < got.size(); ++k) EXPECT_NEAR(got[k], want[k], 1e-6 * (1 + std::abs(want[k])));
      }
    }
    EXPECT_EQ(dp.steps_taken(), 4);
    int64_t covered = 0;
    for (const StatePiece& piece : dp.optimizer_pieces()) covered += piece.end - piece.begin;
    EXPECT_EQ(covered, 35 + 7 + 24 + 11) << "zero " << zero;
  }
}
