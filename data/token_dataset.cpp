// Token shard sets: the split writer with shard rotation, meta.json, and the opened stream of a
// split (see token_dataset.h for the directory layout and invariants).
#include "data/token_dataset.h"

#include <glob.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/check.h"

namespace modu::data {
namespace fs = std::filesystem;
using nlohmann::json;

// ---- writer -----------------------------------------------------------------------------------

TokenShardSetWriter::TokenShardSetWriter(std::string dir, std::string split, uint32_t vocab_size,
                                         uint32_t eot_id, uint64_t shard_tokens, bool overwrite)
    : dir_(std::move(dir)),
      split_(std::move(split)),
      vocab_size_(vocab_size),
      eot_id_(eot_id),
      shard_tokens_(shard_tokens),
      overwrite_(overwrite) {
  MODU_CHECK(shard_tokens_ > 0, "shard size must be at least one token");
}

void TokenShardSetWriter::append(std::span<const int32_t> tokens) {
  while (!tokens.empty()) {
    if (!current_) {
      const std::string path = (fs::path(dir_) / token_shard_file_name(split_, done_.size())).string();
      current_ = std::make_unique<TokenShardWriter>(path, vocab_size_, eot_id_, overwrite_);
    }
    const uint64_t room = shard_tokens_ - current_->count();
    const size_t n = static_cast<size_t>(std::min<uint64_t>(room, tokens.size()));
    current_->append(tokens.first(n));
    total_ += n;
    tokens = tokens.subspan(n);
    if (current_->count() == shard_tokens_) {
      current_->commit();
      done_.push_back({fs::path(current_->path()).filename().string(), current_->count()});
      current_.reset();
    }
  }
}

std::vector<ShardInfo> TokenShardSetWriter::finish() {
  if (current_) {
    current_->commit();
    done_.push_back({fs::path(current_->path()).filename().string(), current_->count()});
    current_.reset();
  }
  return done_;
}

// ---- meta.json --------------------------------------------------------------------------------

void write_shard_set_meta(const std::string& dir, const ShardSetMeta& meta) {
  json j = json::parse(meta.extra_json);
  MODU_CHECK(j.is_object(), "shard set meta: extra_json must be a JSON object");
  j["format"] = "modu-token-shards";
  j["version"] = 1;
  j["tokenizer"] = meta.tokenizer;
  j["vocab_size"] = meta.vocab_size;
  if (meta.eot_id != kNoEot) j["eot_id"] = meta.eot_id;
  j["dtype"] = token_width_for_vocab(meta.vocab_size) == 2 ? "u16" : "u32";
  j["shard_tokens"] = meta.shard_tokens;
  json splits = json::object();
  for (const auto& [name, shards] : meta.splits) {
    json list = json::array();
    uint64_t total = 0;
    for (const ShardInfo& s : shards) {
      list.push_back({{"file", s.file}, {"tokens", s.tokens}});
      total += s.tokens;
    }
    splits[name] = {{"tokens", total}, {"shards", list}};
  }
  j["splits"] = splits;
  const fs::path path = fs::path(dir) / "meta.json";
  const std::string tmp = path.string() + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    MODU_CHECK(f.good(), tmp, ": cannot create");
    f << j.dump(2) << "\n";
    f.flush();
    MODU_CHECK(f.good(), tmp, ": write failed");
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp);
    MODU_FAIL(path.string(), ": rename failed: ", ec.message());
  }
}

ShardSetMeta read_shard_set_meta(const std::string& dir) {
  const std::string path = (fs::path(dir) / "meta.json").string();
  std::ifstream f(path, std::ios::binary);
  MODU_CHECK(f.good(), path,
             ": missing; a token shard-set directory needs the meta.json that `modu prepare text` "
             "writes last (was the prepare interrupted?)");
  std::stringstream ss;
  ss << f.rdbuf();
  json j;
  try {
    j = json::parse(ss.str());
  } catch (const json::exception& e) {
    MODU_FAIL(path, ": not valid JSON: ", e.what());
  }
  auto need = [&](const char* key) -> const json& {
    MODU_CHECK(j.is_object() && j.contains(key), path, ": missing key \"", key, "\"");
    return j.at(key);
  };
  MODU_CHECK(need("format") == "modu-token-shards", path,
             ": \"format\" is not \"modu-token-shards\"");
  MODU_CHECK(need("version") == 1, path, ": version ", need("version").dump(), ", expected 1");
  ShardSetMeta m;
  try {
    m.tokenizer = need("tokenizer").get<std::string>();
    m.vocab_size = need("vocab_size").get<uint32_t>();
    m.eot_id = j.contains("eot_id") ? j.at("eot_id").get<uint32_t>() : kNoEot;
    m.shard_tokens = need("shard_tokens").get<uint64_t>();
    for (const auto& [name, split] : need("splits").items()) {
      std::vector<ShardInfo> shards;
      for (const json& s : split.at("shards")) {
        shards.push_back({s.at("file").get<std::string>(), s.at("tokens").get<uint64_t>()});
      }
      m.splits.emplace_back(name, std::move(shards));
    }
  } catch (const json::exception& e) {
    MODU_FAIL(path, ": malformed: ", e.what());
  }
  json extra = j;
  for (const char* k : {"format", "version", "tokenizer", "vocab_size", "eot_id", "dtype",
                        "shard_tokens", "splits"}) {
    extra.erase(k);
  }
  m.extra_json = extra.dump();
  return m;
}

namespace {
// True for names of the form (meta.json | LETTERS_DIGITS{6,}.bin) optionally followed by .tmp.DIGITS+.
bool is_shard_set_file(std::string_view name) {
  auto all_digits = [](std::string_view s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
  };
  size_t tmp = name.find(".tmp.");
  if (tmp != std::string_view::npos) {
    if (!all_digits(name.substr(tmp + 5))) return false;
    name = name.substr(0, tmp);
  }
  if (name == "meta.json") return true;
  if (name.size() < 4 || name.substr(name.size() - 4) != ".bin") return false;
  name.remove_suffix(4);
  size_t us = name.find('_');
  if (us == 0 || us == std::string_view::npos) return false;
  std::string_view letters = name.substr(0, us), digits = name.substr(us + 1);
  bool alpha = std::all_of(letters.begin(), letters.end(),
                           [](char ch) { return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'); });
  return alpha && digits.size() >= 6 && all_digits(digits);
}
}  // namespace

std::vector<std::string> shard_set_files(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (is_shard_set_file(name)) out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// ---- reader -----------------------------------------------------------------------------------

TokenShardSet TokenShardSet::open_files(const std::vector<std::string>& files,
                                        std::string description) {
  MODU_CHECK(!files.empty(), description, ": no token shards");
  TokenShardSet set;
  set.description_ = std::move(description);
  for (const std::string& f : files) {
    TokenShard s = TokenShard::open(f);
    if (set.shards_.empty()) {
      set.vocab_size_ = s.vocab_size();
      set.eot_id_ = s.header().eot_id;
    }
    MODU_CHECK(s.vocab_size() == set.vocab_size_, f, ": vocab size ", s.vocab_size(),
               ", but ", set.shards_.front().path(), " has ", set.vocab_size_,
               " (shards of one set must share a tokenizer)");
    set.starts_.push_back(set.total_);
    set.total_ += s.size();
    set.shards_.push_back(std::move(s));
  }
  return set;
}

TokenShardSet TokenShardSet::open(const std::string& spec, const std::string& split) {
  std::error_code ec;
  if (fs::is_directory(spec, ec)) {
    const ShardSetMeta meta = read_shard_set_meta(spec);
    const std::string meta_path = (fs::path(spec) / "meta.json").string();
    const std::vector<ShardInfo>* shards = nullptr;
    std::string have;
    for (const auto& [name, list] : meta.splits) {
      if (name == split) shards = &list;
      have += (have.empty() ? "" : ", ") + name;
    }
    MODU_CHECK(shards && !shards->empty(), meta_path, ": no \"", split,
               "\" split (the set has: ", have.empty() ? "none" : have, ")",
               split == "val" ? "; prepare with --val-fraction > 0 to get one" : "");
    std::vector<std::string> files;
    for (const ShardInfo& s : *shards) {
      const std::string f = (fs::path(spec) / s.file).string();
      MODU_CHECK(fs::exists(f, ec), f, ": missing (listed in ", meta_path, ")");
      files.push_back(f);
    }
    TokenShardSet set = open_files(files, spec + " [" + split + "]");
    for (size_t i = 0; i < files.size(); ++i) {
      MODU_CHECK(set.shards_[i].size() == (*shards)[i].tokens, files[i], ": holds ",
                 set.shards_[i].size(), " tokens, ", meta_path, " says ", (*shards)[i].tokens);
    }
    MODU_CHECK(set.vocab_size_ == meta.vocab_size, files[0], ": vocab size ", set.vocab_size_,
               ", ", meta_path, " says ", meta.vocab_size);
    return set;
  }
  if (spec.find_first_of("*?[") != std::string::npos) {
    glob_t g{};
    const int rc = ::glob(spec.c_str(), 0, nullptr, &g);
    std::vector<std::string> files;
    if (rc == 0) {
      for (size_t i = 0; i < g.gl_pathc; ++i) files.emplace_back(g.gl_pathv[i]);
    }
    ::globfree(&g);
    MODU_CHECK(!files.empty(), spec, ": no token shard matches this pattern");
    std::sort(files.begin(), files.end());
    return open_files(files, spec);
  }
  // "DIR/train": the train split of the set in DIR.
  const fs::path as_path(spec);
  if (!fs::exists(as_path, ec) && !as_path.parent_path().empty() &&
      fs::exists(as_path.parent_path() / "meta.json", ec)) {
    return open(as_path.parent_path().string(), as_path.filename().string());
  }
  MODU_CHECK(fs::exists(spec, ec), spec,
             ": no such file or directory (expected a shard-set directory, DIR/SPLIT such as "
             "data/train, a glob of shards or one shard file)");
  return open_files({spec}, spec);
}

void TokenShardSet::read(uint64_t begin, uint64_t n, int64_t* out) const {
  MODU_CHECK(begin <= total_ && n <= total_ - begin, description_, ": read of tokens [", begin, ", ",
             begin + n, ") past the end of the stream (", total_, " tokens)");
  if (n == 0) return;
  // The shard holding `begin`: the last one starting at or before it.
  size_t i = static_cast<size_t>(std::upper_bound(starts_.begin(), starts_.end(), begin) -
                                 starts_.begin()) - 1;
  while (n > 0) {
    const uint64_t local = begin - starts_[i];
    const uint64_t take = std::min<uint64_t>(n, shards_[i].size() - local);
    shards_[i].read(local, take, out);
    out += take;
    begin += take;
    n -= take;
    ++i;
  }
}

}  // namespace modu::data
