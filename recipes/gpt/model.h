// recipes/gpt/model.h — the GPT family: GPT-2 and a Llama-style variant, one class.
//
// GPT-2 ("gpt2"): learned positions, pre-LayerNorm blocks, causal multi-head attention, GELU (tanh)
// MLP of width 4C, tied LM head, dropout; init N(0, 0.02), residual projections N(0, 0.02/sqrt(2L)).
// Llama-style ("llama"): RMSNorm, rotary positions (half-split pairs, HF convention), SwiGLU MLP,
// no biases, untied head, grouped-query attention (n_kv_head divides n_head).
//
// Shapes: idx (B, T) i64 -> logits (B, T, Vp) where Vp is the vocabulary padded to a multiple of
// `pad_vocab_to` (times `tp` under tensor parallelism, so that the TP ranks split it evenly); the padding
// columns never enter the loss (it reads logits[..., :V]) and the padding rows of the embedding / head stay zero.
// Under tensor parallelism (shard_tensor_parallel) the vocabulary is split by rows too (Megatron): the embedding
// and the head hold rows [r*Vp/t, (r+1)*Vp/t), forward/head return this rank's logits shard (B, T, Vp/t) and
// loss() is the vocabulary-parallel cross-entropy (parallel/tensor_parallel.h); full logits are never formed.
// Parameter names follow the Hugging Face layouts (wte, h.N.attn.c_attn, ...; embed_tokens,
// layers.N.self_attn.q_proj, ...) with weights stored (out, in) as nn::Linear does.
// Under tensor parallelism with sequence parallelism (shard_tensor_parallel), the activations between embed,
// blocks and head are each rank's slice (B, T/t, C) of the positions; logits are this rank's shard (B, T, Vp/t).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "nn/module.h"

namespace modu::parallel {
class Communicator;
}

namespace modu::gpt {

struct GptConfig {
  std::string arch = "gpt2";  // gpt2 | llama
  int64_t vocab_size = 50257;
  int64_t pad_vocab_to = 128;
  int64_t n_layer = 12;
  int64_t n_head = 12;
  int64_t n_kv_head = 0;  // llama: grouped-query heads (0 = n_head)
  int64_t n_embd = 768;
  int64_t block_size = 1024;
  int64_t ffn_hidden = 0;  // llama: SwiGLU width (0 = 4C * 2/3 rounded up to a multiple of 64)
  double dropout = 0.0;
  double rope_theta = 10000.0;
  double norm_eps = 1e-5;
  bool recompute = false;  // activation recomputation per block
  int64_t tp = 1;          // tensor-parallel ranks the vocabulary is split over (a layout choice: not stored)

  // The embedding rows: vocab_size rounded up to a multiple of pad_vocab_to * tp.
  int64_t padded_vocab() const {
    const int64_t m = pad_vocab_to * tp;
    return (vocab_size + m - 1) / m * m;
  }
  // The rows a checkpoint stores (the padding of one process, whatever the layout; rows beyond are zero).
  int64_t stored_vocab() const { return (vocab_size + pad_vocab_to - 1) / pad_vocab_to * pad_vocab_to; }
  int64_t head_size() const { return n_embd / n_head; }
  int64_t kv_heads() const { return n_kv_head > 0 ? n_kv_head : n_head; }
  int64_t ffn() const;
  bool is_llama() const { return arch == "llama"; }
  void validate() const;  // throws naming the bad field
};

// The config as a checkpoint's metadata["model"] stores it (every field that changes what the model computes;
// `recompute` and `tp` are training choices and are not stored), and back (validated; throws naming the missing
// field).
nlohmann::json config_to_json(const GptConfig& c);
GptConfig config_from_json(const nlohmann::json& j);

// Per-layer key/value cache for generation: k, v (B, NKV, capacity, HS).
struct KVCache {
  std::vector<Tensor> k, v;
  int64_t length = 0;
  int64_t capacity = 0;
};

// Dropout keyed by the data. Element (t, c) of global sample g at dropout site s (0: the embeddings; 1 + 2l:
// block l's attention branch; 2 + 2l: its MLP branch) is kept iff Philox uniform number (g*T + t)*C + c of the
// stream (seed, "dropout" site s) (core/rng.h) is >= p. The masks therefore depend only on the seed, the site
// and which samples a batch holds: DP ranks, micro-batching, pipeline stages, TP ranks (whose activations are
// replicated), activation recomputation and resume at any layout all draw one process's masks.
struct DropoutKey {
  uint64_t seed = 0;          // train.seed (init_weights)
  uint64_t first_sample = 0;  // global sample index of batch row 0
};

// Norm fusion (on by default; MODU_NORM_FUSION=0 in the environment turns it off at start): the GPT-2 block's
// attention residual add and ln_2 run as one add_layer_norm op, its MLP residual add runs in the next block's ln_1
// (or ln_f; ResidualStream) without a cast of the bf16 branch, and without TP every norm writes the autocast
// dtype directly instead of f32 followed by a cast. The values are the same either way (the unfused path is kept
// for comparison); process-wide.
void set_norm_fusion(bool on);
bool norm_fusion();

// Packed attention (on by default; MODU_PACKED_ATTENTION=0 turns it off at start): GPT-2 blocks without a KV cache
// run attention_packed on c_attn's (B, T, 3C) output, which reads the heads in place and writes o (B, T, C), so no
// permute copy, split or concat runs in either direction. The values are the same either way; process-wide.
void set_packed_attention(bool on);
bool packed_attention();

class Block;

// The residual stream between GPT-2 blocks as x + r, r a block's MLP branch not yet added (undefined: none). With
// norm fusion the next block's ln_1 (or ln_f) adds it in the same op (add_layer_norm), so no separate add, and a
// bf16 branch needs no cast to f32 first. stream_sum() is x + r as one tensor.
struct ResidualStream {
  Tensor x, r;
};
Tensor stream_sum(const ResidualStream& s);

class GPT : public nn::Module {
 public:
  explicit GPT(const GptConfig& config);
  ~GPT() override;

  // Deterministic initialisation from `seed` (each parameter its own stream, keyed by name).
  void init_weights(uint64_t seed);

  // logits (B, T, Vp) (under TP: this rank's shard (B, T, Vp/t)). With a cache, idx holds the next T tokens after
  // cache->length positions.
  Tensor forward(const Tensor& idx, KVCache* cache = nullptr);
  // The pieces forward() is made of, for pipeline stages (recipes/gpt/pipeline.h):
  //   embed: idx (B, T) -> x (B, T', C), token (+ learned position from `past`) embedding and dropout;
  //   blocks: x (B, T', C) -> (B, T', C) through layers [begin, end) (with recompute when configured);
  //   head: x (B, T', C) -> logits (B, T, Vp), final norm and LM head; gpt2 multiplies by `tied` when given (a
  //   copy of wte.weight held by the last stage; under TP its shard) instead of wte.weight.
  //   T' = local_seq_len(T): T, or this rank's T / t positions under sequence parallelism.
  // Under TP: embed is the vocabulary-parallel lookup, head gives this rank's logits shard (B, T, Vp/t).
  Tensor embed(const Tensor& idx, int64_t past = 0);
  Tensor blocks(const Tensor& x, int64_t begin, int64_t end, KVCache* cache = nullptr);
  Tensor head(const Tensor& x, const Tensor& tied = Tensor());
  // Mean cross-entropy of logits (B, T, Vp) against targets (B, T), over the real vocabulary (under TP: of the
  // logits shards (B, T, Vp/t), vocabulary-parallel; the same value on every TP rank).
  Tensor loss(const Tensor& logits, const Tensor& targets) const;

  // Tensor parallelism (recipes/gpt/tensor_parallel.h), after init_weights: each block's column- and row-parallel
  // parameters and the vocabulary rows of the embedding and LM head become this rank's shard (global names kept;
  // the same weights as one process), and the blocks run their heads and MLP columns split over `tp` (kept by
  // reference; copy_to / reduce_from the TP region around them, parallel/tensor_parallel.h). The config's `tp`
  // must make the padded vocabulary divisible by the group (config.tp = tp.size()). A TP group of one rank
  // changes nothing. No KV cache under TP.
  // `sequence_parallel` (Megatron's): outside the TP regions rank r holds positions [r*T/t, (r+1)*T/t) — embed
  // returns that slice (B, T/t, C), blocks take and return slices (all-gather along T into the column-parallel
  // matrices, reduce-scatter along T out of the row-parallel ones), head gathers the slices and computes this
  // rank's vocabulary shard of the logits for all T positions. T must be divisible by t. The norms' weights and
  // biases and the row-parallel biases, which then see only this rank's positions, get their gradients summed over
  // `tp` on the tape, so every replicated parameter's gradient is whole and bit-identical over the TP group, with
  // or without it.
  void shard_tensor_parallel(parallel::Communicator& tp, bool sequence_parallel = false);
  parallel::Communicator* tensor_parallel() const { return tp_; }
  bool sequence_parallel() const { return sp_; }
  // Positions per rank of the activations between embed, blocks and head: T, or T / t with sequence parallelism.
  int64_t local_seq_len(int64_t T) const { return sp_ ? T / tp_size() : T; }
  // Under TP: the first global vocabulary row of this rank's shard (0 otherwise).
  int64_t vocab_begin() const;

  KVCache make_cache(int64_t batch, int64_t capacity) const;
  void set_training(bool training) { training_ = training; }
  bool training() const { return training_; }
  // Dropout masks are keyed by the data, not by the order of calls: the next forward's batch row b is global
  // sample `first_sample + b` (data::TokenBatch::first_sample). See DropoutKey.
  void set_dropout_samples(uint64_t first_sample) { dropout_key_.first_sample = first_sample; }
  const GptConfig& config() const { return config_; }
  // Parameters counted by the MFU formula (all, including the padded vocabulary rows).
  int64_t flops_per_token(int64_t seq_len);

 private:
  GptConfig config_;
  bool training_ = true;
  DropoutKey dropout_key_;
  Generator dropout_gen_;  // scratch: re-positioned from the key before every dropout (no allocation per call)
  std::unique_ptr<nn::Embedding> wte_, wpe_;
  std::vector<std::unique_ptr<Block>> blocks_;
  std::unique_ptr<nn::LayerNorm> ln_f_;
  std::unique_ptr<nn::RMSNorm> norm_f_;
  std::unique_ptr<nn::Linear> lm_head_;  // llama only (gpt2 ties to wte)
  Tensor rope_cos_, rope_sin_;            // (block_size, HS/2)
  parallel::Communicator* tp_ = nullptr;  // shard_tensor_parallel
  bool sp_ = false;                       // shard_tensor_parallel: sequence parallelism
  int tp_size() const;
  ResidualStream blocks_stream(ResidualStream in, int64_t begin, int64_t end, KVCache* cache);
  Tensor head_stream(const ResidualStream& in, const Tensor& tied);
};

}  // namespace modu::gpt
