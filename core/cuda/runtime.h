// core/cuda/runtime.h — the CUDA backend's devices, streams, memory and library handles.
//
// Invariants:
//  - One stream per device (created lazily, non-blocking). Every kernel, copy and cuBLAS call of the
//    backend for device d runs on current_stream(d), so ops on one device execute in issue order.
//  - Memory comes from a caching allocator per device (modu::CachingAllocator over cudaMalloc/cudaFree,
//    wrapped by CudaAllocator). A block freed by the host goes straight back to the cache even if a
//    kernel that reads it is still queued: the next user of the block is an op on the same stream, which
//    runs after that kernel. This single-stream invariant is what makes the immediate reuse safe. A
//    tensor used on another stream (NCCL, a copy stream) must be announced with record_stream(); its
//    block is then held back until an event recorded on that stream at free time has completed.
//  - Nothing here touches the CUDA runtime before first use: a binary built with the CUDA backend loads
//    and runs its CPU work on a machine without a GPU (device_count() is then 0).
//  - Kernels that find bad data (an index out of range) never read or write out of bounds; they record
//    the first such error in a per-device slot, and check_device_errors() (called by synchronize() and
//    by every device-to-host copy) raises it as modu::Error naming the op, the position and the value.
//    MODU_CUDA_LAUNCH_BLOCKING=1 checks after every kernel instead (slow; for debugging).
//  - MODU_CUDA_NO_CACHING=1 makes the allocator call cudaMalloc/cudaFree for every tensor with the exact
//    size (for compute-sanitizer, which cannot see overruns inside a cached block).
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "core/allocator.h"
#include "core/cuda/check.h"
#include "core/device.h"
#include "core/tensor.h"

namespace modu::cuda {

// Number of visible CUDA devices; 0 (never an exception) when there is no driver or no device.
int device_count();
bool is_available();
// The reason device_count() is 0, e.g. "CUDA driver version is insufficient" ("" when devices exist).
const char* unavailable_reason();

// Makes `index` the calling thread's current device (cached: no driver call when already current).
void set_device(int index);
int current_device();

// Sets the current device for a scope and restores the previous one.
class DeviceGuard {
 public:
  explicit DeviceGuard(int index);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_;
};

// The stream of a device (created on first use).
cudaStream_t current_stream(Device device);
cudaStream_t stream(int device_index);
// Waits for the device's stream (index -1: every device used so far), then raises deferred kernel errors.
void synchronize(int device_index = -1);

// Multiprocessor count and the opt-in shared-memory limit per block of a device.
int sm_count(int device_index);
size_t max_shared_memory_per_block(int device_index);

// cuBLAS / cuBLASLt handles of a device, bound to its stream, sharing one workspace.
cublasHandle_t cublas_handle(int device_index);
cublasLtHandle_t cublaslt_handle(int device_index);
void* blas_workspace(int device_index, size_t* bytes);

// The caching allocator of a device (registered with register_allocator for DeviceType::CUDA).
Allocator* allocator(int device_index);
// Multi-stream hook: `t` is read or written on `s` (not the device's own stream); its block is returned to
// the cache only after the work queued on `s` at the time of the free has finished.
void record_stream(const Tensor& t, cudaStream_t s);

// ---- deferred kernel errors ----------------------------------------------------------------------
struct DeviceErrorSlot {
  int flag;          // 0: none; set to 1 by the first kernel that reports
  int op;            // OpId of the reporting op
  long long position;
  long long value;
  long long limit;
};
DeviceErrorSlot* error_slot(int device_index);  // device memory, zeroed
void check_device_errors(int device_index);

// True when MODU_CUDA_LAUNCH_BLOCKING=1: synchronise and check after every launch.
bool launch_blocking();

}  // namespace modu::cuda
