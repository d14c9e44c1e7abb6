// tests/core/test_op_coverage.cpp — every op of the table has a CPU kernel (or is a view), a
// gradient decision, and a case; running every case forward and backward dispatches every op's CPU
// kernel. Also reports the ops without a CUDA kernel (the CUDA backend's gaps).
#include <gtest/gtest.h>

#include <iostream>
#include <set>

#include "autograd/autograd.h"
#include "core/ops/dispatch.h"
#include "core/ops/ops.h"
#include "tests/core/op_cases.h"

using namespace modu;

TEST(OpCoverage, EveryOpHasCpuKernelGradientDecisionAndCase) {
  std::set<int> covered;
  for (const auto& c : test::op_cases())
    for (OpId op : c.covers) covered.insert(static_cast<int>(op));
  const KernelRegistry& reg = KernelRegistry::instance();
  int missing = 0;
  for (int i = 0; i < kNumOps; ++i) {
    OpId op = static_cast<OpId>(i);
    const OpInfo& info = op_info(op);
    if (info.kind != OpKind::View) {
      EXPECT_TRUE(reg.has(DeviceType::CPU, op)) << "op '" << info.name << "' has no CPU kernel";
      missing += !reg.has(DeviceType::CPU, op);
    }
    EXPECT_TRUE(covered.count(i)) << "op '" << info.name << "' has no case in tests/core/op_cases.cpp";
    if (autograd::gradient_kind(op) == autograd::GradientKind::NotDifferentiable) {
      EXPECT_STRNE(autograd::not_differentiable_reason(op), "unknown op") << info.name;
    }
  }
  EXPECT_EQ(missing, 0);
}

TEST(OpCoverage, DifferentiableOpsAreGradchecked) {
  // A differentiable op must be covered by at least one case that checks gradients.
  std::set<int> gradchecked;
  for (const auto& c : test::op_cases()) {
    if (c.grad_inputs.empty()) continue;
    for (OpId op : c.covers) gradchecked.insert(static_cast<int>(op));
  }
  for (int i = 0; i < kNumOps; ++i) {
    OpId op = static_cast<OpId>(i);
    if (autograd::gradient_kind(op) == autograd::GradientKind::Differentiable) {
      EXPECT_TRUE(gradchecked.count(i)) << "differentiable op '" << op_name(op) << "' has no gradient-checked case";
    }
  }
}

TEST(OpCoverage, RunningTheCasesDispatchesEveryCpuKernel) {
  DispatchCounters before = dispatch_counters();
  for (const auto& c : test::op_cases()) {
    Generator gen(11, stream_id(c.name));
    std::vector<Tensor> in = c.make_inputs(DType::F64, gen);
    if (c.dtypes.has(DType::F64) == false) in = c.make_inputs(DType::F32, gen);
    std::vector<Tensor> targets;
    for (int i : c.grad_inputs) {
      in[static_cast<size_t>(i)] = in[static_cast<size_t>(i)].detach().set_requires_grad(true);
      targets.push_back(in[static_cast<size_t>(i)]);
    }
    Tensor out = c.run(in);
    if (!targets.empty()) {
      Tensor loss = sum(mul(out, Tensor::ones(out.shape(), out.dtype())));
      Tensor roots[] = {loss};
      autograd::grad(roots, targets);
    }
  }
  const DispatchCounters& after = dispatch_counters();
  std::vector<std::string> cuda_gaps;
  for (int i = 0; i < kNumOps; ++i) {
    OpId op = static_cast<OpId>(i);
    int64_t calls = after.calls[0][static_cast<size_t>(i)] - before.calls[0][static_cast<size_t>(i)];
    EXPECT_GT(calls, 0) << "op '" << op_name(op) << "' was never dispatched on the CPU by the cases";
    if (op_info(op).kind != OpKind::View && !KernelRegistry::instance().has(DeviceType::CUDA, op))
      cuda_gaps.push_back(op_name(op));
  }
  std::cout << "[coverage] " << kNumOps << " ops, " << test::op_cases().size() << " cases; ops without a CUDA kernel: "
            << cuda_gaps.size();
  for (const auto& g : cuda_gaps) std::cout << " " << g;
  std::cout << "\n";
}
