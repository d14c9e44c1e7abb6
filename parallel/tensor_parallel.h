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
// Vocabulary parallelism (Megatron): an embedding / LM-head matrix of Vp rows (the padded vocabulary) split by
// rows over the t TP ranks, rank r holding rows [r*Vp/t, (r+1)*Vp/t) (`vocab_begin` = r*Vp/t, n = Vp/t):
//   vocab_parallel_embedding(ids (B, T) int, weight (n, C)) -> (B, T, C), replicated: each rank looks up the ids
//     in its rows (others give 0), then reduce_from_tp_region sums them; the gradient reaches the local rows only.
//   vocab_parallel_cross_entropy(logits (N, n), targets (N)) -> scalar: the mean over rows whose target is not
//     ignore_index of lse(row over the V real classes) - row[target], the row spread over the ranks' shards;
//     columns of global index >= V are padding (no class, gradient 0). Forward: the row maxima all-reduced (Max),
//     then the sums of exp(x - max) and the target logits (owned by one rank, 0 elsewhere) all-reduced (Sum);
//     backward: (softmax - onehot) * g / count on the local shard, no communication. Computed in f32 whatever the
//     logits' dtype (autocast's bf16), the gradient returned in the logits' dtype. Full-vocabulary logits are
//     never formed. (The head between them: logits shard = copy_to_tp_region(x) @ weight^T, recipes/gpt/model.cpp.)
//
// Invariants: with a TP group of one rank copy_to / reduce_from are the identity and record nothing extra; the
// all-reduce is the communicator's, bit-identical on every rank (parallel/comm.h), so whatever is replicated
// across the TP group (activations after a reduce, the gradients of replicated parameters, the vocabulary-parallel
// loss) stays replicated bit for bit. The vocabulary-parallel lookup is exact: each id has one owner, the other
// ranks add zeros.
#pragma once

#include "core/tensor.h"
#include "parallel/comm.h"

namespace modu::parallel {

Tensor copy_to_tp_region(const Tensor& x, Communicator& tp);
Tensor reduce_from_tp_region(const Tensor& x, Communicator& tp);

Tensor vocab_parallel_embedding(const Tensor& ids, const Tensor& weight, int64_t vocab_begin, Communicator& tp);
// valid_classes V: the real vocabulary (global columns >= V are padding); targets in [0, V) or ignore_index.
Tensor vocab_parallel_cross_entropy(const Tensor& logits, const Tensor& targets, int64_t vocab_begin,
                                    int64_t valid_classes, Communicator& tp, int64_t ignore_index = -100);

}  // namespace modu::parallel
