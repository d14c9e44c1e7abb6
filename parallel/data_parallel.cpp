// parallel/data_parallel.cpp — bucketed DP gradient averaging and ZeRO-1/2 AdamW (see data_parallel.h).
#include "parallel/data_parallel.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <set>

#include "autograd/autograd.h"
#include "core/ops/ops.h"

namespace modu::parallel {

namespace {
using Clock = std::chrono::steady_clock;
double seconds(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}
}  // namespace

DataParallel::DataParallel(std::vector<nn::ParamRef> params, Communicator& dp, optim::AdamWConfig adamw,
                           DataParallelOptions options)
    : params_(std::move(params)), dp_(dp), options_(options), adamw_config_(adamw) {
  MODU_CHECK(options_.zero >= 0 && options_.zero <= 2, "parallel.zero = ", options_.zero,
             ": ZeRO stages 0 (replicated optimizer), 1 (sharded optimizer "
             "state) and 2 (also sharded "
             "gradients) are implemented; set 0, 1 or 2");
  MODU_CHECK(options_.bucket_mb > 0, "parallel.bucket_mb = ", options_.bucket_mb, ": it must be positive");
  std::set<const TensorImpl*> seen;
  for (const nn::ParamRef& p : params_) {
    MODU_CHECK(seen.insert(p.tensor->impl()).second, "data parallelism: parameter ", p.name,
               " is listed twice; a tied weight must appear once in the "
               "parameter list");
    MODU_CHECK(p.tensor->is_contiguous(), "data parallelism: parameter ", p.name, " ", describe(*p.tensor),
               " is not contiguous");
  }
  active_ = dp_.size() > 1 || options_.zero > 0 || options_.force_communication;
  MODU_CHECK(options_.leave_out_of_norm.empty() || options_.leave_out_of_norm.size() == params_.size(),
             "data parallelism: leave_out_of_norm has ", options_.leave_out_of_norm.size(), " entries for ",
             params_.size(), " parameters");
  if (options_.zero == 0) replicated_ = std::make_unique<optim::AdamW>(params_, adamw_config_);
  if (!active_) return;

  for (const nn::ParamRef& p : params_)
    MODU_CHECK(p.tensor->dtype() == DType::F32, "data parallelism: parameter ", p.name, " is ",
               dtype_name(p.tensor->dtype()), "; the DP gradient buckets hold f32 parameters (master weights)");
  // Buckets in reverse parameter order: the order backward completes them.
  const int64_t cap = std::max<int64_t>(1, static_cast<int64_t>(options_.bucket_mb * 1024 * 1024 / 4));
  const int n = dp_.size();
  bucket_of_.assign(params_.size(), 0);
  Bucket current;
  int64_t filled = 0;
  auto close = [&] {
    if (current.segments.empty()) return;
    current.padded = (filled + n - 1) / n * n;
    buckets_.push_back(std::move(current));
    current = Bucket();
    filled = 0;
  };
  for (size_t i = params_.size(); i-- > 0;) {
    int64_t numel = params_[i].tensor->numel();
    current.segments.push_back(Segment{i, filled, numel});
    bucket_of_[i] = buckets_.size();
    filled += numel;
    if (filled >= cap) close();
  }
  close();
  const Device device = params_.empty() ? Device::cpu() : params_[0].tensor->device();
  for (Bucket& b : buckets_) {
    b.flat = Tensor::zeros(Dims{b.padded}, DType::F32, device);
    if (options_.zero == 2) b.shard_grad = Tensor::zeros(Dims{shard_len(b)}, DType::F32, device);
    if (options_.zero >= 1) {
      b.m = Tensor::zeros(Dims{shard_len(b)}, DType::F32, device);
      b.v = Tensor::zeros(Dims{shard_len(b)}, DType::F32, device);
    }
  }
  had_grad_.assign(params_.size(), 0);
  for (size_t i = 0; i < params_.size(); ++i)
    autograd::register_grad_ready_hook(*params_[i].tensor, [this, i](const Tensor&) { on_grad_ready(i); });
}

DataParallel::~DataParallel() {
  if (!active_) return;
  for (Bucket& b : buckets_)
    if (b.work) {
      try {
        b.work->wait();
      } catch (...) {  // the error was or will be reported by the caller's own wait
      }
    }
  for (const nn::ParamRef& p : params_) autograd::remove_grad_ready_hook(*p.tensor);
}

template <class F>
void DataParallel::for_each_owned(const Bucket& b, F&& f) const {
  const int64_t lo = dp_.rank() * shard_len(b), hi = lo + shard_len(b);
  for (const Segment& s : b.segments) {
    int64_t first = std::max(lo, s.offset), last = std::min(hi, s.offset + s.numel);
    if (first < last) f(s, first, last, lo);
  }
}

void DataParallel::prepare_backward(bool sync) {
  sync_ = sync;
  if (!active_ || !sync) return;
  for (Bucket& b : buckets_) {
    MODU_CHECK(!b.launched || b.work == nullptr,
               "data parallelism: prepare_backward(sync) twice in one step "
               "without finish_gradient_sync()");
    b.pending = static_cast<int>(b.segments.size());
    b.launched = false;
  }
  std::fill(had_grad_.begin(), had_grad_.end(), 0);
  next_launch_ = 0;
  next_done_ = 0;
  overlap_ = OverlapStats();
  backward_start_ = Clock::now();
}

void DataParallel::on_grad_ready(size_t param) {
  if (!sync_) return;
  poll_completions();
  Bucket& b = buckets_[bucket_of_[param]];
  if (--b.pending == 0) launch_ready_buckets();
}

void DataParallel::launch_ready_buckets() {
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].pending <= 0) launch(buckets_[next_launch_++]);
}

void DataParallel::launch(Bucket& b) {
  NoGradGuard no_grad;
  for (const Segment& s : b.segments) {
    Tensor& p = *params_[s.param].tensor;
    Tensor dest = b.flat.slice(0, s.offset, s.offset + s.numel);
    Tensor g = p.grad();
    if (g.defined()) {
      dest.copy_(g.reshape(Dims{-1}));
      had_grad_[s.param] = 1;
      if (options_.zero == 2) p.set_grad(Tensor());  // the shard is all this rank keeps
    } else {
      dest.zero_();
    }
  }
  b.launched = true;
  b.launched_at = Clock::now();
  if (options_.zero == 2)
    b.work = dp_.reduce_scatter_async(b.flat, b.shard_grad, ReduceOp::Avg);
  else
    b.work = dp_.all_reduce_async(b.flat, ReduceOp::Avg);
}

void DataParallel::poll_completions() {
  if (next_done_ >= next_launch_) return;
  const Clock::time_point now = Clock::now();
  while (next_done_ < next_launch_ && buckets_[next_done_].work->is_completed()) buckets_[next_done_++].done_at = now;
}

void DataParallel::finish_gradient_sync() {
  sync_ = false;
  if (!active_) return;
  overlap_.backward_s = seconds(backward_start_, Clock::now());
  for (Bucket& b : buckets_) b.pending = 0;  // parameters no backward reached: launch anyway
  launch_ready_buckets();
  NoGradGuard no_grad;
  for (size_t i = 0; i < buckets_.size(); ++i) {
    Bucket& b = buckets_[i];
    poll_completions();
    if (next_done_ <= i) {  // still in flight: this wait is exposed communication
      const Clock::time_point w0 = Clock::now();
      b.work->wait();
      b.done_at = Clock::now();
      overlap_.exposed_s += seconds(w0, b.done_at);
      next_done_ = i + 1;
    } else {
      b.work->wait();  // complete: returns at once (and rethrows the collective's error)
    }
    b.work = nullptr;
    if (options_.zero == 2) continue;
    for (const Segment& s : b.segments) {
      if (!had_grad_[s.param]) continue;
      Tensor g = params_[s.param].tensor->grad();
      g.reshape(Dims{-1}).copy_(b.flat.slice(0, s.offset, s.offset + s.numel));
    }
  }
  // Wall time with a bucket in flight: buckets launched in index order, so their intervals start sorted.
  Clock::time_point covered;
  for (const Bucket& b : buckets_) {
    const Clock::time_point from = std::max(b.launched_at, covered);
    if (b.done_at > from) overlap_.comm_s += seconds(from, b.done_at);
    covered = std::max(covered, b.done_at);
  }
}

double DataParallel::bucket_in_flight_s(int i) const {
  MODU_CHECK(i >= 0 && i < num_buckets(), "bucket_in_flight_s(", i, "): there are ", num_buckets(), " buckets");
  const Bucket& b = buckets_[static_cast<size_t>(i)];
  return b.done_at > b.launched_at ? seconds(b.launched_at, b.done_at) : 0.0;
}

double DataParallel::grad_norm() {
  const std::vector<char>& out = options_.leave_out_of_norm;
  if (options_.zero < 2 && out.empty()) return optim::grad_norm(params_);
  NoGradGuard no_grad;
  std::vector<Tensor> shards;
  if (options_.zero < 2) {  // the counted parameters' full gradients, replicated over DP
    for (size_t i = 0; i < params_.size(); ++i)
      if (!out[i] && params_[i].tensor->grad().defined()) shards.push_back(params_[i].tensor->grad());
    return std::sqrt(optim::sum_of_squares(shards));
  }
  // ZeRO-2: this rank's shard of every bucket (padding is zero), summed over the DP ranks.
  for (Bucket& b : buckets_) {
    if (out.empty()) {
      shards.push_back(b.shard_grad);
      continue;
    }
    for_each_owned(b, [&](const Segment& s, int64_t first, int64_t last, int64_t lo) {
      if (!out[s.param]) shards.push_back(b.shard_grad.slice(0, first - lo, last - lo));
    });
  }
  double local = optim::sum_of_squares(shards);
  return std::sqrt(dp_.sum(local));
}

void DataParallel::step(double lr, double grad_scale) {
  if (options_.zero == 0) {
    replicated_->step(lr, grad_scale);
    return;
  }
  NoGradGuard no_grad;
  ++t_;
  AdamWAttrs a = optim::adamw_attrs(adamw_config_, t_, lr, grad_scale);
  a.weight_decay = adamw_config_.weight_decay;
  for (Bucket& b : buckets_) {
    for_each_owned(b, [&](const Segment& s, int64_t first, int64_t last, int64_t lo) {
      if (!had_grad_[s.param]) return;
      const nn::ParamRef& ref = params_[s.param];
      Tensor p = ref.tensor->reshape(Dims{-1}).slice(0, first - s.offset, last - s.offset);
      Tensor g = options_.zero == 2 ? b.shard_grad.slice(0, first - lo, last - lo)
                                    : ref.tensor->grad().reshape(Dims{-1}).slice(0, first - s.offset, last - s.offset);
      Tensor m = b.m.slice(0, first - lo, last - lo);
      Tensor v = b.v.slice(0, first - lo, last - lo);
      adamw_batch_.add(p, g, m, v, ref.decay);
    });
  }
  adamw_batch_.run(a);  // one adamw_multi_ per dtype group (one launch on CUDA)
  // Every rank's updated shard to every rank: each bucket's own shard packed, then all-gathered.
  std::vector<Tensor> mine(buckets_.size());
  for (size_t i = 0; i < buckets_.size(); ++i) {
    Bucket& b = buckets_[i];
    mine[i] = Tensor::zeros(Dims{shard_len(b)}, DType::F32, b.flat.device());
    for_each_owned(b, [&](const Segment& s, int64_t first, int64_t last, int64_t lo) {
      mine[i]
          .slice(0, first - lo, last - lo)
          .copy_(params_[s.param].tensor->reshape(Dims{-1}).slice(0, first - s.offset, last - s.offset));
    });
    b.work = dp_.all_gather_async(mine[i], b.flat);
  }
  for (Bucket& b : buckets_) {
    const Clock::time_point w0 = Clock::now();
    b.work->wait();
    overlap_.gather_s += seconds(w0, Clock::now());
    b.work = nullptr;
    for (const Segment& s : b.segments)
      params_[s.param].tensor->reshape(Dims{-1}).copy_(b.flat.slice(0, s.offset, s.offset + s.numel));
  }
}

int64_t DataParallel::steps_taken() const { return options_.zero == 0 ? replicated_->steps_taken() : t_; }

void DataParallel::set_steps_taken(int64_t t) {
  if (options_.zero == 0)
    replicated_->set_steps_taken(t);
  else
    t_ = t;
}

std::vector<StatePiece> DataParallel::optimizer_pieces() {
  std::vector<StatePiece> out;
  if (options_.zero == 0) {
    auto state = replicated_->state_tensors();  // ("m/name", m), ("v/name", v)
                                                // per parameter, in order
    for (size_t i = 0; i < params_.size(); ++i)
      out.push_back(StatePiece{i, 0, params_[i].tensor->numel(), *state[2 * i].second, *state[2 * i + 1].second});
    return out;
  }
  for (Bucket& b : buckets_)
    for_each_owned(b, [&](const Segment& s, int64_t first, int64_t last, int64_t lo) {
      out.push_back(StatePiece{s.param, first - s.offset, last - s.offset, b.m.slice(0, first - lo, last - lo),
                               b.v.slice(0, first - lo, last - lo)});
    });
  return out;
}

int64_t DataParallel::optimizer_state_bytes() const {
  if (options_.zero == 0) return replicated_->state_bytes();
  int64_t bytes = 0;
  for (const Bucket& b : buckets_) bytes += static_cast<int64_t>(b.m.nbytes() + b.v.nbytes());
  return bytes;
}

}  // namespace modu::parallel
