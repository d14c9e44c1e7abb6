// checkpoint/load.cpp — Checkpoint::open and read: manifest validation, shard verification and
// box reads across shards (resharding on load; see checkpoint.h).
//
// Invariants: open() accepts a folder only after the manifest's checksum, format version and schema
// check out, the piece geometry is valid (disjoint, covering) and every shard file is present with the
// recorded size (and, by default, checksum). read() writes exactly the elements of the requested box,
// each from the one piece holding it, verifies a piece's checksum whenever it reads the piece whole,
// and never leaves a partially written destination without throwing.
#include <unordered_map>

#include "checkpoint/checkpoint.h"
#include "checkpoint/fsio.h"
#include "checkpoint/h5io.h"
#include "checkpoint/layout_names.h"
#include "checkpoint/manifest.h"
#include "checkpoint/xxhash64.h"

namespace modu::checkpoint {

namespace {

// The checksum of the box [start, start + count) of a row-major array of `shape`, hashed in row-major
// order: equal to the hash of the box's bytes laid out contiguously.
uint64_t hash_box(const char* base, const Dims& shape, const Dims& start, const Dims& count, size_t esize) {
  Xxh64 h;
  const int nd = shape.size();
  if (nd == 0) {
    h.update(base, esize);
    return h.digest();
  }
  if (count.numel() == 0) return h.digest();
  Dims strides = Dims::filled(nd, 1);
  for (int d = nd - 2; d >= 0; --d) strides[d] = strides[d + 1] * shape[d + 1];
  Dims idx = Dims::filled(nd, 0);  // over dims 0..nd-2; the last dim is one contiguous run
  const size_t run = size_t(count[nd - 1]) * esize;
  for (;;) {
    int64_t off = 0;
    for (int d = 0; d < nd; ++d) off += (start[d] + (d < nd - 1 ? idx[d] : 0)) * strides[d];
    h.update(base + off * int64_t(esize), run);
    int d = nd - 2;
    for (; d >= 0; --d) {
      if (++idx[d] < count[d]) break;
      idx[d] = 0;
    }
    if (d < 0) break;
  }
  return h.digest();
}

fs::path resolve(const fs::path& path) {
  std::error_code ec;
  if (fs::exists(path / kManifestFile, ec)) return path;
  if (fs::is_regular_file(path / kLatestFile, ec)) {
    std::optional<int64_t> s = latest_step(path);
    fs::path dir = step_dir(path, *s);
    MODU_CHECK(fs::is_directory(dir, ec), (path / kLatestFile).string(), " names ", step_dir_name(*s),
               " but that folder does not exist; open a step folder directly or repair `latest`");
    return dir;
  }
  MODU_CHECK(fs::exists(path, ec), path.string(), ": does not exist; give a checkpoint root or a step folder");
  return path;  // open() reports the missing manifest, naming it
}

bool is_tmp_dir_name(const std::string& name) {
  size_t at = name.find(kTmpMarker);
  return at != std::string::npos && parse_step_dir_name(std::string_view(name).substr(0, at)).has_value();
}

void check_shard_hash(const fs::path& p, const ShardRecord& s) {
  uint64_t h = xxh64_file(p);
  MODU_CHECK(h == s.xxh64, p.string(), ": checksum mismatch: contents hash to xxh64 ", hex64(h),
             ", the manifest recorded ", hex64(s.xxh64),
             "; the shard is damaged (bit flip or overwrite): restore the folder from a copy or open another step");
}

[[noreturn]] void missing_manifest(const fs::path& dir) {
  const std::string name = dir.filename().string();
  const fs::path manifest = dir / kManifestFile;
  if (is_tmp_dir_name(name))
    MODU_FAIL(manifest.string(), ": missing: ", dir.string(),
              " is the temp folder of a save that never committed (crashed or still running); it is not a "
              "checkpoint: open the root (follows `latest`) or a committed step folder, and delete this folder "
              "once no save is running");
  if (parse_step_dir_name(name))
    MODU_FAIL(manifest.string(), ": missing: ", dir.string(),
              " is not a committed checkpoint (a folder without a valid manifest never is); open another step");
  MODU_FAIL(manifest.string(), ": missing: ", dir.string(),
            " is neither a checkpoint step folder (manifest.json) nor a checkpoint root (a `latest` file)");
}

}  // namespace

struct Checkpoint::Impl {
  fs::path dir;
  Manifest m;
  std::unordered_map<std::string, size_t> by_name;
  bool verify_on_first_use = false;
  mutable std::vector<std::unique_ptr<h5::ShardFileReader>> files;

  const TensorRecord& find(const std::string& name) const {
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      std::string some;
      for (size_t i = 0; i < m.tensors.size() && i < 5; ++i) some += (i ? ", '" : "'") + m.tensors[i].name + "'";
      MODU_FAIL(dir.string(), ": no tensor named '", name, "'; the checkpoint has ", m.tensors.size(), " tensors",
                m.tensors.empty() ? std::string() : " (" + some + (m.tensors.size() > 5 ? ", ...)" : ")"),
                "; see tensor_names()");
    }
    return m.tensors[it->second];
  }
  h5::ShardFileReader& file(int rank) const {
    auto& f = files[size_t(rank)];
    if (!f) {
      const fs::path p = dir / m.shards[size_t(rank)].file;
      if (verify_on_first_use) check_shard_hash(p, m.shards[size_t(rank)]);
      f = std::make_unique<h5::ShardFileReader>(p);
    }
    return *f;
  }
};

Checkpoint::Checkpoint(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Checkpoint::Checkpoint(Checkpoint&&) noexcept = default;
Checkpoint& Checkpoint::operator=(Checkpoint&&) noexcept = default;
Checkpoint::~Checkpoint() = default;

Checkpoint Checkpoint::open(const fs::path& path, const OpenOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->dir = resolve(path);
  const fs::path manifest = impl->dir / kManifestFile;
  if (fsio::file_size_or_missing(manifest) < 0) missing_manifest(impl->dir);
  MODU_CHECK(!is_tmp_dir_name(impl->dir.filename().string()), impl->dir.string(),
             ": is the temp folder of a save that never committed (it crashed after writing ", manifest.string(),
             " but before the rename that commits it); it is not a checkpoint: retry commit() with the same tag, "
             "or open the root (follows `latest`)");
  impl->m = parse_manifest(fsio::read_file(manifest), manifest);
  const Manifest& m = impl->m;

  if (std::optional<int64_t> s = parse_step_dir_name(impl->dir.filename().string()))
    MODU_CHECK(*s == m.step, manifest.string(), ": says step ", m.step, " but its folder is ", impl->dir.filename().string(),
               "; the folder was renamed or the manifest copied from elsewhere: restore the original name");

  for (const ShardRecord& s : m.shards) {
    const fs::path p = impl->dir / s.file;
    int64_t size = fsio::file_size_or_missing(p);
    MODU_CHECK(size >= 0, p.string(), ": missing: the shard of rank ", s.rank,
               " listed in the manifest is not there; the checkpoint is incomplete: restore the folder from a copy "
               "or open another step");
    MODU_CHECK(uint64_t(size) == s.bytes, p.string(), ": ", uint64_t(size) < s.bytes ? "truncated" : "too long", ": ",
               size, " bytes, the manifest says ", s.bytes,
               "; the shard is damaged (interrupted copy?): restore the folder from a copy or open another step");
    if (options.verify == ShardVerify::AtOpen) check_shard_hash(p, s);
  }
  impl->verify_on_first_use = options.verify == ShardVerify::OnFirstUse;
  for (size_t i = 0; i < m.tensors.size(); ++i) impl->by_name.emplace(m.tensors[i].name, i);
  impl->files.resize(m.shards.size());
  return Checkpoint(std::move(impl));
}

const fs::path& Checkpoint::dir() const { return impl_->dir; }
int64_t Checkpoint::step() const { return impl_->m.step; }
int Checkpoint::world_size() const { return impl_->m.world_size; }
const json& Checkpoint::layout() const { return impl_->m.layout; }
const json& Checkpoint::metadata() const { return impl_->m.metadata; }
const json& Checkpoint::rank_state(int rank) const {
  MODU_CHECK(rank >= 0 && rank < impl_->m.world_size, impl_->dir.string(), ": rank_state(", rank,
             "): the checkpoint was written by ", impl_->m.world_size, " ranks");
  return impl_->m.shards[size_t(rank)].state;
}

std::vector<std::string> Checkpoint::tensor_names() const {
  std::vector<std::string> names;
  for (const TensorRecord& t : impl_->m.tensors) names.push_back(t.name);
  return names;
}
bool Checkpoint::has(const std::string& name) const { return impl_->by_name.count(name) > 0; }
Dims Checkpoint::global_shape(const std::string& name) const { return impl_->find(name).shape; }
DType Checkpoint::dtype(const std::string& name) const { return impl_->find(name).dtype; }

void Checkpoint::read(const std::string& name, const Tensor& dest, const Dims& global_offset) const {
  const TensorRecord& t = impl_->find(name);
  const std::string what = impl_->dir.string() + ": read('" + name + "')";
  MODU_CHECK(dest.defined(), what, ": the destination tensor is undefined");
  MODU_CHECK(dest.dtype() == t.dtype, what, ": stored as ", dtype_name(t.dtype), " but the destination is ",
             describe(dest), "; read into a ", dtype_name(t.dtype), " tensor and convert with .to()");
  const int nd = t.shape.size();
  MODU_CHECK(dest.dim() == nd, what, ": the stored tensor has shape ", t.shape.str(), " (", nd,
             " dims) but the destination has ", dest.dim(), " dims");
  Dims off = global_offset.empty() ? Dims::filled(nd, 0) : global_offset;
  MODU_CHECK(off.size() == nd, what, ": global_offset ", off.str(), " needs ", nd, " entries");
  for (int d = 0; d < nd; ++d)
    MODU_CHECK(off[d] >= 0 && off[d] + dest.size(d) <= t.shape[d], what, ": the box at offset ", off.str(), " of shape ",
               dest.shape().str(), " reaches outside the stored shape ", t.shape.str(), " in dim ", d);

  const bool direct = dest.device().is_cpu() && dest.is_contiguous();
  Tensor buf = direct ? dest : Tensor::empty(dest.shape(), t.dtype, Device::cpu());
  const size_t esize = dtype_size(t.dtype);
  int64_t filled = 0;
  for (const Piece& p : t.pieces) {
    Dims lo = Dims::filled(nd, 0), count = Dims::filled(nd, 0);
    bool empty = false;
    for (int d = 0; d < nd; ++d) {
      lo[d] = std::max(off[d], p.offset[d]);
      int64_t hi = std::min(off[d] + dest.size(d), p.offset[d] + p.shape[d]);
      count[d] = hi - lo[d];
      if (count[d] <= 0) empty = true;
    }
    if (empty) continue;
    Dims file_start = lo, mem_start = lo;
    for (int d = 0; d < nd; ++d) {
      file_start[d] -= p.offset[d];
      mem_start[d] -= off[d];
    }
    h5::ShardFileReader& f = impl_->file(p.rank);
    f.read_box(p.dataset, t.dtype, p.shape, file_start, count, buf.data_ptr(), dest.shape(), mem_start);
    filled += count.numel();
    if (count == p.shape) {
      uint64_t h = hash_box(static_cast<const char*>(buf.data_ptr()), dest.shape(), mem_start, count, esize);
      MODU_CHECK(h == p.xxh64, f.path().string(), ": dataset ", p.dataset, " (tensor '", name, "', piece at ",
                 p.offset.str(), "): checksum mismatch: read xxh64 ", hex64(h), ", the manifest recorded ",
                 hex64(p.xxh64), "; the shard is damaged: restore the folder from a copy or open another step");
    }
  }
  MODU_CHECK(filled == dest.numel(), what, ": internal: filled ", filled, " of ", dest.numel(), " elements");
  if (direct) {
    dest.storage()->bump_version();  // an in-place write, for autograd's saved-tensor checks
  } else {
    Tensor target = dest.detach();
    target.copy_(buf.to(dest.device()));
  }
}

Tensor Checkpoint::read(const std::string& name) const {
  const TensorRecord& t = impl_->find(name);
  Tensor out = Tensor::empty(t.shape, t.dtype, Device::cpu());
  read(name, out);
  return out;
}

void Checkpoint::verify_all() const {
  for (const TensorRecord& t : impl_->m.tensors)
    for (const Piece& p : t.pieces) {
      if (p.shape.numel() == 0) continue;
      Tensor tmp = Tensor::empty(p.shape, t.dtype, Device::cpu());
      read(t.name, tmp, p.offset);  // a whole piece: its checksum is verified
    }
}

}  // namespace modu::checkpoint
