// checkpoint/save.cpp — the two-phase save: write_shard() on every rank, commit() on one (see checkpoint.h).
//
// Invariants: write_shard only ever writes inside ROOT/step_NNNNNNNN.tmp-TAG; a shard file gets its
// final name only when complete and fsync'ed, and its index (written atomically after it) is the mark
// that the shard is complete. commit() writes nothing outside the temp folder until the manifest is
// durable; after that it performs exactly one non-replacing rename and one atomic replacement of
// `latest`. Neither function deletes anything outside the temp folder.
#include <unistd.h>

#include <bit>
#include <cstdio>
#include <map>
#include <set>
#include <unordered_map>

#include "checkpoint/checkpoint.h"
#include "checkpoint/fsio.h"
#include "checkpoint/h5io.h"
#include "checkpoint/layout_names.h"
#include "checkpoint/manifest.h"
#include "checkpoint/xxhash64.h"

namespace modu::checkpoint {

static_assert(std::endian::native == std::endian::little,
              "checkpoint checksums are defined over little-endian element bytes");

namespace {

constexpr int kMaxRankExclusive = 1000000;

void hook(const SaveOptions& o, std::string_view point) {
  if (o.fault_hook) o.fault_hook(point);
}

void check_step(int64_t step, const char* fn) {
  MODU_CHECK(step >= 0, fn, ": step must be >= 0, got ", step);
}

// The final folder must not exist: a committed step is never overwritten.
void refuse_existing(const fs::path& root, int64_t step, const char* fn) {
  fs::path final_dir = step_dir(root, step);
  std::error_code ec;
  if (!fs::exists(final_dir, ec)) return;
  if (is_committed(root, step))
    MODU_FAIL(fn, ": ", final_dir.string(), " is already a committed checkpoint and is never overwritten; ",
              "skip this save (is_committed()), save under another step, or move the folder away");
  MODU_FAIL(fn, ": ", final_dir.string(), " exists but holds no valid manifest.json (not a checkpoint); ",
            "it is left untouched: move it away to save step ", step);
}

json object_or_empty(const json& j, const char* what) {
  if (j.is_null()) return json::object();
  MODU_CHECK(j.is_object(), what, " must be a JSON object, got ", j.type_name());
  check_json_storable(j, what);
  return j;
}

}  // namespace

// ---- names ----------------------------------------------------------------------------------------

std::string shard_file_name(int rank) {
  char buf[48];
  std::snprintf(buf, sizeof(buf), "shard_r%06d.h5", rank);
  return buf;
}
std::string index_file_name(int rank) {
  char buf[48];
  std::snprintf(buf, sizeof(buf), "shard_r%06d.idx.json", rank);
  return buf;
}
std::string tmp_dir_name(int64_t step, const std::string& tag) { return step_dir_name(step) + kTmpMarker + tag; }

std::string resolve_tag(const std::string& tag) {
  if (tag.empty()) return std::to_string(static_cast<long long>(::getpid()));
  MODU_CHECK(tag.size() <= 64, "SaveOptions::tag is longer than 64 characters");
  for (char c : tag)
    MODU_CHECK((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                   c == '-',
               "SaveOptions::tag \"", tag, "\" may only hold letters, digits, '.', '_' and '-'");
  return tag;
}

// ---- ShardTensor ----------------------------------------------------------------------------------

ShardTensor::ShardTensor(std::string n, Tensor d) : name(std::move(n)), data(std::move(d)) {
  MODU_CHECK(data.defined(), "ShardTensor '", name, "': the tensor is undefined");
  global_shape = data.shape();
  global_offset = Dims::filled(data.dim(), 0);
}

ShardTensor::ShardTensor(std::string n, Tensor d, Dims gshape, Dims goffset)
    : name(std::move(n)), data(std::move(d)), global_shape(gshape), global_offset(goffset) {}

// ---- phase 1 --------------------------------------------------------------------------------------

void write_shard(const fs::path& root, int64_t step, int rank, const std::vector<ShardTensor>& tensors,
                 const json& rank_state, const SaveOptions& options) {
  check_step(step, "write_shard");
  MODU_CHECK(rank >= 0 && rank < kMaxRankExclusive, "write_shard: rank must be in [0, 1000000), got ", rank);
  const std::string tag = resolve_tag(options.tag);
  const json state = object_or_empty(rank_state, "write_shard: rank_state");

  // Validate everything before touching the disk.
  std::set<std::string> seen;
  for (const ShardTensor& st : tensors) {
    const std::string where = "write_shard (rank " + std::to_string(rank) + ")";
    check_tensor_name(st.name, where);
    MODU_CHECK(seen.insert(st.name).second, where, ": tensor '", st.name,
               "' given twice; a rank stores one box per tensor");
    MODU_CHECK(st.data.defined(), where, ": tensor '", st.name, "' is undefined");
    const int nd = st.data.dim();
    MODU_CHECK(st.global_shape.size() == nd && st.global_offset.size() == nd, where, ": tensor '", st.name,
               "' has ", nd, " dims but global_shape ", st.global_shape.str(), " and global_offset ",
               st.global_offset.str(), "; give both with one entry per dim");
    for (int d = 0; d < nd; ++d)
      MODU_CHECK(st.global_offset[d] >= 0 && st.global_offset[d] + st.data.size(d) <= st.global_shape[d], where,
                 ": tensor '", st.name, "': the piece ", st.data.shape().str(), " at offset ", st.global_offset.str(),
                 " does not fit in the global shape ", st.global_shape.str(), " (dim ", d, ")");
  }

  fsio::make_dirs(root);
  refuse_existing(root, step, "write_shard");
  const fs::path tmp = root / tmp_dir_name(step, tag);
  fsio::make_dir(tmp);

  const fs::path shard = tmp / shard_file_name(rank);
  const fs::path index = tmp / index_file_name(rank);
  fs::path partial = shard;
  partial += ".partial";
  // The index marks a complete shard: remove a previous attempt's before replacing the shard.
  fsio::remove_file_if_exists(index);

  ShardIndex idx;
  idx.step = step;
  idx.tag = tag;
  try {
    h5::ShardFileWriter writer(partial, step, rank);
    for (size_t i = 0; i < tensors.size(); ++i) {
      const ShardTensor& st = tensors[i];
      Tensor host = st.data.detach().to(Device::cpu()).contiguous();
      const uint64_t hash = xxh64(host.data_ptr(), host.nbytes());
      const std::string ds = h5::dataset_path(i);
      writer.write(ds, host.data_ptr(), host.shape(), h5::PieceAttrs{st.name, host.dtype(), st.global_shape, st.global_offset, hash});
      TensorRecord rec;
      rec.name = st.name;
      rec.dtype = host.dtype();
      rec.shape = st.global_shape;
      rec.pieces.push_back(Piece{rank, ds, st.global_offset, host.shape(), hash});
      idx.tensors.push_back(std::move(rec));
    }
    writer.close();
    fsio::fsync_file(partial);
    uint64_t bytes = 0;
    const uint64_t file_hash = xxh64_file(partial, &bytes);
    fsio::rename_replace(partial, shard);
    fsio::fsync_dir(tmp);
    idx.shard = ShardRecord{rank, shard_file_name(rank), bytes, file_hash, state};
    fsio::write_file_atomic(index, render_shard_index(idx), ".partial");
  } catch (...) {
    std::error_code ec;
    fs::remove(partial, ec);  // best effort; the shard is incomplete without its index anyway
    throw;
  }
  hook(options, "shard_written");
}

// ---- phase 2 --------------------------------------------------------------------------------------

fs::path commit(const fs::path& root, int64_t step, int world_size, const CommitInfo& info,
                const SaveOptions& options) {
  check_step(step, "commit");
  MODU_CHECK(world_size >= 1 && world_size <= kMaxRankExclusive, "commit: world_size must be in [1, 1000000], got ",
             world_size);
  const std::string tag = resolve_tag(options.tag);
  Manifest m;
  m.step = step;
  m.world_size = world_size;
  m.layout = object_or_empty(info.layout, "commit: CommitInfo::layout");
  m.metadata = object_or_empty(info.metadata, "commit: CommitInfo::metadata");

  refuse_existing(root, step, "commit");
  const fs::path tmp = root / tmp_dir_name(step, tag);
  std::error_code ec;
  MODU_CHECK(fs::is_directory(tmp, ec), "commit: ", tmp.string(), " does not exist: no rank has written a shard for step ",
             step, " with tag \"", tag, "\"; call write_shard on every rank first, with the same SaveOptions::tag");

  // Exactly the expected files: every rank's shard and index (and a manifest from a failed earlier commit).
  std::set<std::string> expected{kManifestFile};
  for (int r = 0; r < world_size; ++r) {
    expected.insert(shard_file_name(r));
    expected.insert(index_file_name(r));
  }
  std::set<std::string> present;
  for (const auto& e : fs::directory_iterator(tmp)) present.insert(e.path().filename().string());
  std::string unexpected, missing;
  int n_unexpected = 0, n_missing = 0;
  for (const std::string& name : present)
    if (!expected.count(name) && n_unexpected++ < 5) unexpected += (unexpected.empty() ? "" : ", ") + name;
  MODU_CHECK(n_unexpected == 0, "commit: ", tmp.string(), " holds ", n_unexpected, " unexpected file(s) (", unexpected,
             ") for world_size ", world_size, "; they come from another save (different world size, or an "
             "interrupted write): remove the temp folder and save again");
  for (int r = 0; r < world_size; ++r)
    if ((!present.count(index_file_name(r)) || !present.count(shard_file_name(r))) && n_missing++ < 10)
      missing += (missing.empty() ? "" : ", ") + std::to_string(r);
  MODU_CHECK(n_missing == 0, "commit: ", tmp.string(), ": ", n_missing, " rank(s) have not finished write_shard (",
             missing, (n_missing > 10 ? ", ..." : ""), "; an index file shard_rRRRRRR.idx.json marks a finished shard); ",
             "commit must run after a barrier that follows every rank's write_shard");

  // Read every index, check it against its shard file, merge the pieces.
  std::unordered_map<std::string, size_t> pos;
  for (int r = 0; r < world_size; ++r) {
    const fs::path ipath = tmp / index_file_name(r);
    ShardIndex idx = parse_shard_index(fsio::read_file(ipath), ipath);
    MODU_CHECK(idx.step == step && idx.tag == tag && idx.shard.rank == r && idx.shard.file == shard_file_name(r),
               "commit: ", ipath.string(), " belongs to another save (step ", idx.step, ", rank ", idx.shard.rank,
               ", tag \"", idx.tag, "\"); remove the temp folder and save again");
    const fs::path spath = tmp / idx.shard.file;
    int64_t size = fsio::file_size_or_missing(spath);
    MODU_CHECK(size >= 0 && uint64_t(size) == idx.shard.bytes, "commit: ", spath.string(), " has ", size,
               " bytes but its index recorded ", idx.shard.bytes, "; it changed after write_shard: save again");
    if (options.rehash_shards) {
      uint64_t h = xxh64_file(spath);
      MODU_CHECK(h == idx.shard.xxh64, "commit: ", spath.string(), ": checksum ", hex64(h), " differs from ",
                 hex64(idx.shard.xxh64), " recorded by write_shard; the file changed or the disk corrupted it: save again");
    }
    for (TensorRecord& t : idx.tensors) {
      auto [it, fresh] = pos.try_emplace(t.name, m.tensors.size());
      if (fresh) {
        m.tensors.push_back(std::move(t));
        continue;
      }
      TensorRecord& have = m.tensors[it->second];
      MODU_CHECK(have.dtype == t.dtype && have.shape == t.shape, "commit: tensor '", t.name, "': rank ",
                 have.pieces.front().rank, " stores it as ", dtype_name(have.dtype), have.shape.str(), " but rank ", r,
                 " as ", dtype_name(t.dtype), t.shape.str(), "; every rank must give the same dtype and global shape");
      have.pieces.push_back(t.pieces.front());
    }
    m.shards.push_back(std::move(idx.shard));
  }
  for (const TensorRecord& t : m.tensors) validate_pieces(t, "commit of step " + std::to_string(step) + ": tensor '" + t.name + "'");
  hook(options, "indexes_checked");

  fsio::write_file_synced(tmp / kManifestFile, render_manifest(m));
  hook(options, "manifest_written");
  fsio::fsync_dir(tmp);
  const fs::path final_dir = step_dir(root, step);
  fsio::rename_noreplace(tmp, final_dir);
  fsio::fsync_dir(root);
  hook(options, "renamed");
  fsio::write_file_atomic(root / kLatestFile, step_dir_name(step) + "\n", kTmpMarker + tag);
  hook(options, "latest_written");
  return final_dir;
}

fs::path save(const fs::path& root, int64_t step, const std::vector<ShardTensor>& tensors, const CommitInfo& info,
              const json& rank_state, const SaveOptions& options) {
  write_shard(root, step, 0, tensors, rank_state, options);
  return commit(root, step, 1, info, options);
}

}  // namespace modu::checkpoint
