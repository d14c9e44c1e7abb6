// core/cpu/map.h — elementwise maps over 1..3 inputs with broadcasting, on any strides.
//
// map<TOut, TIn...>(out, f, in...) computes out[i] = f(load(in_k[i])...) over out's shape. The inner
// loop has a contiguous fast path the compiler vectorises; other strides take the general path.
#pragma once

#include "core/cpu/loops.h"

namespace modu::cpu {

template <class TOut, class TA, class F>
void map(Tensor& out, F f, const Tensor& a, int64_t cost = 1) {
  const Tensor* ops[] = {&out, &a};
  StridedLoop<2> loop(out.shape(), ops);
  loop.run(
      [&](char** p, int64_t n, const int64_t* s) {
        TOut* o = reinterpret_cast<TOut*>(p[0]);
        const TA* x = reinterpret_cast<const TA*>(p[1]);
        if (s[0] == sizeof(TOut) && s[1] == sizeof(TA)) {
          for (int64_t i = 0; i < n; ++i) store(o + i, f(load(x + i)));
        } else {
          for (int64_t i = 0; i < n; ++i)
            store(reinterpret_cast<TOut*>(p[0] + i * s[0]), f(load(reinterpret_cast<const TA*>(p[1] + i * s[1]))));
        }
      },
      cost);
}

template <class TOut, class TA, class TB, class F>
void map(Tensor& out, F f, const Tensor& a, const Tensor& b, int64_t cost = 1) {
  const Tensor* ops[] = {&out, &a, &b};
  StridedLoop<3> loop(out.shape(), ops);
  loop.run(
      [&](char** p, int64_t n, const int64_t* s) {
        TOut* o = reinterpret_cast<TOut*>(p[0]);
        const TA* x = reinterpret_cast<const TA*>(p[1]);
        const TB* y = reinterpret_cast<const TB*>(p[2]);
        if (s[0] == sizeof(TOut) && s[1] == sizeof(TA) && s[2] == sizeof(TB)) {
          for (int64_t i = 0; i < n; ++i) store(o + i, f(load(x + i), load(y + i)));
        } else if (s[0] == sizeof(TOut) && s[1] == sizeof(TA) && s[2] == 0) {
          auto yv = load(y);
          for (int64_t i = 0; i < n; ++i) store(o + i, f(load(x + i), yv));
        } else if (s[0] == sizeof(TOut) && s[1] == 0 && s[2] == sizeof(TB)) {
          auto xv = load(x);
          for (int64_t i = 0; i < n; ++i) store(o + i, f(xv, load(y + i)));
        } else {
          for (int64_t i = 0; i < n; ++i)
            store(reinterpret_cast<TOut*>(p[0] + i * s[0]), f(load(reinterpret_cast<const TA*>(p[1] + i * s[1])),
                                                             load(reinterpret_cast<const TB*>(p[2] + i * s[2]))));
        }
      },
      cost);
}

template <class TOut, class TA, class TB, class TC, class F>
void map(Tensor& out, F f, const Tensor& a, const Tensor& b, const Tensor& c, int64_t cost = 1) {
  const Tensor* ops[] = {&out, &a, &b, &c};
  StridedLoop<4> loop(out.shape(), ops);
  loop.run(
      [&](char** p, int64_t n, const int64_t* s) {
        for (int64_t i = 0; i < n; ++i)
          store(reinterpret_cast<TOut*>(p[0] + i * s[0]), f(load(reinterpret_cast<const TA*>(p[1] + i * s[1])),
                                                           load(reinterpret_cast<const TB*>(p[2] + i * s[2])),
                                                           load(reinterpret_cast<const TC*>(p[3] + i * s[3]))));
      },
      cost);
}

}  // namespace modu::cpu
