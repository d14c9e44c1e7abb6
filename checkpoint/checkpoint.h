// checkpoint/checkpoint.h — sharded, resharding-capable checkpoints with an atomic commit protocol.
//
// On disk (format version 1; details in checkpoint/README.md):
//   ROOT/latest                          "step_NNNNNNNN\n": the last committed checkpoint
//   ROOT/step_NNNNNNNN/                  one committed checkpoint (8+ digit step)
//       shard_rRRRRRR.h5                 rank R's pieces, HDF5 (layout in checkpoint/h5io.h)
//       shard_rRRRRRR.idx.json           rank R's index: what write_shard wrote (input to commit)
//       manifest.json                    written last; the authority (schema in checkpoint/manifest.h)
//   ROOT/step_NNNNNNNN.tmp-TAG/          a save in progress, or left by a crash: never a checkpoint
//
// The save is two phases so a parallel run can put a barrier between them:
//   every rank:  write_shard(root, step, rank, pieces, rank_state)   (into the temp folder)
//   barrier
//   rank 0:      commit(root, step, world, info)                     (manifest, rename, latest)
// One process calls save(), which does both.
//
// Invariants:
//   - A folder is a checkpoint iff it has a manifest.json whose own checksum matches. The manifest is
//     written after every shard and before the folder gets its final name, so a crash at any point
//     leaves either no new checkpoint or a complete one.
//   - Commit order: shards + indexes fsync'ed -> manifest fsync'ed -> temp folder fsync'ed -> rename to
//     step_NNNNNNNN (never replacing) -> ROOT fsync'ed -> `latest` written to a temp file, fsync'ed,
//     renamed, ROOT fsync'ed. `latest` therefore only ever names a complete checkpoint.
//   - Nothing here deletes or modifies a committed checkpoint except retain_last(), which deletes
//     whole old checkpoints (manifest first, so a half-deleted folder is no checkpoint).
//   - A committed step is never overwritten: saving a step that is already committed is an error
//     (check is_committed() first to skip it). Identical-content detection is deliberately not
//     attempted: a second save of one step signals a logic error in the caller.
//   - Every tensor is stored with its global shape and the box (offset, shape) each rank holds; the
//     pieces of a tensor are disjoint and cover it (checked at commit and again at open), so read()
//     can fill any box of the global tensor from whichever shards overlap it: save under one layout,
//     load under another.
//   - Tensors are stored bit-exactly in their own dtype; checksums (XXH64) cover each shard file, each
//     piece's bytes, the manifest and each index.
//   - Errors are modu::Error naming the file, what failed and how to fix it. Not thread-safe (HDF5).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/rng.h"
#include "core/tensor.h"

namespace modu::checkpoint {

namespace fs = std::filesystem;
using json = nlohmann::json;

// ---- saving -------------------------------------------------------------------------------------------

// One rank's piece of a tensor: `data` is the box [global_offset, global_offset + data.shape) of the
// global tensor `name` of shape `global_shape`. Any device, any strides: it is copied to contiguous
// host memory for writing (without recording autograd history).
struct ShardTensor {
  std::string name;
  Tensor data;
  Dims global_shape;
  Dims global_offset;

  // The whole tensor (one process, or a tensor only this rank holds).
  ShardTensor(std::string name, Tensor data);
  ShardTensor(std::string name, Tensor data, Dims global_shape, Dims global_offset);
};

struct SaveOptions {
  // Names the temp folder step_NNNNNNNN.tmp-TAG. Empty: this process's pid. Every rank of one save must
  // pass the same tag (e.g. rank 0's pid broadcast by the communicator, or a job id).
  std::string tag = {};
  // commit(): re-read and re-hash every shard file instead of trusting the hashes the writing ranks
  // recorded (file sizes are always checked). Costs a full read of the checkpoint on rank 0.
  bool rehash_shards = false;
  // For tests: called at named points of the protocol ("shard_written", "indexes_checked",
  // "manifest_written", "renamed", "latest_written"); throwing from it simulates a crash there.
  std::function<void(std::string_view point)> fault_hook = nullptr;
};

// Everything commit() stores besides tensors. Both must be JSON objects (or null for empty), finite,
// valid UTF-8. Suggested metadata keys: "data" (the global sample index), "lr_schedule", "optimizer"
// (step counters), "recipe" (the effective recipe), "model".
struct CommitInfo {
  json layout = json::object();    // the parallel layout the shards were written under (opaque)
  json metadata = json::object();  // everything else needed to resume (opaque)
};

// Phase 1, on every rank: writes this rank's pieces to ROOT/step_NNNNNNNN.tmp-TAG/shard_rRRRRRR.h5 and
// its index, both fsync'ed. `rank_state` (a JSON object: this rank's RNG streams, ...) is stored for the
// rank. Fails early if step_NNNNNNNN already exists. Calling it again for the same rank replaces that
// rank's shard.
void write_shard(const fs::path& root, int64_t step, int rank, const std::vector<ShardTensor>& tensors,
                 const json& rank_state = json::object(), const SaveOptions& options = {});

// Phase 2, on one rank after every rank's write_shard returned: checks that the shards of ranks
// 0..world_size-1 (and nothing else) are in the temp folder and agree (dtype and global shape per tensor;
// pieces disjoint and covering), writes the manifest, renames the folder to step_NNNNNNNN and points
// `latest` at it. Returns the committed folder. On failure the temp folder is left for inspection and
// a retry; earlier checkpoints and `latest` are untouched.
fs::path commit(const fs::path& root, int64_t step, int world_size, const CommitInfo& info = {},
                const SaveOptions& options = {});

// One process: write_shard(rank 0) + commit(world 1).
fs::path save(const fs::path& root, int64_t step, const std::vector<ShardTensor>& tensors,
              const CommitInfo& info = {}, const json& rank_state = json::object(),
              const SaveOptions& options = {});

// ---- the store --------------------------------------------------------------------------------------

std::string step_dir_name(int64_t step);                          // "step_00000042"
std::optional<int64_t> parse_step_dir_name(std::string_view name);  // only the canonical form
fs::path step_dir(const fs::path& root, int64_t step);

// Steps under root whose folder holds a manifest with a valid checksum (shards not read), ascending.
std::vector<int64_t> committed_steps(const fs::path& root);
bool is_committed(const fs::path& root, int64_t step);
// The step ROOT/latest names; nullopt when there is no `latest`. Throws when it is malformed.
std::optional<int64_t> latest_step(const fs::path& root);

// Deletes committed checkpoints older than the newest `keep` (keep >= 1), except the one `latest` names.
// Temp folders and folders without a valid manifest are left alone. Returns the deleted folders.
std::vector<fs::path> retain_last(const fs::path& root, int keep);

// ---- loading ----------------------------------------------------------------------------------------

// When shard files are hashed against the manifest (their sizes are always checked at open).
enum class ShardVerify {
  AtOpen,      // every shard, in open(): a damaged checkpoint is refused before anything is read
  OnFirstUse,  // a shard when read() first touches it: each rank of a resharding load hashes only the
               // shards it reads (AtOpen on every rank reads the whole checkpoint world_size times)
  Off,         // never; damage is still caught by read() whenever it reads a piece whole (each piece
               // carries its own checksum), but partial reads of a damaged piece go unnoticed
};

struct OpenOptions {
  ShardVerify verify = ShardVerify::AtOpen;
};

class Checkpoint {
 public:
  // `path` is a step folder (has manifest.json) or a root (has `latest`, which is followed); a temp
  // folder (step_NNNNNNNN.tmp-TAG) is refused even when a crash left a manifest in it. Validates the
  // manifest (checksum, format version, schema, piece geometry) and every shard (present, size, and
  // checksum per OpenOptions::verify); refuses with an error naming the file and the failure.
  static Checkpoint open(const fs::path& path, const OpenOptions& options = {});

  Checkpoint(Checkpoint&&) noexcept;
  Checkpoint& operator=(Checkpoint&&) noexcept;
  ~Checkpoint();

  const fs::path& dir() const;
  int64_t step() const;
  int world_size() const;
  const json& layout() const;
  const json& metadata() const;
  const json& rank_state(int rank) const;  // what write_shard got for `rank`

  std::vector<std::string> tensor_names() const;  // in save order (rank 0's order first)
  bool has(const std::string& name) const;
  Dims global_shape(const std::string& name) const;
  DType dtype(const std::string& name) const;

  // Fills `dest` with the box [global_offset, global_offset + dest.shape) of the stored global tensor
  // (global_offset empty = all zeros), reading whichever shards overlap it. dest must have the stored
  // dtype and rank; any device, any strides (a view writes through to its base). The stored pieces'
  // checksums are verified for every piece read whole.
  void read(const std::string& name, const Tensor& dest, const Dims& global_offset = {}) const;
  // The whole tensor as a new contiguous CPU tensor.
  Tensor read(const std::string& name) const;

  // Reads every piece whole and verifies its checksum (a full scrub of the tensor data).
  void verify_all() const;

 private:
  struct Impl;
  explicit Checkpoint(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// ---- helpers ----------------------------------------------------------------------------------------

// A Generator's state as {"seed": u64, "stream": u64, "counter": u64}, and back (strict).
json rng_state_to_json(const Generator::State& s);
Generator::State rng_state_from_json(const json& j);

}  // namespace modu::checkpoint
