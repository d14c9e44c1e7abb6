// checkpoint/h5io.h — shard files: one HDF5 file per rank holding that rank's tensor pieces (internal).
//
// Layout of a shard file (format version 1):
//   root attributes   format = "modu.checkpoint.shard", format_version = 1, step, rank
//   /tensors/NNNNNN   one contiguous dataset per piece, NNNNNN = the piece's position in this shard;
//                     its dataspace is the piece's shape (scalar for 0-dim tensors) and its type is
//                     IEEE F32LE/F64LE, STD I32LE/I64LE, or STD U8LE (u8, bool) / U16LE (bf16, f16: the
//                     16-bit patterns, stored exactly). Attributes: name, dtype (modu's name: "bf16"...),
//                     global_shape, global_offset (int64 arrays), xxh64 (uint64, of the piece's bytes).
// The manifest is the authority; the attributes make a shard self-describing for forensic use.
// Invariants: HDF5's automatic error printing is silenced inside these calls and its error stack is put
// into the modu::Error instead; every handle is closed on every path. HDF5 file locking is off (the
// commit protocol, not locks, keeps readers away from files being written; locks fail on many network
// file systems). Not thread-safe (neither is the serial HDF5 library).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "core/dims.h"
#include "core/dtype.h"

namespace modu::checkpoint::h5 {

namespace fs = std::filesystem;

struct PieceAttrs {
  std::string name;
  DType dtype = DType::F32;
  Dims global_shape;
  Dims global_offset;
  uint64_t xxh64 = 0;
};

// "/tensors/000042"
std::string dataset_path(size_t index);

class ShardFileWriter {
 public:
  ShardFileWriter(const fs::path& path, int64_t step, int rank);  // creates or truncates
  ~ShardFileWriter();                                             // closes, never throws
  ShardFileWriter(const ShardFileWriter&) = delete;
  ShardFileWriter& operator=(const ShardFileWriter&) = delete;

  // Writes dataset `dataset` of `shape` from contiguous host memory holding shape.numel() elements.
  void write(const std::string& dataset, const void* data, const Dims& shape, const PieceAttrs& attrs);
  // Flushes and closes the file; throws when HDF5 reports a failure (e.g. the disk is full).
  void close();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class ShardFileReader {
 public:
  explicit ShardFileReader(const fs::path& path);
  ~ShardFileReader();
  ShardFileReader(const ShardFileReader&) = delete;
  ShardFileReader& operator=(const ShardFileReader&) = delete;

  // Reads the box [file_start, file_start + count) of `dataset` (whose shape must be `piece_shape` and
  // type must store `dtype`) into the row-major array `mem` of shape `mem_shape`, at `mem_start`.
  void read_box(const std::string& dataset, DType dtype, const Dims& piece_shape, const Dims& file_start,
                const Dims& count, void* mem, const Dims& mem_shape, const Dims& mem_start);

  const fs::path& path() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace modu::checkpoint::h5
