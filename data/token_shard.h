// Token shards (ARCHITECTURE §7): one binary file = a 64-byte header followed by the tokens.
//
// Layout, every integer little-endian:
//   offset size  field
//        0    8  magic "MODUTOKS" (8 ASCII bytes, no terminator)
//        8    4  u32 format version, kTokenShardVersion (1)
//       12    4  u32 token width in bytes: 2 (u16 tokens, vocab <= 65536) or 4 (u32 tokens)
//       16    8  u64 token count N
//       24    4  u32 vocab size V (every token < V)
//       28    4  u32 id of "<|endoftext|>", or 0xFFFFFFFF when the vocabulary has none
//       32    8  u64 body checksum: FNV-1a 64 of the N*width body bytes (checked by verify_body())
//       40   16  reserved, zero
//       56    8  u64 header checksum: FNV-1a 64 of bytes 0..55
//       64  N*w  the tokens
// Invariants:
//  - A shard file is exactly 64 + N*width bytes; anything else is "truncated" or "trailing bytes".
//  - Files are written to "<name>.tmp.<pid>" and renamed into place only once complete and fsynced,
//    so a reader never sees a half-written shard under the final name.
//  - Readers map the file read-only (mmap, PROT_READ, MAP_SHARED); the mapping lives as long as
//    the TokenShard (and every copy of it) does.
//  - Every failure throws modu::Error naming the file and what was expected.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace modu::data {

inline constexpr char kTokenShardMagic[8] = {'M', 'O', 'D', 'U', 'T', 'O', 'K', 'S'};
inline constexpr uint32_t kTokenShardVersion = 1;
inline constexpr uint64_t kTokenShardHeaderBytes = 64;
inline constexpr uint32_t kNoEot = 0xFFFFFFFFu;

// FNV-1a 64 over bytes, continuing from `h` (start with kFnvOffset).
inline constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ull;
uint64_t fnv1a64(const void* data, size_t n, uint64_t h = kFnvOffset);

// Token width for a vocabulary: 2 when every id fits u16 (vocab <= 65536), else 4.
inline uint32_t token_width_for_vocab(uint64_t vocab_size) { return vocab_size <= 65536 ? 2 : 4; }

struct TokenShardHeader {
  uint32_t version = kTokenShardVersion;
  uint32_t width = 2;
  uint64_t count = 0;
  uint32_t vocab_size = 0;
  uint32_t eot_id = kNoEot;
  uint64_t body_checksum = 0;
};

// Serialises / parses the 64-byte header. parse checks magic, version, header checksum and width;
// `what` (the file name) goes into error messages.
void encode_token_shard_header(const TokenShardHeader& h, uint8_t out[64]);
TokenShardHeader decode_token_shard_header(const uint8_t in[64], const std::string& what);

// Writes one shard incrementally: tokens go straight to "<path>.tmp.<pid>"; commit() patches the
// header, fsyncs and renames over `path`. Destroying an uncommitted writer removes the temp file.
class TokenShardWriter {
 public:
  // Fails if `path` exists and overwrite is false.
  TokenShardWriter(std::string path, uint32_t vocab_size, uint32_t eot_id, bool overwrite = false);
  ~TokenShardWriter();
  TokenShardWriter(const TokenShardWriter&) = delete;
  TokenShardWriter& operator=(const TokenShardWriter&) = delete;

  // Appends tokens; each must be < vocab_size (checked).
  void append(std::span<const int32_t> tokens);
  uint64_t count() const { return count_; }
  const std::string& path() const { return path_; }
  // Finishes the file and renames it into place. The writer is done afterwards.
  void commit();

 private:
  void flush_buffer();
  std::string path_, tmp_path_;
  int fd_ = -1;
  bool overwrite_;
  TokenShardHeader header_;
  uint64_t count_ = 0;
  uint64_t checksum_ = kFnvOffset;
  std::vector<uint8_t> buffer_;
};

// "train_000000.bin": the file name of shard `index` of a split in a shard-set directory.
std::string token_shard_file_name(const std::string& split, uint64_t index);

// Writes a whole shard in one go (tests, small tools).
void write_token_shard(const std::string& path, std::span<const int32_t> tokens, uint32_t vocab_size,
                       uint32_t eot_id = kNoEot, bool overwrite = false);

// A read-only, memory-mapped shard. Cheap to copy (shares the mapping).
class TokenShard {
 public:
  TokenShard() = default;
  // Maps `path` and validates its header and size. Throws modu::Error naming the file.
  static TokenShard open(const std::string& path);

  const std::string& path() const;
  const TokenShardHeader& header() const;
  uint64_t size() const { return header().count; }
  uint32_t vocab_size() const { return header().vocab_size; }
  uint32_t width() const { return header().width; }

  uint32_t token(uint64_t i) const;  // unchecked beyond a debug assert; use read() for ranges
  // Copies tokens [begin, begin + n) into out as int64 (checked: the range must be in the shard).
  void read(uint64_t begin, uint64_t n, int64_t* out) const;
  std::vector<int32_t> read_all() const;
  // Recomputes the body checksum; throws naming the file on a mismatch.
  void verify_body() const;

 private:
  struct Mapping;
  std::shared_ptr<const Mapping> map_;
};

}  // namespace modu::data
