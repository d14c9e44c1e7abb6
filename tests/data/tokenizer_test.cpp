// Tests of modu::data::BpeTokenizer and BpeTrainer: GPT-2 golden ids (from tiktoken 0.14), the
// three vocabulary formats agreeing, round trips, special tokens, ill-formed UTF-8 policies, long
// pieces against a naive reference BPE, byte-identical save of OpenAI's files, errors that name the
// file, and the trainer's tie-breaking, determinism and round trip. GPT-2's vocabulary comes from
// the CTest fixture gpt2_vocab (scripts/fetch-gpt2-vocab.sh); without it these tests FAIL, they do
// not skip.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "data/tokenizer/bpe.h"
#include "data/tokenizer/pretokenize.h"
#include "data/tokenizer/trainer.h"
#include "data/tokenizer/unicode_class.h"

namespace {

namespace fs = std::filesystem;
using modu::data::BpeTokenizer;
using modu::data::BpeTrainer;
using modu::data::InvalidUtf8;
using modu::data::TokenizerError;
using Ids = std::vector<int32_t>;

std::string vocab_dir() {
  const char* env = std::getenv("MODU_GPT2_VOCAB");
  return env && *env ? env : std::string(MODU_SOURCE_DIR) + "/.cache/gpt2";
}

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return std::move(ss).str();
}

void write_file(const fs::path& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << s;
}

fs::path temp_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() /
                     ("modu_tokenizer_test_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// What a message must contain for the test to pass, else a readable failure.
void expect_error(const std::function<void()>& f, const std::vector<std::string>& needles) {
  try {
    f();
    ADD_FAILURE() << "expected a TokenizerError";
  } catch (const TokenizerError& e) {
    const std::string msg = e.what();
    for (const std::string& n : needles)
      EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
  }
}

class Gpt2 : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    try {
      tok_ = new BpeTokenizer(BpeTokenizer::load(vocab_dir()));
    } catch (const std::exception& e) {
      error_ = e.what();
    }
  }
  static void TearDownTestSuite() {
    delete tok_;
    tok_ = nullptr;
  }
  void SetUp() override {
    if (!tok_) {
      FAIL() << "GPT-2's vocabulary is missing or unreadable at " << vocab_dir()
             << ". Run scripts/fetch-gpt2-vocab.sh (ctest runs it as the fixture "
                "'tokenizer_fetch_vocab'). "
             << "Loader said: " << error_;
    }
  }
  const BpeTokenizer& tok() const { return *tok_; }
  void expect_round_trip(const std::string& s) const {
    const Ids ids = tok().encode(s);
    EXPECT_EQ(tok().decode(ids), s) << "round trip failed";
    EXPECT_EQ(tok().decode(tok().encode_ordinary(s)), s) << "round trip (ordinary) failed";
  }
  static inline BpeTokenizer* tok_ = nullptr;
  static inline std::string error_;
};

TEST(UnicodeTables, AsciiFastPathAgreesWithTables) {
  for (uint32_t c = 0; c < 128; ++c) {
    EXPECT_EQ(modu::data::pretok::kAsciiClass[c], modu::data::unicode::char_class(c))
        << "code point " << c;
  }
  using modu::data::unicode::char_class;
  using modu::data::unicode::CharClass;
  EXPECT_EQ(char_class(0x00E9), CharClass::kLetter);  // é
  EXPECT_EQ(char_class(0x0663), CharClass::kNumber);  // Arabic-Indic three
  EXPECT_EQ(char_class(0x3000), CharClass::kSpace);   // ideographic space
  EXPECT_EQ(char_class(0x001C), CharClass::kOther);   // not White_Space (Python's isspace says yes)
  EXPECT_EQ(char_class(0x10D50), CharClass::kLetter);  // Garay, new in Unicode 16.0
  EXPECT_EQ(char_class(0xFFFD), CharClass::kOther);
  EXPECT_EQ(char_class(0xD800), CharClass::kOther);
  EXPECT_EQ(char_class(0x110000), CharClass::kOther);
}

TEST_F(Gpt2, GoldenIds) {
  EXPECT_EQ(tok().encode("Hello world! It is a truth universally acknowledged"),
            (Ids{15496, 995, 0, 632, 318, 257, 3872, 26208, 10810}));
  EXPECT_EQ(tok().vocab_size(), 50257);
  EXPECT_EQ(tok().eot_id(), 50256);
}

TEST_F(Gpt2, GoldenIdsFromTiktoken) {
  // tiktoken 0.14 encode(text, allowed_special="all") on GPT-2's ranks.
  const std::vector<std::pair<std::string, Ids>> cases = {
      {"<|endoftext|>", {50256}},
      {"   leading spaces", {220, 220, 3756, 9029}},
      {"trailing spaces   ", {9535, 4386, 9029, 220, 220, 220}},
      {"a\n\nb", {64, 198, 198, 65}},
      {"don't I'll we've they're she'd 'S",
       {9099, 470, 314, 1183, 356, 1053, 484, 821, 673, 1549, 705, 50}},
      {"x\r\ny\r\n", {87, 201, 198, 88, 201, 198}},
      {"1234567 3.14159", {10163, 2231, 3134, 513, 13, 1415, 19707}},
      {"\U0001F642\U0001F44D\U0001F3FD \U0001F468\u200D\U0001F469\u200D\U0001F467",
       {8582, 25081, 41840, 235, 8582, 237, 121, 50169, 101, 447, 235, 41840, 102, 447, 235, 41840,
        100}},
      {"na\u00EFve caf\u00E9", {2616, 38776, 40304}},
      {"\u041F\u0440\u0438\u0432\u0435\u0442 \u043C\u0438\u0440",
       {140, 253, 21169, 18849, 38857, 16843, 20375, 12466, 120, 18849, 21169}},
      {"\u65E5\u672C\u8A9E\u306E\u30C6\u30AD\u30B9\u30C8",
       {33768, 98, 17312, 105, 45739, 252, 5641, 24336, 25084, 43302}},
      {"\u00A0nbsp\u3000ideographic", {1849, 77, 24145, 5099, 222, 485, 6826}},
      {"tab\tsep\t\tx", {8658, 197, 325, 79, 197, 197, 87}},
      {"Hello<|endoftext|> world", {15496, 50256, 995}},
      {"  \n  \n", {220, 220, 198, 220, 220, 198}},
      {"?\?!!...''s", {3548, 3228, 986, 7061, 82}},
      {std::string(80, 'a'), Ids(20, 24794)},
  };
  for (const auto& [text, want] : cases) EXPECT_EQ(tok().encode(text), want) << "text: " << text;
  EXPECT_EQ(tok().encode_ordinary("<|endoftext|>"), (Ids{27, 91, 437, 1659, 5239, 91, 29}));
  EXPECT_EQ(tok().encode("<|endoftext|>", /*allow_special=*/false),
            (Ids{27, 91, 437, 1659, 5239, 91, 29}));
}

TEST_F(Gpt2, AllVocabularyFormatsAgree) {
  const std::string dir = vocab_dir();
  const BpeTokenizer from_tiktoken = BpeTokenizer::load(dir + "/gpt2.tiktoken");
  // encoder.json + vocab.bpe, through a directory holding only those two.
  const fs::path only = temp_dir("datagym");
  fs::copy_file(dir + "/encoder.json", only / "encoder.json");
  fs::copy_file(dir + "/vocab.bpe", only / "vocab.bpe");
  const BpeTokenizer from_data_gym = BpeTokenizer::load(only.string());
  const std::string text =
      "The quick brown fox <|endoftext|> jumps over   the lazy dog's back.\n\n\u00E9\U0001F600";
  for (const BpeTokenizer* t : {&from_tiktoken, &from_data_gym}) {
    EXPECT_EQ(t->vocab_size(), 50257);
    EXPECT_EQ(t->eot_id(), 50256);
    EXPECT_EQ(t->encode(text), tok().encode(text));
  }
  for (int32_t id : {0, 198, 220, 262, 50255, 50256}) {
    EXPECT_EQ(from_tiktoken.token_string(id), from_data_gym.token_string(id));
    EXPECT_EQ(from_tiktoken.token_bytes(id), from_data_gym.token_bytes(id));
  }
  EXPECT_EQ(from_tiktoken.merges(), from_data_gym.merges());
  fs::remove_all(only);
}

TEST_F(Gpt2, TokenAccessForExport) {
  EXPECT_EQ(tok().token_bytes(262), " the");
  EXPECT_EQ(tok().token_string(262), "\u0120the");
  EXPECT_EQ(tok().token_string(198), "\u010A");
  EXPECT_EQ(tok().token_string(50256), "<|endoftext|>");
  EXPECT_TRUE(tok().is_special(50256));
  EXPECT_FALSE(tok().is_special(262));
  EXPECT_EQ(tok().token_id(" the"), 262);
  EXPECT_FALSE(tok().token_id("<|endoftext|>").has_value());
  const auto merges = tok().merges();
  ASSERT_EQ(merges.size(), 50000u);
  EXPECT_EQ(merges[0], (std::pair<std::string, std::string>{"\u0120", "t"}));
  EXPECT_EQ(modu::data::unicode_to_bytes("\u0120the"), " the");
  EXPECT_FALSE(modu::data::unicode_to_bytes("\u0200").has_value());
  EXPECT_THROW(tok().token_bytes(50257), TokenizerError);
  EXPECT_THROW(tok().decode(Ids{-1}), TokenizerError);
}

TEST_F(Gpt2, SaveReproducesOpenAiFilesByteForByte) {
  const fs::path out = temp_dir("save");
  BpeTokenizer::load(vocab_dir() + "/gpt2.tiktoken").save(out.string());
  EXPECT_TRUE(read_file(out / "encoder.json") == read_file(vocab_dir() + "/encoder.json"));
  EXPECT_TRUE(read_file(out / "vocab.bpe") == read_file(vocab_dir() + "/vocab.bpe"));
  const BpeTokenizer again = BpeTokenizer::load(out.string());  // through modu-tokenizer.json
  EXPECT_EQ(again.encode("Hello world! It is a truth"), tok().encode("Hello world! It is a truth"));
  fs::remove_all(out);
}

TEST_F(Gpt2, RoundTrips) {
  for (const std::string& s : {
           std::string(""),
           std::string("a"),
           std::string(" "),
           std::string("Unicode: \u00E9\u00E8\u00EA \u03B1\u03B2\u03B3 \u05E9\u05DC\u05D5\u05DD "
                       "\u0645\u0631\u062D\u0628\u0627 "
                       "\u0928\u092E\u0938\u094D\u0924\u0947 \u4F60\u597D \uD55C\uAD6D\uC5B4 "
                       "\u0E2A\u0E27\u0E31\u0E2A\u0E14\u0E35"),
           std::string("Emoji: \U0001F600\U0001F680 \U0001F1EB\U0001F1F7 \U0001F44B\U0001F3FF "
                       "\U0001F469\u200D\U0001F4BB \u2764\uFE0F \U0001FAE0"),
           std::string("Whitespace runs:  a   b    c\t\t\td\n\n\n\ne \u00A0\u2003\u3000 f"),
           std::string("CRLF\r\nlines\r\n\r\nend\r\n"),
           std::string("trailing spaces   "),
           std::string("   "),
           std::string("\n"),
           std::string(" \n \n "),
           std::string("special <|endoftext|> in the middle<|endoftext|><|endoftext|>and at the "
                       "end<|endoftext|>"),
           std::string("half special <|endoftext| and <|endoftext"),
           std::string(
               "contractions: I'm, you're, it's, we'll, they'd, can't, I've, 'tis, O'Neil's"),
           std::string(
               "numbers 1 12 123 1234 12345 3.14159 1,000,000 \u0663\u0664 \u2160\u2161 \u00BD"),
           std::string("\0null\0bytes\0", 13),
           std::string("\x01\x02\x1b[0m\x7f control"),
       }) {
    expect_round_trip(s);
  }
}

TEST_F(Gpt2, SpecialTokenInTheMiddle) {
  const Ids ids = tok().encode("Hello<|endoftext|> world");
  EXPECT_EQ(ids, (Ids{15496, 50256, 995}));
  // Pre-tokenisation restarts after a special token: the space before it stays a separate piece.
  EXPECT_EQ(tok().encode("a <|endoftext|>"), (Ids{64, 220, 50256}));
  const Ids ordinary = tok().encode_ordinary("Hello<|endoftext|> world");
  EXPECT_EQ(std::count(ordinary.begin(), ordinary.end(), 50256), 0);
  EXPECT_EQ(tok().decode(ordinary), "Hello<|endoftext|> world");
}

TEST_F(Gpt2, InvalidUtf8Policies) {
  BpeTokenizer t = tok();
  EXPECT_EQ(t.invalid_utf8(), InvalidUtf8::kReplace);
  // kReplace: tiktoken's encode(raw.decode("utf-8", "replace")).
  EXPECT_EQ(t.encode("\xff"), (Ids{4210}));
  EXPECT_EQ(t.encode("ab\xe2\x82 cd"), (Ids{397, 4210, 22927}));
  EXPECT_EQ(t.encode("\xe2\x82"), t.encode("\uFFFD"));        // truncated sequence: one U+FFFD
  EXPECT_EQ(t.encode("\xe0\x80"), t.encode("\uFFFD\uFFFD"));  // E0 80 is not a prefix: two
  EXPECT_EQ(t.encode("\xed\xa0\x80"), t.encode("\uFFFD\uFFFD\uFFFD"));  // a surrogate
  // kKeepBytes: lossless.
  t.set_invalid_utf8(InvalidUtf8::kKeepBytes);
  const std::string raw = "ok \xff\xfe bytes \xe2\x82 and \xc3";
  EXPECT_EQ(t.decode(t.encode(raw)), raw);
  // kError: names the offset.
  t.set_invalid_utf8(InvalidUtf8::kError);
  expect_error([&] { t.encode("abc\x80"); }, {"offset 3"});
  EXPECT_EQ(t.encode("valid \u00E9"), tok().encode("valid \u00E9"));
}

TEST_F(Gpt2, RandomBytesNeverCrash) {
  std::mt19937_64 rng(1234);
  BpeTokenizer keep = tok();
  keep.set_invalid_utf8(InvalidUtf8::kKeepBytes);
  const std::string alphabet =
      "ab '\n\t <|endoftext|>1\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\x80\xff";
  for (int iter = 0; iter < 3000; ++iter) {
    std::string s(rng() % 64, '\0');
    for (char& c : s) c = (iter % 2) ? static_cast<char>(rng()) : alphabet[rng() % alphabet.size()];
    EXPECT_EQ(keep.decode(keep.encode(s)), s);
    const std::string fixed = modu::data::pretok::replace_invalid_utf8(s);
    EXPECT_EQ(tok().decode(tok().encode(s)), fixed);
  }
}

// Naive BPE by tiktoken's rule over token_id (rank == id for GPT-2), for comparison on long pieces.
Ids reference_bpe(const BpeTokenizer& t, const std::string& piece) {
  std::vector<std::string> parts;
  for (char c : piece) parts.emplace_back(1, c);
  for (;;) {
    int32_t best = -1;
    size_t at = 0;
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      const auto id = t.token_id(parts[i] + parts[i + 1]);
      if (id && (best < 0 || *id < best)) best = *id, at = i;
    }
    if (best < 0) break;
    parts[at] += parts[at + 1];
    parts.erase(parts.begin() + at + 1);
  }
  Ids ids;
  for (const auto& p : parts) ids.push_back(*t.token_id(p));
  return ids;
}

TEST_F(Gpt2, LongPiecesMatchReferenceBpe) {
  std::mt19937_64 rng(99);
  const std::string letters = "etaoinshrdlucmfwyp";
  for (size_t len : {2, 30, 63, 64, 65, 100, 257, 1000, 3000}) {
    for (int k = 0; k < 3; ++k) {
      std::string s(len, 'a');
      for (char& c : s) c = letters[rng() % (k == 0 ? 2 : letters.size())];
      EXPECT_EQ(tok().encode_ordinary(s), reference_bpe(tok(), s)) << "length " << len;
      const std::string punct(len, k == 2 ? '-' : '!');
      EXPECT_EQ(tok().encode_ordinary(punct), reference_bpe(tok(), punct)) << "length " << len;
    }
  }
}

TEST_F(Gpt2, ThreadsShareOneTokenizer) {
  const std::string text = read_file(std::string(MODU_SOURCE_DIR) + "/data/tokenizer/bpe.cpp");
  const Ids want = tok().encode(text);
  std::vector<std::thread> threads;
  std::vector<int> ok(4, 0);
  for (int i = 0; i < 4; ++i) threads.emplace_back([&, i] { ok[i] = tok().encode(text) == want; });
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok, std::vector<int>(4, 1));
}

TEST(TokenizerErrors, NameTheFileAndWhatWasExpected) {
  const fs::path d = temp_dir("errors");
  expect_error([&] { BpeTokenizer::load((d / "nope").string()); },
               {(d / "nope").string(), "no such file"});
  expect_error([&] { BpeTokenizer::load(d.string()); },
               {d.string(), "encoder.json + vocab.bpe", "gpt2.tiktoken"});

  write_file(d / "bad.tiktoken", "IQ== 0\nnot base64! 1\n");
  expect_error([&] { BpeTokenizer::load((d / "bad.tiktoken").string()); },
               {(d / "bad.tiktoken").string() + ":2:", "<base64 token> <rank>"});
  write_file(d / "short.tiktoken", "IQ== 0\nIg== 1\n");
  expect_error([&] { BpeTokenizer::load((d / "short.tiktoken").string()); },
               {(d / "short.tiktoken").string(), "256 single-byte tokens"});
  write_file(d / "dup.tiktoken", "IQ== 0\nIQ== 0\n");
  expect_error([&] { BpeTokenizer::load((d / "dup.tiktoken").string()); },
               {"dup.tiktoken:2:", "repeated"});

  const fs::path g = d / "gym";
  fs::create_directories(g);
  write_file(g / "encoder.json", "{\"a\": 0,");
  write_file(g / "vocab.bpe", "#version: 0.2\n");
  expect_error([&] { BpeTokenizer::load(g.string()); },
               {(g / "encoder.json").string(), "not valid JSON"});
  write_file(g / "vocab.bpe", "a b\n");
  expect_error([&] { BpeTokenizer::load(g.string()); },
               {(g / "vocab.bpe").string() + ":1:", "#version"});
  write_file(g / "vocab.bpe", "#version: 0.2\nab c\n");
  expect_error([&] { BpeTokenizer::load(g.string()); },
               {(g / "vocab.bpe").string() + ":2:", "no earlier line"});
  write_file(g / "vocab.bpe", "#version: 0.2\na b\n");
  write_file(g / "encoder.json", "{\"a\": 0}");
  expect_error([&] { BpeTokenizer::load(g.string()); },
               {(g / "encoder.json").string(), "lacks the token"});

  const fs::path m = d / "meta";
  fs::create_directories(m);
  write_file(m / "modu-tokenizer.json", "{\"format\": \"something-else\"}");
  expect_error([&] { BpeTokenizer::load(m.string()); },
               {"modu-tokenizer.json", "\"format\": \"modu-bpe\""});
  fs::remove_all(d);
}

// A small training corpus: Sherlock Holmes, plain text from a Debian package
// (scripts/install-deps.sh).
std::string sherlock() {
  const std::string path = "/usr/share/gocode/src/github.com/pierrec/lz4/testdata/pg1661.txt";
  std::string text = read_file(path);
  if (text.empty())
    ADD_FAILURE() << path
                  << " is missing: install golang-github-pierrec-lz4-dev (scripts/install-deps.sh)";
  return text;
}

TEST(Trainer, TieBreakingIsDocumentedOrder) {
  // Pieces "ab" and " cd": pairs (a,b), (c,d) and (' ',c) once each. Ties go to the smaller left
  // id: GPT-2 byte ids a=64, b=65, c=66, d=67, ' '=220.
  BpeTrainer trainer({.vocab_size = 260});
  trainer.add_text("ab cd");
  const BpeTokenizer t = trainer.train();
  const auto merges = t.merges();
  ASSERT_EQ(merges.size(), 3u);
  EXPECT_EQ(merges[0], (std::pair<std::string, std::string>{"a", "b"}));
  EXPECT_EQ(merges[1], (std::pair<std::string, std::string>{"c", "d"}));
  EXPECT_EQ(merges[2], (std::pair<std::string, std::string>{"\u0120", "cd"}));
  EXPECT_EQ(t.vocab_size(), 260);
  EXPECT_EQ(t.eot_id(), 259);
  EXPECT_EQ(t.encode("ab cd<|endoftext|>"), (Ids{256, 258, 259}));
}

TEST(Trainer, MostFrequentPairFirstAndNoOverlap) {
  BpeTrainer trainer({.vocab_size = 259});
  // Pieces "aaa", " aaa", " xy", "xy" ("<|endoftext|>" is a boundary). (a,a) sits at 2 positions in
  // each "aaa": count 4. After it, (aa,a) and (x,y) both count 2; x (id 87) < aa (id 256).
  trainer.add_text("aaa aaa xy<|endoftext|>xy");
  const BpeTokenizer t = trainer.train();
  const auto merges = t.merges();
  ASSERT_EQ(merges.size(), 2u);
  EXPECT_EQ(merges[0], (std::pair<std::string, std::string>{"a", "a"}));
  EXPECT_EQ(merges[1], (std::pair<std::string, std::string>{"x", "y"}));
  EXPECT_EQ(t.encode("aaa"), (Ids{256, 64}));  // merges apply left to right, without overlap
}

TEST(Trainer, DeterministicRoundTripAndReloadable) {
  const std::string text = sherlock();
  ASSERT_FALSE(text.empty());
  const fs::path d1 = temp_dir("train1"), d2 = temp_dir("train2");
  BpeTrainer a({.vocab_size = 1024});
  a.add_text(text);
  const BpeTokenizer ta = a.train();
  BpeTrainer a2({.vocab_size = 1024});
  a2.add_text(text);
  const BpeTokenizer ta2 = a2.train();
  ta.save(d1.string());
  ta2.save(d2.string());
  EXPECT_TRUE(read_file(d1 / "encoder.json") == read_file(d2 / "encoder.json"));
  EXPECT_TRUE(read_file(d1 / "vocab.bpe") == read_file(d2 / "vocab.bpe"));
  EXPECT_EQ(ta.vocab_size(), 1024);
  EXPECT_EQ(ta.eot_id(), 1023);
  EXPECT_EQ(a.stats().merges, 1024 - 257);

  const BpeTokenizer loaded = BpeTokenizer::load(d1.string());
  EXPECT_EQ(loaded.vocab_size(), 1024);
  EXPECT_EQ(loaded.eot_id(), 1023);
  const std::string sample =
      text.substr(10000, 20000) + "<|endoftext|>" + "Caf\u00E9 \U0001F600  x";
  const Ids ids = ta.encode(sample);
  EXPECT_EQ(loaded.encode(sample), ids);
  EXPECT_EQ(ta.decode(ids), sample);
  EXPECT_LT(ids.size(), sample.size() / 2);  // it did learn something
  // Saved merges reload identically.
  EXPECT_EQ(loaded.merges(), ta.merges());
  fs::remove_all(d1);
  fs::remove_all(d2);
}

TEST(Trainer, ErrorsAreClear) {
  expect_error([] { BpeTrainer({.vocab_size = 100}); }, {"vocab_size 100", "at least 257"});
  BpeTrainer small({.vocab_size = 1000});
  small.add_text("tiny corpus");
  expect_error([&] { small.train(); }, {"ran out of pairs"});
  expect_error([] { BpeTrainer().add_file("/nonexistent/corpus.txt"); },
               {"/nonexistent/corpus.txt"});
}

}  // namespace
