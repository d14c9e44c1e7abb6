// parallel/comm.cpp — the single-process and MPI communicators (see comm.h).
//
// MPI backend: every operation of a communicator is queued to that communicator's worker thread, which
// runs them in issue order with blocking MPI calls (MPI_THREAD_MULTIPLE, so the workers of several
// communicators may be inside MPI at once); point-to-point send / recv wait by MPI_Test with short sleeps
// (wait_gently) rather than busy-polling, so a rank waiting for its peer leaves the core to compute. MPI's own
// threads and the workers block the stop signals (StopSignalsBlocked): SIGTERM to a rank reaches its main thread.
// all_reduce, reduce_scatter and all_gather are rings over MPI point-to-point written here rather than MPI's own
// collectives, so that (1) the reduction order is fixed and the result bit-identical on every rank and (2) the
// bytes sent are known exactly.
//
// Ring over n ranks, the data cut into n blocks (block b: elements [b*N/n, (b+1)*N/n)):
//   reduce-scatter, steps s = 0..n-2: rank r sends block (r-s-1) mod n to r+1 and receives block
//     (r-s-2) mod n from r-1, adding its own values to what arrived (ReduceOp::Max: keeping the larger);
//     after n-1 steps rank r holds the full reduction of block r.
//   all-gather, steps s = 0..n-2: rank r sends block (r-s) mod n to r+1 and receives block (r-s-1) mod n
//     from r-1 in place.
//   Each rank sends (n-1)/n of the data per phase: 2(n-1)/n * S for an all-reduce of S bytes.

#include "parallel/comm.h"

#include <mpi.h>
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "core/ops/ops.h"

namespace modu::parallel {

namespace {

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

void check_contiguous(const Tensor& t, const char* op, const char* which) {
  MODU_CHECK(t.defined(), op, ": the ", which, " tensor is undefined");
  MODU_CHECK(t.is_contiguous(), op, ": the ", which, " tensor ", describe(t),
             " is not contiguous; pass .contiguous() (the result is written "
             "into the tensor itself)");
}

void check_cpu(const Tensor& t, const char* op) {
  MODU_CHECK(!t.device().is_cuda(), op, ": the MPI communicator works on CPU tensors, got ", describe(t),
             "; use the NCCL communicator for CUDA tensors (train.device = "
             "cuda under mpirun)");
}

// ---- element-wise helpers on host memory ----------------------------------------------------------

template <class T>
void add_into(T* acc, const T* in, int64_t n) {
  for (int64_t i = 0; i < n; ++i) acc[i] = in[i] + acc[i];
}

// ReduceOp::Max: acc = max(acc, in).
template <class T>
void max_into(T* acc, const T* in, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (in[i] > acc[i]) acc[i] = in[i];
}

// acc = acc (op) in over n elements: Sum and Avg add (Avg divides afterwards), Max takes the larger.
void combine_into(DType dtype, ReduceOp op, void* acc, const void* in, int64_t n) {
  const bool max = op == ReduceOp::Max;
  switch (dtype) {
    case DType::F32:
      if (max) return max_into(static_cast<float*>(acc), static_cast<const float*>(in), n);
      return add_into(static_cast<float*>(acc), static_cast<const float*>(in), n);
    case DType::F64:
      if (max) return max_into(static_cast<double*>(acc), static_cast<const double*>(in), n);
      return add_into(static_cast<double*>(acc), static_cast<const double*>(in), n);
    case DType::I32:
      if (max) return max_into(static_cast<int32_t*>(acc), static_cast<const int32_t*>(in), n);
      return add_into(static_cast<int32_t*>(acc), static_cast<const int32_t*>(in), n);
    case DType::I64:
      if (max) return max_into(static_cast<int64_t*>(acc), static_cast<const int64_t*>(in), n);
      return add_into(static_cast<int64_t*>(acc), static_cast<const int64_t*>(in), n);
    default:
      MODU_FAIL("reduction over ", dtype_name(dtype), " tensors is not supported: use f32, f64, i32 or i64");
  }
}

void divide(DType dtype, void* data, int64_t n, int divisor) {
  switch (dtype) {
    case DType::F32: {
      float* p = static_cast<float*>(data);
      const float d = static_cast<float>(divisor);
      for (int64_t i = 0; i < n; ++i) p[i] /= d;
      return;
    }
    case DType::F64: {
      double* p = static_cast<double*>(data);
      for (int64_t i = 0; i < n; ++i) p[i] /= divisor;
      return;
    }
    default:
      MODU_FAIL("ReduceOp::Avg needs a floating tensor (f32 or f64), got ", dtype_name(dtype));
  }
}

void check_reducible(DType dtype, ReduceOp op, const char* what) {
  bool ok = dtype == DType::F32 || dtype == DType::F64 ||
            (op != ReduceOp::Avg && (dtype == DType::I32 || dtype == DType::I64));
  const char* verb = op == ReduceOp::Avg ? "average" : op == ReduceOp::Max ? "take the maximum of" : "sum";
  MODU_CHECK(ok, what, ": cannot ", verb, " ", dtype_name(dtype),
             " tensors; use f32 or f64 (or i32/i64 with Sum or Max)");
}

// ---- single process ---------------------------------------------------------------------------------

class DoneWork final : public Work {
 public:
  void wait() override {}
  bool is_completed() override { return true; }
};

WorkHandle done_work() { return std::make_shared<DoneWork>(); }

class SingleCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend() const override { return "single"; }
  WorkHandle all_reduce_async(const Tensor& x, ReduceOp op) override {
    check_contiguous(x, "all_reduce", "input");
    return done_work();
  }
  WorkHandle reduce_scatter_async(const Tensor& in, const Tensor& out, ReduceOp op) override {
    check_contiguous(in, "reduce_scatter", "input");
    check_contiguous(out, "reduce_scatter", "output");
    MODU_CHECK(in.numel() == out.numel(), "reduce_scatter: input has ", in.numel(), " elements, output ", out.numel(),
               "; with 1 rank they must be equal");
    if (!in.same_storage(out) || in.offset() != out.offset()) {
      NoGradGuard no_grad;
      out.view(Dims{out.numel()}).copy_(in.view(Dims{in.numel()}));
    }
    return done_work();
  }
  WorkHandle all_gather_async(const Tensor& in, const Tensor& out) override {
    return reduce_scatter_async(in, out, ReduceOp::Sum);
  }
  WorkHandle broadcast_async(const Tensor& x, int root) override {
    MODU_CHECK(root == 0, "broadcast: root ", root, " is not a rank of a 1-rank communicator");
    return done_work();
  }
  WorkHandle send_async(const Tensor&, int peer, int) override {
    MODU_FAIL("send to rank ", peer, " on a 1-rank communicator: there is no other rank");
  }
  WorkHandle recv_async(const Tensor&, int peer, int) override {
    MODU_FAIL("recv from rank ", peer, " on a 1-rank communicator: there is no other rank");
  }
  void barrier() override {}
  std::unique_ptr<Communicator> split(int, int) override { return std::make_unique<SingleCommunicator>(); }
  int64_t bytes_sent() const override { return 0; }
};

// ---- MPI --------------------------------------------------------------------------------------------

std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  return std::string(text, static_cast<size_t>(len));
}

#define MODU_MPI_CHECK(call, what)                                                          \
  do {                                                                                      \
    int mpi_rc_ = (call);                                                                   \
    MODU_CHECK(mpi_rc_ == MPI_SUCCESS, "MPI ", what, " failed: ", mpi_error_text(mpi_rc_)); \
  } while (0)

// Waits for one point-to-point request without holding a core: a few immediate MPI_Test calls (a matched message
// completes at once), then sleeps of 10 us doubling up to 200 us between tests. A blocking MPI_Send / MPI_Recv
// busy-polls until the peer reaches the matching call, which on a node whose ranks share cores takes compute time
// from the peer it is waiting for (measured: pipeline waits inflated 1.5-6x on 2 ranks x 2 cores). MPI_Test also
// progresses the transfer; the added latency is at most ~200 us per message.
void wait_gently(MPI_Request* request, const char* what) {
  int done = 0;
  for (int spin = 0; spin < 32 && !done; ++spin) MODU_MPI_CHECK(MPI_Test(request, &done, MPI_STATUS_IGNORE), what);
  auto pause = std::chrono::microseconds(10);
  while (!done) {
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(200));
    MODU_MPI_CHECK(MPI_Test(request, &done, MPI_STATUS_IGNORE), what);
  }
}

// Blocks the stop signals (SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2: what `modu train` and launch/mpirun.sh
// handle) in the calling thread while it lives, so that the threads started meanwhile inherit the block: MPI's
// own threads (started by MPI_Init_thread) and the communicators' workers. The process's stop signals then
// reach the main thread, whose handler only sets a flag, never a thread inside an MPI call.
class StopSignalsBlocked {
 public:
  StopSignalsBlocked() {
    sigset_t stops;
    sigemptyset(&stops);
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2}) sigaddset(&stops, sig);
    pthread_sigmask(SIG_BLOCK, &stops, &previous_);
  }
  ~StopSignalsBlocked() { pthread_sigmask(SIG_SETMASK, &previous_, nullptr); }
  StopSignalsBlocked(const StopSignalsBlocked&) = delete;
  StopSignalsBlocked& operator=(const StopSignalsBlocked&) = delete;

 private:
  sigset_t previous_;
};

// MPI once per process: initialised on first use, finalised at exit (after the world communicator, which is
// created later and so destroyed earlier).
struct MpiRuntime {
  MpiRuntime() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      StopSignalsBlocked in_mpi_threads;
      MODU_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided), "MPI_Init_thread");
      owns = true;
      MODU_CHECK(provided >= MPI_THREAD_MULTIPLE, "this MPI library does not provide MPI_THREAD_MULTIPLE (got level ",
                 provided,
                 "); modu's communicators need it: use Open MPI >= 4 built with "
                 "thread support");
    }
  }
  ~MpiRuntime() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owns && !finalized) MPI_Finalize();
  }
  bool owns = false;
};

MpiRuntime& mpi_runtime() {
  static MpiRuntime runtime;
  return runtime;
}

bool mpi_finalized() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  return finalized != 0;
}

// A queued MPI operation; the worker runs `fn` and then marks it done.
class QueuedWork final : public Work {
 public:
  QueuedWork(std::function<void()> fn, std::vector<Tensor> keep) : fn_(std::move(fn)), keep_(std::move(keep)) {}
  void run() {
    try {
      fn_();
    } catch (...) {
      error_ = std::current_exception();
    }
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
    fn_ = nullptr;
    cv_.notify_all();
  }
  void wait() override {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return done_; });
    keep_.clear();
    if (error_) std::rethrow_exception(error_);
  }
  bool is_completed() override {
    std::lock_guard<std::mutex> lock(mu_);
    return done_;
  }

 private:
  std::function<void()> fn_;
  std::vector<Tensor> keep_;  // the op's tensors stay alive until it ran
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::exception_ptr error_;
};

constexpr int64_t kMaxMessageBytes = int64_t{1} << 30;  // MPI counts are int: send in pieces

class MpiCommunicator final : public Communicator {
 public:
  // Takes ownership of `comm` (freed on destruction unless it is MPI_COMM_WORLD).
  explicit MpiCommunicator(MPI_Comm comm) : comm_(comm) {
    MODU_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    StopSignalsBlocked in_worker;
    worker_ = std::thread([this] { work_loop(); });
  }
  ~MpiCommunicator() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      cv_.notify_all();
    }
    worker_.join();
    if (comm_ != MPI_COMM_WORLD && !mpi_finalized()) MPI_Comm_free(&comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "mpi"; }
  int64_t bytes_sent() const override { return bytes_sent_.load(); }

  WorkHandle all_reduce_async(const Tensor& x, ReduceOp op) override {
    check_contiguous(x, "all_reduce", "input");
    check_cpu(x, "all_reduce");
    check_reducible(x.dtype(), op, "all_reduce");
    return enqueue(
        [this, x, op] {
          char* data = static_cast<char*>(x.data_ptr());
          ring_reduce_scatter(data, x.numel(), x.dtype(), op);
          if (op == ReduceOp::Avg) {
            auto [begin, end] = block(rank_, x.numel());
            divide(x.dtype(), data + begin * x.element_size(), end - begin, size_);
          }
          ring_all_gather(data, x.numel(), x.element_size());
        },
        {x});
  }

  WorkHandle reduce_scatter_async(const Tensor& in, const Tensor& out, ReduceOp op) override {
    check_contiguous(in, "reduce_scatter", "input");
    check_contiguous(out, "reduce_scatter", "output");
    check_cpu(in, "reduce_scatter");
    check_cpu(out, "reduce_scatter");
    check_reducible(in.dtype(), op, "reduce_scatter");
    MODU_CHECK(in.dtype() == out.dtype(), "reduce_scatter: input ", describe(in), " and output ", describe(out),
               " differ in dtype");
    MODU_CHECK(in.numel() == out.numel() * size_, "reduce_scatter: input has ", in.numel(), " elements, output ",
               out.numel(), "; the input must hold size() = ", size_, " times the output's elements");
    return enqueue(
        [this, in, out, op] {
          std::vector<char> scratch(in.nbytes());
          std::memcpy(scratch.data(), in.data_ptr(), in.nbytes());
          ring_reduce_scatter(scratch.data(), in.numel(), in.dtype(), op);
          auto [begin, end] = block(rank_, in.numel());
          std::memcpy(out.data_ptr(), scratch.data() + begin * in.element_size(), out.nbytes());
          if (op == ReduceOp::Avg) divide(out.dtype(), out.data_ptr(), out.numel(), size_);
        },
        {in, out});
  }

  WorkHandle all_gather_async(const Tensor& in, const Tensor& out) override {
    check_contiguous(in, "all_gather", "input");
    check_contiguous(out, "all_gather", "output");
    check_cpu(in, "all_gather");
    check_cpu(out, "all_gather");
    MODU_CHECK(in.dtype() == out.dtype(), "all_gather: input ", describe(in), " and output ", describe(out),
               " differ in dtype");
    MODU_CHECK(out.numel() == in.numel() * size_, "all_gather: output has ", out.numel(), " elements, input ",
               in.numel(), "; the output must hold size() = ", size_, " times the input's elements");
    return enqueue(
        [this, in, out] {
          char* data = static_cast<char*>(out.data_ptr());
          std::memmove(data + static_cast<size_t>(rank_) * in.nbytes(), in.data_ptr(), in.nbytes());
          ring_all_gather(data, out.numel(), out.element_size());
        },
        {in, out});
  }

  WorkHandle broadcast_async(const Tensor& x, int root) override {
    check_contiguous(x, "broadcast", "input");
    check_cpu(x, "broadcast");
    MODU_CHECK(root >= 0 && root < size_, "broadcast: root ", root, " is not a rank of this ", size_,
               "-rank communicator");
    return enqueue(
        [this, x, root] {
          char* data = static_cast<char*>(x.data_ptr());
          for (int64_t done = 0, total = static_cast<int64_t>(x.nbytes()); done < total; done += kMaxMessageBytes) {
            int count = static_cast<int>(std::min(kMaxMessageBytes, total - done));
            MODU_MPI_CHECK(MPI_Bcast(data + done, count, MPI_BYTE, root, comm_), "MPI_Bcast");
          }
          if (rank_ == root) bytes_sent_ += static_cast<int64_t>(x.nbytes());
        },
        {x});
  }

  WorkHandle send_async(const Tensor& x, int peer, int tag) override {
    check_contiguous(x, "send", "input");
    check_cpu(x, "send");
    check_peer(peer, "send");
    return enqueue(
        [this, x, peer, tag] {
          const char* data = static_cast<const char*>(x.data_ptr());
          for (int64_t done = 0, total = static_cast<int64_t>(x.nbytes()); done < total; done += kMaxMessageBytes) {
            int count = static_cast<int>(std::min(kMaxMessageBytes, total - done));
            MPI_Request request;
            MODU_MPI_CHECK(MPI_Isend(data + done, count, MPI_BYTE, peer, tag, comm_, &request), "MPI_Isend");
            wait_gently(&request, "MPI_Isend (wait)");
          }
          bytes_sent_ += static_cast<int64_t>(x.nbytes());
        },
        {x});
  }

  WorkHandle recv_async(const Tensor& x, int peer, int tag) override {
    check_contiguous(x, "recv", "output");
    check_cpu(x, "recv");
    check_peer(peer, "recv");
    return enqueue(
        [this, x, peer, tag] {
          char* data = static_cast<char*>(x.data_ptr());
          for (int64_t done = 0, total = static_cast<int64_t>(x.nbytes()); done < total; done += kMaxMessageBytes) {
            int count = static_cast<int>(std::min(kMaxMessageBytes, total - done));
            MPI_Request request;
            MODU_MPI_CHECK(MPI_Irecv(data + done, count, MPI_BYTE, peer, tag, comm_, &request), "MPI_Irecv");
            wait_gently(&request, "MPI_Irecv (wait)");
          }
        },
        {x});
  }

  void barrier() override {
    enqueue([this] { MODU_MPI_CHECK(MPI_Barrier(comm_), "MPI_Barrier"); }, {})->wait();
  }

  std::unique_ptr<Communicator> split(int color, int key) override {
    MODU_CHECK(color >= 0, "split: color ", color, " must be non-negative");
    MPI_Comm sub = MPI_COMM_NULL;
    enqueue([&] { MODU_MPI_CHECK(MPI_Comm_split(comm_, color, key, &sub), "MPI_Comm_split"); }, {})->wait();
    return std::make_unique<MpiCommunicator>(sub);
  }

 private:
  void check_peer(int peer, const char* op) const {
    MODU_CHECK(peer >= 0 && peer < size_ && peer != rank_, op, ": peer ", peer, " is not another rank of this ", size_,
               "-rank communicator (this is rank ", rank_, ")");
  }

  // Elements [first, last) of block b of n elements.
  std::pair<int64_t, int64_t> block(int b, int64_t n) const { return {n * b / size_, n * (b + 1) / size_}; }

  // Sends `send_bytes` to the next rank while receiving `recv_bytes` from the previous one, in pieces of at most
  // kMaxMessageBytes (this rank's send sizes are the next rank's receive sizes, so empty blocks are skipped on
  // both sides alike).
  void ring_exchange(const char* send, int64_t send_bytes, char* recv, int64_t recv_bytes) {
    const int next = (rank_ + 1) % size_, prev = (rank_ + size_ - 1) % size_;
    std::vector<MPI_Request> requests;
    for (int64_t r = 0; r < recv_bytes; r += kMaxMessageBytes) {
      requests.emplace_back();
      MODU_MPI_CHECK(MPI_Irecv(recv + r, static_cast<int>(std::min(kMaxMessageBytes, recv_bytes - r)), MPI_BYTE, prev,
                               7, comm_, &requests.back()),
                     "MPI_Irecv (ring)");
    }
    for (int64_t s = 0; s < send_bytes; s += kMaxMessageBytes) {
      requests.emplace_back();
      MODU_MPI_CHECK(MPI_Isend(send + s, static_cast<int>(std::min(kMaxMessageBytes, send_bytes - s)), MPI_BYTE, next,
                               7, comm_, &requests.back()),
                     "MPI_Isend (ring)");
    }
    MODU_MPI_CHECK(MPI_Waitall(static_cast<int>(requests.size()), requests.data(), MPI_STATUSES_IGNORE),
                   "MPI_Waitall (ring)");
    bytes_sent_ += send_bytes;
  }

  void ring_reduce_scatter(char* data, int64_t n, DType dtype, ReduceOp op) {
    if (size_ == 1) return;
    const size_t es = dtype_size(dtype);
    std::vector<char> incoming(static_cast<size_t>((n / size_ + 1)) * es);
    for (int s = 0; s < size_ - 1; ++s) {
      int send_b = ((rank_ - s - 1) % size_ + size_) % size_;
      int recv_b = ((rank_ - s - 2) % size_ + size_) % size_;
      auto [sb, se] = block(send_b, n);
      auto [rb, re] = block(recv_b, n);
      ring_exchange(data + sb * es, (se - sb) * static_cast<int64_t>(es), incoming.data(),
                    (re - rb) * static_cast<int64_t>(es));
      combine_into(dtype, op, data + rb * es, incoming.data(), re - rb);
    }
  }

  void ring_all_gather(char* data, int64_t n, size_t es) {
    for (int s = 0; s < size_ - 1; ++s) {
      int send_b = ((rank_ - s) % size_ + size_) % size_;
      int recv_b = ((rank_ - s - 1) % size_ + size_) % size_;
      auto [sb, se] = block(send_b, n);
      auto [rb, re] = block(recv_b, n);
      ring_exchange(data + sb * es, (se - sb) * static_cast<int64_t>(es), data + rb * es,
                    (re - rb) * static_cast<int64_t>(es));
    }
  }

  WorkHandle enqueue(std::function<void()> fn, std::vector<Tensor> keep) {
    auto work = std::make_shared<QueuedWork>(std::move(fn), std::move(keep));
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(work);
    cv_.notify_all();
    return work;
  }

  void work_loop() {
    for (;;) {
      std::shared_ptr<QueuedWork> work;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stop_ and nothing left
        work = std::move(queue_.front());
        queue_.pop_front();
      }
      work->run();
    }
  }

  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
  std::atomic<int64_t> bytes_sent_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<QueuedWork>> queue_;
  bool stop_ = false;
  std::thread worker_;
};

}  // namespace

double Communicator::sum(double value) {
  Tensor t = Tensor::from_vector(std::vector<double>{value}, Dims{1});
  all_reduce(t, ReduceOp::Sum);
  return t.data<double>()[0];
}

double Communicator::max(double value) {
  Tensor mine = Tensor::from_vector(std::vector<double>{value}, Dims{1});
  Tensor all = Tensor::empty(Dims{size()}, DType::F64);
  all_gather(mine, all);
  const double* v = all.data<double>();
  return *std::max_element(v, v + size());
}

std::unique_ptr<Communicator> make_single_communicator() { return std::make_unique<SingleCommunicator>(); }

bool launched_by_mpi() {
  return env("OMPI_COMM_WORLD_SIZE") != nullptr || env("PMI_SIZE") != nullptr || env("PMIX_RANK") != nullptr;
}

int local_rank() {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"})
    if (const char* v = env(name)) return std::atoi(v);
  return 0;
}

Communicator& world() {
  static std::unique_ptr<Communicator> the_world = []() -> std::unique_ptr<Communicator> {
    if (!launched_by_mpi()) return make_single_communicator();
    mpi_runtime();
    return std::make_unique<MpiCommunicator>(MPI_COMM_WORLD);
  }();
  return *the_world;
}

void abort_job(int exit_code) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized && !mpi_finalized()) MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::fflush(nullptr);
  std::_Exit(exit_code);
}

}  // namespace modu::parallel
