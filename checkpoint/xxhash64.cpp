// checkpoint/xxhash64.cpp — XXH64 one-shot and streaming, and file hashing (see xxhash64.h).
//
// The algorithm: four 64-bit lanes consume 32-byte stripes (acc = rotl(acc + lane * P2, 31) * P1); the
// lanes are merged, the length added, the tail folded in 8-, 4- and 1-byte steps, then avalanched.
// Input words are read little-endian regardless of the host.
#include "checkpoint/xxhash64.h"

#include <fcntl.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstring>
#include <vector>

#include "core/check.h"

namespace modu::checkpoint {
namespace {

constexpr uint64_t P1 = 0x9E3779B185EBCA87ull;
constexpr uint64_t P2 = 0xC2B2AE3D27D4EB4Full;
constexpr uint64_t P3 = 0x165667B19E3779F9ull;
constexpr uint64_t P4 = 0x85EBCA77C2B2AE63ull;
constexpr uint64_t P5 = 0x27D4EB2F165667C5ull;

inline uint64_t load64(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
inline uint32_t load32(const unsigned char* p) {
  return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24);
}
inline uint64_t lane_step(uint64_t acc, uint64_t lane) {
  acc += lane * P2;
  acc = std::rotl(acc, 31);
  return acc * P1;
}
inline uint64_t merge_lane(uint64_t h, uint64_t acc) {
  h ^= lane_step(0, acc);
  return h * P1 + P4;
}

// Consumes whole 32-byte stripes from p; returns the bytes consumed.
size_t consume_stripes(uint64_t acc[4], const unsigned char* p, size_t len) {
  size_t done = 0;
  for (; done + 32 <= len; done += 32) {
    acc[0] = lane_step(acc[0], load64(p + done));
    acc[1] = lane_step(acc[1], load64(p + done + 8));
    acc[2] = lane_step(acc[2], load64(p + done + 16));
    acc[3] = lane_step(acc[3], load64(p + done + 24));
  }
  return done;
}

uint64_t finish(const uint64_t acc[4], uint64_t seed, uint64_t total, const unsigned char* tail,
                size_t tail_len) {
  uint64_t h;
  if (total >= 32) {
    h = std::rotl(acc[0], 1) + std::rotl(acc[1], 7) + std::rotl(acc[2], 12) + std::rotl(acc[3], 18);
    for (int i = 0; i < 4; ++i) h = merge_lane(h, acc[i]);
  } else {
    h = seed + P5;
  }
  h += total;
  size_t i = 0;
  for (; i + 8 <= tail_len; i += 8) {
    h ^= lane_step(0, load64(tail + i));
    h = std::rotl(h, 27) * P1 + P4;
  }
  if (i + 4 <= tail_len) {
    h ^= uint64_t(load32(tail + i)) * P1;
    h = std::rotl(h, 23) * P2 + P3;
    i += 4;
  }
  for (; i < tail_len; ++i) {
    h ^= uint64_t(tail[i]) * P5;
    h = std::rotl(h, 11) * P1;
  }
  h ^= h >> 33;
  h *= P2;
  h ^= h >> 29;
  h *= P3;
  h ^= h >> 32;
  return h;
}

}  // namespace

Xxh64::Xxh64(uint64_t seed) : seed_(seed) {
  acc_[0] = seed + P1 + P2;
  acc_[1] = seed + P2;
  acc_[2] = seed;
  acc_[3] = seed - P1;
}

void Xxh64::update(const void* data, size_t len) {
  if (len == 0) return;  // data may be null for an empty tensor
  const auto* p = static_cast<const unsigned char*>(data);
  total_ += len;
  if (buf_len_ > 0) {
    size_t take = std::min(len, sizeof(buf_) - buf_len_);
    std::memcpy(buf_ + buf_len_, p, take);
    buf_len_ += take;
    p += take;
    len -= take;
    if (buf_len_ < sizeof(buf_)) return;
    consume_stripes(acc_, buf_, sizeof(buf_));
    buf_len_ = 0;
  }
  size_t done = consume_stripes(acc_, p, len);
  std::memcpy(buf_, p + done, len - done);
  buf_len_ = len - done;
}

uint64_t Xxh64::digest() const { return finish(acc_, seed_, total_, buf_, buf_len_); }

uint64_t xxh64(const void* data, size_t len, uint64_t seed) {
  Xxh64 h(seed);
  h.update(data, len);
  return h.digest();
}

uint64_t xxh64_file(const std::filesystem::path& path, uint64_t* size_out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  MODU_CHECK(fd >= 0, path.string(), ": cannot open to checksum it: ", std::strerror(errno));
  std::vector<unsigned char> block(size_t(8) << 20);
  Xxh64 h;
  uint64_t size = 0;
  for (;;) {
    ssize_t n = ::read(fd, block.data(), block.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      MODU_FAIL(path.string(), ": read failed while checksumming: ", std::strerror(err));
    }
    if (n == 0) break;
    h.update(block.data(), size_t(n));
    size += uint64_t(n);
  }
  ::close(fd);
  if (size_out) *size_out = size;
  return h.digest();
}

std::string hex64(uint64_t v) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s(16, '0');
  for (int i = 15; i >= 0; --i, v >>= 4) s[i] = kDigits[v & 0xf];
  return s;
}

bool parse_hex64(std::string_view text, uint64_t* out) {
  if (text.size() != 16) return false;
  uint64_t v = 0;
  for (char c : text) {
    int d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    else return false;
    v = (v << 4) | uint64_t(d);
  }
  *out = v;
  return true;
}

}  // namespace modu::checkpoint
