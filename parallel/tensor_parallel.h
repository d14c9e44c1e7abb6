// parallel/tensor_parallel.h — Megatron's conjugate operators on the autograd tape, over a TP group.
//
//   copy_to_tp_region(x):      forward identity (every TP rank holds the same x), backward all-reduce (Sum) of
//                              the gradient: each rank's column-parallel matrices see part of x's consumers.
//   reduce_from_tp_region(x):  forward all-reduce (Sum) of the ranks' partial results (a row-parallel matrix
//                              product), backward identity: the sum's gradient is the same for every part.
//
// A column-parallel linear reads copy_to_tp_region(h); a row-parallel linear's product goes through
// reduce_from_tp_region before its (replicated) bias is added once. Shapes: any; the sums are fresh contiguous
// tensors of x's dtype (bf16 is summed in f32 and rounded once).
//
// Invariants: with a TP group of one rank both are the identity and record nothing extra; the all-reduce is
// the communicator's, bit-identical on every rank (parallel/comm.h), so whatever is replicated across the TP
// group (activations after a reduce, the gradients of replicated parameters) stays replicated bit for bit.
#pragma once

#include "core/tensor.h"
#include "parallel/comm.h"

namespace modu::parallel {

Tensor copy_to_tp_region(const Tensor& x, Communicator& tp);
Tensor reduce_from_tp_region(const Tensor& x, Communicator& tp);

}  // namespace modu::parallel
