// checkpoint/manifest.cpp — rendering, checksumming, strict parsing and piece validation (see manifest.h).
//
// Invariants: rendering uses nlohmann::ordered_json so keys appear in schema order; parsing never
// trusts a field's presence or type (each access goes through Fields, which names the field path in
// its error); the leading checksum is verified before the JSON parser sees the bytes.
#include "checkpoint/manifest.h"

#include <algorithm>
#include <cmath>

#include "checkpoint/xxhash64.h"
#include "core/check.h"

namespace modu::checkpoint {
namespace {

using ojson = nlohmann::ordered_json;

constexpr const char* kManifestKey = "manifest_xxh64";
constexpr const char* kIndexKey = "index_xxh64";

std::string prefix_for(const char* key, const std::string& hex) {
  return std::string("{\n  \"") + key + "\": \"" + hex + "\",\n";
}

std::string render_checked(const ojson& body, const char* key) {
  MODU_CHECK(body.is_object() && !body.empty(), "internal: a checked JSON body must be a non-empty object");
  std::string text = body.dump(2, ' ', false, json::error_handler_t::strict);
  // text is "{\n  ...\n}"; the rest after "{\n" continues the object opened by the prefix.
  std::string rest = text.substr(2) + "\n";
  return prefix_for(key, hex64(xxh64(rest.data(), rest.size()))) + rest;
}

// Verifies the leading checksum; returns an empty string on success, else the reason.
std::string checksum_problem(std::string_view bytes, const char* key) {
  std::string expected_head = prefix_for(key, std::string(16, '0'));
  if (bytes.size() < expected_head.size()) return "the file is shorter than its checksum header (truncated)";
  size_t hex_at = expected_head.find(std::string(16, '0'));
  std::string_view head = bytes.substr(0, expected_head.size());
  if (head.substr(0, hex_at) != std::string_view(expected_head).substr(0, hex_at) ||
      head.substr(hex_at + 16) != std::string_view(expected_head).substr(hex_at + 16))
    return std::string("the checksum header (first line \"") + key + "\") is damaged or missing";
  uint64_t stored = 0;
  if (!parse_hex64(head.substr(hex_at, 16), &stored)) return "the stored checksum is not 16 hex digits";
  std::string_view rest = bytes.substr(expected_head.size());
  uint64_t actual = xxh64(rest.data(), rest.size());
  if (actual != stored)
    return "checksum mismatch: the header says xxh64 " + hex64(stored) + " but the contents hash to " +
           hex64(actual) + " (bit flip, truncation or an edit)";
  return {};
}

json parse_checked(std::string_view bytes, const fs::path& file, const char* key, const char* what) {
  std::string problem = checksum_problem(bytes, key);
  MODU_CHECK(problem.empty(), file.string(), ": ", what, " refused: ", problem,
             "; restore the folder from a copy or open another step");
  json j;
  try {
    j = json::parse(bytes.begin(), bytes.end());
  } catch (const json::exception& e) {
    MODU_FAIL(file.string(), ": ", what, " is not valid JSON although its checksum matches (", e.what(),
              "); it was not written by modu");
  }
  MODU_CHECK(j.is_object(), file.string(), ": ", what, " is not a JSON object");
  return j;
}

// Typed, path-naming access to a parsed JSON document.
struct Fields {
  const fs::path& file;
  const char* what;

  [[noreturn]] void bad(const std::string& path, const std::string& expected) const {
    MODU_FAIL(file.string(), ": ", what, " field ", path, ": expected ", expected,
              "; the file is malformed (written by another tool or format version?)");
  }
  const json& get(const json& obj, const char* key, const std::string& path) const {
    auto it = obj.find(key);
    if (it == obj.end()) bad(path + key, "a value, found none");
    return *it;
  }
  int64_t integer(const json& obj, const char* key, const std::string& path, int64_t lo, int64_t hi) const {
    const json& v = get(obj, key, path);
    if (!v.is_number_integer()) bad(path + key, "an integer");
    if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX)) bad(path + key, "an integer in range");
    int64_t x = v.get<int64_t>();
    if (x < lo || x > hi) bad(path + key, "an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return x;
  }
  uint64_t unsigned_int(const json& obj, const char* key, const std::string& path) const {
    const json& v = get(obj, key, path);
    if (!v.is_number_unsigned()) bad(path + key, "a non-negative integer");
    return v.get<uint64_t>();
  }
  std::string string(const json& obj, const char* key, const std::string& path) const {
    const json& v = get(obj, key, path);
    if (!v.is_string()) bad(path + key, "a string");
    return v.get<std::string>();
  }
  uint64_t hash(const json& obj, const char* key, const std::string& path) const {
    std::string s = string(obj, key, path);
    uint64_t h = 0;
    if (!parse_hex64(s, &h)) bad(path + key, "16 hex digits");
    return h;
  }
  Dims dims(const json& obj, const char* key, const std::string& path) const {
    const json& v = get(obj, key, path);
    if (!v.is_array() || v.size() > size_t(kMaxDims)) bad(path + key, "an array of at most 8 integers");
    Dims d;
    for (const json& e : v) {
      if (!e.is_number_integer() || e.get<int64_t>() < 0) bad(path + key, "non-negative integers");
      d.push_back(e.get<int64_t>());
    }
    return d;
  }
  DType dtype(const json& obj, const char* key, const std::string& path) const {
    std::string s = string(obj, key, path);
    DType t;
    if (!parse_dtype(s, &t) || s != dtype_name(t)) bad(path + key, "a modu dtype name (f32 f64 bf16 f16 i32 i64 u8 bool)");
    return t;
  }
  const json& array(const json& obj, const char* key, const std::string& path) const {
    const json& v = get(obj, key, path);
    if (!v.is_array()) bad(path + key, "an array");
    return v;
  }
  const json& object(const json& obj, const char* key, const std::string& path) const {
    const json& v = get(obj, key, path);
    if (!v.is_object()) bad(path + key, "an object");
    return v;
  }
};

ojson dims_json(const Dims& d) {
  ojson a = ojson::array();
  for (int64_t v : d) a.push_back(v);
  return a;
}

ojson piece_json(const Piece& p) {
  ojson o;
  o["rank"] = p.rank;
  o["dataset"] = p.dataset;
  o["offset"] = dims_json(p.offset);
  o["shape"] = dims_json(p.shape);
  o["xxh64"] = hex64(p.xxh64);
  return o;
}

ojson tensor_json(const TensorRecord& t) {
  ojson o;
  o["name"] = t.name;
  o["dtype"] = std::string(dtype_name(t.dtype));
  o["shape"] = dims_json(t.shape);
  ojson pieces = ojson::array();
  for (const Piece& p : t.pieces) pieces.push_back(piece_json(p));
  o["pieces"] = std::move(pieces);
  return o;
}

ojson shard_json(const ShardRecord& s) {
  ojson o;
  o["rank"] = s.rank;
  o["file"] = s.file;
  o["bytes"] = s.bytes;
  o["xxh64"] = hex64(s.xxh64);
  o["state"] = ojson(s.state);
  return o;
}

constexpr int64_t kMaxRank = 999999;

Piece parse_piece(const Fields& f, const json& o, const std::string& path) {
  if (!o.is_object()) f.bad(path, "an object");
  Piece p;
  p.rank = int(f.integer(o, "rank", path + ".", 0, kMaxRank));
  p.dataset = f.string(o, "dataset", path + ".");
  p.offset = f.dims(o, "offset", path + ".");
  p.shape = f.dims(o, "shape", path + ".");
  p.xxh64 = f.hash(o, "xxh64", path + ".");
  return p;
}

TensorRecord parse_tensor(const Fields& f, const json& o, const std::string& path) {
  if (!o.is_object()) f.bad(path, "an object");
  TensorRecord t;
  t.name = f.string(o, "name", path + ".");
  t.dtype = f.dtype(o, "dtype", path + ".");
  t.shape = f.dims(o, "shape", path + ".");
  const json& pieces = f.array(o, "pieces", path + ".");
  for (size_t i = 0; i < pieces.size(); ++i)
    t.pieces.push_back(parse_piece(f, pieces[i], path + ".pieces[" + std::to_string(i) + "]"));
  return t;
}

ShardRecord parse_shard(const Fields& f, const json& o, const std::string& path) {
  if (!o.is_object()) f.bad(path, "an object");
  ShardRecord s;
  s.rank = int(f.integer(o, "rank", path + ".", 0, kMaxRank));
  s.file = f.string(o, "file", path + ".");
  s.bytes = f.unsigned_int(o, "bytes", path + ".");
  s.xxh64 = f.hash(o, "xxh64", path + ".");
  s.state = f.object(o, "state", path + ".");
  // Shard files live in the step folder itself: a plain file name, nothing that walks elsewhere.
  if (s.file.empty() || s.file.find('/') != std::string::npos || s.file == "." || s.file == "..")
    f.bad(path + ".file", "a plain file name inside the step folder");
  return s;
}

void check_format(const Fields& f, const json& j, const char* format) {
  std::string got = f.string(j, "format", "");
  MODU_CHECK(got == format, f.file.string(), ": ", f.what, " has format \"", got, "\", expected \"", format, "\"");
  int64_t v = f.integer(j, "format_version", "", 0, INT64_MAX);
  MODU_CHECK(v == kFormatVersion, f.file.string(), ": ", f.what, " has format_version ", v,
             ", this build reads version ", kFormatVersion,
             " only; use a modu build of that format version to read or convert it");
}

std::string piece_str(const Piece& p) {
  return "rank " + std::to_string(p.rank) + " (offset " + p.offset.str() + ", shape " + p.shape.str() + ")";
}

void check_json_rec(const json& j, const std::string& path, const std::string& what) {
  if (j.is_number_float()) {
    MODU_CHECK(std::isfinite(j.get<double>()), what, ": ", path.empty() ? "the value" : path,
               " is not finite; JSON has no NaN or infinity, store it as a string or omit it");
  } else if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it) check_json_rec(it.value(), path + "." + it.key(), what);
  } else if (j.is_array()) {
    for (size_t i = 0; i < j.size(); ++i) check_json_rec(j[i], path + "[" + std::to_string(i) + "]", what);
  }
}

}  // namespace

void check_json_storable(const json& j, const std::string& what) {
  check_json_rec(j, "", what);
  try {
    (void)j.dump(-1, ' ', false, json::error_handler_t::strict);
  } catch (const json::exception& e) {
    MODU_FAIL(what, ": cannot be stored as JSON (", e.what(), "); strings must be valid UTF-8");
  }
}

void check_tensor_name(const std::string& name, const std::string& where) {
  MODU_CHECK(!name.empty(), where, ": a tensor has an empty name; give every tensor a unique name");
  MODU_CHECK(name.size() <= 4096, where, ": tensor name of ", name.size(), " bytes is longer than 4096");
  for (unsigned char c : name)
    MODU_CHECK(c >= 0x20 && c != 0x7f, where, ": tensor name \"", name,
               "\" contains a control character; use printable names");
  try {
    (void)json(name).dump(-1, ' ', false, json::error_handler_t::strict);
  } catch (const json::exception&) {
    MODU_FAIL(where, ": tensor name is not valid UTF-8");
  }
}

// ---- manifest -------------------------------------------------------------------------------------

std::string render_manifest(const Manifest& m) {
  ojson o;
  o["format"] = kManifestFormat;
  o["format_version"] = kFormatVersion;
  o["step"] = m.step;
  o["world_size"] = m.world_size;
  o["layout"] = ojson(m.layout);
  o["metadata"] = ojson(m.metadata);
  ojson shards = ojson::array();
  for (const ShardRecord& s : m.shards) shards.push_back(shard_json(s));
  o["shards"] = std::move(shards);
  ojson tensors = ojson::array();
  for (const TensorRecord& t : m.tensors) tensors.push_back(tensor_json(t));
  o["tensors"] = std::move(tensors);
  return render_checked(o, kManifestKey);
}

bool manifest_checksum_ok(std::string_view bytes) { return checksum_problem(bytes, kManifestKey).empty(); }

Manifest parse_manifest(std::string_view bytes, const fs::path& file) {
  json j = parse_checked(bytes, file, kManifestKey, "manifest");
  Fields f{file, "manifest"};
  check_format(f, j, kManifestFormat);
  Manifest m;
  m.step = f.integer(j, "step", "", 0, INT64_MAX);
  m.world_size = int(f.integer(j, "world_size", "", 1, kMaxRank + 1));
  m.layout = f.get(j, "layout", "");
  m.metadata = f.get(j, "metadata", "");
  const json& shards = f.array(j, "shards", "");
  for (size_t i = 0; i < shards.size(); ++i)
    m.shards.push_back(parse_shard(f, shards[i], "shards[" + std::to_string(i) + "]"));
  MODU_CHECK(m.shards.size() == size_t(m.world_size), file.string(), ": manifest lists ", m.shards.size(),
             " shards for world_size ", m.world_size, "; the manifest is malformed");
  for (size_t r = 0; r < m.shards.size(); ++r)
    MODU_CHECK(m.shards[r].rank == int(r), file.string(), ": manifest shards[", r, "] is rank ", m.shards[r].rank,
               ", expected ", r, "; the manifest is malformed");
  const json& tensors = f.array(j, "tensors", "");
  for (size_t i = 0; i < tensors.size(); ++i) {
    std::string path = "tensors[" + std::to_string(i) + "]";
    TensorRecord t = parse_tensor(f, tensors[i], path);
    for (const Piece& p : t.pieces)
      MODU_CHECK(p.rank < m.world_size, file.string(), ": tensor '", t.name, "' has a piece on rank ", p.rank,
                 " but world_size is ", m.world_size, "; the manifest is malformed");
    validate_pieces(t, file.string() + ": tensor '" + t.name + "'");
    m.tensors.push_back(std::move(t));
  }
  std::vector<std::string> names;
  for (const TensorRecord& t : m.tensors) names.push_back(t.name);
  std::sort(names.begin(), names.end());
  auto dup = std::adjacent_find(names.begin(), names.end());
  MODU_CHECK(dup == names.end(), file.string(), ": manifest lists tensor '", dup == names.end() ? "" : *dup,
             "' twice; the manifest is malformed");
  return m;
}

// ---- shard index ----------------------------------------------------------------------------------

std::string render_shard_index(const ShardIndex& s) {
  ojson o;
  o["format"] = kIndexFormat;
  o["format_version"] = kFormatVersion;
  o["step"] = s.step;
  o["tag"] = s.tag;
  o["shard"] = shard_json(s.shard);
  ojson tensors = ojson::array();
  for (const TensorRecord& t : s.tensors) tensors.push_back(tensor_json(t));
  o["tensors"] = std::move(tensors);
  return render_checked(o, kIndexKey);
}

ShardIndex parse_shard_index(std::string_view bytes, const fs::path& file) {
  json j = parse_checked(bytes, file, kIndexKey, "shard index");
  Fields f{file, "shard index"};
  check_format(f, j, kIndexFormat);
  ShardIndex s;
  s.step = f.integer(j, "step", "", 0, INT64_MAX);
  s.tag = f.string(j, "tag", "");
  const json& shard = f.object(j, "shard", "");
  s.shard = parse_shard(f, shard, "shard");
  const json& tensors = f.array(j, "tensors", "");
  for (size_t i = 0; i < tensors.size(); ++i) {
    TensorRecord t = parse_tensor(f, tensors[i], "tensors[" + std::to_string(i) + "]");
    MODU_CHECK(t.pieces.size() == 1 && t.pieces[0].rank == s.shard.rank, file.string(),
               ": shard index tensors[", i, "] must hold exactly one piece of rank ", s.shard.rank);
    s.tensors.push_back(std::move(t));
  }
  return s;
}

// ---- geometry -------------------------------------------------------------------------------------

void validate_pieces(const TensorRecord& t, const std::string& where) {
  const int nd = t.shape.size();
  int64_t covered = 0;
  for (const Piece& p : t.pieces) {
    MODU_CHECK(p.offset.size() == nd && p.shape.size() == nd, where, ": piece of ", piece_str(p), " has ",
               p.shape.size(), " dims but the global shape ", t.shape.str(), " has ", nd);
    for (int d = 0; d < nd; ++d)
      MODU_CHECK(p.offset[d] >= 0 && p.shape[d] >= 0 && p.offset[d] + p.shape[d] <= t.shape[d], where,
                 ": piece of ", piece_str(p), " reaches outside the global shape ", t.shape.str(), " in dim ", d);
    covered += p.shape.numel();
  }
  // Pairwise disjointness; empty pieces hold nothing and cannot overlap.
  for (size_t i = 0; i < t.pieces.size(); ++i) {
    const Piece& a = t.pieces[i];
    if (a.shape.numel() == 0) continue;
    for (size_t k = i + 1; k < t.pieces.size(); ++k) {
      const Piece& b = t.pieces[k];
      if (b.shape.numel() == 0) continue;
      bool overlap = true;
      for (int d = 0; d < nd && overlap; ++d)
        overlap = a.offset[d] < b.offset[d] + b.shape[d] && b.offset[d] < a.offset[d] + a.shape[d];
      MODU_CHECK(!overlap, where, ": the pieces of ", piece_str(a), " and ", piece_str(b),
                 " overlap; every element must be stored by exactly one rank (write a replicated tensor from one "
                 "rank only, e.g. data-parallel rank 0)");
    }
  }
  MODU_CHECK(covered == t.shape.numel(), where, ": of shape ", t.shape.str(), " has ", t.shape.numel(),
             " elements but its pieces hold ", covered,
             "; every element must be stored by exactly one rank (did a rank skip this tensor?)");
}

}  // namespace modu::checkpoint
