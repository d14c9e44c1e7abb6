// checkpoint/manifest.h — the manifest and the per-rank shard index: in-memory form, JSON rendering,
// strict parsing and the geometric validation of tensor pieces (internal to checkpoint/).
//
// Both JSON files start with a checksum of their own bytes so that any damage, even one that still
// parses, is detected:
//   {
//     "manifest_xxh64": "<16 hex digits>",      ("index_xxh64" in a shard index)
//     ...the rest of the object...
//   }
// The digest is XXH64 (seed 0) of every byte after the first line-pair prefix
// `{\n  "<key>": "<hex>",\n`, i.e. of the rest of the file. The files stay plain JSON (jq works).
// Invariants: parse_* accept only what render_* can produce for this format version; every rejection
// names the file, the field and what was expected. validate_pieces() guarantees that a tensor's pieces
// lie inside its global shape, never overlap and cover every element, which is what makes any read
// of any box complete.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/dims.h"
#include "core/dtype.h"

namespace modu::checkpoint {

namespace fs = std::filesystem;
using json = nlohmann::json;

inline constexpr int kFormatVersion = 1;
inline constexpr const char* kManifestFormat = "modu.checkpoint";
inline constexpr const char* kIndexFormat = "modu.checkpoint.shard_index";

struct Piece {
  int rank = 0;
  std::string dataset;  // "/tensors/000003" in the rank's shard file
  Dims offset;          // where the piece sits in the global tensor
  Dims shape;           // the piece's own shape
  uint64_t xxh64 = 0;   // of the piece's contiguous row-major bytes
};

struct TensorRecord {
  std::string name;
  DType dtype = DType::F32;
  Dims shape;  // global
  std::vector<Piece> pieces;
};

struct ShardRecord {
  int rank = 0;
  std::string file;  // relative to the step folder
  uint64_t bytes = 0;
  uint64_t xxh64 = 0;
  json state = json::object();  // the rank's opaque state (RNG streams, ...)
};

struct Manifest {
  int64_t step = 0;
  int world_size = 1;
  json layout = json::object();
  json metadata = json::object();
  std::vector<ShardRecord> shards;  // shards[r].rank == r
  std::vector<TensorRecord> tensors;
};

// What write_shard leaves for commit: one rank's shard record and its pieces (one per tensor).
struct ShardIndex {
  int64_t step = 0;
  std::string tag;
  ShardRecord shard;
  std::vector<TensorRecord> tensors;  // each with exactly one piece, of rank shard.rank
};

std::string render_manifest(const Manifest& m);
Manifest parse_manifest(std::string_view bytes, const fs::path& file);
// True when the file's leading checksum matches its bytes (no schema check): a cheap "is committed".
bool manifest_checksum_ok(std::string_view bytes);

std::string render_shard_index(const ShardIndex& s);
ShardIndex parse_shard_index(std::string_view bytes, const fs::path& file);

// Throws modu::Error (prefixed with `where`) unless every piece is inside t.shape, no two overlap and
// together they cover all elements.
void validate_pieces(const TensorRecord& t, const std::string& where);

// Throws unless `j` holds only finite numbers and valid UTF-8 strings; `what` names it in the error.
void check_json_storable(const json& j, const std::string& what);

// Tensor names: non-empty, at most 4096 bytes, valid UTF-8, no control characters.
void check_tensor_name(const std::string& name, const std::string& where);

}  // namespace modu::checkpoint
