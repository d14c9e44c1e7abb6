// Tests of the token shard format (data/token_shard.h) and shard sets (data/token_dataset.h):
// round trips for u16 and u32 tokens, and that every kind of damage (magic, version, header,
// truncation, trailing bytes, body) is an error naming the file and what was expected.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <cstring>
#include <numeric>

#include "core/check.h"
#include "data/token_dataset.h"
#include "data/token_shard.h"

namespace fs = std::filesystem;
using namespace modu::data;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() /
           ("modu_shard_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

// Runs f, expects a modu::Error whose message contains every needle.
template <class F>
void expect_error(F&& f, std::initializer_list<std::string> needles) {
  try {
    f();
    ADD_FAILURE() << "expected an error";
  } catch (const modu::Error& e) {
    const std::string msg = e.what();
    for (const std::string& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
  }
}

std::vector<int32_t> iota_tokens(size_t n, int32_t mod) {
  std::vector<int32_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<int32_t>((i * 7919 + 13) % mod);
  return v;
}

void patch(const std::string& path, size_t offset, const std::string& bytes) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace

TEST(TokenShard, RoundTripU16) {
  TempDir d;
  const auto tokens = iota_tokens(10007, 50257);
  write_token_shard(d.file("a.bin"), tokens, 50257, 50256);
  EXPECT_EQ(fs::file_size(d.file("a.bin")), 64 + 2 * tokens.size());
  TokenShard s = TokenShard::open(d.file("a.bin"));
  EXPECT_EQ(s.size(), tokens.size());
  EXPECT_EQ(s.width(), 2u);
  EXPECT_EQ(s.vocab_size(), 50257u);
  EXPECT_EQ(s.header().eot_id, 50256u);
  EXPECT_EQ(s.read_all(), tokens);
  s.verify_body();
  std::vector<int64_t> part(100);
  s.read(5000, 100, part.data());
  for (size_t i = 0; i < 100; ++i) EXPECT_EQ(part[i], tokens[5000 + i]);
}

TEST(TokenShard, RoundTripU32ForLargeVocab) {
  TempDir d;
  const auto tokens = iota_tokens(999, 100000);
  write_token_shard(d.file("a.bin"), tokens, 100000);
  TokenShard s = TokenShard::open(d.file("a.bin"));
  EXPECT_EQ(s.width(), 4u);
  EXPECT_EQ(s.header().eot_id, kNoEot);
  EXPECT_EQ(s.read_all(), tokens);
  // 65536 still fits u16.
  write_token_shard(d.file("b.bin"), std::vector<int32_t>{65535, 0}, 65536);
  EXPECT_EQ(TokenShard::open(d.file("b.bin")).width(), 2u);
}

TEST(TokenShard, HeaderLayoutIsAsDocumented) {
  TempDir d;
  write_token_shard(d.file("a.bin"), std::vector<int32_t>{1, 2, 3}, 300, 299);
  std::ifstream f(d.file("a.bin"), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  ASSERT_EQ(bytes.size(), 64u + 6u);
  EXPECT_EQ(bytes.substr(0, 8), "MODUTOKS");
  auto u32 = [&](size_t o) { uint32_t v; std::memcpy(&v, bytes.data() + o, 4); return v; };
  auto u64 = [&](size_t o) { uint64_t v; std::memcpy(&v, bytes.data() + o, 8); return v; };
  EXPECT_EQ(u32(8), 1u);     // version
  EXPECT_EQ(u32(12), 2u);    // width
  EXPECT_EQ(u64(16), 3u);    // count
  EXPECT_EQ(u32(24), 300u);  // vocab
  EXPECT_EQ(u32(28), 299u);  // eot
  EXPECT_EQ(u64(32), fnv1a64(bytes.data() + 64, 6));
  EXPECT_EQ(u64(40), 0u);
  EXPECT_EQ(u64(48), 0u);
  EXPECT_EQ(u64(56), fnv1a64(bytes.data(), 56));
  EXPECT_EQ(static_cast<uint8_t>(bytes[64]), 1);
  EXPECT_EQ(static_cast<uint8_t>(bytes[66]), 2);
}

TEST(TokenShard, WrongMagicNamesFileAndExpectation) {
  TempDir d;
  write_token_shard(d.file("a.bin"), iota_tokens(10, 100), 100);
  patch(d.file("a.bin"), 0, "GARBAGE!");
  expect_error([&] { TokenShard::open(d.file("a.bin")); },
               {d.file("a.bin"), "expected magic \"MODUTOKS\"", "GARBAGE!"});
}

TEST(TokenShard, TruncatedBodyNamesFileAndSizes) {
  TempDir d;
  write_token_shard(d.file("a.bin"), iota_tokens(100, 1000), 1000);
  fs::resize_file(d.file("a.bin"), 64 + 150);
  expect_error([&] { TokenShard::open(d.file("a.bin")); },
               {d.file("a.bin"), "truncated", "100 tokens", "200 body bytes", "has 150"});
  fs::resize_file(d.file("a.bin"), 10);
  expect_error([&] { TokenShard::open(d.file("a.bin")); }, {d.file("a.bin"), "truncated", "64-byte header"});
}

TEST(TokenShard, TrailingBytesAndCorruptHeaderAndVersion) {
  TempDir d;
  write_token_shard(d.file("a.bin"), iota_tokens(10, 1000), 1000);
  {
    std::ofstream f(d.file("a.bin"), std::ios::binary | std::ios::app);
    f << "xx";
  }
  expect_error([&] { TokenShard::open(d.file("a.bin")); }, {d.file("a.bin"), "2 trailing bytes"});

  write_token_shard(d.file("b.bin"), iota_tokens(10, 1000), 1000);
  patch(d.file("b.bin"), 16, std::string("\x05", 1));  // token count 10 -> 5: checksum catches it
  expect_error([&] { TokenShard::open(d.file("b.bin")); }, {d.file("b.bin"), "header checksum mismatch"});

  write_token_shard(d.file("c.bin"), iota_tokens(10, 1000), 1000);
  patch(d.file("c.bin"), 8, std::string("\x07", 1));  // version 7
  expect_error([&] { TokenShard::open(d.file("c.bin")); }, {d.file("c.bin"), "version 7", "expected 1"});
}

TEST(TokenShard, CorruptBodyIsCaught) {
  TempDir d;
  write_token_shard(d.file("a.bin"), iota_tokens(10, 1000), 1000);
  patch(d.file("a.bin"), 64 + 4, std::string("\xff\xff", 2));  // token 2 -> 65535 >= vocab 1000
  TokenShard s = TokenShard::open(d.file("a.bin"));            // the header is fine
  expect_error([&] { s.verify_body(); }, {d.file("a.bin"), "body checksum mismatch"});
  std::vector<int64_t> out(10);
  expect_error([&] { s.read(0, 10, out.data()); }, {d.file("a.bin"), "token 2 is 65535", "vocabulary of 1000"});
}

TEST(TokenShard, WriterRefusesOverwriteAndCleansUp) {
  TempDir d;
  write_token_shard(d.file("a.bin"), iota_tokens(10, 100), 100);
  expect_error([&] { write_token_shard(d.file("a.bin"), iota_tokens(5, 100), 100); },
               {d.file("a.bin"), "refusing to overwrite"});
  EXPECT_EQ(TokenShard::open(d.file("a.bin")).size(), 10u);
  write_token_shard(d.file("a.bin"), iota_tokens(5, 100), 100, kNoEot, /*overwrite=*/true);
  EXPECT_EQ(TokenShard::open(d.file("a.bin")).size(), 5u);
  {
    TokenShardWriter w(d.file("b.bin"), 100, kNoEot);
    w.append(iota_tokens(5, 100));
    expect_error([&] { w.append(std::vector<int32_t>{100}); }, {"token 100 outside the vocabulary of 100"});
  }  // not committed: nothing left behind
  EXPECT_FALSE(fs::exists(d.file("b.bin")));
  for (const auto& e : fs::directory_iterator(d.path)) EXPECT_EQ(e.path().filename(), "a.bin");
}

TEST(TokenShardSet, WriterRotatesShardsAndStreamConcatenates) {
  TempDir d;
  const auto tokens = iota_tokens(2500, 5000);
  TokenShardSetWriter w(d.path.string(), "train", 5000, 4999, 1000, false);
  w.append(std::span<const int32_t>(tokens).first(700));
  w.append(std::span<const int32_t>(tokens).subspan(700));
  const auto shards = w.finish();
  ASSERT_EQ(shards.size(), 3u);
  EXPECT_EQ(shards[0].file, "train_000000.bin");
  EXPECT_EQ(shards[2].file, "train_000002.bin");
  EXPECT_EQ(shards[2].tokens, 500u);
  ShardSetMeta meta;
  meta.tokenizer = "test";
  meta.vocab_size = 5000;
  meta.eot_id = 4999;
  meta.shard_tokens = 1000;
  meta.splits.emplace_back("train", shards);
  write_shard_set_meta(d.path.string(), meta);

  TokenShardSet set = TokenShardSet::open(d.path.string(), "train");
  EXPECT_EQ(set.size(), 2500u);
  EXPECT_EQ(set.shards().size(), 3u);
  std::vector<int64_t> all(2500);
  set.read(0, 2500, all.data());
  for (size_t i = 0; i < all.size(); ++i) ASSERT_EQ(all[i], tokens[i]);
  std::vector<int64_t> across(10);
  set.read(995, 10, across.data());  // spans shards 0 and 1
  for (size_t i = 0; i < 10; ++i) EXPECT_EQ(across[i], tokens[995 + i]);
  expect_error([&] { set.read(2495, 10, across.data()); }, {"past the end"});

  // The same split as "DIR/train", and the same shards through a glob.
  EXPECT_EQ(TokenShardSet::open(d.file("train"), "ignored").size(), 2500u);
  expect_error([&] { TokenShardSet::open(d.file("valid")); }, {"meta.json", "no \"valid\" split"});
  EXPECT_EQ(TokenShardSet::open(d.file("train_*.bin")).size(), 2500u);
  // No val split in this set.
  expect_error([&] { TokenShardSet::open(d.path.string(), "val"); }, {"meta.json", "no \"val\" split", "train"});
  // A missing shard listed in meta.json.
  fs::remove(d.file("train_000001.bin"));
  expect_error([&] { TokenShardSet::open(d.path.string(), "train"); }, {"train_000001.bin", "missing"});
  // A directory without meta.json is not a set.
  fs::remove(d.file("meta.json"));
  expect_error([&] { TokenShardSet::open(d.path.string(), "train"); }, {"meta.json", "missing"});
  expect_error([&] { TokenShardSet::open(d.file("nothing_*.bin")); }, {"nothing_*.bin", "no token shard matches"});
}

TEST(TokenShardSet, MixedVocabulariesAreRejected) {
  TempDir d;
  write_token_shard(d.file("x_000000.bin"), iota_tokens(10, 100), 100);
  write_token_shard(d.file("x_000001.bin"), iota_tokens(10, 100), 200);
  expect_error([&] { TokenShardSet::open(d.file("x_*.bin")); }, {"x_000001.bin", "vocab size 200", "100"});
}
