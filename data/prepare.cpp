// prepare_text / train_tokenizer: corpus files -> token shard set / BPE vocabulary. Policies
// (documents, separator, validation split, safe cuts, overwrite) are documented in prepare.h.
#include "data/prepare.h"

#include <glob.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/check.h"
#include "data/token_dataset.h"
#include "data/tokenizer/trainer.h"
#include "data/tokenizers.h"

namespace modu::data {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

bool is_cut_follower(char c) { return c >= 0x21 && c <= 0x7e; }

std::string human_bytes(uint64_t n) {
  char buf[32];
  if (n >= (1ull << 30)) std::snprintf(buf, sizeof buf, "%.1f GiB", n / double(1ull << 30));
  else if (n >= (1ull << 20)) std::snprintf(buf, sizeof buf, "%.1f MiB", n / double(1ull << 20));
  else if (n >= 1024) std::snprintf(buf, sizeof buf, "%.1f KiB", n / 1024.0);
  else std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(n));
  return buf;
}

int resolve_threads(int threads) {
  if (threads > 0) return threads;
  return std::max(1u, std::thread::hardware_concurrency());
}

// Encodes each text into its own vector, in parallel.
std::vector<std::vector<int32_t>> encode_many(const BpeTokenizer& tok,
                                              const std::vector<std::string_view>& texts, int threads) {
  std::vector<std::vector<int32_t>> out(texts.size());
  const int n_threads = std::min<int>(threads, static_cast<int>(texts.size()));
  if (n_threads <= 1) {
    for (size_t i = 0; i < texts.size(); ++i) out[i] = tok.encode_ordinary(texts[i]);
    return out;
  }
  std::atomic<size_t> next{0};
  std::exception_ptr error;
  std::atomic<bool> failed{false};
  auto work = [&] {
    try {
      for (size_t i; (i = next.fetch_add(1)) < texts.size() && !failed;) {
        out[i] = tok.encode_ordinary(texts[i]);
      }
    } catch (...) {
      if (!failed.exchange(true)) error = std::current_exception();
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < n_threads; ++t) pool.emplace_back(work);
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
  return out;
}

// Reads bytes [begin, end) of a file in chunks cut at safe cuts and hands each batch of chunks'
// tokens, in order, to `sink`.
class ChunkedFileEncoder {
 public:
  ChunkedFileEncoder(const BpeTokenizer& tok, size_t chunk_bytes, int threads)
      : tok_(tok), chunk_bytes_(std::max<size_t>(chunk_bytes, 1)), threads_(threads) {}

  template <class Sink>
  void encode_range(const std::string& path, uint64_t begin, uint64_t end, Sink&& sink) {
    std::ifstream f(path, std::ios::binary);
    MODU_CHECK(f.good(), path, ": cannot open for reading");
    f.seekg(static_cast<std::streamoff>(begin));
    uint64_t pos = begin;  // next file byte to read
    std::string buf;       // unconsumed bytes
    size_t searched = 0;   // no safe cut in buf before this offset (beyond chunk_bytes)
    std::vector<std::string> batch;
    const size_t batch_chunks = static_cast<size_t>(threads_) * 4;
    auto flush = [&] {
      std::vector<std::string_view> views(batch.begin(), batch.end());
      for (auto& ids : encode_many(tok_, views, threads_)) sink(ids);
      batch.clear();
    };
    while (true) {
      size_t cut = std::string::npos;
      if (buf.size() > chunk_bytes_) cut = find_safe_cut(buf, std::max(chunk_bytes_, searched));
      if (cut == std::string::npos) {
        if (pos < end) {  // read more
          searched = std::max(searched, buf.size() > 0 ? buf.size() - 1 : 0);
          const size_t want = static_cast<size_t>(std::min<uint64_t>(chunk_bytes_, end - pos));
          const size_t old = buf.size();
          buf.resize(old + want);
          f.read(buf.data() + old, static_cast<std::streamsize>(want));
          MODU_CHECK(static_cast<size_t>(f.gcount()) == want, path, ": read error at byte ", pos,
                     " (file changed while reading?)");
          pos += want;
          continue;
        }
        cut = buf.size();  // the rest of the range
      }
      if (cut > 0) batch.emplace_back(buf.substr(0, cut));
      buf.erase(0, cut);
      searched = 0;
      if (batch.size() >= batch_chunks) flush();
      if (buf.empty() && pos >= end) break;
    }
    if (!batch.empty()) flush();
  }

 private:
  const BpeTokenizer& tok_;
  size_t chunk_bytes_;
  int threads_;
};

// The byte offset where a document's val part starts (S when it has none).
uint64_t find_val_start(const std::string& path, uint64_t size, double fraction) {
  if (fraction <= 0) return size;
  const uint64_t tail = static_cast<uint64_t>(std::floor(fraction * static_cast<double>(size)));
  if (tail == 0) return size;
  const uint64_t target = std::max<uint64_t>(size - tail, 1);
  std::ifstream f(path, std::ios::binary);
  MODU_CHECK(f.good(), path, ": cannot open for reading");
  // Read from target - 0 in growing blocks; a cut at p needs bytes p and p + 1.
  uint64_t start = target;
  std::string buf;
  const size_t block = 1 << 16;
  while (start < size) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(block, size - start));
    buf.resize(want);
    f.seekg(static_cast<std::streamoff>(start));
    f.read(buf.data(), static_cast<std::streamsize>(want));
    MODU_CHECK(static_cast<size_t>(f.gcount()) == want, path, ": read error at byte ", start);
    const size_t p = find_safe_cut(buf, 0);
    if (p != std::string::npos) return start + p;
    if (start + want >= size) break;
    start += want - 1;  // keep the last byte: it may be a '\n' whose follower is in the next block
  }
  return size;
}

}  // namespace

std::vector<std::string> expand_input_files(const std::vector<std::string>& patterns) {
  std::vector<std::string> files;
  MODU_CHECK(!patterns.empty(), "no input files given");
  for (const std::string& pat : patterns) {
    std::error_code ec;
    if (pat.find_first_of("*?[") == std::string::npos) {
      MODU_CHECK(fs::exists(pat, ec), pat, ": no such file");
      MODU_CHECK(fs::is_regular_file(pat, ec), pat, ": not a regular file (expected a text file)");
      files.push_back(pat);
      continue;
    }
    glob_t g{};
    const int rc = ::glob(pat.c_str(), 0, nullptr, &g);
    std::vector<std::string> matched;
    if (rc == 0) {
      for (size_t i = 0; i < g.gl_pathc; ++i) {
        if (fs::is_regular_file(g.gl_pathv[i], ec)) matched.emplace_back(g.gl_pathv[i]);
      }
    }
    ::globfree(&g);
    MODU_CHECK(!matched.empty(), pat, ": no file matches this pattern");
    std::sort(matched.begin(), matched.end());
    files.insert(files.end(), matched.begin(), matched.end());
  }
  return files;
}

size_t find_safe_cut(std::string_view text, size_t from) {
  for (size_t p = text.find('\n', from); p != std::string_view::npos; p = text.find('\n', p + 1)) {
    if (p + 1 >= text.size()) return std::string_view::npos;
    if (is_cut_follower(text[p + 1])) return p;
  }
  return std::string_view::npos;
}

std::vector<int32_t> encode_chunked(const BpeTokenizer& tok, std::string_view text, size_t chunk_bytes,
                                    int threads) {
  std::vector<std::string_view> chunks;
  chunk_bytes = std::max<size_t>(chunk_bytes, 1);
  while (!text.empty()) {
    size_t cut = text.size() > chunk_bytes ? find_safe_cut(text, chunk_bytes) : std::string_view::npos;
    if (cut == std::string_view::npos) cut = text.size();
    chunks.push_back(text.substr(0, cut));
    text.remove_prefix(cut);
  }
  std::vector<int32_t> out;
  for (auto& ids : encode_many(tok, chunks, resolve_threads(threads))) {
    out.insert(out.end(), ids.begin(), ids.end());
  }
  return out;
}

PrepareTextReport prepare_text(const PrepareTextOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  auto log = [&](const std::string& s) {
    if (opt.log) opt.log(s);
  };
  MODU_CHECK(opt.val_fraction >= 0 && opt.val_fraction < 1, "--val-fraction ", opt.val_fraction,
             ": expected a fraction in [0, 1)");
  MODU_CHECK(opt.shard_tokens > 0, "--shard-tokens must be positive");
  MODU_CHECK(!opt.out_dir.empty(), "no output directory given (--out DIR)");
  const std::vector<std::string> files = expand_input_files(opt.inputs);

  // The corpus must hold text, and where a val split is asked for, some of it must go to val.
  struct Doc {
    std::string path;
    uint64_t size, val_start;
  };
  std::vector<Doc> docs;
  PrepareTextReport rep;
  for (const std::string& f : files) {
    const uint64_t size = fs::file_size(f);
    if (size == 0) {
      ++rep.skipped_empty;
      log("skipping empty file " + f);
      continue;
    }
    docs.push_back({f, size, find_val_start(f, size, opt.val_fraction)});
    rep.text_bytes += size;
  }
  if (docs.empty()) {
    std::string names;
    for (size_t i = 0; i < files.size() && i < 5; ++i) names += (i ? ", " : "") + files[i];
    if (files.size() > 5) names += ", ...";
    MODU_FAIL("empty corpus: the ", files.size(), " input file(s) (", names,
              ") hold no text; expected at least one non-empty text file");
  }
  const bool want_val = opt.val_fraction > 0;
  if (want_val) {
    const bool any_val = std::any_of(docs.begin(), docs.end(),
                                     [](const Doc& d) { return d.val_start < d.size; });
    MODU_CHECK(any_val, "validation split: with --val-fraction ", opt.val_fraction,
               " no input has a line break in its tail to start a val part at (", docs.size(),
               " document(s), ", rep.text_bytes,
               " bytes); use a larger fraction, more text, or --val-fraction 0");
  }

  BpeTokenizer tok = load_tokenizer(opt.tokenizer);
  tok.set_invalid_utf8(opt.invalid_utf8);
  const uint32_t vocab = static_cast<uint32_t>(tok.vocab_size());
  const int32_t eot = tok.eot_id();
  rep.vocab_size = vocab;
  // Output directory: never replace an existing set silently.
  std::error_code ec;
  MODU_CHECK(!fs::exists(opt.out_dir, ec) || fs::is_directory(opt.out_dir, ec), opt.out_dir,
             ": exists and is not a directory");
  const std::vector<std::string> existing = shard_set_files(opt.out_dir);
  if (!existing.empty()) {
    MODU_CHECK(opt.force, opt.out_dir, ": already holds a token shard set (", existing.front(),
               existing.size() > 1 ? ", ..." : "", "); pass --force to replace it");
    fs::remove(fs::path(opt.out_dir) / "meta.json", ec);  // the old set is no longer complete
  }
  fs::create_directories(opt.out_dir, ec);
  MODU_CHECK(!ec, opt.out_dir, ": cannot create the directory: ", ec.message());

  const int threads = resolve_threads(opt.threads);
  log("tokenizer " + opt.tokenizer + " (" + tok.source() + "): vocab " + std::to_string(vocab) +
      ", " + (token_width_for_vocab(vocab) == 2 ? "u16" : "u32") + " tokens; " +
      std::to_string(docs.size()) + " documents, " + human_bytes(rep.text_bytes) + ", " +
      std::to_string(threads) + " threads");

  TokenShardSetWriter train(opt.out_dir, "train", vocab, static_cast<uint32_t>(eot), opt.shard_tokens,
                            opt.force);
  TokenShardSetWriter val(opt.out_dir, "val", vocab, static_cast<uint32_t>(eot), opt.shard_tokens,
                          opt.force);
  ChunkedFileEncoder enc(tok, opt.chunk_bytes, threads);
  json inputs = json::array();
  for (const Doc& d : docs) {
    const uint64_t train_before = train.tokens(), val_before = val.tokens();
    train.append(eot);
    enc.encode_range(d.path, 0, d.val_start, [&](const std::vector<int32_t>& ids) { train.append(ids); });
    if (d.val_start < d.size) {
      val.append(eot);
      enc.encode_range(d.path, d.val_start, d.size,
                       [&](const std::vector<int32_t>& ids) { val.append(ids); });
    }
    const uint64_t nt = train.tokens() - train_before, nv = val.tokens() - val_before;
    inputs.push_back({{"file", fs::absolute(d.path).lexically_normal().string()},
                      {"bytes", d.size},
                      {"val_start_byte", d.val_start},
                      {"train_tokens", nt},
                      {"val_tokens", nv}});
    log(d.path + ": " + human_bytes(d.size) + " -> " + std::to_string(nt) + " train + " +
        std::to_string(nv) + " val tokens");
  }
  rep.documents = docs.size();
  rep.train_tokens = train.tokens();
  rep.val_tokens = val.tokens();
  const std::vector<ShardInfo> train_shards = train.finish();
  const std::vector<ShardInfo> val_shards = val.finish();

  ShardSetMeta meta;
  meta.tokenizer = opt.tokenizer == "gpt2" ? "gpt2" : fs::absolute(opt.tokenizer).lexically_normal().string();
  meta.vocab_size = vocab;
  meta.eot_id = static_cast<uint32_t>(eot);
  meta.shard_tokens = opt.shard_tokens;
  meta.splits.emplace_back("train", train_shards);
  if (!val_shards.empty()) meta.splits.emplace_back("val", val_shards);
  json extra = {
      {"documents", docs.size()},
      {"text_bytes", rep.text_bytes},
      {"val_fraction", opt.val_fraction},
      {"val_policy",
       "per document: the val part starts at the first safe cut ('\\n' followed by printable "
       "ASCII) at or after byte size - floor(val_fraction * size)"},
      {"document_separator", "<|endoftext|> before every document part"},
      {"encoding", "encode_ordinary; invalid UTF-8 kept as bytes"},
      {"inputs", inputs},
  };
  // Remove shards of a replaced set that the new set does not overwrite, then commit meta.json.
  for (const std::string& name : existing) {
    if (name == "meta.json") continue;
    auto in = [&](const std::vector<ShardInfo>& v) {
      return std::any_of(v.begin(), v.end(), [&](const ShardInfo& s) { return s.file == name; });
    };
    if (!in(train_shards) && !in(val_shards)) fs::remove(fs::path(opt.out_dir) / name, ec);
  }
  meta.extra_json = extra.dump();
  write_shard_set_meta(opt.out_dir, meta);
  for (const ShardInfo& s : train_shards) rep.train_files.push_back((fs::path(opt.out_dir) / s.file).string());
  for (const ShardInfo& s : val_shards) rep.val_files.push_back((fs::path(opt.out_dir) / s.file).string());
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return rep;
}

BpeTokenizer train_tokenizer(const TrainTokenizerOptions& opt) {
  auto log = [&](const std::string& s) {
    if (opt.log) opt.log(s);
  };
  MODU_CHECK(!opt.out_dir.empty(), "no output directory given (--out DIR)");
  MODU_CHECK(opt.vocab_size >= 257, "--vocab-size ", opt.vocab_size,
             ": expected at least 257 (256 byte tokens + <|endoftext|>)");
  const std::vector<std::string> files = expand_input_files(opt.inputs);
  std::error_code ec;
  for (const char* f : {"modu-tokenizer.json", "encoder.json", "vocab.bpe"}) {
    const fs::path p = fs::path(opt.out_dir) / f;
    MODU_CHECK(opt.force || !fs::exists(p, ec), p.string(),
               ": exists; refusing to overwrite a tokenizer (pass --force to replace it)");
  }
  uint64_t bytes = 0;
  for (const std::string& f : files) bytes += fs::file_size(f);
  MODU_CHECK(bytes > 0, "empty corpus: the ", files.size(), " input file(s) (", files.front(),
             files.size() > 1 ? ", ..." : "", ") hold no text");
  BpeTrainerOptions to;
  to.vocab_size = opt.vocab_size;
  to.invalid_utf8 = opt.invalid_utf8;
  BpeTrainer trainer(to);
  for (const std::string& f : files) trainer.add_file(f);
  BpeTokenizer tok = trainer.train();
  tok.save(opt.out_dir);
  const BpeTrainerStats& st = trainer.stats();
  char secs[32];
  std::snprintf(secs, sizeof secs, "%.2f s", st.count_seconds + st.merge_seconds);
  log(std::to_string(files.size()) + " files, " + human_bytes(bytes) + ": " + std::to_string(st.pieces) +
      " pieces (" + std::to_string(st.unique_pieces) + " distinct); learnt " + std::to_string(st.merges) +
      " merges in " + secs + "; vocab " + std::to_string(tok.vocab_size()) + " written to " + opt.out_dir);
  return tok;
}

}  // namespace modu::data
