// Token shard writer and memory-mapped reader; the byte layout is documented in token_shard.h.
// Invariant: the final file name only ever holds a complete, fsynced shard (tmp + rename).
#include "data/token_shard.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cassert>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "core/check.h"

static_assert(std::endian::native == std::endian::little,
              "token shards are little-endian and read in place; a big-endian host needs byte swaps");

namespace modu::data {
namespace {

std::string errno_text() { return std::strerror(errno); }

void put_u32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
void put_u64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }
uint32_t get_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
uint64_t get_u64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

void write_all(int fd, const void* data, size_t n, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    MODU_CHECK(w > 0, path, ": write failed: ", errno_text());
    p += w;
    n -= static_cast<size_t>(w);
  }
}

// fsync of the directory holding `path`, so the rename itself is durable.
void sync_parent_dir(const std::string& path) {
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (parent.empty()) parent = ".";
  int dfd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace

uint64_t fnv1a64(const void* data, size_t n, uint64_t h) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

void encode_token_shard_header(const TokenShardHeader& h, uint8_t out[64]) {
  std::memset(out, 0, 64);
  std::memcpy(out, kTokenShardMagic, 8);
  put_u32(out + 8, h.version);
  put_u32(out + 12, h.width);
  put_u64(out + 16, h.count);
  put_u32(out + 24, h.vocab_size);
  put_u32(out + 28, h.eot_id);
  put_u64(out + 32, h.body_checksum);
  put_u64(out + 56, fnv1a64(out, 56));
}

TokenShardHeader decode_token_shard_header(const uint8_t in[64], const std::string& what) {
  if (std::memcmp(in, kTokenShardMagic, 8) != 0) {
    std::string got;
    for (int i = 0; i < 8; ++i) {
      char c = static_cast<char>(in[i]);
      got += (c >= 0x20 && c < 0x7f) ? c : '?';
    }
    MODU_FAIL(what, ": not a modu token shard: expected magic \"MODUTOKS\" at byte 0, found \"", got,
              "\"");
  }
  TokenShardHeader h;
  h.version = get_u32(in + 8);
  MODU_CHECK(h.version == kTokenShardVersion, what, ": token shard format version ", h.version,
             ", expected ", kTokenShardVersion, " (written by a different modu?)");
  const uint64_t stored = get_u64(in + 56), computed = fnv1a64(in, 56);
  MODU_CHECK(stored == computed, what, ": token shard header checksum mismatch (stored ", stored,
             ", computed ", computed, "): the header is corrupt");
  h.width = get_u32(in + 12);
  h.count = get_u64(in + 16);
  h.vocab_size = get_u32(in + 24);
  h.eot_id = get_u32(in + 28);
  h.body_checksum = get_u64(in + 32);
  MODU_CHECK(h.width == 2 || h.width == 4, what, ": token width ", h.width,
             " bytes, expected 2 (u16) or 4 (u32)");
  MODU_CHECK(h.vocab_size > 0, what, ": vocab size 0 in the header");
  MODU_CHECK(h.width == 4 || h.vocab_size <= 65536, what, ": vocab size ", h.vocab_size,
             " does not fit u16 tokens");
  MODU_CHECK(h.eot_id == kNoEot || h.eot_id < h.vocab_size, what, ": <|endoftext|> id ", h.eot_id,
             " outside the vocabulary of ", h.vocab_size);
  return h;
}

// ---- writer -----------------------------------------------------------------------------------

TokenShardWriter::TokenShardWriter(std::string path, uint32_t vocab_size, uint32_t eot_id,
                                   bool overwrite)
    : path_(std::move(path)), overwrite_(overwrite) {
  MODU_CHECK(vocab_size > 0, path_, ": vocab size must be positive");
  MODU_CHECK(overwrite_ || !std::filesystem::exists(path_), path_,
             ": already exists; refusing to overwrite it");
  header_.width = token_width_for_vocab(vocab_size);
  header_.vocab_size = vocab_size;
  header_.eot_id = eot_id;
  tmp_path_ = path_ + ".tmp." + std::to_string(::getpid());
  fd_ = ::open(tmp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  MODU_CHECK(fd_ >= 0, tmp_path_, ": cannot create: ", errno_text());
  uint8_t zero[kTokenShardHeaderBytes] = {};
  write_all(fd_, zero, sizeof zero, tmp_path_);
  buffer_.reserve(1 << 20);
}

TokenShardWriter::~TokenShardWriter() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_path_.c_str());
  }
}

void TokenShardWriter::flush_buffer() {
  if (buffer_.empty()) return;
  checksum_ = fnv1a64(buffer_.data(), buffer_.size(), checksum_);
  write_all(fd_, buffer_.data(), buffer_.size(), tmp_path_);
  buffer_.clear();
}

void TokenShardWriter::append(std::span<const int32_t> tokens) {
  MODU_CHECK(fd_ >= 0, path_, ": append after commit");
  const uint32_t w = header_.width;
  for (int32_t t : tokens) {
    MODU_CHECK(t >= 0 && static_cast<uint32_t>(t) < header_.vocab_size, path_, ": token ", t,
               " outside the vocabulary of ", header_.vocab_size);
    const uint32_t v = static_cast<uint32_t>(t);
    uint8_t b[4];
    std::memcpy(b, &v, 4);  // little-endian: the low `w` bytes are the value
    buffer_.insert(buffer_.end(), b, b + w);
    if (buffer_.size() >= (1u << 20)) flush_buffer();
  }
  count_ += tokens.size();
}

void TokenShardWriter::commit() {
  MODU_CHECK(fd_ >= 0, path_, ": commit called twice");
  flush_buffer();
  header_.count = count_;
  header_.body_checksum = checksum_;
  uint8_t head[kTokenShardHeaderBytes];
  encode_token_shard_header(header_, head);
  MODU_CHECK(::lseek(fd_, 0, SEEK_SET) == 0, tmp_path_, ": seek failed: ", errno_text());
  write_all(fd_, head, sizeof head, tmp_path_);
  MODU_CHECK(::fsync(fd_) == 0, tmp_path_, ": fsync failed: ", errno_text());
  MODU_CHECK(::close(fd_) == 0, tmp_path_, ": close failed: ", errno_text());
  fd_ = -1;
  if (!overwrite_ && std::filesystem::exists(path_)) {
    ::unlink(tmp_path_.c_str());
    MODU_FAIL(path_, ": appeared while writing; refusing to overwrite it");
  }
  if (::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    std::string why = errno_text();
    ::unlink(tmp_path_.c_str());
    MODU_FAIL(path_, ": rename from ", tmp_path_, " failed: ", why);
  }
  sync_parent_dir(path_);
}

std::string token_shard_file_name(const std::string& split, uint64_t index) {
  char num[32];
  std::snprintf(num, sizeof num, "%06llu", static_cast<unsigned long long>(index));
  return split + "_" + num + ".bin";
}

void write_token_shard(const std::string& path, std::span<const int32_t> tokens, uint32_t vocab_size,
                       uint32_t eot_id, bool overwrite) {
  TokenShardWriter w(path, vocab_size, eot_id, overwrite);
  w.append(tokens);
  w.commit();
}

// ---- reader -----------------------------------------------------------------------------------

struct TokenShard::Mapping {
  std::string path;
  TokenShardHeader header;
  const uint8_t* base = nullptr;  // whole file
  size_t length = 0;
  ~Mapping() {
    if (base) ::munmap(const_cast<uint8_t*>(base), length);
  }
  const uint8_t* body() const { return base + kTokenShardHeaderBytes; }
};

TokenShard TokenShard::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  MODU_CHECK(fd >= 0, path, ": cannot open token shard: ", errno_text());
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    std::string why = errno_text();
    ::close(fd);
    MODU_FAIL(path, ": stat failed: ", why);
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < kTokenShardHeaderBytes) {
    ::close(fd);
    MODU_FAIL(path, ": truncated token shard: ", size, " bytes, expected at least the ",
              kTokenShardHeaderBytes, "-byte header");
  }
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  std::string why = p == MAP_FAILED ? errno_text() : "";
  ::close(fd);  // the mapping keeps the file alive
  MODU_CHECK(p != MAP_FAILED, path, ": mmap failed: ", why);
  auto m = std::make_shared<Mapping>();
  m->path = path;
  m->base = static_cast<const uint8_t*>(p);
  m->length = size;
  m->header = decode_token_shard_header(m->base, path);
  const TokenShardHeader& h = m->header;
  const uint64_t body = size - kTokenShardHeaderBytes;
  MODU_CHECK(h.count <= body / h.width, path, ": truncated token shard: the header promises ",
             h.count, " tokens x ", h.width, " bytes = ", h.count * h.width,
             " body bytes, the file has ", body);
  const uint64_t expected = kTokenShardHeaderBytes + h.count * h.width;
  MODU_CHECK(size == expected, path, ": ", size - expected,
             " trailing bytes after the last token (expected a file of exactly ", expected, " bytes)");
  ::madvise(p, size, MADV_WILLNEED);
  TokenShard s;
  s.map_ = std::move(m);
  return s;
}

const std::string& TokenShard::path() const {
  MODU_CHECK(map_, "TokenShard: not opened");
  return map_->path;
}
const TokenShardHeader& TokenShard::header() const {
  MODU_CHECK(map_, "TokenShard: not opened");
  return map_->header;
}

uint32_t TokenShard::token(uint64_t i) const {
  assert(map_ && i < map_->header.count);
  const uint8_t* b = map_->body();
  if (map_->header.width == 2) {
    uint16_t v;
    std::memcpy(&v, b + 2 * i, 2);
    return v;
  }
  uint32_t v;
  std::memcpy(&v, b + 4 * i, 4);
  return v;
}

void TokenShard::read(uint64_t begin, uint64_t n, int64_t* out) const {
  const TokenShardHeader& h = header();
  MODU_CHECK(begin <= h.count && n <= h.count - begin, map_->path, ": read of tokens [", begin, ", ",
             begin + n, ") past the end (", h.count, " tokens)");
  const uint8_t* b = map_->body();
  uint32_t max_seen = 0;
  if (h.width == 2) {
    for (uint64_t i = 0; i < n; ++i) {
      uint16_t v;
      std::memcpy(&v, b + 2 * (begin + i), 2);
      out[i] = v;
      max_seen = std::max<uint32_t>(max_seen, v);
    }
  } else {
    for (uint64_t i = 0; i < n; ++i) {
      uint32_t v;
      std::memcpy(&v, b + 4 * (begin + i), 4);
      out[i] = v;
      max_seen = std::max(max_seen, v);
    }
  }
  if (max_seen >= h.vocab_size) [[unlikely]] {
    for (uint64_t i = 0; i < n; ++i) {
      MODU_CHECK(out[i] < h.vocab_size, map_->path, ": token ", begin + i, " is ", out[i],
                 ", outside the vocabulary of ", h.vocab_size, " (corrupt body)");
    }
  }
}

std::vector<int32_t> TokenShard::read_all() const {
  std::vector<int32_t> out(size());
  for (uint64_t i = 0; i < out.size(); ++i) out[i] = static_cast<int32_t>(token(i));
  return out;
}

void TokenShard::verify_body() const {
  const TokenShardHeader& h = header();
  const uint64_t c = fnv1a64(map_->body(), h.count * h.width);
  MODU_CHECK(c == h.body_checksum, map_->path, ": token body checksum mismatch (header says ",
             h.body_checksum, ", body hashes to ", c, "): the tokens are corrupt");
  for (uint64_t i = 0; i < h.count; ++i) {
    MODU_CHECK(token(i) < h.vocab_size, map_->path, ": token ", i, " is ", token(i),
               ", outside the vocabulary of ", h.vocab_size);
  }
}

}  // namespace modu::data
