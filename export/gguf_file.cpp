// export/gguf_file.cpp — GGUF v3 writer, reader and tensor codecs (see
// export/gguf_file.h for the layout and invariants).
#include "export/gguf_file.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>

#include "core/check.h"
#include "core/dtype.h"

namespace modu::exporting::gguf {

namespace {

constexpr int64_t kQ8Block = 32;
constexpr int64_t kQ8BlockBytes = 2 + kQ8Block;  // f16 scale + 32 int8

uint64_t align_up(uint64_t offset, uint64_t alignment) { return offset + (alignment - offset % alignment) % alignment; }

template <class T>
void put(std::vector<uint8_t>& out, T v) {
  uint8_t raw[sizeof(T)];
  std::memcpy(raw, &v, sizeof(T));
  out.insert(out.end(), raw, raw + sizeof(T));
}

void put_string(std::vector<uint8_t>& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out.insert(out.end(), s.begin(), s.end());
}

bool known_tensor_type(uint32_t t) { return t == 0 || t == 1 || t == 8 || t == 30; }

}  // namespace

const char* value_type_name(ValueType t) {
  switch (t) {
    case ValueType::U8:
      return "u8";
    case ValueType::I8:
      return "i8";
    case ValueType::U16:
      return "u16";
    case ValueType::I16:
      return "i16";
    case ValueType::U32:
      return "u32";
    case ValueType::I32:
      return "i32";
    case ValueType::F32:
      return "f32";
    case ValueType::Bool:
      return "bool";
    case ValueType::String:
      return "string";
    case ValueType::Array:
      return "array";
    case ValueType::U64:
      return "u64";
    case ValueType::I64:
      return "i64";
    case ValueType::F64:
      return "f64";
  }
  return "?";
}

const char* tensor_type_name(TensorType t) {
  switch (t) {
    case TensorType::F32:
      return "f32";
    case TensorType::F16:
      return "f16";
    case TensorType::Q8_0:
      return "q8_0";
    case TensorType::BF16:
      return "bf16";
  }
  return "?";
}

int64_t block_elements(TensorType t) { return t == TensorType::Q8_0 ? kQ8Block : 1; }

int64_t block_bytes(TensorType t) {
  switch (t) {
    case TensorType::F32:
      return 4;
    case TensorType::F16:
    case TensorType::BF16:
      return 2;
    case TensorType::Q8_0:
      return kQ8BlockBytes;
  }
  MODU_FAIL("gguf: unknown tensor type ", static_cast<uint32_t>(t));
}

int64_t encoded_bytes(TensorType t, int64_t n) {
  MODU_CHECK(n >= 0 && n % block_elements(t) == 0, "gguf: ", n, " elements are not a whole number of ",
             tensor_type_name(t), " blocks of ", block_elements(t));
  return n / block_elements(t) * block_bytes(t);
}

// ---- codecs
// ------------------------------------------------------------------------------

void encode(TensorType t, const float* x, int64_t n, std::vector<uint8_t>& out) {
  const size_t start = out.size();
  out.resize(start + static_cast<size_t>(encoded_bytes(t, n)));
  uint8_t* dst = out.data() + start;
  switch (t) {
    case TensorType::F32:
      std::memcpy(dst, x, static_cast<size_t>(n) * 4);
      return;
    case TensorType::F16:
      for (int64_t k = 0; k < n; ++k) {
        const uint16_t h = float_to_f16_bits(x[k]);
        std::memcpy(dst + 2 * k, &h, 2);
      }
      return;
    case TensorType::BF16:
      for (int64_t k = 0; k < n; ++k) {
        const uint16_t h = float_to_bf16_bits(x[k]);
        std::memcpy(dst + 2 * k, &h, 2);
      }
      return;
    case TensorType::Q8_0:
      for (int64_t b = 0; b < n / kQ8Block; ++b) {
        const float* block = x + b * kQ8Block;
        uint8_t* q = dst + b * kQ8BlockBytes;
        float amax = 0.0f;
        for (int64_t k = 0; k < kQ8Block; ++k) amax = std::max(amax, std::fabs(block[k]));
        const float d = amax / 127.0f;
        const float inv_d = d != 0.0f ? 1.0f / d : 0.0f;
        const uint16_t d_bits = float_to_f16_bits(d);
        std::memcpy(q, &d_bits, 2);
        for (int64_t k = 0; k < kQ8Block; ++k) {
          // |x * inv_d| <= 127 up to rounding; the clamp (and NaN -> 0) only
          // matters when 1/d overflows for blocks of values near 1e-38.
          float r = std::round(block[k] * inv_d);
          r = r == r ? std::clamp(r, -127.0f, 127.0f) : 0.0f;
          const auto v = static_cast<int8_t>(r);
          std::memcpy(q + 2 + k, &v, 1);
        }
      }
      return;
  }
  MODU_FAIL("gguf: cannot encode tensor type ", static_cast<uint32_t>(t));
}

void decode(TensorType t, const uint8_t* bytes, int64_t n, float* out) {
  encoded_bytes(t, n);  // checks n against the block size
  switch (t) {
    case TensorType::F32:
      std::memcpy(out, bytes, static_cast<size_t>(n) * 4);
      return;
    case TensorType::F16:
    case TensorType::BF16:
      for (int64_t k = 0; k < n; ++k) {
        uint16_t h;
        std::memcpy(&h, bytes + 2 * k, 2);
        out[k] = t == TensorType::F16 ? f16_bits_to_float(h) : bf16_bits_to_float(h);
      }
      return;
    case TensorType::Q8_0:
      for (int64_t b = 0; b < n / kQ8Block; ++b) {
        const uint8_t* q = bytes + b * kQ8BlockBytes;
        uint16_t d_bits;
        std::memcpy(&d_bits, q, 2);
        const float d = f16_bits_to_float(d_bits);
        for (int64_t k = 0; k < kQ8Block; ++k) {
          int8_t v;
          std::memcpy(&v, q + 2 + k, 1);
          out[b * kQ8Block + k] = static_cast<float>(v) * d;
        }
      }
      return;
  }
  MODU_FAIL("gguf: cannot decode tensor type ", static_cast<uint32_t>(t));
}

// ---- writer
// ------------------------------------------------------------------------------

Writer::Writer(uint32_t alignment) : alignment_(alignment) {
  MODU_CHECK(alignment > 0 && alignment % 8 == 0, "gguf: alignment ", alignment,
             " must be a positive multiple of 8 (GGUF spec)");
  if (alignment != kDefaultAlignment) add_u32("general.alignment", alignment);
}

void Writer::begin_key(const std::string& key, ValueType type) {
  MODU_CHECK(!key.empty() && key.size() <= 65535, "gguf: metadata key '", key, "' must be 1 to 65535 bytes");
  MODU_CHECK(std::find(keys_.begin(), keys_.end(), key) == keys_.end(), "gguf: metadata key '", key, "' added twice");
  keys_.push_back(key);
  ++kv_count_;
  put_string(kv_bytes_, key);
  put<uint32_t>(kv_bytes_, static_cast<uint32_t>(type));
}

void Writer::add_u32(const std::string& key, uint32_t v) {
  begin_key(key, ValueType::U32);
  put(kv_bytes_, v);
}
void Writer::add_i32(const std::string& key, int32_t v) {
  begin_key(key, ValueType::I32);
  put(kv_bytes_, v);
}
void Writer::add_u64(const std::string& key, uint64_t v) {
  begin_key(key, ValueType::U64);
  put(kv_bytes_, v);
}
void Writer::add_f32(const std::string& key, float v) {
  begin_key(key, ValueType::F32);
  put(kv_bytes_, v);
}
void Writer::add_bool(const std::string& key, bool v) {
  begin_key(key, ValueType::Bool);
  put<uint8_t>(kv_bytes_, v ? 1 : 0);
}
void Writer::add_string(const std::string& key, const std::string& v) {
  begin_key(key, ValueType::String);
  put_string(kv_bytes_, v);
}
void Writer::add_string_array(const std::string& key, const std::vector<std::string>& v) {
  begin_key(key, ValueType::Array);
  put<uint32_t>(kv_bytes_, static_cast<uint32_t>(ValueType::String));
  put<uint64_t>(kv_bytes_, v.size());
  for (const std::string& s : v) put_string(kv_bytes_, s);
}
void Writer::add_i32_array(const std::string& key, const std::vector<int32_t>& v) {
  begin_key(key, ValueType::Array);
  put<uint32_t>(kv_bytes_, static_cast<uint32_t>(ValueType::I32));
  put<uint64_t>(kv_bytes_, v.size());
  for (int32_t x : v) put(kv_bytes_, x);
}

void Writer::add_tensor(const std::string& name, TensorType type, std::vector<int64_t> ne,
                        std::function<std::vector<uint8_t>()> produce) {
  MODU_CHECK(!name.empty() && name.size() <= kMaxTensorName, "gguf: tensor '", name, "': names must be 1 to ",
             kMaxTensorName, " bytes");
  for (const TensorEntry& e : tensors_) MODU_CHECK(e.name != name, "gguf: tensor '", name, "' added twice");
  MODU_CHECK(!ne.empty() && static_cast<int>(ne.size()) <= kMaxDims, "gguf: tensor '", name, "' has ", ne.size(),
             " dims; GGUF allows 1 to ", kMaxDims);
  int64_t numel = 1;
  for (int64_t d : ne) {
    MODU_CHECK(d > 0, "gguf: tensor '", name, "' has a dimension of ", d);
    numel *= d;
  }
  MODU_CHECK(ne[0] % block_elements(type) == 0, "gguf: tensor '", name, "': its row length ne0 = ", ne[0],
             " is not a multiple of the ", tensor_type_name(type), " block size ", block_elements(type));
  tensors_.push_back(TensorEntry{name, type, std::move(ne), encoded_bytes(type, numel), std::move(produce)});
}

void Writer::write(const fs::path& path) const {
  std::vector<uint8_t> head;
  put<uint32_t>(head, kMagic);
  put<uint32_t>(head, kVersion);
  put<uint64_t>(head, tensors_.size());
  put<uint64_t>(head, kv_count_);
  head.insert(head.end(), kv_bytes_.begin(), kv_bytes_.end());
  uint64_t offset = 0;
  for (const TensorEntry& e : tensors_) {
    put_string(head, e.name);
    put<uint32_t>(head, static_cast<uint32_t>(e.ne.size()));
    for (int64_t d : e.ne) put<uint64_t>(head, static_cast<uint64_t>(d));
    put<uint32_t>(head, static_cast<uint32_t>(e.type));
    put<uint64_t>(head, offset);
    offset = align_up(offset + static_cast<uint64_t>(e.nbytes), alignment_);
  }
  head.resize(align_up(head.size(), alignment_), 0);

  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  MODU_CHECK(f.good(), "gguf: cannot open ", path.string(), " for writing");
  f.write(reinterpret_cast<const char*>(head.data()), static_cast<std::streamsize>(head.size()));
  const std::vector<char> zeros(alignment_, 0);
  for (size_t k = 0; k < tensors_.size(); ++k) {
    const TensorEntry& e = tensors_[k];
    const std::vector<uint8_t> bytes = e.produce();
    MODU_CHECK(static_cast<int64_t>(bytes.size()) == e.nbytes, "gguf: tensor '", e.name, "' produced ", bytes.size(),
               " bytes, expected ", e.nbytes);
    f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (k + 1 < tensors_.size()) {
      const uint64_t pad = align_up(static_cast<uint64_t>(e.nbytes), alignment_) - static_cast<uint64_t>(e.nbytes);
      f.write(zeros.data(), static_cast<std::streamsize>(pad));
    }
  }
  f.flush();
  MODU_CHECK(f.good(), "gguf: writing ", path.string(), " failed (disk full?)");
}

// ---- reader
// ------------------------------------------------------------------------------

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  return n;
}
int64_t TensorInfo::nbytes() const { return encoded_bytes(type, numel()); }

namespace {

// Bounds-checked cursor over the file's bytes.
struct Cursor {
  const std::vector<uint8_t>& bytes;
  const fs::path& path;
  uint64_t pos = 0;

  void need(uint64_t n, const char* what) const {
    MODU_CHECK(n <= bytes.size() && pos <= bytes.size() - n, "gguf: ", path.string(), " is truncated: ", what,
               " at byte ", pos, " needs ", n, " bytes but the file has ", bytes.size());
  }
  template <class T>
  T get(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, bytes.data() + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }
  std::string get_string(const char* what) {
    const auto n = get<uint64_t>(what);
    need(n, what);
    std::string s(reinterpret_cast<const char*>(bytes.data() + pos), static_cast<size_t>(n));
    pos += n;
    return s;
  }
};

Value read_value(Cursor& c, ValueType type, const std::string& key, int depth) {
  Value v;
  v.type = type;
  switch (type) {
    case ValueType::U8:
      v.u = c.get<uint8_t>("a u8 value");
      break;
    case ValueType::I8:
      v.i = c.get<int8_t>("an i8 value");
      break;
    case ValueType::U16:
      v.u = c.get<uint16_t>("a u16 value");
      break;
    case ValueType::I16:
      v.i = c.get<int16_t>("an i16 value");
      break;
    case ValueType::U32:
      v.u = c.get<uint32_t>("a u32 value");
      break;
    case ValueType::I32:
      v.i = c.get<int32_t>("an i32 value");
      break;
    case ValueType::U64:
      v.u = c.get<uint64_t>("a u64 value");
      break;
    case ValueType::I64:
      v.i = c.get<int64_t>("an i64 value");
      break;
    case ValueType::F32:
      v.f = c.get<float>("an f32 value");
      break;
    case ValueType::F64:
      v.f = c.get<double>("an f64 value");
      break;
    case ValueType::Bool: {
      const auto b = c.get<uint8_t>("a bool value");
      MODU_CHECK(b <= 1, "gguf: ", c.path.string(), ": key '", key, "' holds bool byte ", int(b),
                 "; only 0 and 1 are valid");
      v.u = b;
      break;
    }
    case ValueType::String:
      v.s = c.get_string("a string value");
      break;
    case ValueType::Array: {
      MODU_CHECK(depth < 8, "gguf: ", c.path.string(), ": key '", key, "' nests arrays deeper than 8");
      const auto et = c.get<uint32_t>("an array element type");
      MODU_CHECK(et <= 12, "gguf: ", c.path.string(), ": key '", key, "' has unknown array element type ", et);
      v.element_type = static_cast<ValueType>(et);
      const auto n = c.get<uint64_t>("an array length");
      // Every element takes at least one byte: a cheap bound before reserving.
      c.need(n, "array elements");
      v.items.reserve(static_cast<size_t>(n));
      for (uint64_t k = 0; k < n; ++k) v.items.push_back(read_value(c, v.element_type, key, depth + 1));
      break;
    }
    default:
      MODU_FAIL("gguf: ", c.path.string(), ": key '", key, "' has unknown value type ", static_cast<uint32_t>(type));
  }
  return v;
}

}  // namespace

File File::read(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  MODU_CHECK(f.good(), "gguf: cannot open ", path.string());
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return parse(std::move(bytes), path);
}

File File::parse(std::vector<uint8_t> bytes, const fs::path& path) {
  File file;
  file.path_ = path;
  file.bytes_ = std::move(bytes);
  Cursor c{file.bytes_, file.path_};
  const auto magic = c.get<uint32_t>("the magic");
  MODU_CHECK(magic == kMagic, "gguf: ", path.string(), " is not a GGUF file (magic 0x", std::hex, magic, std::dec,
             ", expected the bytes 'GGUF')");
  file.version = c.get<uint32_t>("the version");
  MODU_CHECK(file.version == kVersion, "gguf: ", path.string(), " is GGUF v", file.version, "; this reader reads v3");
  const auto n_tensors = c.get<uint64_t>("the tensor count");
  const auto n_kv = c.get<uint64_t>("the metadata count");
  // Each KV and tensor info takes more than 8 bytes: bound the counts first.
  MODU_CHECK(n_kv <= file.bytes_.size() / 8, "gguf: ", path.string(), " claims ", n_kv,
             " metadata entries, more than its size allows");
  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key = c.get_string("a metadata key");
    const auto type = c.get<uint32_t>("a metadata value type");
    MODU_CHECK(type <= 12, "gguf: ", path.string(), ": key '", key, "' has unknown value type ", type);
    MODU_CHECK(!file.kv.count(key), "gguf: ", path.string(), ": key '", key, "' appears twice");
    file.kv[key] = read_value(c, static_cast<ValueType>(type), key, 0);
    file.key_order.push_back(std::move(key));
  }
  if (file.has("general.alignment")) {
    const Value& a = file.get("general.alignment", ValueType::U32);
    MODU_CHECK(a.u > 0 && a.u % 8 == 0, "gguf: ", path.string(), ": general.alignment ", a.u,
               " is not a positive multiple of 8");
    file.alignment = static_cast<uint32_t>(a.u);
  }
  MODU_CHECK(n_tensors <= file.bytes_.size() / 8, "gguf: ", path.string(), " claims ", n_tensors,
             " tensors, more than its size allows");
  for (uint64_t k = 0; k < n_tensors; ++k) {
    TensorInfo t;
    t.name = c.get_string("a tensor name");
    MODU_CHECK(t.name.size() <= kMaxTensorName, "gguf: ", path.string(), ": tensor name '", t.name, "' is longer than ",
               kMaxTensorName, " bytes");
    const auto n_dims = c.get<uint32_t>("a tensor's dimension count");
    MODU_CHECK(n_dims >= 1 && n_dims <= kMaxDims, "gguf: ", path.string(), ": tensor '", t.name, "' has ", n_dims,
               " dims");
    uint64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const auto v = c.get<uint64_t>("a tensor dimension");
      // No tensor has more elements than its file has bytes (q8_0 stores
      // 32 elements in 34 bytes); checked per dimension so that the product
      // cannot overflow.
      MODU_CHECK(v > 0 && v <= file.bytes_.size() && numel <= file.bytes_.size() / v, "gguf: ", path.string(),
                 ": tensor '", t.name, "' has dimension ", v, ", more elements than the file could hold");
      numel *= v;
      t.ne.push_back(static_cast<int64_t>(v));
    }
    const auto type = c.get<uint32_t>("a tensor type");
    MODU_CHECK(known_tensor_type(type), "gguf: ", path.string(), ": tensor '", t.name, "' has ggml type ", type,
               " (this reader knows f32, f16, bf16, q8_0)");
    t.type = static_cast<TensorType>(type);
    MODU_CHECK(t.ne[0] % block_elements(t.type) == 0, "gguf: ", path.string(), ": tensor '", t.name, "' ne0 ", t.ne[0],
               " is not a multiple of its block size");
    t.offset = c.get<uint64_t>("a tensor offset");
    for (const TensorInfo& o : file.tensors)
      MODU_CHECK(o.name != t.name, "gguf: ", path.string(), ": tensor '", t.name, "' appears twice");
    file.tensors.push_back(std::move(t));
  }
  file.data_start = align_up(c.pos, file.alignment);
  // Tensor data: aligned, inside the file, not overlapping.
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const TensorInfo& t : file.tensors) {
    MODU_CHECK(t.offset % file.alignment == 0, "gguf: ", path.string(), ": tensor '", t.name, "' offset ", t.offset,
               " is not a multiple of the alignment ", file.alignment);
    const auto n = static_cast<uint64_t>(t.nbytes());
    MODU_CHECK(file.data_start <= file.bytes_.size() && t.offset <= file.bytes_.size() - file.data_start &&
                   n <= file.bytes_.size() - file.data_start - t.offset,
               "gguf: ", path.string(), " is truncated: tensor '", t.name, "' needs bytes [",
               file.data_start + t.offset, ", ", file.data_start + t.offset + n, ") but the file has ",
               file.bytes_.size());
    ranges.emplace_back(t.offset, t.offset + n);
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t k = 1; k < ranges.size(); ++k)
    MODU_CHECK(ranges[k].first >= ranges[k - 1].second, "gguf: ", path.string(),
               ": two tensors' data overlap at offset ", ranges[k].first);
  return file;
}

const Value& File::get(const std::string& key, ValueType type) const {
  auto it = kv.find(key);
  MODU_CHECK(it != kv.end(), "gguf: ", path_.string(), " has no key '", key, "'");
  MODU_CHECK(it->second.type == type, "gguf: ", path_.string(), ": key '", key, "' is ",
             value_type_name(it->second.type), ", expected ", value_type_name(type));
  return it->second;
}

const TensorInfo& File::tensor(const std::string& name) const {
  for (const TensorInfo& t : tensors)
    if (t.name == name) return t;
  MODU_FAIL("gguf: ", path_.string(), " has no tensor '", name, "'");
}

std::span<const uint8_t> File::tensor_bytes(const std::string& name) const {
  const TensorInfo& t = tensor(name);
  return {bytes_.data() + data_start + t.offset, static_cast<size_t>(t.nbytes())};
}

std::vector<float> File::tensor_f32(const std::string& name) const {
  const TensorInfo& t = tensor(name);
  std::vector<float> out(static_cast<size_t>(t.numel()));
  decode(t.type, tensor_bytes(name).data(), t.numel(), out.data());
  return out;
}

}  // namespace modu::exporting::gguf
