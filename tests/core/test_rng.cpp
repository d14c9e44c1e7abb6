// tests/core/test_rng.cpp — Philox4x32-10 known answers, stream separation, reproducibility.
#include <gtest/gtest.h>

#include "core/ops/ops.h"
#include "core/rng.h"

using namespace modu;

TEST(Philox, KnownAnswers) {
  // Random123's published answers for philox4x32_10.
  Philox4x32 zero = philox4x32_10(Philox4x32{{0, 0, 0, 0}}, 0, 0);
  EXPECT_EQ(zero.w[0], 0x6627e8d5u);
  EXPECT_EQ(zero.w[1], 0xe169c58du);
  EXPECT_EQ(zero.w[2], 0xbc57ac4cu);
  EXPECT_EQ(zero.w[3], 0x9b00dbd8u);
  Philox4x32 ones = philox4x32_10(Philox4x32{{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}}, 0xffffffffu,
                                  0xffffffffu);
  EXPECT_EQ(ones.w[0], 0x408f276du);
  EXPECT_EQ(ones.w[1], 0x41c83b0eu);
  EXPECT_EQ(ones.w[2], 0xa20bc7c6u);
  EXPECT_EQ(ones.w[3], 0x6d5451fdu);
  Philox4x32 pi = philox4x32_10(Philox4x32{{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}}, 0xa4093822u,
                                0x299f31d0u);
  EXPECT_EQ(pi.w[0], 0xd16cfe09u);
  EXPECT_EQ(pi.w[1], 0x94fdccebu);
  EXPECT_EQ(pi.w[2], 0x5001e420u);
  EXPECT_EQ(pi.w[3], 0x24126ea1u);
}

TEST(Generator, ReproducibleAndSeparatedByStream) {
  Generator a(123, stream_id("dropout", 0)), b(123, stream_id("dropout", 0)), c(123, stream_id("dropout", 1)),
      d(123, stream_id("init", 0));
  Tensor ta = normal(Dims{64}, 0, 1, a), tb = normal(Dims{64}, 0, 1, b), tc = normal(Dims{64}, 0, 1, c),
         td = normal(Dims{64}, 0, 1, d);
  EXPECT_EQ(ta.to_vector<float>(), tb.to_vector<float>());
  EXPECT_NE(ta.to_vector<float>(), tc.to_vector<float>());
  EXPECT_NE(ta.to_vector<float>(), td.to_vector<float>());
  // Draws advance the counter; restoring the state replays them.
  Generator::State s = a.state();
  Tensor u1 = uniform(Dims{10}, 0, 1, a);
  a.set_state(s);
  Tensor u2 = uniform(Dims{10}, 0, 1, a);
  EXPECT_EQ(u1.to_vector<float>(), u2.to_vector<float>());
}

TEST(Generator, DistributionMoments) {
  Generator g(5);
  Tensor n = normal(Dims{200000}, 1.0, 2.0, g, DType::F64);
  EXPECT_NEAR(mean(n).item(), 1.0, 0.02);
  EXPECT_NEAR(std::sqrt(var(n).item()), 2.0, 0.02);
  Tensor u = uniform(Dims{200000}, -1.0, 3.0, g, DType::F64);
  EXPECT_NEAR(mean(u).item(), 1.0, 0.02);
  EXPECT_GE(std::get<0>(max(neg(u), 0)).item(), -3.0 - 1e-9);  // min(u) >= -1 ... via -max(-u)
  // dropout keeps about 1 - p and scales by 1 / (1 - p)
  Tensor ones = Tensor::ones(Dims{100000});
  Tensor y = dropout(ones, 0.25, g);
  EXPECT_NEAR(mean(y).item(), 1.0, 0.02);
  EXPECT_NEAR(mean(gt(y, Tensor::scalar(0.0)).to(DType::F32)).item(), 0.75, 0.01);
  EXPECT_EQ(g.next_below(1), 0u);
  for (int i = 0; i < 100; ++i) EXPECT_LT(g.next_below(7), 7u);
}

TEST(Generator, SnapshotRestoresEveryLiveGenerator) {
  Generator a(1), b(2);
  RngSnapshot snap = rng_snapshot();
  uint64_t xa = a.next_u64(), xb = b.next_u64();
  rng_restore(snap);
  EXPECT_EQ(a.next_u64(), xa);
  EXPECT_EQ(b.next_u64(), xb);
}
