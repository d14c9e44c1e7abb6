// core/dims.h — Dims: a shape or a stride list held inline (no heap), at most kMaxDims entries.
//
// Invariant: trivially copyable, so op attributes and tape nodes can hold shapes by value.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>

#include "core/check.h"

namespace modu {

constexpr int kMaxDims = 8;

class Dims {
 public:
  constexpr Dims() = default;
  constexpr Dims(std::initializer_list<int64_t> values) {
    MODU_CHECK(values.size() <= kMaxDims, "a tensor may have at most ", kMaxDims, " dims, got ",
               values.size());
    for (int64_t v : values) v_[n_++] = v;
  }
  explicit Dims(std::span<const int64_t> values) {
    MODU_CHECK(values.size() <= kMaxDims, "a tensor may have at most ", kMaxDims, " dims, got ",
               values.size());
    for (int64_t v : values) v_[n_++] = v;
  }
  static Dims filled(int n, int64_t value) {
    Dims d;
    for (int i = 0; i < n; ++i) d.push_back(value);
    return d;
  }

  constexpr int size() const { return n_; }
  constexpr bool empty() const { return n_ == 0; }
  constexpr int64_t& operator[](int i) { return v_[i]; }
  constexpr int64_t operator[](int i) const { return v_[i]; }
  constexpr int64_t back() const { return v_[n_ - 1]; }
  constexpr int64_t* data() { return v_; }
  constexpr const int64_t* data() const { return v_; }
  constexpr const int64_t* begin() const { return v_; }
  constexpr const int64_t* end() const { return v_ + n_; }
  constexpr int64_t* begin() { return v_; }
  constexpr int64_t* end() { return v_ + n_; }
  std::span<const int64_t> span() const { return {v_, static_cast<size_t>(n_)}; }

  void push_back(int64_t v) {
    MODU_CHECK(n_ < kMaxDims, "a tensor may have at most ", kMaxDims, " dims");
    v_[n_++] = v;
  }
  void insert(int pos, int64_t v) {
    MODU_CHECK(n_ < kMaxDims, "a tensor may have at most ", kMaxDims, " dims");
    for (int i = n_; i > pos; --i) v_[i] = v_[i - 1];
    v_[pos] = v;
    ++n_;
  }
  void erase(int pos) {
    for (int i = pos; i + 1 < n_; ++i) v_[i] = v_[i + 1];
    --n_;
  }
  void resize(int n, int64_t fill = 0) {
    MODU_CHECK(n <= kMaxDims, "a tensor may have at most ", kMaxDims, " dims");
    for (int i = n_; i < n; ++i) v_[i] = fill;
    n_ = n;
  }

  // Product of the entries (1 for an empty list).
  int64_t numel() const {
    int64_t p = 1;
    for (int i = 0; i < n_; ++i) p *= v_[i];
    return p;
  }
  bool operator==(const Dims& o) const {
    if (n_ != o.n_) return false;
    for (int i = 0; i < n_; ++i)
      if (v_[i] != o.v_[i]) return false;
    return true;
  }
  std::string str() const;  // "(2, 3, 4)"

 private:
  int64_t v_[kMaxDims] = {};
  int32_t n_ = 0;
};

// Row-major (C-contiguous) strides of a shape, in elements.
Dims contiguous_strides(const Dims& shape);

// Maps a possibly negative dim index into [0, ndim); throws naming `what` when out of range.
int normalize_dim(int64_t dim, int ndim, const char* what = "dim");

// The broadcast of two shapes (numpy rules); throws naming `op` and both shapes when incompatible.
Dims broadcast_shapes(const Dims& a, const Dims& b, const char* op);

}  // namespace modu
