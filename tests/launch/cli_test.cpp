// End-to-end tests of the `modu` binary (MODU_BIN): prepare text on a real text, tokenize round
// trips (GPT-2 and a trained tokenizer), exit codes, and that errors name the file at fault.
// Needs GPT-2's vocabulary (CTest fixture gpt2_vocab); uses .cache/corpus when present.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "data/token_dataset.h"

namespace fs = std::filesystem;

namespace {

struct Result {
  int rc = -1;
  std::string out, err;
};

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

struct Cli : ::testing::Test {
  fs::path dir;
  void SetUp() override {
    dir = fs::temp_directory_path() / ("modu_cli_test_" + std::to_string(::getpid()) + "_" +
                                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  void TearDown() override { fs::remove_all(dir); }

  // Runs `modu ARGS` (args already shell-quoted where needed), capturing stdout and stderr.
  Result modu(const std::string& args) const {
    const fs::path out = dir / "stdout", err = dir / "stderr";
    const std::string cmd = quote(MODU_BIN) + " " + args + " >" + quote(out.string()) + " 2>" + quote(err.string());
    const int status = std::system(cmd.c_str());
    Result r;
    r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = read_file(out);
    r.err = read_file(err);
    return r;
  }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream f(dir / name, std::ios::binary);
    f << text;
    return (dir / name).string();
  }
};

std::string sample_text() {
  std::string s;
  for (int i = 0; i < 200; ++i) {
    s += "It was the best of times, it was the worst of times; line " + std::to_string(i) + ".\n";
    if (i % 10 == 9) s += "\n  Caf\xc3\xa9 na\xc3\xafve \xe2\x80\x94 \xe4\xb8\xad\xe6\x96\x87 <|endoftext|> 1234\n\n";
  }
  return s;
}

}  // namespace

TEST_F(Cli, UsageErrorsExitTwo) {
  EXPECT_EQ(modu("").rc, 2);
  EXPECT_EQ(modu("frobnicate").rc, 2);
  EXPECT_EQ(modu("prepare text --out x").rc, 2);  // --input missing
  Result h = modu("--help");
  EXPECT_EQ(h.rc, 0);
  EXPECT_NE(h.out.find("prepare"), std::string::npos);
}

TEST_F(Cli, PrepareTextOnRealTextThenLoad) {
  const fs::path corpus = fs::path(MODU_SOURCE_DIR) / ".cache" / "corpus";
  std::string input;
  if (fs::exists(corpus / "twain-tomsawyer.txt")) {
    input = (corpus / "twain-tomsawyer.txt").string();
  } else {
    input = write("book.txt", sample_text());
  }
  const std::string out = (dir / "shards").string();
  Result r = modu("prepare text --input " + quote(input) + " --out " + quote(out) + " --val-fraction 0.05");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("1 documents"), std::string::npos) << r.out;
  EXPECT_TRUE(fs::exists(fs::path(out) / "train_000000.bin"));
  EXPECT_TRUE(fs::exists(fs::path(out) / "val_000000.bin"));
  EXPECT_TRUE(fs::exists(fs::path(out) / "meta.json"));
  const auto train = modu::data::TokenShardSet::open(out, "train");
  const auto val = modu::data::TokenShardSet::open(out, "val");
  EXPECT_EQ(train.vocab_size(), 50257u);
  EXPECT_GT(train.size(), 10 * val.size());
  EXPECT_GT(val.size(), 0u);

  // A second run refuses to replace it; --force does.
  r = modu("prepare text --input " + quote(input) + " --out " + quote(out));
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("modu: error: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--force"), std::string::npos) << r.err;
  r = modu("prepare text --input " + quote(input) + " --out " + quote(out) + " --force -q --shard-tokens 10000");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(fs::exists(fs::path(out) / "train_000001.bin"));
  EXPECT_TRUE(r.err.empty()) << r.err;
}

TEST_F(Cli, PrepareTextErrorsNameTheFile) {
  Result r = modu("prepare text --input " + quote((dir / "nope.txt").string()) + " --out " + quote((dir / "o").string()));
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find((dir / "nope.txt").string()), std::string::npos) << r.err;
  const std::string empty = write("empty.txt", "");
  r = modu("prepare text --input " + quote(empty) + " --out " + quote((dir / "o").string()));
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("empty corpus"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(empty), std::string::npos) << r.err;
}

TEST_F(Cli, TokenizeRoundTripGpt2) {
  const std::string text = sample_text();
  const std::string in = write("in.txt", text);
  Result enc = modu("tokenize " + quote(in));
  ASSERT_EQ(enc.rc, 0) << enc.err;
  EXPECT_EQ(enc.out.rfind("1026 373 262 1266 286 1661", 0), 0u) << enc.out.substr(0, 80);  // "It was the best of times"
  EXPECT_EQ(enc.out.find("50256"), std::string::npos);  // <|endoftext|> stays text by default
  const std::string ids = write("ids.txt", enc.out);
  Result dec = modu("tokenize --decode " + quote(ids));
  ASSERT_EQ(dec.rc, 0) << dec.err;
  EXPECT_EQ(dec.out, text);

  Result special = modu("tokenize --allow-special " + quote(in));
  EXPECT_NE(special.out.find("50256"), std::string::npos);

  const std::string bad = write("bad.txt", "1 2 x3");
  Result err = modu("tokenize --decode " + quote(bad));
  EXPECT_EQ(err.rc, 1);
  EXPECT_NE(err.err.find(bad), std::string::npos) << err.err;
  EXPECT_NE(err.err.find("'x3' (token 2)"), std::string::npos) << err.err;
}

TEST_F(Cli, TrainedTokenizerRoundTrip) {
  const std::string text = sample_text();
  const std::string in = write("in.txt", text);
  const std::string tok = (dir / "tok").string();
  Result r = modu("prepare tokenizer --input " + quote(in) + " --vocab-size 400 --out " + quote(tok));
  ASSERT_EQ(r.rc, 0) << r.err;
  Result enc = modu("tokenize --tokenizer " + quote(tok) + " " + quote(in));
  ASSERT_EQ(enc.rc, 0) << enc.err;
  const std::string ids = write("ids.txt", enc.out);
  Result dec = modu("tokenize --tokenizer " + quote(tok) + " --decode " + quote(ids));
  ASSERT_EQ(dec.rc, 0) << dec.err;
  EXPECT_EQ(dec.out, text);
  r = modu("prepare text --input " + quote(in) + " --out " + quote((dir / "s").string()) + " --tokenizer " + quote(tok));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(modu::data::TokenShardSet::open((dir / "s").string(), "train").vocab_size(), 400u);
}

TEST_F(Cli, MissingGpt2VocabularySaysHowToFetchIt) {
  const std::string in = write("in.txt", "hello");
  Result r = modu("tokenize " + quote(in) + " MODU_GPT2_VOCAB=x");  // extra positional: usage error
  EXPECT_EQ(r.rc, 2);
  const std::string cmd_env = "env MODU_GPT2_VOCAB=" + quote((dir / "none").string()) + " " + quote(MODU_BIN);
  const std::string full = cmd_env + " tokenize " + quote(in) + " 2>" + quote((dir / "err").string()) + " >/dev/null";
  const int status = std::system(full.c_str());
  EXPECT_EQ(WEXITSTATUS(status), 1);
  const std::string err = read_file(dir / "err");
  EXPECT_NE(err.find("scripts/fetch-gpt2-vocab.sh"), std::string::npos) << err;
}

TEST_F(Cli, TrainAndGenerateReachTheRecipeLayer) {
  const std::string recipe = write("r.toml", "[train]\nsteps = 5\n");
  Result r = modu("train " + quote(recipe) + " --set train.steps=7");
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("modu: error: "), std::string::npos) << r.err;
  r = modu("train " + quote((dir / "missing.toml").string()));
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("missing.toml"), std::string::npos) << r.err;
  r = modu("generate " + quote(dir.string()) + " --prompt hi --top-p 2");
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("--top-p"), std::string::npos) << r.err;
  EXPECT_EQ(modu("generate " + quote(dir.string())).rc, 2);  // --prompt missing
}
