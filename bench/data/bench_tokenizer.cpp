// modu_bench_tokenizer: single-threaded throughput of modu's GPT-2 tokenizer (encode_ordinary) and,
// on request, of the BPE trainer. Prints one JSON object on stdout for bench_tokenizer.py, which
// measures tiktoken on the same text in the same run and prints the ratio (ARCHITECTURE.md §10).
//   modu_bench_tokenizer --vocab PATH --text FILE [--reps N] [--train-vocab V --train-text FILE]
// Timing: best of --reps runs after one warm-up run; the text is read into memory first.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "data/tokenizer/bpe.h"
#include "data/tokenizer/trainer.h"

namespace {

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw modu::data::TokenizerError(path + ": cannot open for reading");
  std::ostringstream ss;
  ss << f.rdbuf();
  return std::move(ss).str();
}

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

int main(int argc, char** argv) {
  std::string vocab, text_path, train_text;
  int reps = 5, train_vocab = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--vocab")
      vocab = v;
    else if (a == "--text")
      text_path = v;
    else if (a == "--reps")
      reps = std::stoi(v);
    else if (a == "--train-vocab")
      train_vocab = std::stoi(v);
    else if (a == "--train-text")
      train_text = v;
    else {
      std::fprintf(stderr, "modu_bench_tokenizer: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  if (vocab.empty() || text_path.empty()) {
    std::fprintf(stderr,
                 "usage: modu_bench_tokenizer --vocab PATH --text FILE [--reps N] "
                 "[--train-vocab V --train-text FILE]\n");
    return 2;
  }
  try {
    double t = now();
    const auto tok = modu::data::BpeTokenizer::load(vocab);
    const double load_s = now() - t;
    const std::string text = read_file(text_path);
    size_t tokens = tok.encode_ordinary(text).size();  // warm-up
    double best = 1e30;
    for (int r = 0; r < reps; ++r) {
      t = now();
      tokens = tok.encode_ordinary(text).size();
      best = std::min(best, now() - t);
    }
    std::printf(
        "{\"bytes\": %zu, \"tokens\": %zu, \"best_s\": %.6f, \"mb_per_s\": %.3f, \"load_s\": %.4f",
        text.size(), tokens, best, text.size() / best / 1e6, load_s);
    if (train_vocab > 0) {
      modu::data::BpeTrainer trainer({.vocab_size = train_vocab});
      t = now();
      trainer.add_text(read_file(train_text.empty() ? text_path : train_text));
      trainer.train();
      const auto& st = trainer.stats();
      std::printf(
          ", \"train_vocab\": %d, \"train_bytes\": %llu, \"train_s\": %.3f, \"train_count_s\": "
          "%.3f, "
          "\"train_merge_s\": %.3f, \"train_unique_pieces\": %llu",
          train_vocab, static_cast<unsigned long long>(st.bytes), now() - t, st.count_seconds,
          st.merge_seconds, static_cast<unsigned long long>(st.unique_pieces));
    }
    std::printf("}\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "modu_bench_tokenizer: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
