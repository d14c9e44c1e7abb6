// checkpoint/xxhash64.cpp — XXH64 one-shot and streaming over libxxhash, file hashing, hex forms
// (see xxhash64.h).
#include "checkpoint/xxhash64.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "core/check.h"

namespace modu::checkpoint {

Xxh64::Xxh64(uint64_t seed) : state_(XXH64_createState()) {
  MODU_CHECK(state_ != nullptr, "xxh64: out of memory for the hash state");
  XXH64_reset(state_, seed);
}

Xxh64::~Xxh64() { XXH64_freeState(state_); }

void Xxh64::update(const void* data, size_t len) {
  if (len) XXH64_update(state_, data, len);
}

uint64_t Xxh64::digest() const { return XXH64_digest(state_); }

uint64_t xxh64(const void* data, size_t len, uint64_t seed) { return XXH64(len ? data : "", len, seed); }

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
