// core/ops/dispatch.cpp — op metadata (from op_table.def), the kernel registry and dispatch().
#include "core/ops/dispatch.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/ops/shape_rules.h"

namespace modu {

namespace {
constexpr OpInfo kOpInfo[] = {
#define MODU_OP(name, kind, n_in, n_out, attrs) {#name, OpKind::kind, n_in, n_out},
#include "core/ops/op_table.def"
#undef MODU_OP
};
static_assert(sizeof(kOpInfo) / sizeof(kOpInfo[0]) == kNumOps);

RecordFn g_recorder = nullptr;
ProfileMode g_profile_mode = [] {
  const char* env = std::getenv("MODU_PROFILE");
  if (!env || !*env || std::string(env) == "0") return ProfileMode::Off;
  return std::string(env) == "events" ? ProfileMode::Events : ProfileMode::Synchronised;
}();
// Events mode: the marks of ops whose device time has not been read yet.
struct PendingMark {
  int device_type, device_index, op;
  int64_t start, end;
};
std::vector<PendingMark>& pending_marks() {
  static auto* v = new std::vector<PendingMark>();
  return *v;
}
thread_local bool t_grad_mode = true;
thread_local InputObserver t_observer = nullptr;
thread_local void* t_observer_ctx = nullptr;

const char* device_type_name(DeviceType t) { return t == DeviceType::CPU ? "CPU" : "CUDA"; }

std::string dtype_list(DTypeSet set) {
  std::string s;
  for (int i = 0; i < kNumDTypes; ++i) {
    if (set.has(static_cast<DType>(i))) {
      if (!s.empty()) s += ", ";
      s += dtype_name(static_cast<DType>(i));
    }
  }
  return s.empty() ? "none" : s;
}

// The dtype that selects a kernel: input 0's, except where input 0 is a mask or index.
DType kernel_dtype(OpId op, const OpAttrs& attrs, std::span<const Tensor* const> in) {
  if (in.empty()) return attrs.factory.dtype;
  if (op == OpId::where) return in[1]->dtype();
  return in[0]->dtype();
}

void run_kernel(OpId op, const OpAttrs& attrs, Device device, std::span<const Tensor* const> in,
                std::span<Tensor> out) {
  const KernelRegistry& reg = KernelRegistry::instance();
  const KernelEntry& k = reg.get(device.type, op);
  DType dt = kernel_dtype(op, attrs, in);
  if (!k.fn || !k.dtypes.has(dt)) [[unlikely]] {
    if (!k.fn) {
      MODU_FAIL("op '", op_name(op), "' has no ", device_type_name(device.type), " kernel",
                device.is_cuda() ? " yet (tests/core/op_coverage lists the CUDA gaps)" : "");
    }
    MODU_FAIL("op '", op_name(op), "' has no ", device_type_name(device.type), " kernel for ",
              dtype_name(dt), " (supported: ", dtype_list(k.dtypes), "); convert with .to(dtype)");
  }
  k.fn(KernelCall{op, attrs, in, out});
}
}  // namespace

const OpInfo& op_info(OpId op) { return kOpInfo[static_cast<int>(op)]; }

KernelRegistry::KernelRegistry() {
  register_cpu_kernels(*this);
#ifdef MODU_WITH_CUDA
  register_cuda_kernels(*this);
#endif
}

KernelRegistry& KernelRegistry::instance() {
  static KernelRegistry* reg = new KernelRegistry();
  return *reg;
}

void KernelRegistry::set(DeviceType device, OpId op, Kernel fn, DTypeSet dtypes) {
  table_[static_cast<int>(device)][static_cast<int>(op)] = KernelEntry{fn, dtypes};
}

DispatchCounters& dispatch_counters() {
  static DispatchCounters* c = new DispatchCounters();
  return *c;
}

void set_tape_recorder(RecordFn fn) { g_recorder = fn; }

void set_op_profiling(bool on) { set_op_profiling(on ? ProfileMode::Synchronised : ProfileMode::Off); }
void set_op_profiling(ProfileMode mode) {
  if (g_profile_mode == ProfileMode::Events && mode != ProfileMode::Events) resolve_op_profile();
  g_profile_mode = mode;
}
bool op_profiling() { return g_profile_mode != ProfileMode::Off; }
ProfileMode op_profiling_mode() { return g_profile_mode; }
OpProfile& op_profile() {
  static OpProfile* p = new OpProfile();
  return *p;
}

void resolve_op_profile() {
  std::vector<PendingMark>& marks = pending_marks();
  if (marks.empty()) return;
  const KernelRegistry& reg = KernelRegistry::instance();
  OpProfile& p = op_profile();
  // Per (device type, index): the first start and last end mark, for the span.
  struct Span {
    int type, index;
    int64_t first, last;
  };
  std::vector<Span> spans;
  for (const PendingMark& m : marks) {
    const KernelRegistry::TimerFns& t = reg.timer(static_cast<DeviceType>(m.device_type));
    p.seconds[m.device_type][m.op] += t.elapsed(m.device_index, m.start, m.end);
    ++p.calls[m.device_type][m.op];
    auto it = std::find_if(spans.begin(), spans.end(),
                           [&](const Span& s) { return s.type == m.device_type && s.index == m.device_index; });
    if (it == spans.end())
      spans.push_back({m.device_type, m.device_index, m.start, m.end});
    else
      it->last = m.end;
  }
  for (const Span& s : spans) {
    const KernelRegistry::TimerFns& t = reg.timer(static_cast<DeviceType>(s.type));
    p.span_seconds[s.type] += t.elapsed(s.index, s.first, s.last);
    t.release(s.index);
  }
  marks.clear();
}

void reset_op_profile() {
  resolve_op_profile();
  op_profile() = OpProfile();
}

std::string op_profile_report(int max_rows) {
  struct Row {
    double s;
    int64_t n;
    int dev, op;
  };
  std::vector<Row> rows;
  double total = 0;
  resolve_op_profile();
  const OpProfile& p = op_profile();
  for (int d = 0; d < kNumDeviceTypes; ++d)
    for (int o = 0; o < kNumOps; ++o)
      if (p.calls[d][o]) {
        rows.push_back({p.seconds[d][o], p.calls[d][o], d, o});
        total += p.seconds[d][o];
      }
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.s > b.s; });
  std::string out = g_profile_mode == ProfileMode::Events
                        ? "op profile (accelerator ops: device time between events around each op, nothing waits)\n"
                        : "op profile (device synchronised around each op)\n";
  char line[160];
  std::snprintf(line, sizeof line, "%-28s %-5s %10s %12s %10s %7s\n", "op", "dev", "calls", "total ms", "us/call", "share");
  out += line;
  for (size_t i = 0; i < rows.size() && static_cast<int>(i) < max_rows; ++i) {
    const Row& r = rows[i];
    std::snprintf(line, sizeof line, "%-28s %-5s %10lld %12.3f %10.2f %6.1f%%\n", op_name(static_cast<OpId>(r.op)),
                  r.dev == 0 ? "cpu" : "cuda", static_cast<long long>(r.n), r.s * 1e3, r.s * 1e6 / static_cast<double>(r.n),
                  total > 0 ? 100.0 * r.s / total : 0.0);
    out += line;
  }
  std::snprintf(line, sizeof line, "%-28s %-5s %10s %12.3f\n", "total", "", "", total * 1e3);
  out += line;
  for (int d = 0; d < kNumDeviceTypes; ++d)
    if (p.span_seconds[d] > 0) {
      std::snprintf(line, sizeof line, "%-28s %-5s %10s %12.3f\n", "device span (first to last op)",
                    d == 0 ? "cpu" : "cuda", "", p.span_seconds[d] * 1e3);
      out += line;
    }
  return out;
}
bool grad_mode_enabled() { return t_grad_mode; }
void set_grad_mode(bool enabled) { t_grad_mode = enabled; }
void set_input_observer(InputObserver fn, void* ctx) {
  t_observer = fn;
  t_observer_ctx = ctx;
}

namespace {
void sync_for_profile(Device device) {
  KernelRegistry::SyncFn fn = KernelRegistry::instance().synchronize_fn(device.type);
  if (fn) fn(device.index);
}
}  // namespace

void dispatch(OpId op, const OpAttrs& attrs, std::span<const Tensor* const> in, std::span<Tensor> out) {
  const OpInfo& info = op_info(op);
  std::chrono::steady_clock::time_point profile_start;
  // The device an op's time is charged to: a copy to an accelerator runs on (and is timed on) the accelerator.
  Device profile_device = in.empty() ? attrs.factory.device : in[0]->device();
  if (op == OpId::to_device && attrs.device.device.type != DeviceType::CPU) profile_device = attrs.device.device;
  const KernelRegistry::TimerFns* timer = nullptr;
  int64_t start_mark = -1;
  if (g_profile_mode != ProfileMode::Off) [[unlikely]] {
    if (g_profile_mode == ProfileMode::Events) {
      const KernelRegistry::TimerFns& t = KernelRegistry::instance().timer(profile_device.type);
      if (t.mark) timer = &t;
    }
    if (timer) {
      start_mark = timer->mark(profile_device.index);
    } else {
      if (g_profile_mode == ProfileMode::Synchronised) sync_for_profile(profile_device);
      profile_start = std::chrono::steady_clock::now();
    }
  }
  MODU_CHECK(info.n_in < 0 || static_cast<int>(in.size()) == info.n_in, op_name(op), ": expected ",
             int(info.n_in), " inputs, got ", in.size());
  MODU_CHECK(info.n_out < 0 || static_cast<int>(out.size()) == info.n_out, op_name(op), ": expected ",
             int(info.n_out), " outputs, got ", out.size());
  for (size_t i = 0; i < in.size(); ++i) {
    MODU_CHECK(in[i] != nullptr && in[i]->defined(), op_name(op), ": input ", i, " is undefined");
  }
  Device device = in.empty() ? attrs.factory.device : in[0]->device();
  if (op != OpId::to_device) {
    for (size_t i = 1; i < in.size(); ++i) {
      MODU_CHECK(in[i]->device() == device, op_name(op), ": inputs are on different devices (input 0 ",
                 describe(*in[0]), ", input ", i, " ", describe(*in[i]),
                 "); move them with .to(device) first");
    }
  }
  if (t_observer) t_observer(t_observer_ctx, op, in);

  switch (info.kind) {
    case OpKind::View:
      make_view_outputs(op, attrs, in, out);
      break;
    case OpKind::InPlace: {
      const Tensor& dst = *in[0];
      MODU_CHECK(!(t_grad_mode && dst.requires_grad()), op_name(op),
                 ": in-place update of a tensor that requires grad (", describe(dst),
                 "); do it under NoGradGuard (optimizer steps, initialisation) or use the out-of-place op");
      check_inplace_args(op, attrs, in);
      out[0] = dst;
      run_kernel(op, attrs, device, in, out);
      dst.storage()->bump_version();
      if (op == OpId::adamw_) {  // m and v are written too
        in[2]->storage()->bump_version();
        in[3]->storage()->bump_version();
      }
      if (op == OpId::adamw_multi_) {  // every parameter, m and v (inputs [0, N), [2N, 4N))
        const size_t n = in.size() / 4;
        for (size_t i = 1; i < in.size(); ++i)
          if (i < n || i >= 2 * n) in[i]->storage()->bump_version();
      }
      break;
    }
    case OpKind::Compute:
    case OpKind::Factory: {
      OutputSpec specs[kMaxDims];
      MODU_CHECK(out.size() <= static_cast<size_t>(kMaxDims), op_name(op), ": too many outputs");
      infer_outputs(op, attrs, in, std::span<OutputSpec>(specs, out.size()));
      Device out_device = op == OpId::to_device ? attrs.device.device : device;
      for (size_t i = 0; i < out.size(); ++i) out[i] = Tensor::empty(specs[i].shape, specs[i].dtype, out_device);
      // A copy between devices runs on the accelerator's backend, which knows both memories.
      Device kernel_device = op == OpId::to_device && out_device.is_cuda() ? out_device : device;
      run_kernel(op, attrs, kernel_device, in, out);
      break;
    }
  }
  ++dispatch_counters().calls[static_cast<int>(device.type)][static_cast<int>(op)];
  if (g_profile_mode != ProfileMode::Off) [[unlikely]] {
    const int type = static_cast<int>(profile_device.type);
    if (timer) {
      pending_marks().push_back(
          {type, profile_device.index, static_cast<int>(op), start_mark, timer->mark(profile_device.index)});
    } else {
      if (g_profile_mode == ProfileMode::Synchronised) {
        sync_for_profile(profile_device);
        if (op == OpId::to_device) sync_for_profile(device);
      }
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - profile_start).count();
      OpProfile& p = op_profile();
      p.seconds[type][static_cast<int>(op)] += s;
      ++p.calls[type][static_cast<int>(op)];
    }
  }

  if (t_grad_mode && g_recorder && info.kind != OpKind::Factory && info.kind != OpKind::InPlace) {
    for (const Tensor* t : in) {
      if (t->requires_grad()) {
        g_recorder(op, attrs, in, out);
        break;
      }
    }
  }
}

Tensor dispatch1(OpId op, const OpAttrs& attrs, std::span<const Tensor* const> in) {
  Tensor out;
  dispatch(op, attrs, in, std::span<Tensor>(&out, 1));
  return out;
}

}  // namespace modu
