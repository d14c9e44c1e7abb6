// tests/core/test_tensor.cpp — Tensor layout, views, copies, conversion, printing and the allocator.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "core/allocator.h"
#include "core/ops/dispatch.h"
#include "core/ops/ops.h"

using namespace modu;

TEST(DType, Bf16AndF16ConversionsRoundToNearestEven) {
  EXPECT_EQ(float_to_bf16_bits(1.0f), 0x3f80);
  EXPECT_EQ(bf16_bits_to_float(0x3f80), 1.0f);
  // 1 + 2^-8 is halfway between two bf16 values: ties to even (down).
  EXPECT_EQ(float_to_bf16_bits(1.00390625f), 0x3f80);
  EXPECT_EQ(float_to_bf16_bits(1.01171875f), 0x3f82);  // 1 + 3*2^-8 ties up to even
  EXPECT_TRUE(std::isnan(bf16_bits_to_float(float_to_bf16_bits(NAN))));
  EXPECT_EQ(float_to_f16_bits(1.0f), 0x3c00);
  EXPECT_EQ(float_to_f16_bits(65504.0f), 0x7bff);
  EXPECT_EQ(float_to_f16_bits(65520.0f), 0x7c00);  // rounds to inf
  EXPECT_EQ(float_to_f16_bits(-2.0f), 0xc000);
  EXPECT_EQ(float_to_f16_bits(5.9604644775390625e-08f), 0x0001);  // smallest subnormal
  EXPECT_EQ(f16_bits_to_float(0x0001), 5.9604644775390625e-08f);
  EXPECT_EQ(f16_bits_to_float(0x3555), 0.333251953125f);
  for (uint32_t b = 0; b < 0x7c00; b += 7) EXPECT_EQ(float_to_f16_bits(f16_bits_to_float(uint16_t(b))), b);
}

TEST(Tensor, ViewsShareStorageAndKeepStrides) {
  Tensor a = Tensor::arange(24, DType::F32).view(Dims{2, 3, 4});
  EXPECT_TRUE(a.is_contiguous());
  Tensor t = a.transpose(1, 2);
  EXPECT_EQ(t.shape(), (Dims{2, 4, 3}));
  EXPECT_EQ(t.strides(), (Dims{12, 1, 4}));
  EXPECT_FALSE(t.is_contiguous());
  EXPECT_TRUE(t.same_storage(a));
  Tensor s = a.slice(2, 1, 4, 2);  // columns 1 and 3
  EXPECT_EQ(s.shape(), (Dims{2, 3, 2}));
  EXPECT_EQ(s.offset(), 1);
  EXPECT_EQ(s.to_vector<float>(), (std::vector<float>{1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23}));
  Tensor e = Tensor::arange(3, DType::F32).view(Dims{3, 1}).expand(Dims{2, 3, 4});
  EXPECT_EQ(e.strides(), (Dims{0, 1, 0}));
  EXPECT_EQ(e.contiguous().to_vector<float>()[5], 1.0f);
  Tensor c = t.contiguous();
  EXPECT_TRUE(c.is_contiguous());
  EXPECT_FALSE(c.same_storage(a));
  EXPECT_EQ(c.to_vector<float>(), t.to_vector<float>());
  EXPECT_EQ(a.select(1, 2).to_vector<float>(), (std::vector<float>{8, 9, 10, 11, 20, 21, 22, 23}));
  EXPECT_EQ(a.unsqueeze(0).shape(), (Dims{1, 2, 3, 4}));
  EXPECT_EQ(a.unsqueeze(-1).squeeze(-1).shape(), a.shape());
  EXPECT_EQ(a.flatten(1).shape(), (Dims{2, 12}));
  auto parts = a.split(3, 2);
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[1].shape(), (Dims{2, 3, 1}));
  EXPECT_EQ(parts[1].to_vector<float>()[0], 3.0f);
}

TEST(Tensor, ViewOfNonContiguousNeedsReshape) {
  Tensor t = Tensor::arange(6, DType::F32).view(Dims{2, 3}).t();
  EXPECT_THROW(t.view(Dims{6}), Error);
  Tensor r = t.reshape(Dims{6});
  EXPECT_EQ(r.to_vector<float>(), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  // A view that only splits a contiguous dim works on a transposed tensor.
  Tensor u = Tensor::arange(12, DType::F32).view(Dims{3, 4}).t();  // (4, 3), strides (1, 4)
  EXPECT_EQ(u.view(Dims{2, 2, 3}).strides(), (Dims{2, 1, 4}));
}

TEST(Tensor, ConversionAndPrinting) {
  Tensor a = Tensor::from_vector<float>({1.5f, -2.25f, 3.0f}, Dims{3});
  EXPECT_EQ(a.to(DType::BF16).to(DType::F32).to_vector<float>(), a.to_vector<float>());
  EXPECT_EQ(a.to(DType::I64).to_vector<int64_t>(), (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(a.to(DType::Bool).to_vector<uint8_t>(), (std::vector<uint8_t>{1, 1, 1}));
  std::string s = Tensor::arange(4, DType::F32).view(Dims{2, 2}).str();
  EXPECT_NE(s.find("[[0, 1],"), std::string::npos) << s;
  EXPECT_NE(s.find("f32(2, 2)"), std::string::npos) << s;
  EXPECT_NE(Tensor::arange(100).str().find("..."), std::string::npos);
  EXPECT_DOUBLE_EQ(Tensor::scalar(2.5).item(), 2.5);
}

TEST(Allocator, SizeClassesAndReuse) {
  EXPECT_EQ(allocation_size_class(1), 64u);
  EXPECT_EQ(allocation_size_class(513), 640u);
  EXPECT_LE(allocation_size_class(1000001), 1000001u * 5 / 4);
  Allocator* a = cpu_allocator();
  { Tensor warm = Tensor::empty(Dims{1000, 37}); }
  AllocatorStats before = a->stats();
  for (int i = 0; i < 100; ++i) {
    Tensor t = Tensor::empty(Dims{1000, 37});
    Tensor u = Tensor::empty(Dims{999, 37});  // same size class
    (void)t;
    (void)u;
  }
  AllocatorStats after = a->stats();
  EXPECT_LE(after.system_allocs - before.system_allocs, 1) << "buffers must come from the cache";
  EXPECT_EQ(after.requests - before.requests, 200);
}

TEST(Tensor, DeviceErrorsWithoutCuda) {
#ifndef MODU_WITH_CUDA
  try {
    Tensor::empty(Dims{2}, DType::F32, Device::cuda(0));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no CUDA backend"), std::string::npos) << e.what();
  }
#endif
  EXPECT_EQ(parse_device("cuda:1"), Device::cuda(1));
  EXPECT_THROW(parse_device("tpu"), Error);
}

// The op profiler on the CPU: both modes count every op once and time it by the wall clock; the events
// mode has no device span on the CPU (no marks), and the report names the mode and the ops.
TEST(Profiler, CountsAndTimesCpuOpsInBothModes) {
  for (ProfileMode mode : {ProfileMode::Synchronised, ProfileMode::Events}) {
    reset_op_profile();
    set_op_profiling(mode);
    Tensor x = Tensor::ones(Dims{256, 256}, DType::F32);
    Tensor y = matmul(x, x);
    Tensor z = relu(y);
    std::string report = op_profile_report();
    set_op_profiling(ProfileMode::Off);
    const OpProfile& p = op_profile();
    const int cpu = static_cast<int>(DeviceType::CPU);
    EXPECT_EQ(p.calls[cpu][static_cast<int>(OpId::matmul)], 1);
    EXPECT_EQ(p.calls[cpu][static_cast<int>(OpId::relu)], 1);
    EXPECT_GT(p.seconds[cpu][static_cast<int>(OpId::matmul)], 0.0);
    EXPECT_EQ(p.span_seconds[cpu], 0.0);
    EXPECT_NE(report.find("matmul"), std::string::npos) << report;
    EXPECT_NE(report.find(mode == ProfileMode::Events ? "events" : "synchronised"), std::string::npos) << report;
    EXPECT_EQ(z.narrow(0, 0, 1).narrow(1, 0, 1).item(), 256.0);
  }
  reset_op_profile();
  set_op_profiling(false);
  Tensor x = Tensor::ones(Dims{4}, DType::F32);
  Tensor y = relu(x);
  EXPECT_EQ(op_profile().calls[static_cast<int>(DeviceType::CPU)][static_cast<int>(OpId::relu)], 0);
}
