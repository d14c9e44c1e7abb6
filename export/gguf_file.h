// export/gguf_file.h — the GGUF v3 container (ggml's docs/gguf.md; facts in
// ../shared/reference/parallel-checkpoint-export.md §3.3), independent of any model: a writer that streams metadata
// and tensors into one file, a reader that parses and checks such a file, and the tensor codecs (f32, f16, bf16,
// q8_0) both use.
//
// Layout written: "GGUF", u32 version 3, u64 tensor count, u64 KV count, the KVs in the order they were added, the
// tensor infos (name, n_dims, dims in ggml order: ne0 = the fastest-varying = the last dimension of a row-major
// shape, ggml type, offset), zero padding to the alignment, then each tensor's bytes at an offset (relative to the
// data start) that is a multiple of the alignment. Little-endian.
//
// Invariants:
//   - The same calls give the same bytes (no clocks, no addresses, no maps with unstable order).
//   - Keys are unique; tensor names are unique and at most 64 bytes; dims are at most 4 and positive; a
//     block-quantised tensor's ne0 is a multiple of its block size. Violations throw modu::Error naming the
//     key/tensor.
//   - The reader never trusts a length or offset from the file: every one is checked against the file size before it
//     is used.
//   - q8_0 is ggml's reference quantiser: blocks of 32 along ne0, scale d = max|x| / 127 stored as f16, q =
//     round-half-away(x / d) as int8 (computed as x * (1/d) in f32, exactly as ggml does, so the bytes agree).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

namespace modu::exporting::gguf {

namespace fs = std::filesystem;

inline constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as little-endian u32
inline constexpr uint32_t kVersion = 3;
inline constexpr uint32_t kDefaultAlignment = 32;
inline constexpr size_t kMaxTensorName = 64;
inline constexpr int kMaxDims = 4;

// Metadata value types (GGUF spec numbering).
enum class ValueType : uint32_t {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  Bool = 7,
  String = 8,
  Array = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
};
const char* value_type_name(ValueType t);

// Tensor element types (ggml numbering); only those modu writes.
enum class TensorType : uint32_t { F32 = 0, F16 = 1, Q8_0 = 8, BF16 = 30 };
const char* tensor_type_name(TensorType t);
// Elements per block and bytes per block (1 and 4 for f32; 32 and 34 for q8_0).
int64_t block_elements(TensorType t);
int64_t block_bytes(TensorType t);
// Bytes of `n` elements (n must be a multiple of the block size).
int64_t encoded_bytes(TensorType t, int64_t n);

// llama.cpp's general.file_type values (enum llama_ftype).
inline constexpr uint32_t kFileTypeAllF32 = 0;
inline constexpr uint32_t kFileTypeMostlyF16 = 1;
inline constexpr uint32_t kFileTypeMostlyQ8_0 = 7;
inline constexpr uint32_t kFileTypeMostlyBF16 = 32;
// ggml's quantisation format version (general.quantization_version).
inline constexpr uint32_t kQuantizationVersion = 2;

// ---- codecs -------------------------------------------------------------------------------------------------------
// Appends the encoding of n floats (n a multiple of the block size) to out.
void encode(TensorType t, const float* x, int64_t n, std::vector<uint8_t>& out);
// Decodes n elements from bytes (which must hold encoded_bytes(t, n)).
void decode(TensorType t, const uint8_t* bytes, int64_t n, float* out);

// ---- writer -------------------------------------------------------------------------------------------------------
class Writer {
 public:
  // A non-default alignment is also written as the first key, general.alignment (u32).
  explicit Writer(uint32_t alignment = kDefaultAlignment);

  void add_u32(const std::string& key, uint32_t v);
  void add_i32(const std::string& key, int32_t v);
  void add_u64(const std::string& key, uint64_t v);
  void add_f32(const std::string& key, float v);
  void add_bool(const std::string& key, bool v);
  void add_string(const std::string& key, const std::string& v);
  void add_string_array(const std::string& key, const std::vector<std::string>& v);
  void add_i32_array(const std::string& key, const std::vector<int32_t>& v);

  // A tensor of ggml dims `ne` (ne[0] fastest) whose bytes `produce` returns when the file is written (so at most one
  // tensor's encoding is in memory at a time). produce() must return exactly encoded_bytes(type, prod(ne)).
  void add_tensor(const std::string& name, TensorType type, std::vector<int64_t> ne,
                  std::function<std::vector<uint8_t>()> produce);

  // Writes the file (truncating `path`). Throws naming `path` on I/O errors.
  void write(const fs::path& path) const;

  uint32_t alignment() const { return alignment_; }

 private:
  struct TensorEntry {
    std::string name;
    TensorType type;
    std::vector<int64_t> ne;
    int64_t nbytes;
    std::function<std::vector<uint8_t>()> produce;
  };
  void begin_key(const std::string& key, ValueType type);

  uint32_t alignment_;
  std::vector<uint8_t> kv_bytes_;  // serialised KVs, in order
  uint64_t kv_count_ = 0;
  std::vector<std::string> keys_;
  std::vector<TensorEntry> tensors_;
};

// ---- reader -------------------------------------------------------------------------------------------------------
struct Value {
  ValueType type = ValueType::U8;
  // Scalars: integers in u (unsigned types, bool) or i (signed types), floats in f, strings in s.
  uint64_t u = 0;
  int64_t i = 0;
  double f = 0;
  std::string s;
  // Arrays: element type and elements.
  ValueType element_type = ValueType::U8;
  std::vector<Value> items;
};

struct TensorInfo {
  std::string name;
  std::vector<int64_t> ne;  // ggml order
  TensorType type = TensorType::F32;
  uint64_t offset = 0;  // relative to data_start
  int64_t numel() const;
  int64_t nbytes() const;
};

class File {
 public:
  // Parses and checks the whole file; throws modu::Error naming `path` and what is wrong.
  static File read(const fs::path& path);
  // The same over bytes already in memory (`path` only names them in errors).
  static File parse(std::vector<uint8_t> bytes, const fs::path& path);

  uint32_t version = 0;
  uint32_t alignment = kDefaultAlignment;
  uint64_t data_start = 0;  // absolute offset of the tensor data section
  std::vector<std::string> key_order;
  std::map<std::string, Value> kv;
  std::vector<TensorInfo> tensors;  // in file order

  bool has(const std::string& key) const { return kv.count(key) != 0; }
  // The value of key, checked to be of `type`; throws naming the key.
  const Value& get(const std::string& key, ValueType type) const;
  const TensorInfo& tensor(const std::string& name) const;
  // The raw bytes of a tensor, and its elements decoded to f32 (row-major in reversed-ne order).
  std::span<const uint8_t> tensor_bytes(const std::string& name) const;
  std::vector<float> tensor_f32(const std::string& name) const;
  uint64_t file_size() const { return bytes_.size(); }

 private:
  fs::path path_;
  std::vector<uint8_t> bytes_;
};

}  // namespace modu::exporting::gguf
