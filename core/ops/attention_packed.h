// core/ops/attention_packed.h — the backend-independent half of attention_packed's kernels: the operands' head
// views (core/ops/layout.h: packed_heads), handed to the backend's own attention forward and backward. Each
// backend supplies its contiguous copy (for an operand whose last dim is not unit-stride) and its functions
//   forward(q, k, v, o, lse, attrs)                          o written through its strides
//   backward(q, k, v, o, lse, go, gq, gk, gv, attrs)          gq, gk, gv written (=) through their strides
// with q, k, v (B, NH, T, HS) views of qkv (B, T, 3C), o and go (B, NH, T, HS) views of (B, T, C).
// Invariant: views only; the backends' functions see the same strided layout on every backend.
#pragma once

#include "core/ops/dispatch.h"
#include "core/ops/layout.h"

namespace modu {

template <class Copy>
Tensor packed_operand(const Tensor& x, Copy&& contiguous_copy) {  // (B, T, X) with a unit-stride last dim
  return x.size(2) <= 1 || x.stride(2) == 1 ? x : contiguous_copy(x);
}

// attention_packed: qkv (B, T, 3C) -> o (B, T, C), lse (B, NH, T).
template <class Copy, class Forward>
void run_attention_packed(const KernelCall& c, Copy&& contiguous_copy, Forward&& forward) {
  const AttentionAttrs& a = c.attrs.attention;
  Tensor &o = c.output(0), &lse = c.output(1);
  if (o.numel() == 0) return;  // no positions or no heads' width; lse then has nothing or is never read
  const int64_t NH = a.n_head;
  Tensor qkv = packed_operand(c.input(0), contiguous_copy);
  Tensor oh = packed_heads(o, NH, 1, 0);
  forward(packed_heads(qkv, NH, 3, 0), packed_heads(qkv, NH, 3, 1), packed_heads(qkv, NH, 3, 2), oh, lse, a);
}

// attention_packed_backward: (qkv, o, lse, go) -> gqkv (B, T, 3C).
template <class Copy, class Backward>
void run_attention_packed_backward(const KernelCall& c, Copy&& contiguous_copy, Backward&& backward) {
  const AttentionAttrs& a = c.attrs.attention;
  Tensor& gqkv = c.output(0);
  if (gqkv.numel() == 0) return;
  const int64_t NH = a.n_head;
  Tensor qkv = packed_operand(c.input(0), contiguous_copy), o = packed_operand(c.input(1), contiguous_copy),
         go = packed_operand(c.input(3), contiguous_copy);
  Tensor gq = packed_heads(gqkv, NH, 3, 0), gk = packed_heads(gqkv, NH, 3, 1), gv = packed_heads(gqkv, NH, 3, 2);
  backward(packed_heads(qkv, NH, 3, 0), packed_heads(qkv, NH, 3, 1), packed_heads(qkv, NH, 3, 2),
           packed_heads(o, NH, 1, 0), c.input(2), packed_heads(go, NH, 1, 0), gq, gk, gv, a);
}

}  // namespace modu
