// recipes/gpt/tensor_parallel.h — how the GPT family's parameters split over a TP group of t ranks (Megatron),
// and the conversions between a parameter's global tensor and TP rank r's shard.
//
// Per block (column-parallel: output rows split, row-parallel: input columns split):
//   gpt2   attn.c_attn.weight (3C, C), .bias (3C)  column, the q, k and v parts each split: rank r holds rows
//                                                   [r*C/t, (r+1)*C/t) of each part -> (3C/t, C), (3C/t)
//          attn.c_proj.weight (C, C)               row -> (C, C/t); its bias replicated (added after the reduce)
//          mlp.c_fc.weight (4C, C), .bias (4C)     column -> (4C/t, C), (4C/t)
//          mlp.c_proj.weight (C, 4C)               row -> (C, 4C/t); bias replicated
//   llama  self_attn.{q,k,v}_proj.weight           column -> (NH*HS/t, C), (NKV*HS/t, C)
//          self_attn.o_proj.weight (C, C)          row -> (C, C/t)
//          mlp.{gate,up}_proj.weight (F, C)        column -> (F/t, C)
//          mlp.down_proj.weight (C, F)             row -> (C, F/t)
// Vocabulary-parallel (Megatron), rows split:
//   gpt2   wte.weight (Vp, C) (the tied LM head too)     -> (Vp/t, C): rank r holds rows [r*Vp/t, (r+1)*Vp/t)
//   llama  embed_tokens.weight, lm_head.weight (Vp, C)   -> (Vp/t, C)
// (Vp: the vocabulary padded to a multiple of model.pad_vocab_to x t, GptConfig::padded_vocab.)
// Everything else (positions, norms, row-parallel biases) is replicated. Head h of the
// attention lands on rank h / (NH/t) (key/value head g on g / (NKV/t)), so each rank's heads are whole heads
// and grouped-query pairs stay on one rank (NH/t query heads use NKV/t key/value heads).
//
// Invariants: shard then unshard is the identity, bit for bit; shards are fresh contiguous tensors.
// Checkpoints store the vocabulary rows of one process (GptConfig::stored_vocab, whatever the layout), so the
// padded size under TP (a multiple of pad_vocab_to x t) only ever differs by zero rows: with_rows converts.
#pragma once

#include <string>

#include "core/tensor.h"
#include "parallel/comm.h"

namespace modu::gpt {

struct TpSplit {
  int dim = -1;       // the split dimension; -1: replicated
  int64_t parts = 1;  // equal parts along `dim` each split separately (gpt2's fused q|k|v: 3)
  bool sharded() const { return dim >= 0; }
};

// The split of the parameter named `name` (global names, e.g. "h.0.attn.c_attn.weight").
TpSplit tp_split_of(const std::string& name);
// Rank r's shard of a global tensor (t ranks); the tensor itself when replicated.
Tensor tp_shard(const Tensor& full, const TpSplit& split, int t, int r);
// The global tensor from every rank's shard (all-gather over `tp`, collective); `local` itself when replicated.
Tensor tp_unshard(const Tensor& local, const TpSplit& split, parallel::Communicator& tp);

// The vocabulary-sized parameters (wte, embed_tokens, lm_head: Vp rows, padded; the padding rows are zero).
bool is_vocab_param(const std::string& name);
// `t` (rows, ...) with `rows` rows: its first min(rows, t's) rows, zeros beyond (t itself when it has `rows`).
// Moves a vocabulary-sized tensor (weights or AdamW state) between paddings: the rows dropped or added are
// padding, zero (throws when a row to drop is not).
Tensor with_rows(const Tensor& t, int64_t rows);

}  // namespace modu::gpt
