// checkpoint/xxhash64.h — XXH64 (xxHash, 64-bit variant; the Debian libxxhash library), used for every
// checksum a checkpoint carries, plus file hashing and the hex form the manifest stores.
//
// Invariants: Xxh64 fed a byte sequence in any number of update() pieces gives the same digest as
// xxh64() over the concatenation (the reader relies on this to hash a strided region row by row).
// The tests pin the digests to the reference library's outputs. Seed 0 everywhere in checkpoints.
#pragma once

#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace modu::checkpoint {

class Xxh64 {
 public:
  explicit Xxh64(uint64_t seed = 0);
  ~Xxh64();
  Xxh64(const Xxh64&) = delete;
  Xxh64& operator=(const Xxh64&) = delete;
  void update(const void* data, size_t len);
  uint64_t digest() const;

 private:
  XXH64_state_t* state_;
};

uint64_t xxh64(const void* data, size_t len, uint64_t seed = 0);

// Digest and size of a whole file, read in large blocks. Throws modu::Error naming the file on I/O errors.
uint64_t xxh64_file(const std::filesystem::path& path, uint64_t* size_out = nullptr);

// 16 lowercase hex digits, and the strict inverse (exactly 16 hex digits, either case).
std::string hex64(uint64_t v);
bool parse_hex64(std::string_view text, uint64_t* out);

}  // namespace modu::checkpoint
