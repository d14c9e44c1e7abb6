// tests/checkpoint/test_checkpoint.cpp — the checkpoint layer: bit-exact round trips of every dtype,
// the on-disk layout and manifest schema, refusal of damaged or uncommitted checkpoints (each error
// naming the file), the commit protocol under injected failures at every step, resharding reads,
// metadata round trips, retention, and XXH64 against the reference library's digests.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <set>

#include "checkpoint/checkpoint.h"
#include "checkpoint/xxhash64.h"
#include "core/rng.h"
#include "core/tensor.h"

namespace modu::checkpoint {
namespace {

// ---- helpers ----------------------------------------------------------------------------------------

class TempRoot {
 public:
  TempRoot() {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() /
            ("modu_ckpt_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempRoot() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// A tensor of `shape` whose bytes are pseudo-random bit patterns (NaN payloads, denormals, negative
// zeros... for the float types); bool elements are 0 or 1.
Tensor random_bits(const Dims& shape, DType dt, uint64_t seed) {
  Tensor t = Tensor::empty(shape, dt);
  auto* p = static_cast<unsigned char*>(t.data_ptr());
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < t.nbytes(); ++i) {
    x = splitmix64(x);
    p[i] = static_cast<unsigned char>(x >> 24);
    if (dt == DType::Bool) p[i] &= 1;
  }
  return t;
}

std::string bytes_of(const Tensor& t) {
  Tensor c = t.contiguous();
  return std::string(static_cast<const char*>(c.data_ptr()), c.nbytes());
}

void expect_bit_equal(const Tensor& a, const Tensor& b, const std::string& what) {
  ASSERT_EQ(a.dtype(), b.dtype()) << what;
  ASSERT_EQ(a.shape(), b.shape()) << what;
  EXPECT_TRUE(bytes_of(a) == bytes_of(b)) << what << ": bytes differ";
}

// The message of the modu::Error `fn` throws; fails the test when it does not throw.
std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw a non-modu exception: " << e.what();
    return e.what();
  }
  ADD_FAILURE() << "expected a modu::Error, nothing was thrown";
  return {};
}

std::string read_all(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}
void write_all(const fs::path& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << s;
}
void flip_byte(const fs::path& p, size_t at) {
  std::string s = read_all(p);
  ASSERT_LT(at, s.size());
  s[at] = static_cast<char>(s[at] ^ 0x10);
  write_all(p, s);
}

Tensor arange_f32(const Dims& shape) {
  std::vector<float> v(size_t(shape.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = float(i);
  return Tensor::from_vector(v, shape);
}

// The small model-like checkpoint most tests start from.
fs::path save_simple(const fs::path& root, int64_t step, float fill = 1.0f) {
  std::vector<ShardTensor> ts;
  ts.emplace_back("w", arange_f32({6, 4}) * double(fill));
  ts.emplace_back("b", Tensor::full({4}, fill));
  CommitInfo info;
  info.metadata = {{"step_note", step}};
  return save(root, step, ts, info);
}

// Bytes of every file under a folder, for "untouched" checks.
std::map<std::string, std::string> snapshot(const fs::path& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) out[fs::relative(e.path(), dir).string()] = read_all(e.path());
  return out;
}

// ---- XXH64 ------------------------------------------------------------------------------------------

TEST(Xxh64, MatchesReferenceDigests) {
  // Digests printed by the reference implementation (libxxhash 0.8.1, XXH64).
  struct Case {
    const char* text;
    uint64_t seed0, seed42;
  } cases[] = {
      {"", 0xef46db3751d8e999ull, 0x98b1582b0977e704ull},
      {"a", 0xd24ec4f1a98c6e5bull, 0x88e4fe59adf7b0ccull},
      {"abc", 0x44bc2cf5ad770999ull, 0x13c1d910702770e6ull},
      {"Nobody inspects the spammish repetition", 0xfbcea83c8a378bf1ull, 0x44582824ca1018b5ull},
      {"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdefXYZ", 0x5b15f946643395e4ull,
       0xca0b21e62edaece7ull},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(xxh64(c.text, std::strlen(c.text), 0), c.seed0) << c.text;
    EXPECT_EQ(xxh64(c.text, std::strlen(c.text), 42), c.seed42) << c.text;
  }
  unsigned char bin[1000];
  for (int i = 0; i < 1000; ++i) bin[i] = static_cast<unsigned char>(i * 31 + 7);
  EXPECT_EQ(xxh64(bin, sizeof(bin)), 0x99594f4828043d35ull);
}

TEST(Xxh64, StreamingEqualsOneShotAtEverySplit) {
  unsigned char bin[300];
  for (int i = 0; i < 300; ++i) bin[i] = static_cast<unsigned char>(i * 131 + 3);
  for (size_t len : {0, 1, 7, 31, 32, 33, 64, 100, 300}) {
    const uint64_t want = xxh64(bin, len);
    for (size_t a = 0; a <= len; a += 1 + len / 17)
      for (size_t b = a; b <= len; b += 1 + len / 13) {
        Xxh64 h;
        h.update(bin, a);
        h.update(bin + a, b - a);
        h.update(bin + b, len - b);
        ASSERT_EQ(h.digest(), want) << "len " << len << " splits " << a << "," << b;
      }
  }
  uint64_t v = 0;
  EXPECT_TRUE(parse_hex64(hex64(0x0123456789abcdefull), &v));
  EXPECT_EQ(v, 0x0123456789abcdefull);
  EXPECT_FALSE(parse_hex64("0123", &v));
  EXPECT_FALSE(parse_hex64("0123456789abcdeg", &v));
}

// ---- names ------------------------------------------------------------------------------------------

TEST(CheckpointNames, StepFolders) {
  EXPECT_EQ(step_dir_name(0), "step_00000000");
  EXPECT_EQ(step_dir_name(1234), "step_00001234");
  EXPECT_EQ(step_dir_name(123456789), "step_123456789");
  EXPECT_EQ(parse_step_dir_name("step_00001234"), 1234);
  EXPECT_EQ(parse_step_dir_name("step_123456789"), 123456789);
  EXPECT_FALSE(parse_step_dir_name("step_1234"));
  EXPECT_FALSE(parse_step_dir_name("step_012345678"));  // not canonical
  EXPECT_FALSE(parse_step_dir_name("step_00001234.tmp-77"));
  EXPECT_FALSE(parse_step_dir_name("latest"));
}

// ---- round trips ------------------------------------------------------------------------------------

TEST(Checkpoint, EveryDtypeRoundTripsBitExactly) {
  TempRoot root;
  const DType all[] = {DType::F32, DType::F64, DType::BF16, DType::F16,
                       DType::I32, DType::I64, DType::U8,   DType::Bool};
  const Dims shapes[] = {{3, 5}, {2, 3, 4}, {}, {0, 3}, {7}};
  std::vector<ShardTensor> ts;
  std::vector<Tensor> originals;
  uint64_t seed = 1;
  for (DType dt : all)
    for (const Dims& s : shapes) {
      Tensor t = random_bits(s, dt, seed++);
      originals.push_back(t);
      ts.emplace_back(std::string(dtype_name(dt)) + "/" + s.str(), t);
    }
  // A non-contiguous source is written contiguously.
  Tensor base = random_bits({4, 6}, DType::BF16, 999);
  Tensor transposed = base.t();
  ASSERT_FALSE(transposed.is_contiguous());
  ts.emplace_back("transposed", transposed);
  save(root.path(), 3, ts);

  Checkpoint ck = Checkpoint::open(root.path());
  EXPECT_EQ(ck.step(), 3);
  EXPECT_EQ(ck.world_size(), 1);
  ASSERT_EQ(ck.tensor_names().size(), ts.size());
  for (size_t i = 0; i < originals.size(); ++i) {
    const std::string& name = ts[i].name;
    EXPECT_EQ(ck.tensor_names()[i], name);  // save order
    EXPECT_EQ(ck.dtype(name), originals[i].dtype()) << name;
    EXPECT_EQ(ck.global_shape(name), originals[i].shape()) << name;
    expect_bit_equal(ck.read(name), originals[i], name);
  }
  expect_bit_equal(ck.read("transposed"), transposed.contiguous(), "transposed");
  ck.verify_all();
}

TEST(Checkpoint, FolderLayoutAndManifestSchema) {
  TempRoot root;
  CommitInfo info;
  info.layout = {{"dp", 1}, {"tp", 1}, {"pp", 1}};
  save(root.path(), 7, {ShardTensor("w", arange_f32({6, 4}))}, info, {{"rng", "r0"}});

  const fs::path dir = root.path() / "step_00000007";
  std::set<std::string> files;
  for (const auto& e : fs::directory_iterator(root.path())) files.insert(e.path().filename().string());
  EXPECT_EQ(files, (std::set<std::string>{"latest", "step_00000007"}));  // no temp folder left
  files.clear();
  for (const auto& e : fs::directory_iterator(dir)) files.insert(e.path().filename().string());
  EXPECT_EQ(files, (std::set<std::string>{"manifest.json", "shard_r000000.h5", "shard_r000000.idx.json"}));
  EXPECT_EQ(read_all(root.path() / "latest"), "step_00000007\n");

  const std::string text = read_all(dir / "manifest.json");
  EXPECT_EQ(text.rfind("{\n  \"manifest_xxh64\": \"", 0), 0u);
  json m = json::parse(text);  // plain JSON
  EXPECT_EQ(m["format"], "modu.checkpoint");
  EXPECT_EQ(m["format_version"], 1);
  EXPECT_EQ(m["step"], 7);
  EXPECT_EQ(m["world_size"], 1);
  EXPECT_EQ(m["layout"]["tp"], 1);
  ASSERT_EQ(m["shards"].size(), 1u);
  EXPECT_EQ(m["shards"][0]["file"], "shard_r000000.h5");
  EXPECT_EQ(m["shards"][0]["bytes"], fs::file_size(dir / "shard_r000000.h5"));
  EXPECT_EQ(m["shards"][0]["xxh64"], hex64(xxh64_file(dir / "shard_r000000.h5")));
  EXPECT_EQ(m["shards"][0]["state"]["rng"], "r0");
  ASSERT_EQ(m["tensors"].size(), 1u);
  const json& t = m["tensors"][0];
  EXPECT_EQ(t["name"], "w");
  EXPECT_EQ(t["dtype"], "f32");
  EXPECT_EQ(t["shape"], json({6, 4}));
  ASSERT_EQ(t["pieces"].size(), 1u);
  EXPECT_EQ(t["pieces"][0]["rank"], 0);
  EXPECT_EQ(t["pieces"][0]["dataset"], "/tensors/000000");
  EXPECT_EQ(t["pieces"][0]["offset"], json({0, 0}));
  EXPECT_EQ(t["pieces"][0]["shape"], json({6, 4}));
  Tensor w = arange_f32({6, 4});
  EXPECT_EQ(t["pieces"][0]["xxh64"], hex64(xxh64(w.data_ptr(), w.nbytes())));
}

TEST(Checkpoint, MetadataLayoutAndRankStateRoundTrip) {
  TempRoot root;
  CommitInfo info;
  info.layout = {{"world", 1}, {"mesh", {{"tp", 1}, {"dp", 1}, {"pp", 1}}}};
  info.metadata = {
      {"data", {{"global_sample", uint64_t(123456789012345ull)}}},
      {"lr_schedule", {{"kind", "cosine"}, {"warmup", 100}, {"max_lr", 6e-4}, {"min_lr", 1e-300}}},
      {"recipe", {{"name", "gpt2-124m"}, {"text", "h\u00e9llo \u2713 \"quoted\"\n"}, {"list", {1, 2.5, nullptr, true}}}},
      {"extremes", {{"u64max", std::numeric_limits<uint64_t>::max()}, {"i64min", std::numeric_limits<int64_t>::min()},
                    {"tenth", 0.1}, {"neg", -3}}},
  };
  Generator g(1234, stream_id("dropout", 0));
  g.advance(77);
  json state = {{"rng", {{"dropout", rng_state_to_json(g.state())}}}};
  save(root.path(), 10, {ShardTensor("x", Tensor::zeros({2}))}, info, state);

  Checkpoint ck = Checkpoint::open(root.path());
  EXPECT_EQ(ck.layout(), info.layout);
  EXPECT_EQ(ck.metadata(), info.metadata);
  EXPECT_EQ(ck.rank_state(0), state);
  Generator::State back = rng_state_from_json(ck.rank_state(0)["rng"]["dropout"]);
  EXPECT_EQ(back.seed, g.state().seed);
  EXPECT_EQ(back.stream, g.state().stream);
  EXPECT_EQ(back.counter, 77u);
  EXPECT_NE(error_of([&] { (void)ck.rank_state(1); }).find("1 ranks"), std::string::npos);

  // JSON has no NaN: refused, naming the field.
  CommitInfo bad;
  bad.metadata = {{"loss", std::nan("")}};
  std::string e = error_of([&] { save(root.path(), 11, {ShardTensor("x", Tensor::zeros({2}))}, bad); });
  EXPECT_NE(e.find(".loss"), std::string::npos) << e;
  EXPECT_NE(e.find("not finite"), std::string::npos) << e;
  EXPECT_FALSE(is_committed(root.path(), 11));
}

// ---- refusing damaged and uncommitted checkpoints -----------------------------------------------------

TEST(Checkpoint, TruncatedShardIsRefusedNamingTheFile) {
  TempRoot root;
  fs::path dir = save_simple(root.path(), 1);
  const fs::path shard = dir / "shard_r000000.h5";
  fs::resize_file(shard, fs::file_size(shard) - 100);
  std::string e = error_of([&] { Checkpoint::open(root.path()); });
  EXPECT_NE(e.find(shard.string()), std::string::npos) << e;
  EXPECT_NE(e.find("truncated"), std::string::npos) << e;
  // Also without hashing: the size check is always made.
  e = error_of([&] { Checkpoint::open(dir, OpenOptions{.verify = ShardVerify::Off}); });
  EXPECT_NE(e.find("truncated"), std::string::npos) << e;
}

TEST(Checkpoint, MissingShardIsRefusedNamingTheFile) {
  TempRoot root;
  fs::path dir = save_simple(root.path(), 1);
  fs::remove(dir / "shard_r000000.h5");
  std::string e = error_of([&] { Checkpoint::open(dir); });
  EXPECT_NE(e.find((dir / "shard_r000000.h5").string()), std::string::npos) << e;
  EXPECT_NE(e.find("missing"), std::string::npos) << e;
}

TEST(Checkpoint, FlippedByteInShardIsRefusedNamingTheFile) {
  TempRoot root;
  // A distinctive payload to find inside the HDF5 file.
  std::vector<uint8_t> payload(64);
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = uint8_t(0xA5 ^ (i * 7));
  fs::path dir = save(root.path(), 1, {ShardTensor("payload", Tensor::from_vector(payload, {64}))});
  const fs::path shard = dir / "shard_r000000.h5";
  std::string file = read_all(shard);
  const size_t at = file.find(std::string(payload.begin(), payload.end()));
  ASSERT_NE(at, std::string::npos);
  flip_byte(shard, at + 10);

  std::string e = error_of([&] { Checkpoint::open(root.path()); });
  EXPECT_NE(e.find(shard.string()), std::string::npos) << e;
  EXPECT_NE(e.find("checksum mismatch"), std::string::npos) << e;

  // Without the file hash at open, the piece checksum still catches it on read.
  Checkpoint ck = Checkpoint::open(root.path(), OpenOptions{.verify = ShardVerify::Off});
  e = error_of([&] { ck.read("payload"); });
  EXPECT_NE(e.find(shard.string()), std::string::npos) << e;
  EXPECT_NE(e.find("/tensors/000000"), std::string::npos) << e;
  EXPECT_NE(e.find("checksum mismatch"), std::string::npos) << e;
  e = error_of([&] { ck.verify_all(); });
  EXPECT_NE(e.find("checksum mismatch"), std::string::npos) << e;

  // Verifying on first use: open succeeds, the first read from the shard hashes the file and refuses.
  Checkpoint lazy = Checkpoint::open(root.path(), OpenOptions{.verify = ShardVerify::OnFirstUse});
  Tensor part = Tensor::empty({4}, DType::U8);
  e = error_of([&] { lazy.read("payload", part, {0}); });  // a partial read: only the file hash can tell
  EXPECT_NE(e.find(shard.string()), std::string::npos) << e;
  EXPECT_NE(e.find("checksum mismatch: contents hash"), std::string::npos) << e;
}

TEST(Checkpoint, DamagedHdf5StructureIsReportedNamingTheFile) {
  TempRoot root;
  fs::path dir = save_simple(root.path(), 1);
  const fs::path shard = dir / "shard_r000000.h5";
  // Clobber the HDF5 signature; with hashing off, the reader's own open fails and names the file.
  flip_byte(shard, 1);
  Checkpoint ck = Checkpoint::open(dir, OpenOptions{.verify = ShardVerify::Off});
  std::string e = error_of([&] { ck.read("w"); });
  EXPECT_NE(e.find(shard.string()), std::string::npos) << e;
  EXPECT_NE(e.find("HDF5"), std::string::npos) << e;
}

TEST(Checkpoint, FlippedByteInManifestIsRefusedNamingTheFile) {
  TempRoot root;
  fs::path dir = save_simple(root.path(), 1);
  const fs::path manifest = dir / "manifest.json";
  const std::string good = read_all(manifest);
  // In the checksum header, in a number, in a tensor name, and the very last byte.
  std::vector<size_t> positions = {5, 25, good.find("\"world_size\": 1") + 14, good.find("\"name\": \"w\"") + 9,
                                   good.size() - 2};
  for (size_t at : positions) {
    write_all(manifest, good);
    flip_byte(manifest, at);
    std::string e = error_of([&] { Checkpoint::open(root.path()); });
    EXPECT_NE(e.find(manifest.string()), std::string::npos) << "byte " << at << ": " << e;
    EXPECT_TRUE(e.find("checksum") != std::string::npos) << "byte " << at << ": " << e;
    EXPECT_FALSE(is_committed(root.path(), 1)) << "byte " << at;
  }
  write_all(manifest, good.substr(0, good.size() / 2));  // truncated manifest
  std::string e = error_of([&] { Checkpoint::open(dir); });
  EXPECT_NE(e.find(manifest.string()), std::string::npos) << e;
  write_all(manifest, good);
  Checkpoint::open(root.path()).verify_all();
}

TEST(Checkpoint, FormatVersionMismatchSaysWhatWasExpected) {
  TempRoot root;
  fs::path dir = save_simple(root.path(), 1);
  const fs::path manifest = dir / "manifest.json";
  std::string text = read_all(manifest);
  // Rewrite as version 2 with a correct checksum: the version check itself must refuse it.
  size_t at = text.find("\"format_version\": 1");
  ASSERT_NE(at, std::string::npos);
  text.replace(at, 19, "\"format_version\": 2");
  const std::string head = "{\n  \"manifest_xxh64\": \"";
  const size_t rest_at = head.size() + 16 + 3;
  std::string rest = text.substr(rest_at);
  text = head + hex64(xxh64(rest.data(), rest.size())) + "\",\n" + rest;
  write_all(manifest, text);
  std::string e = error_of([&] { Checkpoint::open(dir); });
  EXPECT_NE(e.find("format_version 2"), std::string::npos) << e;
  EXPECT_NE(e.find("version 1"), std::string::npos) << e;
}

TEST(Checkpoint, TempFolderWithoutManifestIsNotACheckpoint) {
  TempRoot root;
  save_simple(root.path(), 1);
  SaveOptions opt;
  opt.tag = "crashed";
  write_shard(root.path(), 2, 0, {ShardTensor("w", arange_f32({6, 4}))}, json::object(), opt);  // no commit
  const fs::path tmp = root.path() / "step_00000002.tmp-crashed";
  ASSERT_TRUE(fs::is_directory(tmp));
  std::string e = error_of([&] { Checkpoint::open(tmp); });
  EXPECT_NE(e.find((tmp / "manifest.json").string()), std::string::npos) << e;
  EXPECT_NE(e.find("never committed"), std::string::npos) << e;
  EXPECT_EQ(committed_steps(root.path()), std::vector<int64_t>{1});
  EXPECT_EQ(Checkpoint::open(root.path()).step(), 1);  // latest still the last committed one

  // A step folder without a manifest (e.g. copied by hand) is refused too.
  fs::create_directories(root.path() / "step_00000005");
  e = error_of([&] { Checkpoint::open(root.path() / "step_00000005"); });
  EXPECT_NE(e.find("step_00000005/manifest.json"), std::string::npos) << e;
  EXPECT_NE(e.find("not a committed checkpoint"), std::string::npos) << e;
  e = error_of([&] { Checkpoint::open(root.path() / "nothing_here"); });
  EXPECT_NE(e.find("does not exist"), std::string::npos) << e;
}

// ---- the commit protocol ------------------------------------------------------------------------------

TEST(Checkpoint, LatestPointsToTheLastCommitted) {
  TempRoot root;
  EXPECT_FALSE(latest_step(root.path()).has_value());
  for (int64_t s : {100, 200, 300}) {
    save_simple(root.path(), s, float(s));
    EXPECT_EQ(latest_step(root.path()), s);
  }
  Checkpoint ck = Checkpoint::open(root.path());
  EXPECT_EQ(ck.step(), 300);
  EXPECT_EQ(ck.dir(), root.path() / "step_00000300");
  expect_bit_equal(ck.read("b"), Tensor::full({4}, 300.0f), "b");
  EXPECT_EQ(Checkpoint::open(root.path() / "step_00000200").step(), 200);  // a step folder directly
  EXPECT_EQ(committed_steps(root.path()), (std::vector<int64_t>{100, 200, 300}));

  write_all(root.path() / "latest", "garbage\n");
  std::string e = error_of([&] { Checkpoint::open(root.path()); });
  EXPECT_NE(e.find("latest"), std::string::npos) << e;
  EXPECT_NE(e.find("malformed"), std::string::npos) << e;
  write_all(root.path() / "latest", "step_00000400\n");
  e = error_of([&] { Checkpoint::open(root.path()); });
  EXPECT_NE(e.find("does not exist"), std::string::npos) << e;
}

TEST(Checkpoint, FailureAtAnyPointOfASaveLeavesThePreviousCheckpointIntact) {
  const char* points[] = {"shard_written", "indexes_checked", "manifest_written", "renamed", "latest_written"};
  for (const char* point : points) {
    SCOPED_TRACE(point);
    TempRoot root;
    save_simple(root.path(), 1);
    const auto before = snapshot(root.path() / "step_00000001");

    SaveOptions opt;
    opt.tag = "t1";
    opt.fault_hook = [&](std::string_view p) {
      if (p == point) throw Error(std::string("injected crash at ") + point);
    };
    std::string e = error_of([&] { save(root.path(), 2, {ShardTensor("w", arange_f32({6, 4}) * 2.0)}, {}, {}, opt); });
    EXPECT_NE(e.find("injected crash"), std::string::npos) << e;

    EXPECT_EQ(snapshot(root.path() / "step_00000001"), before);  // byte-identical
    Checkpoint::open(root.path() / "step_00000001").verify_all();
    const bool renamed = std::string(point) == "renamed" || std::string(point) == "latest_written";
    EXPECT_EQ(latest_step(root.path()), std::string(point) == "latest_written" ? 2 : 1);
    EXPECT_EQ(committed_steps(root.path()), (renamed ? std::vector<int64_t>{1, 2} : std::vector<int64_t>{1}));
    EXPECT_EQ(Checkpoint::open(root.path()).step(), *latest_step(root.path()));
    if (std::string(point) == "manifest_written") {  // a complete manifest in a temp folder: still refused
      e = error_of([&] { Checkpoint::open(root.path() / "step_00000002.tmp-t1"); });
      EXPECT_NE(e.find("never committed"), std::string::npos) << e;
    }

    if (!renamed) {
      // The temp folder is left; a retry of the commit (same tag) completes the save.
      EXPECT_TRUE(fs::is_directory(root.path() / "step_00000002.tmp-t1"));
      opt.fault_hook = nullptr;
      commit(root.path(), 2, 1, {}, opt);
      EXPECT_EQ(latest_step(root.path()), 2);
      expect_bit_equal(Checkpoint::open(root.path()).read("w"), arange_f32({6, 4}) * 2.0, "w after retry");
    }
  }
}

TEST(Checkpoint, UnwritableTempFolderFailsWithoutTouchingTheLastCheckpoint) {
  TempRoot root;
  save_simple(root.path(), 1);
  const auto before = snapshot(root.path());
  // A plain file where the temp folder must go makes it impossible to create (works as root too).
  SaveOptions opt;
  opt.tag = "blocked";
  write_all(root.path() / "step_00000002.tmp-blocked", "not a folder");
  std::string e = error_of([&] { save(root.path(), 2, {ShardTensor("w", arange_f32({6, 4}))}, {}, {}, opt); });
  EXPECT_NE(e.find("step_00000002.tmp-blocked"), std::string::npos) << e;
  EXPECT_NE(e.find("not a directory"), std::string::npos) << e;
  fs::remove(root.path() / "step_00000002.tmp-blocked");
  EXPECT_EQ(snapshot(root.path()), before);
  EXPECT_EQ(Checkpoint::open(root.path()).step(), 1);

  if (::geteuid() != 0) {  // permissions bind only non-root users
    fs::create_directories(root.path() / "step_00000003.tmp-ro");
    fs::permissions(root.path() / "step_00000003.tmp-ro", fs::perms::owner_read | fs::perms::owner_exec);
    opt.tag = "ro";
    e = error_of([&] { save(root.path(), 3, {ShardTensor("w", arange_f32({6, 4}))}, {}, {}, opt); });
    EXPECT_NE(e.find("step_00000003.tmp-ro"), std::string::npos) << e;
    fs::permissions(root.path() / "step_00000003.tmp-ro", fs::perms::owner_all);
    EXPECT_EQ(Checkpoint::open(root.path()).step(), 1);
  }
}

TEST(Checkpoint, CommitRefusesMissingRanksAndForeignFiles) {
  TempRoot root;
  save_simple(root.path(), 1);
  SaveOptions opt;
  opt.tag = "job";
  const Tensor w = arange_f32({6, 4});
  write_shard(root.path(), 2, 0, {ShardTensor("w", w.slice(0, 0, 3), {6, 4}, {0, 0})}, {}, opt);
  std::string e = error_of([&] { commit(root.path(), 2, 2, {}, opt); });
  EXPECT_NE(e.find("have not finished write_shard (1"), std::string::npos) << e;
  EXPECT_EQ(latest_step(root.path()), 1);

  write_shard(root.path(), 2, 1, {ShardTensor("w", w.slice(0, 3, 6), {6, 4}, {3, 0})}, {}, opt);
  e = error_of([&] { commit(root.path(), 2, 1, {}, opt); });  // wrong world size: rank 1's files are foreign
  EXPECT_NE(e.find("unexpected file"), std::string::npos) << e;
  EXPECT_NE(e.find("shard_r000001.h5"), std::string::npos) << e;
  e = error_of([&] { commit(root.path(), 2, 2, {}, SaveOptions{.tag = "other"}); });  // wrong tag
  EXPECT_NE(e.find("step_00000002.tmp-other does not exist"), std::string::npos) << e;

  commit(root.path(), 2, 2, {}, SaveOptions{.tag = "job", .rehash_shards = true});
  expect_bit_equal(Checkpoint::open(root.path()).read("w"), w, "w");
}

TEST(Checkpoint, CommitRefusesOverlappingIncompleteOrInconsistentPieces) {
  const Tensor w = arange_f32({6, 4});
  struct Case {
    const char* what;
    std::vector<ShardTensor> r0, r1;
  };
  std::vector<Case> cases;
  cases.push_back({"overlap", {ShardTensor("w", w.slice(0, 0, 4), {6, 4}, {0, 0})},
                   {ShardTensor("w", w.slice(0, 3, 6), {6, 4}, {3, 0})}});
  cases.push_back({"pieces hold 12", {ShardTensor("w", w.slice(0, 0, 3), {6, 4}, {0, 0})},
                   {ShardTensor("other", Tensor::zeros({1}))}});
  cases.push_back({"every rank must give the same dtype", {ShardTensor("w", w.slice(0, 0, 3), {6, 4}, {0, 0})},
                   {ShardTensor("w", w.slice(0, 3, 6).to(DType::F64), {6, 4}, {3, 0})}});
  cases.push_back({"every rank must give the same dtype and global shape",
                   {ShardTensor("w", w.slice(0, 0, 3), {6, 4}, {0, 0})},
                   {ShardTensor("w", w.slice(0, 3, 6), {7, 4}, {3, 0})}});
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    TempRoot root;
    write_shard(root.path(), 1, 0, c.r0, {}, SaveOptions{.tag = "x"});
    write_shard(root.path(), 1, 1, c.r1, {}, SaveOptions{.tag = "x"});
    std::string e = error_of([&] { commit(root.path(), 1, 2, {}, SaveOptions{.tag = "x"}); });
    EXPECT_NE(e.find(c.what), std::string::npos) << e;
    EXPECT_FALSE(is_committed(root.path(), 1));
    EXPECT_FALSE(latest_step(root.path()).has_value());
  }
  // Bad pieces are refused before anything is written.
  TempRoot root;
  std::string e = error_of([&] { write_shard(root.path(), 1, 0, {ShardTensor("w", w, {5, 4}, {0, 0})}); });
  EXPECT_NE(e.find("does not fit"), std::string::npos) << e;
  e = error_of([&] { write_shard(root.path(), 1, 0, {ShardTensor("w", w), ShardTensor("w", w)}); });
  EXPECT_NE(e.find("given twice"), std::string::npos) << e;
  e = error_of([&] { write_shard(root.path(), 1, 0, {ShardTensor("", w)}); });
  EXPECT_NE(e.find("empty name"), std::string::npos) << e;
}

TEST(Checkpoint, ACommittedStepIsNeverOverwritten) {
  TempRoot root;
  fs::path dir = save_simple(root.path(), 5);
  const auto before = snapshot(dir);
  EXPECT_TRUE(is_committed(root.path(), 5));
  std::string e = error_of([&] { save_simple(root.path(), 5, 9.0f); });
  EXPECT_NE(e.find("already a committed checkpoint"), std::string::npos) << e;
  EXPECT_NE(e.find("step_00000005"), std::string::npos) << e;
  EXPECT_EQ(snapshot(dir), before);
  // Nor by a commit whose shards were written before the step got committed elsewhere.
  TempRoot root2;
  write_shard(root2.path(), 5, 0, {ShardTensor("w", arange_f32({2}))}, {}, SaveOptions{.tag = "late"});
  save_simple(root2.path(), 5);
  const auto committed = snapshot(root2.path() / "step_00000005");
  e = error_of([&] { commit(root2.path(), 5, 1, {}, SaveOptions{.tag = "late"}); });
  EXPECT_NE(e.find("already a committed checkpoint"), std::string::npos) << e;
  EXPECT_EQ(snapshot(root2.path() / "step_00000005"), committed);
}

// ---- resharding ---------------------------------------------------------------------------------------

TEST(Checkpoint, ReshardingReadsAnyBoxAcrossShards) {
  TempRoot root;
  const Tensor w = arange_f32({6, 4});
  // "Two ranks": rows [0, 3) and [3, 6).
  write_shard(root.path(), 1, 0, {ShardTensor("w", w.slice(0, 0, 3), {6, 4}, {0, 0})}, {{"rank", 0}});
  write_shard(root.path(), 1, 1, {ShardTensor("w", w.slice(0, 3, 6), {6, 4}, {3, 0})}, {{"rank", 1}});
  commit(root.path(), 1, 2, CommitInfo{.layout = {{"dp", 2}}});

  Checkpoint ck = Checkpoint::open(root.path());
  EXPECT_EQ(ck.world_size(), 2);
  EXPECT_EQ(ck.global_shape("w"), (Dims{6, 4}));
  EXPECT_EQ(ck.rank_state(1), json({{"rank", 1}}));
  expect_bit_equal(ck.read("w"), w, "whole");

  Tensor rows = Tensor::empty({4, 4});  // rows [1, 5): crosses the shard boundary
  ck.read("w", rows, {1, 0});
  expect_bit_equal(rows, w.slice(0, 1, 5), "rows [1,5)");

  for (int64_t c0 = 0; c0 < 4; ++c0)
    for (int64_t c1 = c0 + 1; c1 <= 4; ++c1) {  // every column slice
      Tensor cols = Tensor::empty({6, c1 - c0});
      ck.read("w", cols, {0, c0});
      expect_bit_equal(cols, w.slice(1, c0, c1), "cols");
    }
  Tensor block = Tensor::empty({2, 2});  // rows [2, 4) x cols [1, 3)
  ck.read("w", block, {2, 1});
  expect_bit_equal(block, w.slice(0, 2, 4).slice(1, 1, 3), "block");
  Tensor one = Tensor::empty({1, 1});
  ck.read("w", one, {5, 3});
  EXPECT_EQ(one.item(), 23.0);

  // Non-contiguous destinations: a transposed view, and a window of a bigger tensor (writes through).
  Tensor wt = Tensor::zeros({4, 6});
  ck.read("w", wt.t());
  expect_bit_equal(wt, w.t().contiguous(), "into a transposed view");
  Tensor big = Tensor::full({8, 8}, -1.0);
  ck.read("w", big.slice(0, 1, 7).slice(1, 2, 6));
  expect_bit_equal(big.slice(0, 1, 7).slice(1, 2, 6), w, "window");
  for (float v : big.slice(0, 0, 1).to_vector<float>()) EXPECT_EQ(v, -1.0f);  // outside the window untouched

  std::string e = error_of([&] { ck.read("w", Tensor::empty({4, 4}), {3, 0}); });
  EXPECT_NE(e.find("reaches outside"), std::string::npos) << e;
  e = error_of([&] { ck.read("w", Tensor::empty({6, 4}, DType::F64)); });
  EXPECT_NE(e.find("stored as f32"), std::string::npos) << e;
  e = error_of([&] { ck.read("w", Tensor::empty({24})); });
  EXPECT_NE(e.find("dims"), std::string::npos) << e;
  e = error_of([&] { ck.read("nope"); });
  EXPECT_NE(e.find("no tensor named 'nope'"), std::string::npos) << e;
  ck.verify_all();
}

TEST(Checkpoint, ReshardingAGridLayoutIntoRowsAndColumns) {
  TempRoot root;
  // A (5, 7) bf16 tensor on a 2 x 2 grid of unequal pieces ("TP x PP" ranks), plus a replicated bias
  // written by rank 0 only; loaded as 3 row shards, as 2 column shards and whole.
  const Tensor w = random_bits({5, 7}, DType::BF16, 5);
  const Tensor bias = random_bits({7}, DType::F32, 6);
  const int64_t r = 2, c = 3;
  std::vector<std::vector<ShardTensor>> ranks(4);
  ranks[0].emplace_back("w", w.slice(0, 0, r).slice(1, 0, c), Dims{5, 7}, Dims{0, 0});
  ranks[0].emplace_back("bias", bias);
  ranks[1].emplace_back("w", w.slice(0, 0, r).slice(1, c, 7), Dims{5, 7}, Dims{0, c});
  ranks[2].emplace_back("w", w.slice(0, r, 5).slice(1, 0, c), Dims{5, 7}, Dims{r, 0});
  ranks[3].emplace_back("w", w.slice(0, r, 5).slice(1, c, 7), Dims{5, 7}, Dims{r, c});
  for (int k = 0; k < 4; ++k) write_shard(root.path(), 42, k, ranks[size_t(k)], {{"rank", k}});
  commit(root.path(), 42, 4);

  Checkpoint ck = Checkpoint::open(root.path());
  EXPECT_EQ(ck.tensor_names(), (std::vector<std::string>{"w", "bias"}));
  const int64_t row_starts[] = {0, 2, 4, 5};
  for (int k = 0; k < 3; ++k) {
    Tensor part = Tensor::empty({row_starts[k + 1] - row_starts[k], 7}, DType::BF16);
    ck.read("w", part, {row_starts[k], 0});
    expect_bit_equal(part, w.slice(0, row_starts[k], row_starts[k + 1]), "row shard");
  }
  for (int64_t c0 : {0, 4}) {
    const int64_t c1 = c0 == 0 ? 4 : 7;
    Tensor part = Tensor::empty({5, c1 - c0}, DType::BF16);
    ck.read("w", part, {0, c0});
    expect_bit_equal(part, w.slice(1, c0, c1), "column shard");
  }
  expect_bit_equal(ck.read("w"), w, "whole");
  expect_bit_equal(ck.read("bias"), bias, "bias");
  ck.verify_all();
}

// ---- retention ----------------------------------------------------------------------------------------

TEST(Checkpoint, RetainLastKeepsTheNewestAndLatest) {
  TempRoot root;
  for (int64_t s = 1; s <= 5; ++s) save_simple(root.path(), s);
  write_shard(root.path(), 0, 0, {ShardTensor("w", arange_f32({2}))}, {}, SaveOptions{.tag = "old"});  // a temp
  std::vector<fs::path> gone = retain_last(root.path(), 2);
  EXPECT_EQ(gone.size(), 3u);
  EXPECT_EQ(committed_steps(root.path()), (std::vector<int64_t>{4, 5}));
  EXPECT_FALSE(fs::exists(root.path() / "step_00000001"));
  EXPECT_TRUE(fs::exists(root.path() / "step_00000000.tmp-old"));  // temp folders are left alone
  EXPECT_EQ(Checkpoint::open(root.path()).step(), 5);

  // `latest` naming an older step (a resumed branch) keeps it.
  save_simple(root.path(), 3);
  EXPECT_EQ(latest_step(root.path()), 3);
  gone = retain_last(root.path(), 1);
  EXPECT_EQ(gone, std::vector<fs::path>{root.path() / "step_00000004"});
  EXPECT_EQ(committed_steps(root.path()), (std::vector<int64_t>{3, 5}));
  EXPECT_TRUE(retain_last(root.path(), 5).empty());
  EXPECT_NE(error_of([&] { retain_last(root.path(), 0); }).find("keep must be >= 1"), std::string::npos);

  // A folder whose manifest is damaged is not a checkpoint: neither counted nor deleted.
  flip_byte(root.path() / "step_00000003" / "manifest.json", 40);
  save_simple(root.path(), 6);
  gone = retain_last(root.path(), 1);
  EXPECT_EQ(gone, std::vector<fs::path>{root.path() / "step_00000005"});
  EXPECT_TRUE(fs::exists(root.path() / "step_00000003"));
}

}  // namespace
}  // namespace modu::checkpoint
