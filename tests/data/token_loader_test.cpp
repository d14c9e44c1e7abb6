// Tests of TokenLoader (data/token_loader.h): windows and targets, the per-epoch permutation,
// determinism, exact resume from the global sample index, and the data-parallel rank split.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <set>

#include "core/check.h"
#include "data/token_loader.h"

namespace fs = std::filesystem;
using namespace modu::data;

namespace {

struct Fixture {
  fs::path dir;
  std::vector<int32_t> tokens;
  explicit Fixture(size_t n, uint64_t shard_tokens = 1000) {
    dir = fs::temp_directory_path() /
          ("modu_loader_test_" + std::to_string(::getpid()) + "_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
    tokens.resize(n);
    for (size_t i = 0; i < n; ++i) tokens[i] = static_cast<int32_t>(i % 50000);
    TokenShardSetWriter w(dir.string(), "train", 50257, 50256, shard_tokens, false);
    w.append(tokens);
    ShardSetMeta meta;
    meta.tokenizer = "test";
    meta.vocab_size = 50257;
    meta.eot_id = 50256;
    meta.shard_tokens = shard_tokens;
    meta.splits.emplace_back("train", w.finish());
    write_shard_set_meta(dir.string(), meta);
  }
  ~Fixture() { fs::remove_all(dir); }
  TokenLoader loader(int64_t T, uint64_t seed = 1234, bool shuffle = true) const {
    return TokenLoader(dir.string(), "train", TokenLoaderOptions{T, seed, shuffle});
  }
};

std::vector<int64_t> flat(const TokenBatch& b) { return b.inputs.to_vector<int64_t>(); }

}  // namespace

TEST(TokenLoader, WindowsAndTargets) {
  Fixture fx(4097);  // tokens[i] = i: a window's contents name its sample
  TokenLoader ld = fx.loader(64);
  EXPECT_EQ(ld.num_samples(), 4096u / 64u);
  TokenBatch b = ld.next_batch(3, 64);
  ASSERT_EQ(b.inputs.shape(), (modu::Dims{3, 64}));
  EXPECT_EQ(b.inputs.dtype(), modu::DType::I64);
  EXPECT_EQ(b.targets.shape(), (modu::Dims{3, 64}));
  const auto in = b.inputs.to_vector<int64_t>(), tg = b.targets.to_vector<int64_t>();
  for (int r = 0; r < 3; ++r) {
    const int64_t start = in[r * 64];
    EXPECT_EQ(start % 64, 0);  // windows start at multiples of T
    for (int t = 0; t < 64; ++t) {
      EXPECT_EQ(in[r * 64 + t], start + t);
      EXPECT_EQ(tg[r * 64 + t], start + t + 1);
    }
  }
  EXPECT_EQ(ld.position(), 3u);
}

TEST(TokenLoader, EachEpochIsAPermutationAndEpochsDiffer) {
  Fixture fx(64 * 1000 + 1);
  TokenLoader ld = fx.loader(64);
  const uint64_t n = ld.num_samples();
  ASSERT_EQ(n, 1000u);
  std::vector<uint64_t> e0, e1;
  for (uint64_t g = 0; g < n; ++g) e0.push_back(ld.sample_at(g));
  for (uint64_t g = n; g < 2 * n; ++g) e1.push_back(ld.sample_at(g));
  EXPECT_EQ(std::set<uint64_t>(e0.begin(), e0.end()).size(), n);
  EXPECT_EQ(std::set<uint64_t>(e1.begin(), e1.end()).size(), n);
  EXPECT_LT(*std::max_element(e0.begin(), e0.end()), n);
  EXPECT_NE(e0, e1);
  // Not the identity, and another seed gives another order.
  size_t fixed = 0;
  for (uint64_t i = 0; i < n; ++i) fixed += e0[i] == i;
  EXPECT_LT(fixed, 20u);
  TokenLoader other = fx.loader(64, 99);
  size_t same = 0;
  for (uint64_t g = 0; g < n; ++g) same += other.sample_at(g) == e0[g];
  EXPECT_LT(same, 20u);
}

TEST(TokenLoader, PermutationCoversOddSizes) {
  for (size_t samples : {1u, 2u, 3u, 5u, 17u, 64u, 65u, 1023u}) {
    Fixture fx(samples * 8 + 1);
    TokenLoader ld = fx.loader(8, 7);
    ASSERT_EQ(ld.num_samples(), samples);
    for (uint64_t e = 0; e < 3; ++e) {
      std::set<uint64_t> seen;
      for (uint64_t i = 0; i < samples; ++i) seen.insert(ld.sample_at(e * samples + i));
      EXPECT_EQ(seen.size(), samples) << "samples " << samples << " epoch " << e;
      EXPECT_LT(*seen.rbegin(), samples);
    }
  }
}

TEST(TokenLoader, DeterministicAndExactResume) {
  Fixture fx(20000, 777);  // several shards, windows cross shard boundaries
  const int64_t B = 4, T = 32;
  TokenLoader straight = fx.loader(T);
  std::vector<std::vector<int64_t>> a;
  for (int i = 0; i < 10; ++i) a.push_back(flat(straight.next_batch(B, T)));

  TokenLoader first = fx.loader(T);
  std::vector<std::vector<int64_t>> b;
  for (int i = 0; i < 5; ++i) b.push_back(flat(first.next_batch(B, T)));
  const uint64_t g = first.position();
  EXPECT_EQ(g, 20u);
  TokenLoader resumed = fx.loader(T);  // a fresh loader, as after a restart
  resumed.set_position(g);
  for (int i = 0; i < 5; ++i) b.push_back(flat(resumed.next_batch(B, T)));
  EXPECT_EQ(a, b);
}

TEST(TokenLoader, RunsAcrossEpochs) {
  Fixture fx(10 * 16 + 1);  // 10 samples
  TokenLoader ld = fx.loader(16);
  std::multiset<int64_t> starts;
  for (int i = 0; i < 5; ++i) {  // 5 batches of 4 = 2 epochs
    auto v = flat(ld.next_batch(4));
    for (int r = 0; r < 4; ++r) starts.insert(v[r * 16]);
  }
  EXPECT_EQ(ld.epoch(), 2u);
  for (int64_t s = 0; s < 10; ++s) EXPECT_EQ(starts.count(s * 16), 2u);
}

TEST(TokenLoader, RankSplitCoversTheSameGlobalBatch) {
  Fixture fx(30000);
  const int64_t T = 16;
  TokenLoader one = fx.loader(T);
  TokenLoader r0 = fx.loader(T), r1 = fx.loader(T);
  for (int step = 0; step < 6; ++step) {
    const auto global = flat(one.next_batch(4));           // R=1, b=4
    const auto a = flat(r0.next_local_batch(2, 0, 2));     // R=2, b=2, rank 0
    const auto b = flat(r1.next_local_batch(2, 1, 2));     // rank 1
    std::vector<int64_t> both = a;
    both.insert(both.end(), b.begin(), b.end());
    EXPECT_EQ(both, global) << "step " << step;
    EXPECT_EQ(r0.position(), one.position());
    EXPECT_EQ(r1.position(), one.position());
  }
  // batch_at is the primitive underneath.
  EXPECT_EQ(flat(one.batch_at(100, 3)), flat(one.batch_at(100, 3, T)));
}

TEST(TokenLoader, SequentialModeForValidation) {
  Fixture fx(8 * 50 + 1);
  TokenLoader ld = fx.loader(8, 0, /*shuffle=*/false);
  EXPECT_EQ(ld.batches_per_epoch(7), 7u);
  for (int k = 0; k < 3; ++k) {
    auto v = flat(ld.next_batch(5));
    for (int r = 0; r < 5; ++r) EXPECT_EQ(v[r * 8], (k * 5 + r) * 8);
  }
}

TEST(TokenLoader, ErrorsNameTheProblem) {
  Fixture fx(100);
  try {
    fx.loader(100);
    ADD_FAILURE();
  } catch (const modu::Error& e) {
    EXPECT_NE(std::string(e.what()).find("too few for one sample of sequence length 100"), std::string::npos)
        << e.what();
  }
  TokenLoader ld = fx.loader(10);
  EXPECT_THROW(ld.next_batch(2, 11), modu::Error);
  EXPECT_THROW(ld.next_batch(0), modu::Error);
}
