// recipes/gpt/tensor_parallel.cpp — TP splits of the GPT parameters (see tensor_parallel.h).
#include "recipes/gpt/tensor_parallel.h"

#include <algorithm>

#include "core/ops/dispatch.h"
#include "core/ops/ops.h"

namespace modu::gpt {

namespace {
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
}  // namespace

bool is_vocab_param(const std::string& name) {
  return name == "wte.weight" || name == "embed_tokens.weight" || name == "lm_head.weight";
}

Tensor with_rows(const Tensor& t, int64_t rows) {
  MODU_CHECK(t.dim() >= 1, "with_rows: need a tensor with rows, got ", describe(t));
  if (t.size(0) == rows) return t;
  NoGradGuard no_grad;
  Dims shape = t.shape();
  shape[0] = rows;
  Tensor out = Tensor::zeros(shape, t.dtype(), t.device());
  const int64_t common = std::min(rows, t.size(0));
  if (common < t.size(0)) {  // the rows dropped are vocabulary padding: they must be zero, nothing is lost
    const double dropped = sum(abs(t.narrow(0, common, t.size(0) - common).to(DType::F32))).item();
    MODU_CHECK(dropped == 0, "vocabulary padding: rows [", common, ", ", t.size(0), ") of ", describe(t),
               " are not zero (sum of |x| ", dropped, "): real vocabulary rows, not padding; check model.vocab_size");
  }
  out.narrow(0, 0, common).copy_(t.narrow(0, 0, common));
  return out;
}

TpSplit tp_split_of(const std::string& name) {
  if (ends_with(name, "attn.c_attn.weight") || ends_with(name, "attn.c_attn.bias")) return {0, 3};
  for (const char* column : {"mlp.c_fc.weight", "mlp.c_fc.bias", "q_proj.weight", "k_proj.weight", "v_proj.weight",
                             "gate_proj.weight", "up_proj.weight"})
    if (ends_with(name, column)) return {0, 1};
  if (is_vocab_param(name)) return {0, 1};  // vocabulary rows
  for (const char* row : {"attn.c_proj.weight", "mlp.c_proj.weight", "o_proj.weight", "down_proj.weight"})
    if (ends_with(name, row)) return {1, 1};
  return {};
}

// Shapes: dim 0 (parts P): full (P*t*n, rest) seen as (P, t, n*rest); dim 1: full (out, t*n) seen as (out, t, n).
Tensor tp_shard(const Tensor& full, const TpSplit& split, int t, int r) {
  if (!split.sharded() || t == 1) return full;
  NoGradGuard no_grad;
  const Dims& s = full.shape();
  MODU_CHECK(s[split.dim] % (split.parts * t) == 0, "tensor parallelism: dimension ", split.dim, " of ", s.str(),
             " is not divisible by ", split.parts * t);
  if (split.dim == 0) {
    const int64_t rows = s[0] / (split.parts * t);
    Dims local = s;
    local[0] = s[0] / t;
    return full.contiguous()
        .view(Dims{split.parts, t, rows * (full.numel() / s[0])})
        .select(1, r)
        .contiguous()
        .view(local);
  }
  MODU_CHECK(s.size() == 2, "tensor parallelism: row-parallel ", s.str(), " is not a matrix");
  const int64_t cols = s[1] / t;
  return full.narrow(1, r * cols, cols).contiguous();
}

Tensor tp_unshard(const Tensor& local, const TpSplit& split, parallel::Communicator& tp) {
  const int t = tp.size();
  if (!split.sharded() || t == 1) return local;
  NoGradGuard no_grad;
  Tensor in = local.contiguous();
  Tensor gathered = Tensor::zeros(Dims{t * in.numel()}, in.dtype(), in.device());
  tp.all_gather(in, gathered);  // (t, local numel): rank q's shard in block q
  const Dims& s = in.shape();
  Dims global = s;
  global[split.dim] = s[split.dim] * t;
  if (split.dim == 0)  // block q is (P, n*rest) -> (P, t, n*rest)
    return gathered.view(Dims{t, split.parts, in.numel() / split.parts})
        .permute(Dims{1, 0, 2})
        .contiguous()
        .view(global);
  return gathered.view(Dims{t, s[0], s[1]}).permute(Dims{1, 0, 2}).contiguous().view(global);  // (out, t, n)
}

}  // namespace modu::gpt
