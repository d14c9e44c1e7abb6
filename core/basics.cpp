// core/basics.cpp — small helpers of dims.h, dtype.h and device.h: parsing, printing, broadcasting.
#include <cstdlib>
#include <sstream>

#include "core/check.h"
#include "core/device.h"
#include "core/dims.h"
#include "core/dtype.h"

namespace modu {

bool parse_dtype(std::string_view name, DType* out) {
  struct Name {
    std::string_view text;
    DType type;
  };
  static constexpr Name names[] = {
      {"f32", DType::F32},      {"float32", DType::F32}, {"fp32", DType::F32},   {"float", DType::F32},
      {"f64", DType::F64},      {"float64", DType::F64}, {"double", DType::F64}, {"bf16", DType::BF16},
      {"bfloat16", DType::BF16}, {"f16", DType::F16},    {"float16", DType::F16}, {"fp16", DType::F16},
      {"half", DType::F16},     {"i32", DType::I32},     {"int32", DType::I32},  {"i64", DType::I64},
      {"int64", DType::I64},    {"u8", DType::U8},       {"uint8", DType::U8},   {"bool", DType::Bool},
  };
  for (const Name& n : names) {
    if (n.text == name) {
      *out = n.type;
      return true;
    }
  }
  return false;
}

std::string Device::str() const {
  if (type == DeviceType::CPU) return "cpu";
  return "cuda:" + std::to_string(index);
}

Device parse_device(const std::string& text) {
  if (text == "cpu") return Device::cpu();
  if (text == "cuda") return Device::cuda(0);
  if (text.rfind("cuda:", 0) == 0) {
    char* end = nullptr;
    long idx = std::strtol(text.c_str() + 5, &end, 10);
    if (end && *end == '\0' && idx >= 0 && idx < 128) return Device::cuda(static_cast<int>(idx));
  }
  MODU_FAIL("unknown device '", text, "': expected cpu, cuda or cuda:N");
}

std::string Dims::str() const {
  std::ostringstream os;
  os << "(";
  for (int i = 0; i < n_; ++i) os << (i ? ", " : "") << v_[i];
  if (n_ == 1) os << ",";
  os << ")";
  return os.str();
}

Dims contiguous_strides(const Dims& shape) {
  Dims s = Dims::filled(shape.size(), 1);
  int64_t acc = 1;
  for (int i = shape.size() - 1; i >= 0; --i) {
    s[i] = acc;
    acc *= shape[i] > 0 ? shape[i] : 1;
  }
  return s;
}

int normalize_dim(int64_t dim, int ndim, const char* what) {
  int64_t d = dim < 0 ? dim + ndim : dim;
  MODU_CHECK(d >= 0 && d < ndim, what, " ", dim, " is out of range for a tensor of ", ndim,
             " dims (valid: ", -ndim, "..", ndim - 1, ")");
  return static_cast<int>(d);
}

Dims broadcast_shapes(const Dims& a, const Dims& b, const char* op) {
  int n = a.size() > b.size() ? a.size() : b.size();
  Dims out = Dims::filled(n, 1);
  for (int i = 0; i < n; ++i) {
    int ia = a.size() - n + i, ib = b.size() - n + i;
    int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    MODU_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", a.str(), " and ", b.str(),
               " cannot broadcast (dim ", i - n, ": ", da, " vs ", db,
               "); make the sizes equal or one of them 1");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

}  // namespace modu
