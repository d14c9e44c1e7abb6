// Tests of corpus preparation (data/prepare.h): chunked tokenisation equals whole-text
// tokenisation, prepare_text's documents/separators/val split reconstruct the input exactly, and
// bad input (missing file, empty corpus, existing output) is an error naming it.
// Needs GPT-2's vocabulary (CTest fixture gpt2_vocab) and reads .cache/corpus when present.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/check.h"
#include "data/prepare.h"
#include "data/token_dataset.h"
#include "data/tokenizers.h"

namespace fs = std::filesystem;
using namespace modu::data;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() /
           ("modu_prepare_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream f(file(name), std::ios::binary);
    f << text;
    return file(name);
  }
};

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

const BpeTokenizer& gpt2() {
  static const BpeTokenizer tok = [] {
    BpeTokenizer t = load_tokenizer("gpt2");
    t.set_invalid_utf8(InvalidUtf8::kKeepBytes);
    return t;
  }();
  return tok;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

// A text with the awkward spots for cutting: whitespace runs before newlines, blank lines,
// CRLF, non-ASCII, lines starting with spaces, digits and punctuation.
std::string tricky_text(int paragraphs) {
  std::string s;
  for (int i = 0; i < paragraphs; ++i) {
    s += "Chapter " + std::to_string(i) + "  \n\n";
    s += "  It's a truth   universally acknowledged, caf\xc3\xa9 \xe2\x80\x94 na\xc3\xafve.\r\n";
    s += "\"Quoted,\" said she;\n\n\n 42 apples\t\n";
    s += std::to_string(i * 31337) + "!\n-- dash\n\xe4\xb8\xad\xe6\x96\x87\n";
    s += "end   \n";
  }
  return s;
}

}  // namespace

TEST(Prepare, SafeCuts) {
  EXPECT_EQ(find_safe_cut("abc\ndef", 0), 3u);
  EXPECT_EQ(find_safe_cut("abc\n def\nx", 0), 8u);   // "\n " is not a cut
  EXPECT_EQ(find_safe_cut("abc\n\n\nx", 0), 5u);     // the last newline of the run
  EXPECT_EQ(find_safe_cut("abc\n", 0), std::string::npos);
  EXPECT_EQ(find_safe_cut("a\nb\nc", 2), 3u);
}

TEST(Prepare, ChunkedEncodingEqualsWholeEncoding) {
  const std::string text = tricky_text(40);
  const std::vector<int32_t> whole = gpt2().encode_ordinary(text);
  for (size_t chunk : {1u, 7u, 64u, 1000u, 1u << 20}) {
    EXPECT_EQ(encode_chunked(gpt2(), text, chunk, 2), whole) << "chunk " << chunk;
  }
}

TEST(Prepare, ChunkedEncodingEqualsWholeEncodingOnCorpus) {
  const fs::path corpus = fs::path(MODU_SOURCE_DIR) / ".cache" / "corpus";
  if (!fs::is_directory(corpus)) GTEST_SKIP() << corpus << " absent (scripts/extract-corpus.sh)";
  int files = 0;
  for (const auto& e : fs::directory_iterator(corpus)) {
    if (e.path().extension() != ".txt" || files >= 3) continue;
    ++files;
    const std::string text = read_file(e.path().string());
    EXPECT_EQ(encode_chunked(gpt2(), text, 4096, 2), gpt2().encode_ordinary(text)) << e.path();
  }
}

TEST(Prepare, TextReconstructsDocumentsAndSplits) {
  TempDir d;
  std::vector<std::string> docs = {tricky_text(30), "Line one.\nLine two.\nLine three.\nLast", tricky_text(5)};
  fs::create_directories(d.path / "in");
  for (size_t i = 0; i < docs.size(); ++i) d.write("in/doc" + std::to_string(i) + ".txt", docs[i]);
  d.write("in/empty.txt", "");
  PrepareTextOptions o;
  o.inputs = {d.file("in/doc*.txt"), d.file("in/empty.txt")};
  o.out_dir = d.file("out");
  o.val_fraction = 0.2;
  o.shard_tokens = 700;  // several train shards
  o.chunk_bytes = 100;
  const PrepareTextReport r = prepare_text(o);
  EXPECT_EQ(r.documents, 3u);
  EXPECT_EQ(r.skipped_empty, 1u);
  EXPECT_GT(r.train_files.size(), 1u);
  EXPECT_EQ(r.val_files.size(), 1u);

  const std::vector<int32_t> eot = {gpt2().eot_id()};
  auto stream = [&](const std::string& split) {
    TokenShardSet s = TokenShardSet::open(o.out_dir, split);
    std::vector<int64_t> v(s.size());
    s.read(0, s.size(), v.data());
    return std::vector<int32_t>(v.begin(), v.end());
  };
  const std::vector<int32_t> train = stream("train"), val = stream("val");
  EXPECT_EQ(train.size(), r.train_tokens);
  EXPECT_EQ(val.size(), r.val_tokens);
  // Split each stream at EOT: train holds every document's head, val the tails of those that
  // have one; head + tail == document, and the tail is about 20% of it.
  auto parts = [&](const std::vector<int32_t>& s) {
    std::vector<std::string> out;
    std::vector<int32_t> cur;
    EXPECT_EQ(s.front(), eot[0]);
    for (size_t i = 1; i <= s.size(); ++i) {
      if (i == s.size() || s[i] == eot[0]) {
        out.push_back(gpt2().decode(cur));
        cur.clear();
      } else {
        cur.push_back(s[i]);
      }
    }
    return out;
  };
  const auto heads = parts(train), tails = parts(val);
  ASSERT_EQ(heads.size(), 3u);
  ASSERT_EQ(tails.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(heads[i] + tails[i], docs[i]) << "document " << i;
    EXPECT_EQ(tails[i].front(), '\n');
    EXPECT_LE(tails[i].size(), docs[i].size() / 5);
    EXPECT_GT(tails[i].size() + 200, docs[i].size() / 5);
  }
  // Tokens are those of whole-document encoding.
  std::vector<int32_t> expect;
  for (size_t i = 0; i < 3; ++i) {
    auto head = gpt2().encode_ordinary(heads[i]);
    expect.push_back(eot[0]);
    expect.insert(expect.end(), head.begin(), head.end());
  }
  EXPECT_EQ(train, expect);

  // Deterministic: the same inputs give byte-identical shards.
  PrepareTextOptions o2 = o;
  o2.out_dir = d.file("out2");
  o2.chunk_bytes = 1 << 20;
  o2.threads = 1;
  prepare_text(o2);
  for (const std::string& f : r.train_files) {
    EXPECT_EQ(read_file(f), read_file((fs::path(o2.out_dir) / fs::path(f).filename()).string()));
  }
}

TEST(Prepare, ExistingOutputNeedsForceAndForceReplacesCleanly) {
  TempDir d;
  const std::string in = d.write("a.txt", tricky_text(20));
  PrepareTextOptions o;
  o.inputs = {in};
  o.out_dir = d.file("out");
  o.shard_tokens = 300;
  const PrepareTextReport first = prepare_text(o);
  ASSERT_GT(first.train_files.size(), 2u);
  const std::string msg = error_of([&] { prepare_text(o); });
  EXPECT_NE(msg.find(o.out_dir), std::string::npos) << msg;
  EXPECT_NE(msg.find("--force"), std::string::npos) << msg;

  o.force = true;
  o.shard_tokens = 100000;  // now one shard: the old train_000001.bin... must go
  const PrepareTextReport second = prepare_text(o);
  EXPECT_EQ(second.train_files.size(), 1u);
  EXPECT_FALSE(fs::exists(d.file("out/train_000001.bin")));
  EXPECT_EQ(TokenShardSet::open(o.out_dir, "train").size(), first.train_tokens);
}

TEST(Prepare, BadInputIsNamed) {
  TempDir d;
  PrepareTextOptions o;
  o.out_dir = d.file("out");
  o.inputs = {d.file("missing.txt")};
  std::string msg = error_of([&] { prepare_text(o); });
  EXPECT_NE(msg.find(d.file("missing.txt")), std::string::npos) << msg;
  EXPECT_NE(msg.find("no such file"), std::string::npos) << msg;

  o.inputs = {d.file("*.nothing")};
  msg = error_of([&] { prepare_text(o); });
  EXPECT_NE(msg.find("no file matches"), std::string::npos) << msg;

  o.inputs = {d.write("e1.txt", ""), d.write("e2.txt", "")};
  msg = error_of([&] { prepare_text(o); });
  EXPECT_NE(msg.find("empty corpus"), std::string::npos) << msg;
  EXPECT_NE(msg.find(d.file("e1.txt")), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(o.out_dir));

  o.inputs = {d.write("oneline.txt", "no line breaks here at all")};
  msg = error_of([&] { prepare_text(o); });
  EXPECT_NE(msg.find("--val-fraction 0"), std::string::npos) << msg;
  o.val_fraction = 0;
  EXPECT_EQ(prepare_text(o).val_files.size(), 0u);
  msg = error_of([&] { TokenShardSet::open(o.out_dir, "val"); });
  EXPECT_NE(msg.find("no \"val\" split"), std::string::npos) << msg;

  o.val_fraction = 1.5;
  msg = error_of([&] { prepare_text(o); });
  EXPECT_NE(msg.find("[0, 1)"), std::string::npos) << msg;
}

TEST(Prepare, TrainedTokenizerWorksLikeGpt2) {
  TempDir d;
  const std::string in = d.write("a.txt", tricky_text(50));
  TrainTokenizerOptions t;
  t.inputs = {in};
  t.out_dir = d.file("tok");
  t.vocab_size = 300;
  const BpeTokenizer tok = train_tokenizer(t);
  EXPECT_EQ(tok.vocab_size(), 300);
  EXPECT_NE(error_of([&] { train_tokenizer(t); }).find("--force"), std::string::npos);

  PrepareTextOptions o;
  o.inputs = {in};
  o.out_dir = d.file("out");
  o.tokenizer = t.out_dir;
  prepare_text(o);
  TokenShardSet s = TokenShardSet::open(o.out_dir, "train");
  EXPECT_EQ(s.vocab_size(), 300u);
  EXPECT_EQ(s.eot_id(), 299u);
  EXPECT_EQ(s.shards()[0].width(), 2u);
}

TEST(Prepare, Gpt2ResolutionHonoursTheEnvironment) {
  const char* old = std::getenv("MODU_GPT2_VOCAB");
  const std::string saved = old ? old : "";
  ::setenv("MODU_GPT2_VOCAB", "/nonexistent/modu-gpt2", 1);
  const std::string msg = error_of([] { resolve_tokenizer_path("gpt2"); });
  EXPECT_NE(msg.find("/nonexistent/modu-gpt2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("scripts/fetch-gpt2-vocab.sh"), std::string::npos) << msg;
  if (old) ::setenv("MODU_GPT2_VOCAB", saved.c_str(), 1);
  else ::unsetenv("MODU_GPT2_VOCAB");
  EXPECT_EQ(resolve_tokenizer_path("some/dir"), "some/dir");
}
