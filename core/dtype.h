// core/dtype.h — element types and the 16-bit float storage types.
//
// bf16 and f16 are storage types: kernels load them into float, compute in float and round back to
// nearest-even on store. Conversions here are exact IEEE-754 (NaN stays NaN, overflow goes to inf).
#pragma once

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace modu {

enum class DType : uint8_t { F32, F64, BF16, F16, I32, I64, U8, Bool };
constexpr int kNumDTypes = 8;

constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::F64: return 8;
    case DType::BF16: return 2;
    case DType::F16: return 2;
    case DType::I32: return 4;
    case DType::I64: return 8;
    case DType::U8: return 1;
    case DType::Bool: return 1;
  }
  return 0;
}

constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::F64: return "f64";
    case DType::BF16: return "bf16";
    case DType::F16: return "f16";
    case DType::I32: return "i32";
    case DType::I64: return "i64";
    case DType::U8: return "u8";
    case DType::Bool: return "bool";
  }
  return "?";
}

constexpr bool is_floating(DType t) {
  return t == DType::F32 || t == DType::F64 || t == DType::BF16 || t == DType::F16;
}
constexpr bool is_integral(DType t) { return !is_floating(t); }

// Parses "f32", "float32", "bf16", ...; returns false when the name is unknown.
bool parse_dtype(std::string_view name, DType* out);

// A set of dtypes as a bit mask, used by kernel registrations.
struct DTypeSet {
  uint32_t bits = 0;
  constexpr DTypeSet() = default;
  constexpr DTypeSet(std::initializer_list<DType> ts) {
    for (DType t : ts) bits |= 1u << static_cast<int>(t);
  }
  constexpr bool has(DType t) const { return bits & (1u << static_cast<int>(t)); }
};
inline constexpr DTypeSet kFloatTypes{DType::F32, DType::F64, DType::BF16, DType::F16};
inline constexpr DTypeSet kIndexTypes{DType::I32, DType::I64};
inline constexpr DTypeSet kAllTypes{DType::F32, DType::F64, DType::BF16, DType::F16,
                                    DType::I32, DType::I64, DType::U8,  DType::Bool};

// ---- 16-bit floats -------------------------------------------------------------------------------

inline uint16_t float_to_bf16_bits(float f) {
  uint32_t x = std::bit_cast<uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x0040u);  // quiet NaN
  x += 0x7fffu + ((x >> 16) & 1u);  // round to nearest even
  return static_cast<uint16_t>(x >> 16);
}
inline float bf16_bits_to_float(uint16_t b) { return std::bit_cast<float>(uint32_t(b) << 16); }

inline uint16_t float_to_f16_bits(float f) {
  uint32_t x = std::bit_cast<uint32_t>(f);
  uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) return sign | (ax > 0x7f800000u ? 0x7e00u : 0x7c00u);  // NaN / inf
  if (ax >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520 rounds to inf
  if (ax < 0x38800000u) {                        // below the smallest normal half (2^-14)
    float scaled = std::bit_cast<float>(ax) * 16777216.0f;  // exact: * 2^24
    return sign | static_cast<uint16_t>(std::nearbyint(scaled));
  }
  uint32_t mant = ax & 0x7fffffu;
  uint32_t half = ((((ax >> 23) - 127 + 15) << 10) | (mant >> 13));
  uint32_t rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;
  return sign | static_cast<uint16_t>(half);
}
inline float f16_bits_to_float(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0) {
    float v = static_cast<float>(m) * 5.9604644775390625e-08f;  // m * 2^-24
    return sign ? -v : v;
  }
  if (e == 31) return std::bit_cast<float>(sign | 0x7f800000u | (m << 13));
  return std::bit_cast<float>(sign | ((e - 15 + 127) << 23) | (m << 13));
}

struct bf16 {
  uint16_t bits = 0;
  bf16() = default;
  explicit bf16(float f) : bits(float_to_bf16_bits(f)) {}
  explicit operator float() const { return bf16_bits_to_float(bits); }
};
struct f16 {
  uint16_t bits = 0;
  f16() = default;
  explicit f16(float f) : bits(float_to_f16_bits(f)) {}
  explicit operator float() const { return f16_bits_to_float(bits); }
};

// C++ type of each dtype's storage.
template <DType T> struct StorageType;
template <> struct StorageType<DType::F32> { using type = float; };
template <> struct StorageType<DType::F64> { using type = double; };
template <> struct StorageType<DType::BF16> { using type = bf16; };
template <> struct StorageType<DType::F16> { using type = f16; };
template <> struct StorageType<DType::I32> { using type = int32_t; };
template <> struct StorageType<DType::I64> { using type = int64_t; };
template <> struct StorageType<DType::U8> { using type = uint8_t; };
template <> struct StorageType<DType::Bool> { using type = bool; };

template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::F32; }
template <> constexpr DType dtype_of<double>() { return DType::F64; }
template <> constexpr DType dtype_of<bf16>() { return DType::BF16; }
template <> constexpr DType dtype_of<f16>() { return DType::F16; }
template <> constexpr DType dtype_of<int32_t>() { return DType::I32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::I64; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::U8; }
template <> constexpr DType dtype_of<bool>() { return DType::Bool; }

}  // namespace modu
