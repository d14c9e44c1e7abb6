// Tensor parallelism on the autograd tape, run on 2 or 4 ranks by CTest through tests/parallel/mpirun.sh (the
// whole world is one TP group):
//  - the conjugate operators (parallel/tensor_parallel.h): copy_to_tp_region sums gradients backward,
//    reduce_from_tp_region sums values forward and passes gradients through (f32 and bf16);
//  - tp_shard / tp_unshard (recipes/gpt/tensor_parallel.h) are inverse, bit for bit;
//  - the vocabulary-parallel embedding and cross-entropy (f32) against the unsharded embedding / cross_entropy
//    op: lookup bit for bit, loss within 1e-6 relative, gradients of the weight / logits shards within 1e-6 of the
//    shards of the full ones, with padding columns (set large: they must not count) and ignore_index targets;
//  - a GPT-2 and a Llama-style model (grouped-query attention: 4 query heads, 2 or 4 key/value heads) sharded
//    over the TP group (vocabulary-parallel, padded to a multiple of 32 x TP: 128 rows against one process's 96)
//    against the same model unsharded on each rank: the loss within 1e-6 relative, every sharded gradient equal to
//    the shard of the full gradient (vocabulary rows: padded with zero rows first), every replicated gradient equal
//    to the full one (within 1e-5 of its scale) and bit-identical on every TP rank;
//  - the sequence-parallel operators against the unsharded computation (values and gradients, f32 and bf16),
//    and both models again with sequence parallelism (activations (B, T/t, C) outside the TP regions).
#include <gtest/gtest.h>

#include <cmath>

#include "core/ops/ops.h"
#include "parallel/comm.h"
#include "parallel/tensor_parallel.h"
#include "recipes/gpt/model.h"
#include "recipes/gpt/tensor_parallel.h"

using namespace modu;
using namespace modu::parallel;

namespace {

double max_abs(const Tensor& a) {
  double m = 0;
  for (float x : a.contiguous().to_vector<float>()) m = std::max(m, std::abs(double(x)));
  return m;
}
double max_abs_diff(const Tensor& a, const Tensor& b) {
  std::vector<float> va = a.contiguous().to_vector<float>(), vb = b.contiguous().to_vector<float>();
  EXPECT_EQ(va.size(), vb.size());
  double m = 0;
  for (size_t i = 0; i < va.size() && i < vb.size(); ++i) m = std::max(m, std::abs(double(va[i]) - double(vb[i])));
  return m;
}

}  // namespace

TEST(TensorParallel, ConjugateOperators) {
  Communicator& w = world();
  const int n = w.size(), r = w.rank();
  Tensor x = Tensor::from_vector<float>({1, 2, 3}, Dims{3}).set_requires_grad(true);
  Tensor scale = Tensor::from_vector<float>({float(r + 1), float(r + 1), float(r + 1)}, Dims{3});
  // y = reduce(copy(x) * (r+1)) = x * sum_r (r+1); dy/dx = sum_r (r+1) on every rank.
  Tensor y = reduce_from_tp_region(mul(copy_to_tp_region(x, w), scale), w);
  const float s = float(n * (n + 1) / 2);
  EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{s, 2 * s, 3 * s}));
  sum(y).backward();
  EXPECT_EQ(x.grad().to_vector<float>(), (std::vector<float>{s, s, s}));
  // Autocast's bf16 activations (summed in f32; these values are exact in bf16).
  Tensor xb = Tensor::from_vector<float>({1, 2, 3}, Dims{3}).to(DType::BF16).set_requires_grad(true);
  Tensor yb = reduce_from_tp_region(mul(copy_to_tp_region(xb, w), scale.to(DType::BF16)), w);
  EXPECT_EQ(yb.dtype(), DType::BF16);
  EXPECT_EQ(yb.to(DType::F32).to_vector<float>(), (std::vector<float>{s, 2 * s, 3 * s}));
  sum(yb).backward();
  EXPECT_EQ(xb.grad().to(DType::F32).to_vector<float>(), (std::vector<float>{s, s, s}));
}

TEST(TensorParallel, ShardThenUnshardIsTheIdentity) {
  Communicator& w = world();
  Generator g(7);
  for (const char* name : {"h.0.attn.c_attn.weight", "h.0.attn.c_attn.bias", "h.1.mlp.c_proj.weight",
                           "layers.0.self_attn.k_proj.weight", "h.0.ln_1.weight"}) {
    gpt::TpSplit split = gpt::tp_split_of(name);
    Dims shape =
        std::string(name).find("bias") != std::string::npos || std::string(name).find("ln_1") != std::string::npos
            ? Dims{3 * 8 * w.size()}
            : Dims{3 * 4 * w.size(), 2 * w.size()};
    Tensor full = normal(shape, 0, 1, g, DType::F32);
    Tensor local = gpt::tp_shard(full, split, w.size(), w.rank());
    if (split.sharded()) {
      EXPECT_EQ(local.numel() * w.size(), full.numel()) << name;
    }
    EXPECT_EQ(max_abs_diff(gpt::tp_unshard(local, split, w), full), 0.0) << name;
  }
  // gpt2's fused q|k|v: rank r holds rows [r*C/t, (r+1)*C/t) of each of the three parts.
  const int64_t C = 2 * w.size();
  std::vector<float> rows(static_cast<size_t>(3 * C));
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = float(i);
  Tensor local = gpt::tp_shard(Tensor::from_vector(rows, Dims{3 * C}), {0, 3}, w.size(), w.rank());
  const float r2 = float(2 * w.rank());
  EXPECT_EQ(local.to_vector<float>(), (std::vector<float>{r2, r2 + 1, C + r2, C + r2 + 1, 2 * C + r2, 2 * C + r2 + 1}));
}

// ids (2, 7) over V = 90 real rows of a (Vp = 128, 8) table; rank r holds rows [r*Vp/t, (r+1)*Vp/t).
TEST(TensorParallel, VocabParallelEmbeddingMatchesTheFullLookup) {
  Communicator& w = world();
  const int64_t V = 90, Vp = 128, C = 8, n = Vp / w.size(), begin = w.rank() * n;
  Generator g(11);
  Tensor full = normal(Dims{Vp, C}, 0, 1, g, DType::F32);
  full.narrow(0, V, Vp - V).zero_();
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < 14; ++i) ids.push_back(i == 0 ? V - 1 : (i * 29 + 3) % V);
  ids[5] = ids[9];  // a repeated id: its gradient rows add up
  Tensor idx = Tensor::from_vector(ids, Dims{2, 7});
  Tensor coef = normal(Dims{2, 7, C}, 0, 1, g, DType::F32);  // the loss sum(y * coef): dy = coef
  Tensor wf = full.clone().set_requires_grad(true);
  Tensor yf = embedding(wf, idx);
  sum(mul(yf, coef)).backward();
  Tensor ws = full.narrow(0, begin, n).contiguous().set_requires_grad(true);
  Tensor ys = vocab_parallel_embedding(idx, ws, begin, w);
  ASSERT_EQ(ys.shape(), (Dims{2, 7, C}));
  EXPECT_EQ(max_abs_diff(ys, yf), 0.0);  // one owner per id, zeros from the others
  sum(mul(ys, coef)).backward();
  EXPECT_LE(max_abs_diff(ws.grad(), wf.grad().narrow(0, begin, n)), 1e-6);
}

// logits (N = 12, Vp = 128) with V = 90 real classes: the padding columns hold 50 (they would dominate the
// softmax if counted); targets include 0, V - 1 and three ignore_index rows; the loss scaled by 0.5 (g != 1).
TEST(TensorParallel, VocabParallelCrossEntropyMatchesTheFullLoss) {
  Communicator& w = world();
  const int64_t N = 12, V = 90, Vp = 128, n = Vp / w.size(), begin = w.rank() * n;
  Generator g(5);
  Tensor full = mul_scalar(normal(Dims{N, Vp}, 0, 1, g, DType::F32), 3.0);
  full.narrow(1, V, Vp - V).fill_(50.0);
  std::vector<int64_t> targets;
  for (int64_t i = 0; i < N; ++i) targets.push_back((i * 37 + 11) % V);
  targets[0] = 0, targets[1] = V - 1, targets[4] = -100, targets[7] = -100, targets[11] = -100;
  Tensor tgt = Tensor::from_vector(targets, Dims{N});
  Tensor lf = full.clone().set_requires_grad(true);
  Tensor loss_full = cross_entropy(lf, tgt, -100, true, V);
  mul_scalar(loss_full, 0.5).backward();
  Tensor ls = full.narrow(1, begin, n).contiguous().set_requires_grad(true);
  Tensor loss = vocab_parallel_cross_entropy(ls, tgt, begin, V, w);
  EXPECT_LE(std::abs(loss.item() - loss_full.item()) / std::abs(loss_full.item()), 1e-6)
      << loss.item() << " vs " << loss_full.item();
  Tensor root = loss.detach().clone();
  w.broadcast(root, 0);
  EXPECT_EQ(root.item(), loss.item()) << "the loss differs between TP ranks";
  mul_scalar(loss, 0.5).backward();
  EXPECT_LE(max_abs_diff(ls.grad(), lf.grad().narrow(1, begin, n)), 1e-6);
  if (begin + n > V) {  // this rank holds padding columns: no gradient there
    const int64_t real = std::max<int64_t>(V - begin, 0);
    EXPECT_EQ(max_abs(ls.grad().narrow(1, real, n - real)), 0.0);
  }
  // bf16 logits (autocast): computed in f32, the gradient back in bf16.
  Tensor lb = full.narrow(1, begin, n).to(DType::BF16).contiguous().set_requires_grad(true);
  Tensor loss_b = vocab_parallel_cross_entropy(lb, tgt, begin, V, w);
  Tensor ref_b = cross_entropy(full.to(DType::BF16).to(DType::F32), tgt, -100, true, V);
  EXPECT_EQ(loss_b.dtype(), DType::F32);
  EXPECT_LE(std::abs(loss_b.item() - ref_b.item()) / std::abs(ref_b.item()), 1e-6);
  loss_b.backward();
  EXPECT_EQ(lb.grad().dtype(), DType::BF16);
}

// Shards large enough for the op's OpenMP rows (N x Vp/t > 2^15): N = 160, V = 1000 of Vp = 1024.
TEST(TensorParallel, VocabParallelCrossEntropyLargeShards) {
  Communicator& w = world();
  const int64_t N = 160, V = 1000, Vp = 1024, n = Vp / w.size(), begin = w.rank() * n;
  Generator g(9);
  Tensor full = mul_scalar(normal(Dims{N, Vp}, 0, 1, g, DType::F32), 2.0);
  std::vector<int64_t> targets;
  for (int64_t i = 0; i < N; ++i) targets.push_back(i % 17 == 3 ? -100 : (i * 131 + 7) % V);
  Tensor tgt = Tensor::from_vector(targets, Dims{N});
  Tensor lf = full.clone().set_requires_grad(true);
  Tensor loss_full = cross_entropy(lf, tgt, -100, true, V);
  loss_full.backward();
  Tensor ls = full.narrow(1, begin, n).contiguous().set_requires_grad(true);
  Tensor loss = vocab_parallel_cross_entropy(ls, tgt, begin, V, w);
  EXPECT_LE(std::abs(loss.item() - loss_full.item()) / std::abs(loss_full.item()), 1e-6);
  loss.backward();
  EXPECT_LE(max_abs_diff(ls.grad(), lf.grad().narrow(1, begin, n)), 1e-7);
}

// x (B, T, C) the same on every rank; rank r's slice is positions [r*T/t, (r+1)*T/t).
TEST(TensorParallel, SequenceOperators) {
  Communicator& w = world();
  const int n = w.size(), r = w.rank();
  const int64_t B = 2, Tl = 3, T = Tl * n, C = 5;
  Generator g(11);
  Tensor x = normal(Dims{B, T, C}, 0, 1, g, DType::F32);   // every rank draws the same
  Tensor gy = normal(Dims{B, T, C}, 0, 1, g, DType::F32);  // an upstream gradient, the same on every rank
  auto slice = [&](const Tensor& t) { return t.narrow(1, r * Tl, Tl).contiguous(); };
  const double s = double(n * (n + 1) / 2);  // sum over ranks of (r+1)

  // scatter: this rank's slice; backward all-gathers (rank q's gradient is (q+1) * its slice of gy).
  Tensor xs = x.clone().set_requires_grad(true);
  Tensor y = scatter_to_sequence_region(xs, w);
  EXPECT_EQ(y.shape(), (Dims{B, Tl, C}));
  EXPECT_EQ(max_abs_diff(y, slice(x)), 0.0);
  sum(mul(y, mul_scalar(slice(gy), double(r + 1)))).backward();
  Tensor want = Tensor::empty(Dims{B, T, C});
  for (int q = 0; q < n; ++q) want.narrow(1, q * Tl, Tl).copy_(mul_scalar(gy.narrow(1, q * Tl, Tl), double(q + 1)));
  EXPECT_EQ(max_abs_diff(xs.grad(), want), 0.0);

  // gather: the whole sequence; backward reduce-scatters a partial gradient, or keeps the slice of a whole one.
  for (bool partial : {true, false}) {
    Tensor xl = slice(x).set_requires_grad(true);
    Tensor full = gather_from_sequence_region(xl, w, partial);
    EXPECT_EQ(full.shape(), (Dims{B, T, C}));
    EXPECT_EQ(max_abs_diff(full, x), 0.0);
    sum(mul(full, partial ? mul_scalar(gy, double(r + 1)) : gy)).backward();
    EXPECT_LE(max_abs_diff(xl.grad(), partial ? mul_scalar(slice(gy), s) : slice(gy)), 1e-5) << partial;
  }

  // reduce-scatter: rank r's slice of sum_q (q+1) x; backward all-gathers.
  Tensor xr = x.clone().set_requires_grad(true);
  Tensor z = reduce_scatter_to_sequence_region(mul_scalar(xr, double(r + 1)), w);
  EXPECT_EQ(z.shape(), (Dims{B, Tl, C}));
  EXPECT_LE(max_abs_diff(z, mul_scalar(slice(x), s)), 1e-5);
  sum(mul(z, slice(gy))).backward();
  EXPECT_LE(max_abs_diff(xr.grad(), mul_scalar(gy, double(r + 1))), 1e-6);
  // The communicator's sums: the gathered result is the same bits on every rank.
  Tensor zg = gather_from_sequence_region(z.detach(), w);
  Tensor root = zg.clone();
  w.broadcast(root, 0);
  EXPECT_EQ(max_abs_diff(zg, root), 0.0);

  // bf16 (autocast's activations): summed in f32, rounded once; small integers are exact.
  Tensor ib = Tensor::from_vector(std::vector<float>(static_cast<size_t>(B * T * C), 1.0f), Dims{B, T, C})
                  .to(DType::BF16)
                  .set_requires_grad(true);
  Tensor zb = reduce_scatter_to_sequence_region(mul_scalar(ib, double(r + 1)), w);
  EXPECT_EQ(zb.dtype(), DType::BF16);
  EXPECT_EQ(max_abs_diff(zb.to(DType::F32), Tensor::full(Dims{B, Tl, C}, s)), 0.0);
  Tensor gb = gather_from_sequence_region(zb, w);
  EXPECT_EQ(gb.dtype(), DType::BF16);
  sum(gb).backward();  // each rank's gradient of the gathered is ones: reduce-scattered n, gathered, times (r+1)
  EXPECT_EQ(max_abs_diff(ib.grad().to(DType::F32), Tensor::full(Dims{B, T, C}, double(n * (r + 1)))), 0.0);
}

namespace {

void sharded_model_matches_full(const std::string& arch, int64_t kv_heads, bool sequence_parallel = false) {
  Communicator& w = world();
  gpt::GptConfig c;
  c.arch = arch;
  c.vocab_size = 90;  // one process pads to 96, TP to a multiple of 32 x TP: 128
  c.pad_vocab_to = 32;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_kv_head = kv_heads;
  c.n_embd = 32;
  c.block_size = 16;
  c.ffn_hidden = arch == "llama" ? 64 : 0;
  std::vector<int64_t> tokens, targets;
  for (int64_t i = 0; i < 2 * 16; ++i)
    tokens.push_back((i * 37 + 5) % 90), targets.push_back(i == 7 ? -100 : (i * 11 + 3) % 90);
  Tensor idx = Tensor::from_vector(tokens, Dims{2, 16}), tgt = Tensor::from_vector(targets, Dims{2, 16});
  gpt::GptConfig ct = c;
  ct.tp = w.size();
  gpt::GPT full(c), tp(ct);
  ASSERT_EQ(c.padded_vocab(), 96);
  ASSERT_EQ(ct.padded_vocab(), 128);
  full.init_weights(42);
  tp.init_weights(42);
  tp.shard_tensor_parallel(w, sequence_parallel);
  EXPECT_EQ(tp.sequence_parallel(), sequence_parallel && w.size() > 1);
  Tensor lf = full.loss(full.forward(idx), tgt);
  Tensor logits = tp.forward(idx);
  EXPECT_EQ(logits.shape(), (Dims{2, 16, 128 / w.size()}));  // this rank's vocabulary columns
  Tensor lt = tp.loss(logits, tgt);
  lf.backward();
  lt.backward();
  EXPECT_LE(std::abs(lf.item() - lt.item()) / std::abs(lf.item()), 1e-6) << arch;
  std::vector<nn::ParamRef> pf = full.parameters(), pt = tp.parameters();
  ASSERT_EQ(pf.size(), pt.size());
  int sharded = 0;
  for (size_t i = 0; i < pf.size(); ++i) {
    ASSERT_EQ(pf[i].name, pt[i].name);
    const gpt::TpSplit split = gpt::tp_split_of(pt[i].name);
    Tensor full_grad = pf[i].tensor->grad();
    if (gpt::is_vocab_param(pt[i].name)) full_grad = gpt::with_rows(full_grad, ct.padded_vocab());  // zero rows
    Tensor want = gpt::tp_shard(full_grad, split, w.size(), w.rank());
    Tensor got = pt[i].tensor->grad();
    EXPECT_LE(max_abs_diff(got, want), 1e-5 * std::max(1.0, max_abs(want))) << arch << " " << pt[i].name;
    if (split.sharded()) {
      ++sharded;
      continue;
    }
    // Replicated: the same bits on every TP rank (rank 0's broadcast).
    Tensor root = got.clone();
    w.broadcast(root, 0);
    EXPECT_EQ(max_abs_diff(got, root), 0.0) << arch << " " << pt[i].name << " differs between TP ranks";
  }
  // Per block: the matrices (and gpt2's column biases); then the vocabulary rows (wte; embed_tokens and lm_head).
  EXPECT_EQ(sharded, arch == "llama" ? 7 * 2 + 2 : 6 * 2 + 1) << arch;
}

}  // namespace

TEST(TensorParallel, GptShardedGradientsMatchTheFullModel) { sharded_model_matches_full("gpt2", 0); }
TEST(TensorParallel, LlamaShardedGradientsMatchTheFullModel) {
  sharded_model_matches_full("llama", world().size() <= 2 ? 2 : 4);
}
// Sequence parallelism: T = 16 positions, 8 or 4 per rank outside the TP regions; the norms' and row-parallel
// biases' gradients (summed over the ranks on the tape) whole and bit-identical over the TP group.
TEST(TensorParallel, GptSequenceParallelGradientsMatchTheFullModel) { sharded_model_matches_full("gpt2", 0, true); }
TEST(TensorParallel, LlamaSequenceParallelGradientsMatchTheFullModel) {
  sharded_model_matches_full("llama", world().size() <= 2 ? 2 : 4, true);
}
