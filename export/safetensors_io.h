// export/safetensors_io.h — the safetensors file format, read and written natively (no Python, no
// Rust crate): huggingface/safetensors README / src/tensor.rs, summarised in
// ../shared/reference/parallel-checkpoint-export.md §3.1.
//
// Layout: 8 bytes N (u64 little-endian), N bytes of UTF-8 JSON starting with '{' and padded with
// spaces to a multiple of 8, then the byte buffer. The header maps each tensor name to
// {"dtype", "shape", "data_offsets": [begin, end)} (offsets relative to the buffer, row-major,
// little-endian) and may hold "__metadata__" (string -> string).
//
// Invariants:
//   - write_safetensors is deterministic: tensors sorted by descending dtype size, then name (what
//     the safetensors crate does), offsets contiguous from 0, "__metadata__" first, compact JSON.
//   - SafetensorsFile::open validates the whole header before anything is read, as the crate does:
//     header length within the file and <= 100,000,000 bytes, JSON object starting with '{', no
//     duplicate names, every entry well-formed, dtype known, byte size = shape x dtype size,
//     offsets contiguous from 0 without gaps or overlaps and covering the buffer exactly. Every
//     failure is a modu::Error naming the file (and the tensor).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace modu::exporting {

namespace fs = std::filesystem;

// The safetensors dtype string of a modu dtype ("F32", "BF16", ...).
std::string safetensors_dtype_name(DType dtype);

struct SafetensorsTensor {
  std::string name;
  Tensor tensor;  // any dtype, device and strides: written as its contiguous CPU bytes
};

// Writes `file` (replacing it). Names must be unique and not "__metadata__".
void write_safetensors(const fs::path& file, const std::vector<SafetensorsTensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

class SafetensorsFile {
 public:
  struct Entry {
    std::string name;
    std::string dtype;  // as written ("F32", "F8_E4M3", ...)
    Dims shape;
    uint64_t begin = 0, end = 0;  // data_offsets, relative to the buffer
  };

  // Reads and validates the header (see the invariants above); the tensor bytes are read lazily.
  static SafetensorsFile open(const fs::path& file);

  const fs::path& path() const { return path_; }
  uint64_t header_length() const { return header_length_; }  // N (includes the padding)
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Entries in buffer order.
  const std::vector<Entry>& entries() const { return entries_; }
  bool has(const std::string& name) const { return index_.count(name) != 0; }
  const Entry& entry(const std::string& name) const;
  // The tensor as a new contiguous CPU tensor in its stored dtype (F32, F64, F16, BF16, I32, I64,
  // U8, BOOL; any other dtype is an error naming it).
  Tensor read(const std::string& name) const;

 private:
  fs::path path_;
  uint64_t header_length_ = 0;
  std::map<std::string, std::string> metadata_;
  std::vector<Entry> entries_;
  std::map<std::string, size_t> index_;
};

}  // namespace modu::exporting
