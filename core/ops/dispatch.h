// core/ops/dispatch.h — the one path every op takes: check, infer shapes, allocate, run the kernel of
// the inputs' backend, then let autograd (if linked and enabled) record the op.
//
// Invariants:
//  - Kernels never allocate their outputs; the dispatcher allocates contiguous outputs from the shape
//    rule (core/ops/shape_rules.cpp) before the call, except for View ops (aliases) and InPlace ops.
//  - One uniform kernel signature per backend: void(const KernelCall&).
//  - All inputs of an op live on one device (to_device is the only exception).
//  - The recorder hook is set by autograd; core never looks inside a tape node.
#pragma once

#include <array>
#include <string>
#include <cstdint>
#include <span>

#include "core/ops/op_attrs.h"
#include "core/tensor.h"

namespace modu {

struct KernelCall {
  OpId op;
  const OpAttrs& attrs;
  std::span<const Tensor* const> in;
  std::span<Tensor> out;

  const Tensor& input(int i) const { return *in[i]; }
  Tensor& output(int i) const { return out[i]; }
};

using Kernel = void (*)(const KernelCall&);

struct KernelEntry {
  Kernel fn = nullptr;
  DTypeSet dtypes;  // dtypes of the input that selects the kernel (input 0, or output 0 for factories)
};

class KernelRegistry {
 public:
  static KernelRegistry& instance();
  void set(DeviceType device, OpId op, Kernel fn, DTypeSet dtypes);
  // Waits for a device's queued work (accelerators); the op profiler brackets each op with it.
  using SyncFn = void (*)(int device_index);
  void set_synchronize(DeviceType device, SyncFn fn) { sync_[static_cast<int>(device)] = fn; }
  SyncFn synchronize_fn(DeviceType device) const { return sync_[static_cast<int>(device)]; }
  // Device-side timing for the op profiler's event mode (accelerators): mark() records a point in the
  // device's queue and returns its token; elapsed() waits for the later mark and returns the seconds between
  // two marks; release() returns every token of the device to the backend's pool.
  struct TimerFns {
    int64_t (*mark)(int device_index) = nullptr;
    double (*elapsed)(int device_index, int64_t start, int64_t end) = nullptr;
    void (*release)(int device_index) = nullptr;
  };
  void set_timer(DeviceType device, TimerFns fns) { timers_[static_cast<int>(device)] = fns; }
  const TimerFns& timer(DeviceType device) const { return timers_[static_cast<int>(device)]; }
  const KernelEntry& get(DeviceType device, OpId op) const {
    return table_[static_cast<int>(device)][static_cast<int>(op)];
  }
  bool has(DeviceType device, OpId op) const { return get(device, op).fn != nullptr; }
  bool supports(DeviceType device, OpId op, DType dtype) const {
    const KernelEntry& e = get(device, op);
    return e.fn && e.dtypes.has(dtype);
  }

 private:
  KernelRegistry();
  std::array<std::array<KernelEntry, kNumOps>, kNumDeviceTypes> table_{};
  std::array<SyncFn, kNumDeviceTypes> sync_{};
  std::array<TimerFns, kNumDeviceTypes> timers_{};
};

// Backends register their kernels from these (called once, by KernelRegistry's constructor).
void register_cpu_kernels(KernelRegistry& registry);
#ifdef MODU_WITH_CUDA
void register_cuda_kernels(KernelRegistry& registry);
#endif

// Runs `op`. `out` must have room for the op's outputs (its size is the output count for variadic ops).
void dispatch(OpId op, const OpAttrs& attrs, std::span<const Tensor* const> in, std::span<Tensor> out);

// Convenience for the common 1-output case.
Tensor dispatch1(OpId op, const OpAttrs& attrs, std::span<const Tensor* const> in);

// ---- the autograd hook ------------------------------------------------------------------------------
// Called after an op ran when grad mode is on and an input requires grad.
using RecordFn = void (*)(OpId op, const OpAttrs& attrs, std::span<const Tensor* const> in,
                          std::span<Tensor> out);
void set_tape_recorder(RecordFn fn);

// Grad mode (thread-local). NoGradGuard turns recording off in a scope.
bool grad_mode_enabled();
void set_grad_mode(bool enabled);
class NoGradGuard {
 public:
  NoGradGuard() : prev_(grad_mode_enabled()) { set_grad_mode(false); }
  ~NoGradGuard() { set_grad_mode(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};
class EnableGradGuard {
 public:
  EnableGradGuard() : prev_(grad_mode_enabled()) { set_grad_mode(true); }
  ~EnableGradGuard() { set_grad_mode(prev_); }
  EnableGradGuard(const EnableGradGuard&) = delete;
  EnableGradGuard& operator=(const EnableGradGuard&) = delete;

 private:
  bool prev_;
};

// ---- observers (tests and profiling) --------------------------------------------------------------------
// Per-op dispatch counters, per device type; op_coverage uses them to prove each op's kernel ran.
struct DispatchCounters {
  std::array<std::array<int64_t, kNumOps>, kNumDeviceTypes> calls{};
};
DispatchCounters& dispatch_counters();

// The op profiler, two modes (off by default; MODU_PROFILE=1 or =events in the environment turns one on at
// start):
//  - Synchronised: the device is synchronised before and after every op and the wall time between taken, so
//    an op's time is its own (launch cost included), at the cost of all overlap; the sum exceeds the step.
//  - Events: an accelerator op is bracketed by two marks in the device's queue (CUDA events), nothing waits,
//    and the time between the marks is read when the report is made. The step runs as it would unprofiled;
//    an op's figure is its device time plus any idle gap the device had before its kernels (none while the
//    host is ahead). CPU ops are timed on the wall clock in both modes.
// Times are summed per op and device; op_profile_report() is a table, slowest first.
enum class ProfileMode { Off, Synchronised, Events };
struct OpProfile {
  std::array<std::array<double, kNumOps>, kNumDeviceTypes> seconds{};
  std::array<std::array<int64_t, kNumOps>, kNumDeviceTypes> calls{};
  // Events mode: the device time from the first op's start mark to the last op's end mark, per device type.
  std::array<double, kNumDeviceTypes> span_seconds{};
};
void set_op_profiling(bool on);  // on: Synchronised
void set_op_profiling(ProfileMode mode);
bool op_profiling();
ProfileMode op_profiling_mode();
// Events mode: reads the pending marks (waits for the device) into op_profile(). The report calls it.
void resolve_op_profile();
OpProfile& op_profile();
void reset_op_profile();
std::string op_profile_report(int max_rows = 30);

// A hook that sees every op's inputs (used by activation recomputation to learn which leaves a scope
// reads). Thread-local; null when unset.
using InputObserver = void (*)(void* ctx, OpId op, std::span<const Tensor* const> in);
void set_input_observer(InputObserver fn, void* ctx);

}  // namespace modu
