// Tests of the MPI communicator (parallel/comm.h), run on several ranks by CTest through
// tests/parallel/mpirun.sh (every rank runs every test; a failure on any rank fails the job).
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <string>

#include "parallel/comm.h"
#include "parallel/mesh.h"

using namespace modu;
using namespace modu::parallel;

namespace {

// Rank r's test vector: element i = r * 1000 + i + 0.25 (exact in f32 for these sizes).
Tensor rank_vector(int rank, int64_t n, DType dtype = DType::F32) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = rank * 1000.0 + static_cast<double>(i) + 0.25;
  return Tensor::from_vector(v, Dims{n}, dtype);
}

// The blocked-signal mask of thread `tid` of this process (SigBlk in /proc/self/task/TID/status).
uint64_t blocked_signals(const std::string& tid) {
  std::ifstream status("/proc/self/task/" + tid + "/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("SigBlk:", 0) == 0) return std::stoull(line.substr(7), nullptr, 16);
  ADD_FAILURE() << "no SigBlk line for thread " << tid;
  return 0;
}

}  // namespace

TEST(Mpi, WorldIsMpiUnderTheLauncher) {
  ASSERT_TRUE(launched_by_mpi()) << "run this test under mpirun (tests/parallel/mpirun.sh)";
  EXPECT_EQ(world().backend(), "mpi");
  EXPECT_GE(world().size(), 2);
}

// SIGTERM to a rank must reach its main thread (whose handler in `modu train` sets the stop flag), never a
// thread inside an MPI call: MPI's own threads and the communicators' workers block the stop signals.
TEST(Mpi, StopSignalsReachOnlyTheMainThread) {
  Communicator& w = world();
  MeshGroups g = make_groups(w, Mesh::make(w.size(), 1, 1));  // a split: one more worker thread
  const std::string main_tid = std::to_string(::getpid());
  int others = 0;
  for (const std::filesystem::directory_entry& t : std::filesystem::directory_iterator("/proc/self/task")) {
    const std::string tid = t.path().filename().string();
    const uint64_t blocked = blocked_signals(tid);
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2}) {
      const bool is_blocked = (blocked >> (sig - 1)) & 1;
      if (tid == main_tid) {
        EXPECT_FALSE(is_blocked) << "the main thread blocks signal " << sig;
      } else {
        EXPECT_TRUE(is_blocked) << "thread " << tid << " does not block signal " << sig;
      }
    }
    others += tid != main_tid;
  }
  EXPECT_GE(others, 2) << "expected the world's and the split's worker threads at least";
  w.barrier();
}

TEST(Mpi, AllReduceSumAndAverage) {
  Communicator& w = world();
  const int n = w.size();
  for (int64_t len : {int64_t{1}, int64_t{7}, int64_t{1000}, int64_t{4099}}) {
    Tensor x = rank_vector(w.rank(), len);
    w.all_reduce(x, ReduceOp::Sum);
    std::vector<float> got = x.to_vector<float>();
    for (int64_t i = 0; i < len; ++i) {
      double want = 0;
      for (int r = 0; r < n; ++r) want += r * 1000.0 + static_cast<double>(i) + 0.25;
      ASSERT_EQ(got[static_cast<size_t>(i)], static_cast<float>(want)) << "len " << len << " i " << i;
    }
    Tensor y = rank_vector(w.rank(), len, DType::F64);
    w.all_reduce(y, ReduceOp::Avg);
    EXPECT_DOUBLE_EQ(y.to_vector<double>()[0], (n - 1) * 500.0 + 0.25);
  }
  Tensor ints = Tensor::from_vector(std::vector<int64_t>{w.rank(), 1}, Dims{2});
  w.all_reduce(ints);
  EXPECT_EQ(ints.to_vector<int64_t>(), (std::vector<int64_t>{n * (n - 1) / 2, n}));
}

// ReduceOp::Max (vocabulary-parallel cross-entropy's row maxima): the largest rank's values, for every block of the
// ring, f32 and i64; a negative value on one rank only.
TEST(Mpi, AllReduceMax) {
  Communicator& w = world();
  const int n = w.size();
  for (int64_t len : {int64_t{1}, int64_t{7}, int64_t{4099}}) {
    Tensor x = rank_vector(w.rank(), len);
    if (len > 1) x.data<float>()[len - 1] = w.rank() == 0 ? 5.0f : -1.0f - float(w.rank());
    w.all_reduce(x, ReduceOp::Max);
    std::vector<float> got = x.to_vector<float>();
    for (int64_t i = 0; i + 1 < len; ++i)
      ASSERT_EQ(got[static_cast<size_t>(i)], float((n - 1) * 1000.0 + double(i) + 0.25)) << "len " << len;
    if (len > 1) {
      EXPECT_EQ(got.back(), 5.0f);
    }
  }
  Tensor ints = Tensor::from_vector(std::vector<int64_t>{-w.rank(), w.rank()}, Dims{2});
  w.all_reduce(ints, ReduceOp::Max);
  EXPECT_EQ(ints.to_vector<int64_t>(), (std::vector<int64_t>{0, n - 1}));
}

// The result is bit-identical on every rank (replicated parameters stay replicated), even for values whose sum
// depends on the order of the additions.
TEST(Mpi, AllReduceIsBitIdenticalOnEveryRankAndEqualsReduceScatterThenAllGather) {
  Communicator& w = world();
  const int n = w.size();
  const int64_t len = 1001 * n;
  std::vector<float> v(static_cast<size_t>(len));
  uint32_t s = 12345u + 977u * static_cast<uint32_t>(w.rank());
  for (float& f : v) {
    s = s * 1664525u + 1013904223u;
    f = static_cast<float>(s >> 8) * 1e-7f - 0.8f;
  }
  Tensor a = Tensor::from_vector(v, Dims{len});
  w.all_reduce(a, ReduceOp::Avg);
  Tensor shard = Tensor::zeros(Dims{len / n});
  Tensor b_in = Tensor::from_vector(v, Dims{len});
  w.reduce_scatter(b_in, shard, ReduceOp::Avg);
  Tensor b = Tensor::zeros(Dims{len});
  w.all_gather(shard, b);
  EXPECT_EQ(a.to_vector<float>(), b.to_vector<float>());
  EXPECT_EQ(b_in.to_vector<float>(), v) << "reduce_scatter must not modify its input";
  // Every rank holds what rank 0 holds.
  Tensor from0 = a.clone();
  w.broadcast(from0, 0);
  EXPECT_EQ(a.to_vector<float>(), from0.to_vector<float>());
}

TEST(Mpi, ReduceScatterAndAllGatherBlocks) {
  Communicator& w = world();
  const int n = w.size();
  const int64_t k = 5;
  Tensor in = rank_vector(w.rank(), k * n);
  Tensor out = Tensor::zeros(Dims{k});
  w.reduce_scatter(in, out);
  std::vector<float> got = out.to_vector<float>();
  for (int64_t i = 0; i < k; ++i) {
    double want = 0;
    for (int r = 0; r < n; ++r) want += r * 1000.0 + static_cast<double>(w.rank() * k + i) + 0.25;
    EXPECT_EQ(got[static_cast<size_t>(i)], static_cast<float>(want));
  }
  Tensor mine = Tensor::full(Dims{k}, w.rank() + 1.0);
  Tensor all = Tensor::zeros(Dims{k * n});
  w.all_gather(mine, all);
  std::vector<float> g = all.to_vector<float>();
  for (int r = 0; r < n; ++r)
    for (int64_t i = 0; i < k; ++i) EXPECT_EQ(g[static_cast<size_t>(r * k + i)], r + 1.0f);
  EXPECT_THROW(w.reduce_scatter(in, Tensor::zeros(Dims{k + 1})), Error);
}

TEST(Mpi, NonBlockingOperationsCompleteInOrder) {
  Communicator& w = world();
  std::vector<Tensor> xs;
  std::vector<WorkHandle> works;
  for (int i = 0; i < 8; ++i) {
    xs.push_back(Tensor::full(Dims{257}, static_cast<double>(i)));
    works.push_back(w.all_reduce_async(xs.back(), ReduceOp::Sum));
  }
  for (int i = 7; i >= 0; --i) works[static_cast<size_t>(i)]->wait();
  for (int i = 0; i < 8; ++i) {
    EXPECT_TRUE(works[static_cast<size_t>(i)]->is_completed());
    EXPECT_EQ(xs[static_cast<size_t>(i)].to_vector<float>()[256], static_cast<float>(i * w.size()));
  }
}

TEST(Mpi, BytesSentFollowTheRingFormula) {
  Communicator& w = world();
  auto sub = w.split(0, w.rank());  // a fresh communicator: its own counter
  const int n = sub->size();
  const int64_t len = 3000 * n;  // S = 4 * len bytes, a multiple of n
  Tensor x = Tensor::ones(Dims{len});
  int64_t before = sub->bytes_sent();
  sub->all_reduce(x);
  EXPECT_EQ(sub->bytes_sent() - before, 2 * (n - 1) * len * 4 / n);
}

TEST(Mpi, SendRecvAroundTheRing) {
  Communicator& w = world();
  const int n = w.size(), r = w.rank();
  Tensor out = Tensor::full(Dims{10}, r);
  Tensor in = Tensor::zeros(Dims{10});
  // Even ranks send first, odd ranks receive first: no cycle of blocking sends.
  if (r % 2 == 0) {
    w.send(out, (r + 1) % n, 3);
    w.recv(in, (r + n - 1) % n, 3);
  } else {
    w.recv(in, (r + n - 1) % n, 3);
    w.send(out, (r + 1) % n, 3);
  }
  EXPECT_EQ(in.to_vector<float>()[9], static_cast<float>((r + n - 1) % n));
  EXPECT_THROW(w.send(out, r), Error);
}

TEST(Mpi, MeshGroupsFromSplit) {
  Communicator& w = world();
  if (w.size() % 2 != 0) GTEST_SKIP() << "needs an even number of ranks";
  Mesh mesh = Mesh::make(w.size(), 2, 1);
  MeshGroups g = make_groups(w, mesh);
  MeshCoord c = mesh.coord(w.rank());
  EXPECT_EQ(g.tp->size(), 2);
  EXPECT_EQ(g.tp->rank(), c.tp);
  EXPECT_EQ(g.dp->size(), mesh.dp());
  EXPECT_EQ(g.dp->rank(), c.dp);
  EXPECT_EQ(g.pp->size(), 1);
  // The sum of world ranks over each group equals the sum of the mesh's group members.
  auto total = [](const std::vector<int>& v) { return static_cast<double>(std::accumulate(v.begin(), v.end(), 0)); };
  EXPECT_EQ(g.tp->sum(w.rank()), total(mesh.tp_group(w.rank())));
  EXPECT_EQ(g.dp->sum(w.rank()), total(mesh.dp_group(w.rank())));
  EXPECT_EQ(w.max(w.rank()), w.size() - 1.0);
  w.barrier();
}
