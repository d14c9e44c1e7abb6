// parallel/comm.h — one Communicator interface, three backends: single-process, MPI (CPU tensors) and
// NCCL (CUDA tensors, built with the CUDA backend).
//
// Every collective comes in a non-blocking form (`*_async`, returning a Work to wait on) and a
// blocking form (the same, waited). Tensors are modu Tensors; they must be contiguous and stay alive
// and untouched until their Work is waited (the Work holds a reference to them).
//
// Shapes (n = size()):
//   all_reduce(x)                 x: any shape, in place; Sum, Avg or Max over the n ranks
//   reduce_scatter(in, out)       in: n*K elements, out: K elements; rank r gets block r of the reduction
//   all_gather(in, out)           in: K elements, out: n*K elements; block r of out is rank r's in
//   broadcast(x, root)            x: in place, root's values everywhere
//   send(x, peer, tag), recv(x, peer, tag): point to point, matched by (peer, tag)
//
// Invariants:
//  - Ranks must issue the collectives of one communicator in the same order (as in MPI and NCCL).
//  - The result of all_reduce and reduce_scatter is bit-identical on every rank (the MPI backend's
//    ring reduces each block exactly once, on one rank, in a fixed order, and then copies it), so
//    replicated state stays replicated. all_reduce == reduce_scatter followed by all_gather, bit for bit.
//  - The process's world is MPI only when a launcher started it (OMPI_COMM_WORLD_SIZE, PMI_SIZE or
//    PMIX_RANK in the environment); otherwise it is the single-process communicator and MPI is never
//    touched, so `modu train` needs no launcher. MPI is initialised once per process
//    (MPI_THREAD_MULTIPLE) and finalised at exit.
//  - MPI collectives run in order on one worker thread per communicator, so a non-blocking collective
//    progresses while the caller computes (overlap with backward); the caller's thread never blocks
//    except in wait() and barrier().
//  - bytes_sent() counts the payload bytes this rank has sent through the communicator (for the
//    measurements of bench/); the ring all-reduce of S bytes sends 2(n-1)/n * S (S a multiple of n).

#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/tensor.h"

namespace modu::parallel {

enum class ReduceOp { Sum, Avg, Max };  // Avg: floating tensors only

// A pending operation. wait() returns when the op's results are in its tensors (on CUDA: when they are ordered
// before later work on the device's stream) and rethrows the op's error, if any.
class Work {
 public:
  virtual ~Work() = default;
  virtual void wait() = 0;
  virtual bool is_completed() = 0;
};
using WorkHandle = std::shared_ptr<Work>;

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;  // "single", "mpi" or "nccl"

  // ---- non-blocking -------------------------------------------------------------------------------
  virtual WorkHandle all_reduce_async(const Tensor& x, ReduceOp op = ReduceOp::Sum) = 0;
  virtual WorkHandle reduce_scatter_async(const Tensor& in, const Tensor& out, ReduceOp op = ReduceOp::Sum) = 0;
  virtual WorkHandle all_gather_async(const Tensor& in, const Tensor& out) = 0;
  virtual WorkHandle broadcast_async(const Tensor& x, int root) = 0;
  virtual WorkHandle send_async(const Tensor& x, int peer, int tag = 0) = 0;
  virtual WorkHandle recv_async(const Tensor& x, int peer, int tag = 0) = 0;

  // ---- blocking -----------------------------------------------------------------------------------
  void all_reduce(const Tensor& x, ReduceOp op = ReduceOp::Sum) { all_reduce_async(x, op)->wait(); }
  void reduce_scatter(const Tensor& in, const Tensor& out, ReduceOp op = ReduceOp::Sum) {
    reduce_scatter_async(in, out, op)->wait();
  }
  void all_gather(const Tensor& in, const Tensor& out) { all_gather_async(in, out)->wait(); }
  void broadcast(const Tensor& x, int root) { broadcast_async(x, root)->wait(); }
  void send(const Tensor& x, int peer, int tag = 0) { send_async(x, peer, tag)->wait(); }
  void recv(const Tensor& x, int peer, int tag = 0) { recv_async(x, peer, tag)->wait(); }
  // Waits until every rank has reached it (after this rank's queued operations).
  virtual void barrier() = 0;

  // Sub-communicators: ranks passing the same color form one group, ordered by (key, rank). Collective over this
  // communicator (every rank calls it, in the same order as its other operations).
  virtual std::unique_ptr<Communicator> split(int color, int key) = 0;

  // Payload bytes this rank has sent through this communicator (not its sub-communicators).
  virtual int64_t bytes_sent() const = 0;

  // Convenience on the host: a scalar summed / maxed over the ranks (double precision; the NCCL backend
  // goes through its device).
  virtual double sum(double value);
  virtual double max(double value);
};

// The single-process communicator: size 1, every collective is the identity (Avg divides by 1).
std::unique_ptr<Communicator> make_single_communicator();

// True when a launcher (mpirun / srun with PMI) started this process: MPI will be used.
bool launched_by_mpi();
// The rank on this node (OMPI_COMM_WORLD_LOCAL_RANK, else 0): which GPU the rank drives.
int local_rank();

// The process's world communicator for CPU tensors: MPI under a launcher, else single-process. Created on first
// call (initialising MPI then); the same object afterwards.
Communicator& world();

// Ends every rank of the job now with `exit_code` (MPI_Abort under MPI, std::exit otherwise). For errors: one
// rank's failure must not leave the others waiting in a collective.
[[noreturn]] void abort_job(int exit_code);

// True when this build has the NCCL backend (the CUDA backend is on).
bool has_nccl();
// A NCCL communicator over the ranks of `bootstrap` (an MPI or single communicator): its rank 0 makes the
// ncclUniqueId and `bootstrap` broadcasts it. `device` is this rank's CUDA device (one per rank). Fails with a
// message naming the fix in builds without CUDA.
std::unique_ptr<Communicator> make_nccl_communicator(Communicator& bootstrap, Device device);

}  // namespace modu::parallel
