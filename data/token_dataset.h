// Token shard sets: the on-disk dataset `modu prepare text` writes and the loader reads.
//
// A shard-set directory holds, per split ("train", "val"), the shards <split>_000000.bin,
// <split>_000001.bin, ... (token_shard.h) and one meta.json describing the whole set:
//   {"format": "modu-token-shards", "version": 1, "tokenizer": ..., "vocab_size": V, "eot_id": E,
//    "dtype": "u16"|"u32", "shard_tokens": S, "splits": {"train": {"tokens": N, "shards":
//    [{"file": "train_000000.bin", "tokens": n0}, ...]}, "val": {...}}, ...}
// Invariants:
//  - meta.json is written last (tmp + rename): a directory without it is not a complete set, and
//    opening such a directory is an error (an interrupted prepare never looks like data).
//  - The token stream of a split is the concatenation of its shards in index order.
//  - All shards of a set share one vocabulary size (checked on open).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "data/token_shard.h"

namespace modu::data {

struct ShardInfo {
  std::string file;  // name inside the directory
  uint64_t tokens = 0;
};

// Writes the shards of one split into `dir`, starting a new shard every `shard_tokens` tokens.
// Nothing is written for a split that receives no tokens.
class TokenShardSetWriter {
 public:
  TokenShardSetWriter(std::string dir, std::string split, uint32_t vocab_size, uint32_t eot_id,
                      uint64_t shard_tokens, bool overwrite);
  void append(std::span<const int32_t> tokens);
  void append(int32_t token) { append(std::span<const int32_t>(&token, 1)); }
  uint64_t tokens() const { return total_; }
  // Commits the last shard; returns every shard written, in order.
  std::vector<ShardInfo> finish();

 private:
  std::string dir_, split_;
  uint32_t vocab_size_, eot_id_;
  uint64_t shard_tokens_;
  bool overwrite_;
  uint64_t total_ = 0;
  std::unique_ptr<TokenShardWriter> current_;
  std::vector<ShardInfo> done_;
};

// The meta.json of a set, in memory. `extra_json` is a JSON object whose members are copied into
// meta.json as they are (prepare's provenance: inputs, val policy, ...).
struct ShardSetMeta {
  std::string tokenizer;
  uint32_t vocab_size = 0;
  uint32_t eot_id = kNoEot;
  uint64_t shard_tokens = 0;
  std::vector<std::pair<std::string, std::vector<ShardInfo>>> splits;  // ("train", shards), ...
  std::string extra_json = "{}";
};
// Writes dir/meta.json atomically.
void write_shard_set_meta(const std::string& dir, const ShardSetMeta& meta);
// Reads and validates dir/meta.json (errors name the file).
ShardSetMeta read_shard_set_meta(const std::string& dir);

// Names of files in `dir` that belong to a shard set (meta.json, <split>_NNNNNN.bin, and temp
// files of either), for overwrite checks and cleanup.
std::vector<std::string> shard_set_files(const std::string& dir);

// One split of a set, opened: its shards mapped, the stream addressable by global token index.
class TokenShardSet {
 public:
  TokenShardSet() = default;
  // spec is a shard-set directory (split picks "train" or "val"; meta.json required), "DIR/SPLIT"
  // (e.g. "data/train": that split of the set in data/; split unused), a glob of shard files
  // (e.g. "data/train_*.bin", sorted by name; split unused) or one shard file.
  static TokenShardSet open(const std::string& spec, const std::string& split = "train");
  // Opens these shard files in this order.
  static TokenShardSet open_files(const std::vector<std::string>& files, std::string description);

  uint64_t size() const { return total_; }  // tokens in the stream
  uint32_t vocab_size() const { return vocab_size_; }
  uint32_t eot_id() const { return eot_id_; }
  const std::vector<TokenShard>& shards() const { return shards_; }
  const std::string& description() const { return description_; }  // for messages
  // Copies stream tokens [begin, begin + n) into out (may span shards; checked).
  void read(uint64_t begin, uint64_t n, int64_t* out) const;

 private:
  std::vector<TokenShard> shards_;
  std::vector<uint64_t> starts_;  // starts_[i] = stream index of shard i's first token
  uint64_t total_ = 0;
  uint32_t vocab_size_ = 0, eot_id_ = kNoEot;
  std::string description_;
};

}  // namespace modu::data
