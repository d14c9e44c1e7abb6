// core/cuda/runtime.cpp — devices, streams, the CUDA caching allocator, cuBLAS handles, deferred kernel
// errors, error reporting, and register_cuda_kernels (the CUDA column of the kernel registry).
//
// Invariants: see core/cuda/runtime.h. Per-device state is created lazily under a mutex and never
// destroyed (tensors may be freed during static destruction, after the runtime would have torn down).
#include "core/cuda/runtime.h"

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/check.h"
#include "core/cuda/kernels.h"
#include "core/ops/op_attrs.h"

namespace modu::cuda {

// ---- error reporting ---------------------------------------------------------------------------------

namespace detail {

[[noreturn]] void cuda_fail(cudaError_t err, const char* call, const char* file, int line) {
  std::string msg = ::modu::detail::concat("CUDA error: ", call, " failed with ", cudaGetErrorString(err), " (",
                           cudaGetErrorName(err), ")");
  if (err == cudaErrorIllegalAddress || err == cudaErrorLaunchFailure || err == cudaErrorAssert ||
      err == cudaErrorIllegalInstruction || err == cudaErrorMisalignedAddress)
    msg += "; the CUDA context is now unusable (run with MODU_CUDA_LAUNCH_BLOCKING=1 or under "
           "compute-sanitizer to find the kernel)";
  throw Error(::modu::detail::concat(msg, " (", file, ":", line, ")"));
}

[[noreturn]] void cublas_fail(int status, const char* call, const char* file, int line) {
  throw Error(::modu::detail::concat("cuBLAS error: ", call, " failed with ",
                     cublasGetStatusString(static_cast<cublasStatus_t>(status)), " (status ", status, ") (",
                     file, ":", line, ")"));
}

void check_launch(const char* what, const char* file, int line) {
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) [[unlikely]]
    cuda_fail(err, ::modu::detail::concat("launch of ", what).c_str(), file, line);
  if (launch_blocking()) {
    int dev = current_device();
    err = cudaStreamSynchronize(stream(dev));
    if (err != cudaSuccess) cuda_fail(err, ::modu::detail::concat("kernel ", what, " (launch-blocking mode)").c_str(), file, line);
    check_device_errors(dev);
  }
}

}  // namespace detail

bool launch_blocking() {
  static const bool on = [] {
    const char* v = std::getenv("MODU_CUDA_LAUNCH_BLOCKING");
    return v && *v && std::strcmp(v, "0") != 0;
  }();
  return on;
}

// ---- devices -----------------------------------------------------------------------------------------

namespace {

constexpr int kMaxDevices = 64;

struct DeviceState {
  std::once_flag stream_once, blas_once, slot_once, props_once;
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  cublasLtHandle_t lt = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  DeviceErrorSlot* slot = nullptr;
  int sms = 0;
  size_t smem_optin = 0;
};

DeviceState& state(int index) {
  static DeviceState* states = new DeviceState[kMaxDevices];
  MODU_CHECK(index >= 0 && index < kMaxDevices && index < device_count(), "cuda:", index,
             " does not exist: this machine has ", device_count(), " CUDA device(s)");
  return states[index];
}

struct Probe {
  int count = 0;
  std::string reason;
};
const Probe& probe() {
  static const Probe p = [] {
    Probe r;
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
      r.reason = ::modu::detail::concat(cudaGetErrorString(err), " (", cudaGetErrorName(err), ")");
      cudaGetLastError();  // not sticky; clear it
      n = 0;
    } else if (n == 0) {
      r.reason = "no CUDA device is visible";
    }
    r.count = n;
    return r;
  }();
  return p;
}

thread_local int t_current = -1;

}  // namespace

int device_count() { return probe().count; }
bool is_available() { return device_count() > 0; }
const char* unavailable_reason() { return probe().reason.c_str(); }

void set_device(int index) {
  if (t_current == index) return;
  MODU_CHECK(index >= 0 && index < device_count(), "cuda:", index, " does not exist: this machine has ",
             device_count(), " CUDA device(s)", device_count() == 0 ? ::modu::detail::concat(" (", unavailable_reason(), ")") : "");
  MODU_CUDA_CHECK(cudaSetDevice(index));
  t_current = index;
}

int current_device() {
  if (t_current < 0) {
    int d = 0;
    MODU_CUDA_CHECK(cudaGetDevice(&d));
    t_current = d;
  }
  return t_current;
}

DeviceGuard::DeviceGuard(int index) : prev_(t_current) { set_device(index); }
DeviceGuard::~DeviceGuard() {
  if (prev_ >= 0 && prev_ != t_current) {
    if (cudaSetDevice(prev_) == cudaSuccess) t_current = prev_;
  }
}

cudaStream_t stream(int index) {
  DeviceState& s = state(index);
  std::call_once(s.stream_once, [&] {
    DeviceGuard g(index);
    MODU_CUDA_CHECK(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking));
  });
  return s.stream;
}

cudaStream_t current_stream(Device device) {
  MODU_CHECK(device.is_cuda(), "current_stream: ", device.str(), " is not a CUDA device");
  return stream(device.index);
}

namespace {
void load_props(int index, DeviceState& s) {
  std::call_once(s.props_once, [&] {
    MODU_CUDA_CHECK(cudaDeviceGetAttribute(&s.sms, cudaDevAttrMultiProcessorCount, index));
    int optin = 0;
    MODU_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, index));
    s.smem_optin = static_cast<size_t>(optin);
  });
}
// Devices whose stream exists (synchronize(-1) waits for these).
std::vector<int> used_devices() {
  std::vector<int> v;
  for (int i = 0; i < device_count() && i < kMaxDevices; ++i)
    if (state(i).stream) v.push_back(i);
  return v;
}
}  // namespace

int sm_count(int index) {
  DeviceState& s = state(index);
  load_props(index, s);
  return s.sms;
}

size_t max_shared_memory_per_block(int index) {
  DeviceState& s = state(index);
  load_props(index, s);
  return s.smem_optin;
}

void synchronize(int index) {
  if (index < 0) {
    for (int d : used_devices()) synchronize(d);
    return;
  }
  DeviceGuard g(index);
  MODU_CUDA_CHECK(cudaStreamSynchronize(stream(index)));
  check_device_errors(index);
}

// ---- cuBLAS ----------------------------------------------------------------------------------------------

namespace {
constexpr size_t kWorkspaceBytes = size_t(32) << 20;  // cuBLAS recommends >= 32 MiB on Hopper

void init_blas(int index, DeviceState& s) {
  std::call_once(s.blas_once, [&] {
    DeviceGuard g(index);
    MODU_CUDA_CHECK(cudaMalloc(&s.workspace, kWorkspaceBytes));
    s.workspace_bytes = kWorkspaceBytes;
    MODU_CUBLAS_CHECK(cublasCreate(&s.cublas));
    MODU_CUBLAS_CHECK(cublasSetStream(s.cublas, stream(index)));
    MODU_CUBLAS_CHECK(cublasSetWorkspace(s.cublas, s.workspace, s.workspace_bytes));
    // Pure fp32 for f32 GEMMs (no TF32), so results match the CPU within fp32 rounding.
    MODU_CUBLAS_CHECK(cublasSetMathMode(s.cublas, CUBLAS_DEFAULT_MATH));
    MODU_CUBLAS_CHECK(cublasLtCreate(&s.lt));
  });
}
}  // namespace

cublasHandle_t cublas_handle(int index) {
  DeviceState& s = state(index);
  init_blas(index, s);
  return s.cublas;
}

cublasLtHandle_t cublaslt_handle(int index) {
  DeviceState& s = state(index);
  init_blas(index, s);
  return s.lt;
}

void* blas_workspace(int index, size_t* bytes) {
  DeviceState& s = state(index);
  init_blas(index, s);
  *bytes = s.workspace_bytes;
  return s.workspace;
}

// ---- deferred kernel errors -------------------------------------------------------------------------------

DeviceErrorSlot* error_slot(int index) {
  DeviceState& s = state(index);
  std::call_once(s.slot_once, [&] {
    DeviceGuard g(index);
    MODU_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&s.slot), sizeof(DeviceErrorSlot)));
    MODU_CUDA_CHECK(cudaMemset(s.slot, 0, sizeof(DeviceErrorSlot)));
    MODU_CUDA_CHECK(cudaDeviceSynchronize());
  });
  return s.slot;
}

void check_device_errors(int index) {
  DeviceState& s = state(index);
  if (!s.slot) return;  // no kernel that reports has run on this device
  DeviceGuard g(index);
  DeviceErrorSlot h{};
  cudaStream_t st = stream(index);
  MODU_CUDA_CHECK(cudaMemcpyAsync(&h, s.slot, sizeof(h), cudaMemcpyDeviceToHost, st));
  MODU_CUDA_CHECK(cudaStreamSynchronize(st));
  if (!h.flag) return;
  MODU_CUDA_CHECK(cudaMemsetAsync(s.slot, 0, sizeof(DeviceErrorSlot), st));
  const char* name = h.op >= 0 && h.op < kNumOps ? op_name(static_cast<OpId>(h.op)) : "?";
  throw Error(::modu::detail::concat(name, ": index ", h.value, " at position ", h.position, " is out of range [0, ", h.limit,
                     ") (found on cuda:", index, " by the kernel; reported at the next synchronisation, so "
                     "later results are not to be trusted; MODU_CUDA_LAUNCH_BLOCKING=1 reports it at the op)"));
}

// ---- the caching allocator ---------------------------------------------------------------------------------

namespace {

void* raw_alloc(size_t nbytes, int index) {
  DeviceGuard g(index);
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, nbytes);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // clear; the caching allocator empties its cache and retries once
    return nullptr;
  }
  MODU_CUDA_CHECK(err);
  return p;
}

void raw_free(void* p, int index) {
  DeviceGuard g(index);
  // cudaFree waits for the device: no kernel can still be using the block.
  cudaError_t err = cudaFree(p);
  if (err == cudaErrorCudartUnloading) return;  // process exit
  MODU_CUDA_CHECK(err);
}

bool caching_disabled() {
  static const bool off = [] {
    const char* v = std::getenv("MODU_CUDA_NO_CACHING");
    return v && *v && std::strcmp(v, "0") != 0;
  }();
  return off;
}

class CudaAllocator final : public Allocator {
 public:
  explicit CudaAllocator(int index)
      : index_(index), cache_(Device::cuda(index), raw_alloc, raw_free), caching_(!caching_disabled()) {}

  void* allocate(size_t nbytes) override {
    release_finished();
    if (caching_) return cache_.allocate(nbytes);
    void* p = raw_alloc(nbytes ? nbytes : 1, index_);
    MODU_CHECK(p != nullptr, "out of memory on cuda:", index_, ": could not allocate ", nbytes, " bytes");
    std::lock_guard<std::mutex> lock(mu_);
    ++exact_.requests;
    ++exact_.system_allocs;
    exact_.bytes_in_use += static_cast<int64_t>(nbytes);
    if (exact_.bytes_in_use > exact_.peak_bytes_in_use) exact_.peak_bytes_in_use = exact_.bytes_in_use;
    return p;
  }

  void deallocate(void* ptr, size_t nbytes) override {
    if (!ptr) return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = uses_.find(ptr);
      if (it != uses_.end()) {
        // Used on other streams: hold the block until their queued work is done.
        Deferred d{ptr, nbytes, {}};
        DeviceGuard g(index_);
        for (cudaStream_t s : it->second) {
          cudaEvent_t e;
          MODU_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
          MODU_CUDA_CHECK(cudaEventRecord(e, s));
          d.events.push_back(e);
        }
        uses_.erase(it);
        deferred_.push_back(std::move(d));
        return;
      }
    }
    give_back(ptr, nbytes);
  }

  Device device() const override { return Device::cuda(index_); }
  AllocatorStats stats() const override {
    if (caching_) return cache_.stats();
    std::lock_guard<std::mutex> lock(mu_);
    return exact_;
  }
  void empty_cache() override { cache_.empty_cache(); }

  void record_stream(void* ptr, cudaStream_t s) {
    std::lock_guard<std::mutex> lock(mu_);
    auto& v = uses_[ptr];
    for (cudaStream_t x : v)
      if (x == s) return;
    v.push_back(s);
  }

 private:
  struct Deferred {
    void* ptr;
    size_t nbytes;
    std::vector<cudaEvent_t> events;
  };

  void give_back(void* ptr, size_t nbytes) {
    if (caching_) {
      cache_.deallocate(ptr, nbytes);
      return;
    }
    raw_free(ptr, index_);
    std::lock_guard<std::mutex> lock(mu_);
    ++exact_.system_frees;
    exact_.bytes_in_use -= static_cast<int64_t>(nbytes);
  }

  // Deferred blocks whose events have all completed go back to the cache.
  void release_finished() {
    std::vector<Deferred> done;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (deferred_.empty()) return;
      for (size_t i = 0; i < deferred_.size();) {
        bool finished = true;
        for (cudaEvent_t e : deferred_[i].events) {
          cudaError_t q = cudaEventQuery(e);
          if (q == cudaErrorNotReady) {
            cudaGetLastError();
            finished = false;
            break;
          }
          MODU_CUDA_CHECK(q);
        }
        if (finished) {
          done.push_back(std::move(deferred_[i]));
          deferred_[i] = std::move(deferred_.back());
          deferred_.pop_back();
        } else {
          ++i;
        }
      }
    }
    for (Deferred& d : done) {
      for (cudaEvent_t e : d.events) cudaEventDestroy(e);
      give_back(d.ptr, d.nbytes);
    }
  }

  int index_;
  CachingAllocator cache_;
  bool caching_;
  mutable std::mutex mu_;
  std::unordered_map<void*, std::vector<cudaStream_t>> uses_;
  std::vector<Deferred> deferred_;
  AllocatorStats exact_;
};

CudaAllocator* cuda_allocator(int index) {
  static std::mutex mu;
  static CudaAllocator* allocs[kMaxDevices] = {};
  MODU_CHECK(index >= 0 && index < kMaxDevices, "cuda:", index, " is not a valid device index");
  std::lock_guard<std::mutex> lock(mu);
  if (!allocs[index]) {
    MODU_CHECK(index < device_count(), "cannot allocate on cuda:", index, ": this machine has ", device_count(),
               " CUDA device(s)", device_count() == 0 ? ::modu::detail::concat(" (", unavailable_reason(), ")") : "");
    allocs[index] = new CudaAllocator(index);  // never destroyed (see file comment)
  }
  return allocs[index];
}

Allocator* allocator_factory(int index) { return cuda_allocator(index); }

}  // namespace

Allocator* allocator(int index) { return cuda_allocator(index); }

void record_stream(const Tensor& t, cudaStream_t s) {
  MODU_CHECK(t.device().is_cuda(), "record_stream: ", describe(t), " is not on a CUDA device");
  if (!t.storage()->data() || s == stream(t.device().index)) return;
  cuda_allocator(t.device().index)->record_stream(t.storage()->data(), s);
}

// ---- op profiler marks (events mode) -------------------------------------------------------------------
// A pool of timing events per device; a mark is an index into it, valid until release.
namespace {
struct MarkPool {
  std::vector<cudaEvent_t> events;
  size_t used = 0;
};
MarkPool& mark_pool(int index) {
  static std::unordered_map<int, MarkPool>* pools = new std::unordered_map<int, MarkPool>();
  return (*pools)[index];
}
int64_t profile_mark(int index) {
  MarkPool& p = mark_pool(index);
  DeviceGuard g(index);
  if (p.used == p.events.size()) {
    cudaEvent_t e;
    MODU_CUDA_CHECK(cudaEventCreate(&e));
    p.events.push_back(e);
  }
  MODU_CUDA_CHECK(cudaEventRecord(p.events[p.used], stream(index)));
  return static_cast<int64_t>(p.used++);
}
double profile_elapsed(int index, int64_t start, int64_t end) {
  MarkPool& p = mark_pool(index);
  MODU_CHECK(start >= 0 && end >= start && static_cast<size_t>(end) < p.used, "op profiler: marks ", start, ", ", end,
             " are not live on cuda:", index);
  DeviceGuard g(index);
  MODU_CUDA_CHECK(cudaEventSynchronize(p.events[static_cast<size_t>(end)]));
  float ms = 0;
  MODU_CUDA_CHECK(cudaEventElapsedTime(&ms, p.events[static_cast<size_t>(start)], p.events[static_cast<size_t>(end)]));
  return static_cast<double>(ms) * 1e-3;
}
void profile_release(int index) { mark_pool(index).used = 0; }
}  // namespace

// ---- registration ---------------------------------------------------------------------------------------

int call_device(const KernelCall& c) {
  if (c.in.empty()) return c.attrs.factory.device.index;
  if (c.op == OpId::to_device && c.out[0].defined() && c.out[0].device().is_cuda()) return c.out[0].device().index;
  return c.in[0]->device().index;
}

}  // namespace modu::cuda

namespace modu {

void register_cuda_kernels(KernelRegistry& r) {
  // No CUDA runtime call here: a CUDA build must start on machines without a GPU.
  register_allocator(DeviceType::CUDA, cuda::allocator_factory);
  r.set_synchronize(DeviceType::CUDA, [](int index) { cuda::synchronize(index); });
  r.set_timer(DeviceType::CUDA, {cuda::profile_mark, cuda::profile_elapsed, cuda::profile_release});
  cuda::register_elementwise_kernels(r);
  cuda::register_copy_kernels(r);
  cuda::register_reduce_kernels(r);
  cuda::register_blas_kernels(r);
  cuda::register_nn_kernels(r);
  cuda::register_index_kernels(r);
  cuda::register_attention_kernels(r);
  cuda::register_image_kernels(r);
}

}  // namespace modu
