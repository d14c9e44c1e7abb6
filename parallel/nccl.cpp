// parallel/nccl.cpp — the NCCL communicator (CUDA tensors; compiled only with the CUDA backend).
//
// Bootstrap (ARCHITECTURE §5): rank 0 of the bootstrap communicator calls ncclGetUniqueId, the bootstrap
// communicator (MPI) broadcasts the 128-byte id, every rank calls ncclCommInitRank on its own device.
// Sub-communicators come from ncclCommSplit.
//
// Invariants: every NCCL call is issued on the device's own stream (core/cuda/runtime.h), so it is
// ordered after the kernels that produced its inputs and before those that consume its outputs, and
// the caching allocator's single-stream rule keeps its buffers valid without record_stream. A Work is an
// event recorded after the call; wait() synchronises on it and raises asynchronous NCCL errors.

#include <nccl.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/cuda/runtime.h"
#include "parallel/comm.h"

namespace modu::parallel {

namespace {

#define MODU_NCCL_CHECK(call, what)                                                                \
  do {                                                                                             \
    ncclResult_t nccl_rc_ = (call);                                                                \
    MODU_CHECK(nccl_rc_ == ncclSuccess, "NCCL ", what, " failed: ", ncclGetErrorString(nccl_rc_)); \
  } while (0)

ncclDataType_t nccl_type(DType dtype, const char* op) {
  switch (dtype) {
    case DType::F32:
      return ncclFloat32;
    case DType::F64:
      return ncclFloat64;
    case DType::BF16:
      return ncclBfloat16;
    case DType::F16:
      return ncclFloat16;
    case DType::I32:
      return ncclInt32;
    case DType::I64:
      return ncclInt64;
    case DType::U8:
      return ncclUint8;
    case DType::Bool:
      return ncclUint8;
  }
  MODU_FAIL(op, ": unsupported dtype");
}

class EventWork final : public Work {
 public:
  EventWork(cudaEvent_t event, ncclComm_t comm, std::vector<Tensor> keep)
      : event_(event), comm_(comm), keep_(std::move(keep)) {}
  ~EventWork() override { cudaEventDestroy(event_); }
  void wait() override {
    cudaError_t rc = cudaEventSynchronize(event_);
    MODU_CHECK(rc == cudaSuccess, "NCCL work: waiting on its event failed: ", cudaGetErrorString(rc));
    ncclResult_t async_rc = ncclSuccess;
    ncclCommGetAsyncError(comm_, &async_rc);
    MODU_CHECK(async_rc == ncclSuccess, "NCCL: asynchronous error ", ncclGetErrorString(async_rc),
               " (a peer rank failed or the network broke)");
    keep_.clear();
  }
  bool is_completed() override { return cudaEventQuery(event_) == cudaSuccess; }

 private:
  cudaEvent_t event_;
  ncclComm_t comm_;
  std::vector<Tensor> keep_;
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(ncclComm_t comm, Device device) : comm_(comm), device_(device) {
    ncclCommUserRank(comm_, &rank_);
    ncclCommCount(comm_, &size_);
  }
  ~NcclCommunicator() override { ncclCommDestroy(comm_); }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "nccl"; }
  int64_t bytes_sent() const override { return bytes_sent_; }

  WorkHandle all_reduce_async(const Tensor& x, ReduceOp op) override {
    check(x, "all_reduce");
    cuda::DeviceGuard guard(device_.index);
    MODU_NCCL_CHECK(ncclAllReduce(x.data_ptr(), x.data_ptr(), static_cast<size_t>(x.numel()),
                                  nccl_type(x.dtype(), "all_reduce"), nccl_op(op), comm_, stream()),
                    "ncclAllReduce");
    bytes_sent_ += static_cast<int64_t>(2 * (size_ - 1) * x.nbytes() / static_cast<size_t>(size_));
    return record({x});
  }
  WorkHandle reduce_scatter_async(const Tensor& in, const Tensor& out, ReduceOp op) override {
    check(in, "reduce_scatter");
    check(out, "reduce_scatter");
    MODU_CHECK(in.numel() == out.numel() * size_, "reduce_scatter: input has ", in.numel(), " elements, output ",
               out.numel(), "; the input must hold size() = ", size_, " times the output's elements");
    cuda::DeviceGuard guard(device_.index);
    MODU_NCCL_CHECK(ncclReduceScatter(in.data_ptr(), out.data_ptr(), static_cast<size_t>(out.numel()),
                                      nccl_type(in.dtype(), "reduce_scatter"), nccl_op(op), comm_, stream()),
                    "ncclReduceScatter");
    bytes_sent_ += static_cast<int64_t>((size_ - 1) * out.nbytes());
    return record({in, out});
  }
  WorkHandle all_gather_async(const Tensor& in, const Tensor& out) override {
    check(in, "all_gather");
    check(out, "all_gather");
    MODU_CHECK(out.numel() == in.numel() * size_, "all_gather: output has ", out.numel(), " elements, input ",
               in.numel(), "; the output must hold size() = ", size_, " times the input's elements");
    cuda::DeviceGuard guard(device_.index);
    MODU_NCCL_CHECK(ncclAllGather(in.data_ptr(), out.data_ptr(), static_cast<size_t>(in.numel()),
                                  nccl_type(in.dtype(), "all_gather"), comm_, stream()),
                    "ncclAllGather");
    bytes_sent_ += static_cast<int64_t>((size_ - 1) * in.nbytes());
    return record({in, out});
  }
  WorkHandle broadcast_async(const Tensor& x, int root) override {
    check(x, "broadcast");
    cuda::DeviceGuard guard(device_.index);
    MODU_NCCL_CHECK(ncclBroadcast(x.data_ptr(), x.data_ptr(), static_cast<size_t>(x.numel()),
                                  nccl_type(x.dtype(), "broadcast"), root, comm_, stream()),
                    "ncclBroadcast");
    if (rank_ == root) bytes_sent_ += static_cast<int64_t>(x.nbytes());
    return record({x});
  }
  WorkHandle send_async(const Tensor& x, int peer, int) override {
    check(x, "send");
    cuda::DeviceGuard guard(device_.index);
    MODU_NCCL_CHECK(
        ncclSend(x.data_ptr(), static_cast<size_t>(x.numel()), nccl_type(x.dtype(), "send"), peer, comm_, stream()),
        "ncclSend");
    bytes_sent_ += static_cast<int64_t>(x.nbytes());
    return record({x});
  }
  WorkHandle recv_async(const Tensor& x, int peer, int) override {
    check(x, "recv");
    cuda::DeviceGuard guard(device_.index);
    MODU_NCCL_CHECK(
        ncclRecv(x.data_ptr(), static_cast<size_t>(x.numel()), nccl_type(x.dtype(), "recv"), peer, comm_, stream()),
        "ncclRecv");
    return record({x});
  }
  double sum(double value) override {
    Tensor t = Tensor::from_vector(std::vector<double>{value}, Dims{1}).to(device_);
    all_reduce(t, ReduceOp::Sum);
    return t.to(Device::cpu()).data<double>()[0];
  }
  double max(double value) override {
    Tensor mine = Tensor::from_vector(std::vector<double>{value}, Dims{1}).to(device_);
    Tensor all = Tensor::empty(Dims{size_}, DType::F64, device_);
    all_gather(mine, all);
    std::vector<double> v = all.to(Device::cpu()).to_vector<double>();
    return *std::max_element(v.begin(), v.end());
  }
  void barrier() override {
    Tensor one = Tensor::zeros(Dims{1}, DType::F32, device_);
    all_reduce(one, ReduceOp::Sum);
  }
  std::unique_ptr<Communicator> split(int color, int key) override {
    cuda::DeviceGuard guard(device_.index);
    ncclComm_t sub = nullptr;
    MODU_NCCL_CHECK(ncclCommSplit(comm_, color, key, &sub, nullptr), "ncclCommSplit");
    return std::make_unique<NcclCommunicator>(sub, device_);
  }

 private:
  void check(const Tensor& t, const char* op) const {
    MODU_CHECK(t.defined() && t.is_contiguous(), op, ": NCCL needs a contiguous tensor, got ",
               t.defined() ? describe(t) : std::string("an undefined tensor"));
    MODU_CHECK(t.device() == device_, op, ": the NCCL communicator of ", device_.str(), " got ", describe(t),
               "; move it to this rank's device");
  }
  static ncclRedOp_t nccl_op(ReduceOp op) {
    return op == ReduceOp::Avg ? ncclAvg : op == ReduceOp::Max ? ncclMax : ncclSum;
  }
  cudaStream_t stream() const { return cuda::current_stream(device_); }
  WorkHandle record(std::vector<Tensor> keep) {
    cudaEvent_t event = nullptr;
    cudaError_t rc = cudaEventCreateWithFlags(&event, cudaEventDisableTiming);
    MODU_CHECK(rc == cudaSuccess, "NCCL: cudaEventCreate failed: ", cudaGetErrorString(rc));
    cudaEventRecord(event, stream());
    return std::make_shared<EventWork>(event, comm_, std::move(keep));
  }

  ncclComm_t comm_;
  Device device_;
  int rank_ = 0, size_ = 1;
  int64_t bytes_sent_ = 0;
};

}  // namespace

bool has_nccl() { return true; }

std::unique_ptr<Communicator> make_nccl_communicator(Communicator& bootstrap, Device device) {
  MODU_CHECK(device.is_cuda(), "the NCCL communicator needs a CUDA device, got ", device.str(),
             "; set train.device = cuda");
  MODU_CHECK(device.index < cuda::device_count(), "rank ", bootstrap.rank(), " wants ", device.str(), " but only ",
             cuda::device_count(), " CUDA device(s) are visible (", cuda::unavailable_reason(),
             "); run one rank per GPU (mpirun -np <GPUs per node> per node)");
  ncclUniqueId id;
  std::memset(&id, 0, sizeof(id));
  if (bootstrap.rank() == 0) MODU_NCCL_CHECK(ncclGetUniqueId(&id), "ncclGetUniqueId");
  Tensor bytes = Tensor::from_blob_copy(&id, Dims{static_cast<int64_t>(sizeof(id))}, DType::U8);
  bootstrap.broadcast(bytes, 0);
  std::memcpy(&id, bytes.data_ptr(), sizeof(id));
  cuda::DeviceGuard guard(device.index);
  ncclComm_t comm = nullptr;
  MODU_NCCL_CHECK(ncclCommInitRank(&comm, bootstrap.size(), id, bootstrap.rank()), "ncclCommInitRank");
  return std::make_unique<NcclCommunicator>(comm, device);
}

}  // namespace modu::parallel
