// parallel/tensor_parallel.h — Megatron's conjugate operators on the autograd tape, over a TP group of t ranks,
// and the sequence-parallel ones (Megatron's sequence parallelism, activations (B, T, C)).
//
//   copy_to_tp_region(x):      forward identity (every TP rank holds the same x), backward all-reduce (Sum) of
//                              the gradient: each rank's column-parallel matrices see part of x's consumers.
//                              Also used on a replicated parameter whose gradient is partial on each rank (one
//                              consumed inside the sequence-parallel region): its gradient comes out summed.
//   reduce_from_tp_region(x):  forward all-reduce (Sum) of the ranks' partial results (a row-parallel matrix
//                              product), backward identity: the sum's gradient is the same for every part.
//
// Sequence parallelism: outside the TP regions (norms, dropout, residual adds) rank r holds the positions
// [r*T/t, (r+1)*T/t) of the activations, x (B, T/t, ...) ("its slice"); T must be divisible by t.
//   gather_from_sequence_region(x):        (B, T/t, ...) -> (B, T, ...), forward all-gather along T; backward
//                                          reduce-scatter along T (partial_grad: the consumers, column-parallel
//                                          matrices, are split over the ranks), or, with partial_grad = false,
//                                          this rank's slice of the gradient (the consumer is replicated, e.g.
//                                          the LM head: every rank's gradient is already the whole one).
//   reduce_scatter_to_sequence_region(x):  (B, T, ...) partial sums (a row-parallel product) -> (B, T/t, ...),
//                                          forward reduce-scatter along T (rank r: the sum of its slice);
//                                          backward all-gather along T.
//   scatter_to_sequence_region(x):         (B, T, ...) replicated -> (B, T/t, ...) this rank's slice; backward
//                                          all-gather along T, so what produced x (the embeddings) gets the
//                                          whole gradient, the same on every rank.
// The pair gather / reduce-scatter replaces copy_to / reduce_from around a column- ... row-parallel block:
// the same bytes on the wire (a ring all-reduce is a reduce-scatter plus an all-gather), activations outside
// the TP region a t-th the size.
//
// Vocabulary parallelism (Megatron): an embedding / LM-head matrix of Vp rows (the padded vocabulary) split by
// rows over the t TP ranks, rank r holding rows [r*Vp/t, (r+1)*Vp/t) (`vocab_begin` = r*Vp/t, n = Vp/t):
//   vocab_parallel_embedding(ids (B, T) int, weight (n, C)) -> (B, T, C), replicated: each rank looks up the ids
//     in its rows (others give 0), then reduce_from_tp_region sums them (with sequence parallelism
//     reduce_scatter_to_sequence_region: this rank's slice of positions); the gradient reaches the local rows only.
//   vocab_parallel_cross_entropy(logits (N, n), targets (N)) -> scalar: the mean over rows whose target is not
//     ignore_index of lse(row over the V real classes) - row[target], the row spread over the ranks' shards;
//     columns of global index >= V are padding (no class, gradient 0). Forward: the row maxima all-reduced (Max),
//     then the sums of exp(x - max) and the target logits (owned by one rank, 0 elsewhere) all-reduced (Sum);
//     backward: (softmax - onehot) * g / count on the local shard, no communication. Computed in f32 whatever the
//     logits' dtype (autocast's bf16), the gradient returned in the logits' dtype. Full-vocabulary logits are
//     never formed. (The head between them: logits shard = copy_to_tp_region(x) @ weight^T, recipes/gpt/model.cpp.)
//
// Shapes: copy_to / reduce_from any; the sequence ops (B, T, ...) with any trailing dimensions. Every result
// is a fresh contiguous tensor of x's dtype (bf16 is summed in f32 and rounded once; gathers move bytes).
// The communicator's collectives work on flat buffers (block q of an all-gather's output is rank q's input),
// so the sequence ops permute (B, t, T/t, ...) <-> (t, B, T/t, ...) around them.
//
// Invariants: with a TP group of one rank all of them are the identity and record nothing extra; the
// all-reduce and reduce-scatter are the communicator's, bit-identical on every rank (parallel/comm.h), so
// whatever is replicated across the TP group (activations after a reduce or gather, the gradients of
// replicated parameters, summed ones included, the vocabulary-parallel loss) stays replicated bit for bit.
// The vocabulary-parallel lookup is exact: each id has one owner, the other ranks add zeros.
#pragma once

#include "core/tensor.h"
#include "parallel/comm.h"

namespace modu::parallel {

Tensor copy_to_tp_region(const Tensor& x, Communicator& tp);
Tensor reduce_from_tp_region(const Tensor& x, Communicator& tp);

// sequence_parallel: the partial rows reduce-scattered along T instead (out: this rank's slice (B, T/t, C)).
Tensor vocab_parallel_embedding(const Tensor& ids, const Tensor& weight, int64_t vocab_begin, Communicator& tp,
                                bool sequence_parallel = false);
// valid_classes V: the real vocabulary (global columns >= V are padding); targets in [0, V) or ignore_index.
Tensor vocab_parallel_cross_entropy(const Tensor& logits, const Tensor& targets, int64_t vocab_begin,
                                    int64_t valid_classes, Communicator& tp, int64_t ignore_index = -100);
Tensor gather_from_sequence_region(const Tensor& x, Communicator& tp, bool partial_grad = true);
Tensor reduce_scatter_to_sequence_region(const Tensor& x, Communicator& tp);
Tensor scatter_to_sequence_region(const Tensor& x, Communicator& tp);

}  // namespace modu::parallel
