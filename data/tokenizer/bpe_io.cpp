// Loading and saving BpeTokenizer vocabularies: tiktoken ranks files, OpenAI's encoder.json +
// vocab.bpe (= Hugging Face vocab.json + merges.txt), and modu's own directory (those two plus
// modu-tokenizer.json).
// Invariants: every error names the file (and line or token) and says what was expected; save()
// writes each file under a temporary name and renames it, and for GPT-2 reproduces OpenAI's two
// files byte for byte (Python json.dumps formatting, ids in order, "#version: 0.2" header).
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <unordered_map>

#include "data/tokenizer/bpe_impl.h"
#include "data/tokenizer/pretokenize.h"

namespace modu::data {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kMetaFile = "modu-tokenizer.json";
constexpr const char* kMetaFormat = "modu-bpe";
constexpr int kMetaVersion = 1;

std::string read_file(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw TokenizerError(path.string() + ": cannot open the file for reading");
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) throw TokenizerError(path.string() + ": read error");
  return std::move(ss).str();
}

void write_file_atomic(const fs::path& path, const std::string& content) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw TokenizerError(tmp.string() + ": cannot open the file for writing");
    f.write(content.data(), static_cast<std::streamsize>(content.size()));
    f.flush();
    if (!f) throw TokenizerError(tmp.string() + ": write error");
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec)
    throw TokenizerError(path.string() + ": cannot rename the temporary file: " + ec.message());
}

// Splits into lines on '\n'; a final line without '\n' counts, an empty final piece does not.
std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

bool decode_base64(std::string_view in, std::string& out) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  out.clear();
  if (in.empty() || in.size() % 4 != 0) return false;
  for (size_t i = 0; i < in.size(); i += 4) {
    const bool last = i + 4 == in.size();
    const int pad = last ? (in[i + 3] == '=') + (in[i + 2] == '=') : 0;
    if (pad == 1 && in[i + 2] == '=') return false;
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      const int d = k >= 4 - pad ? 0 : val(in[i + k]);
      if (d < 0) return false;
      v = (v << 6) | static_cast<uint32_t>(d);
    }
    out += static_cast<char>(v >> 16);
    if (pad < 2) out += static_cast<char>((v >> 8) & 0xFF);
    if (pad < 1) out += static_cast<char>(v & 0xFF);
  }
  return true;
}

bool parse_int(std::string_view s, int64_t& v) {
  if (s.empty() || s.size() > 12) return false;
  v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  return true;
}

std::shared_ptr<BpeTokenizer::Impl> new_impl(const std::vector<std::string>& tokens,
                                             std::string source) {
  auto impl = std::make_shared<BpeTokenizer::Impl>();
  impl->source = std::move(source);
  impl->offs.push_back(0);
  for (const std::string& t : tokens) {
    impl->arena += t;
    impl->offs.push_back(static_cast<uint32_t>(impl->arena.size()));
  }
  return impl;
}

// A tiktoken ranks file: "<base64 token> <rank>" per line, ranks a permutation of 0..N-1.
std::shared_ptr<BpeTokenizer::Impl> load_tiktoken(const fs::path& path) {
  const std::string p = path.string();
  const std::string text = read_file(path);
  const std::vector<std::string_view> lines = split_lines(text);
  if (lines.empty())
    throw TokenizerError(p + ": empty file, expected '<base64 token> <rank>' lines");
  std::vector<std::string> tokens(lines.size());
  std::vector<char> have(lines.size(), 0);
  std::string bytes;
  for (size_t i = 0; i < lines.size(); ++i) {
    std::string_view line = lines[i];
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const size_t sp = line.find(' ');
    int64_t rank;
    const std::string at = p + ":" + std::to_string(i + 1) + ": ";
    if (sp == std::string_view::npos || !decode_base64(line.substr(0, sp), bytes) ||
        !parse_int(line.substr(sp + 1), rank)) {
      throw TokenizerError(at + "expected '<base64 token> <rank>' (a tiktoken ranks file), got '" +
                           std::string(line.substr(0, 60)) + "'");
    }
    if (rank < 0 || rank >= static_cast<int64_t>(lines.size()) || have[rank]) {
      throw TokenizerError(at + "rank " + std::to_string(rank) +
                           " is out of range or repeated; expected " + "each of 0.." +
                           std::to_string(lines.size() - 1) + " once");
    }
    have[rank] = 1;
    tokens[rank] = bytes;
  }
  auto impl = new_impl(tokens, p);
  impl->specials.push_back(
      {std::string(BpeTokenizer::kEndOfText), static_cast<int32_t>(tokens.size())});
  impl->build({});
  return impl;
}

// OpenAI's data-gym pair (encoder.json + vocab.bpe), or HF's vocab.json + merges.txt, or modu's own
// directory (meta != nullptr: the special tokens it lists must match encoder.json's).
std::shared_ptr<BpeTokenizer::Impl> load_data_gym(const fs::path& enc_path,
                                                  const fs::path& merges_path, const json* meta,
                                                  const fs::path& meta_path) {
  const std::string ep = enc_path.string(), mp = merges_path.string();
  // Ranks: the 256 bytes in GPT-2's order (printable Latin-1 first), then one per merge line.
  std::vector<std::string> tokens;
  tokens.reserve(50257);
  for (int pass = 0; pass < 2; ++pass) {
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      if (printable == (pass == 0)) tokens.emplace_back(1, static_cast<char>(b));
    }
  }
  std::vector<std::pair<int32_t, int32_t>> merges;
  std::unordered_map<std::string, uint32_t> rank_of;
  for (uint32_t r = 0; r < 256; ++r) rank_of.emplace(tokens[r], r);
  {
    const std::string text = read_file(merges_path);
    const std::vector<std::string_view> lines = split_lines(text);
    if (lines.empty() || lines[0].rfind("#version", 0) != 0) {
      throw TokenizerError(
          mp + ":1: expected a '#version: 0.2' header line (a GPT-2 vocab.bpe / HF merges.txt)");
    }
    for (size_t i = 1; i < lines.size(); ++i) {
      std::string_view line = lines[i];
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      const std::string at = mp + ":" + std::to_string(i + 1) + ": ";
      const size_t sp = line.find(' ');
      if (line.empty() || sp == std::string_view::npos ||
          line.find(' ', sp + 1) != std::string_view::npos) {
        throw TokenizerError(at + "expected a merge '<left> <right>', got '" +
                             std::string(line.substr(0, 60)) + "'");
      }
      const auto left = unicode_to_bytes(line.substr(0, sp)),
                 right = unicode_to_bytes(line.substr(sp + 1));
      if (!left || !right) {
        throw TokenizerError(at + "the merge has a character outside GPT-2's byte-to-unicode map");
      }
      const auto a = rank_of.find(*left), b = rank_of.find(*right);
      if (a == rank_of.end() || b == rank_of.end()) {
        throw TokenizerError(at + "the merge uses a token that no earlier line creates");
      }
      const uint32_t r = static_cast<uint32_t>(tokens.size());
      if (!rank_of.emplace(*left + *right, r).second) {
        throw TokenizerError(at + "the merge creates a token that already exists");
      }
      merges.emplace_back(a->second, b->second);
      tokens.push_back(*left + *right);
    }
  }
  // Ids from encoder.json; entries that are not byte-level tokens are the special tokens.
  json enc;
  try {
    enc = json::parse(read_file(enc_path));
  } catch (const json::parse_error& e) {
    throw TokenizerError(ep + ": not valid JSON: " + e.what());
  }
  if (!enc.is_object()) throw TokenizerError(ep + ": expected a JSON object {token: id}");
  auto impl = new_impl(tokens, enc_path.parent_path().string());
  impl->rank_to_id.assign(tokens.size(), -1);
  for (const auto& [key, value] : enc.items()) {
    if (!value.is_number_integer()) {
      throw TokenizerError(ep + ": the id of token \"" + key + "\" is not an integer");
    }
    const int32_t id = value.get<int32_t>();
    const auto bytes = unicode_to_bytes(key);
    const auto it = bytes ? rank_of.find(*bytes) : rank_of.end();
    if (it == rank_of.end()) {
      impl->specials.push_back({key, id});
      continue;
    }
    impl->rank_to_id[it->second] = id;
  }
  for (size_t r = 0; r < tokens.size(); ++r) {
    if (impl->rank_to_id[r] < 0) {
      throw TokenizerError(
          ep + ": lacks the token \"" + bytes_to_unicode(tokens[r]) + "\"" +
          (r < 256 ? " (a single byte)"
                   : " (created by merge line " + std::to_string(r - 256 + 2) + " of " + mp + ")"));
    }
  }
  std::sort(impl->specials.begin(), impl->specials.end(),
            [](const SpecialToken& a, const SpecialToken& b) { return a.id < b.id; });
  if (meta) {
    const std::string mt = meta_path.string();
    const json& want = (*meta)["special_tokens"];
    if (!want.is_object()) throw TokenizerError(mt + ": expected \"special_tokens\": {text: id}");
    std::vector<SpecialToken> listed;
    for (const auto& [text, id] : want.items()) {
      if (!id.is_number_integer())
        throw TokenizerError(mt + ": the id of special token " + text + " is not an integer");
      listed.push_back({text, id.get<int32_t>()});
    }
    std::sort(listed.begin(), listed.end(),
              [](const SpecialToken& a, const SpecialToken& b) { return a.id < b.id; });
    bool same = listed.size() == impl->specials.size();
    for (size_t k = 0; same && k < listed.size(); ++k) {
      same = listed[k].text == impl->specials[k].text && listed[k].id == impl->specials[k].id;
    }
    if (!same) {
      throw TokenizerError(mt + ": \"special_tokens\" does not match the non-BPE entries of " + ep);
    }
  }
  impl->build(std::move(merges));
  return impl;
}

std::shared_ptr<BpeTokenizer::Impl> load_dir(const fs::path& dir) {
  auto has = [&](const char* name) { return fs::is_regular_file(dir / name); };
  if (has(kMetaFile)) {
    const fs::path mt = dir / kMetaFile;
    json meta;
    try {
      meta = json::parse(read_file(mt));
    } catch (const json::parse_error& e) {
      throw TokenizerError(mt.string() + ": not valid JSON: " + e.what());
    }
    if (!meta.is_object() || meta.value("format", "") != kMetaFormat ||
        meta.value("version", 0) != kMetaVersion) {
      throw TokenizerError(mt.string() + ": expected \"format\": \"" + kMetaFormat +
                           "\" and \"version\": " + std::to_string(kMetaVersion));
    }
    const std::string vocab = meta.value("vocab_file", "encoder.json");
    const std::string merges = meta.value("merges_file", "vocab.bpe");
    for (const std::string& f : {vocab, merges}) {
      if (!fs::is_regular_file(dir / f)) {
        throw TokenizerError((dir / f).string() + ": missing (named by " + mt.string() + ")");
      }
    }
    return load_data_gym(dir / vocab, dir / merges, &meta, mt);
  }
  if (has("encoder.json") && has("vocab.bpe"))
    return load_data_gym(dir / "encoder.json", dir / "vocab.bpe", nullptr, {});
  if (has("vocab.json") && has("merges.txt"))
    return load_data_gym(dir / "vocab.json", dir / "merges.txt", nullptr, {});
  if (has("gpt2.tiktoken")) return load_tiktoken(dir / "gpt2.tiktoken");
  if (has("r50k_base.tiktoken")) return load_tiktoken(dir / "r50k_base.tiktoken");
  throw TokenizerError(
      dir.string() + ": no vocabulary here; expected " + kMetaFile +
      ", encoder.json + vocab.bpe, vocab.json + merges.txt, gpt2.tiktoken or r50k_base.tiktoken"
      " (scripts/fetch-gpt2-vocab.sh fetches GPT-2's)");
}

// Python's json.dumps string escaping (ensure_ascii=True): OpenAI's encoder.json is written this
// way.
void append_json_string(std::string& out, std::string_view s, const std::string& what) {
  static const char* hex = "0123456789abcdef";
  auto u4 = [&](uint32_t v) {
    out += "\\u";
    for (int sh = 12; sh >= 0; sh -= 4) out += hex[(v >> sh) & 0xF];
  };
  out += '"';
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  for (size_t i = 0; i < s.size();) {
    const pretok::Utf8Unit u = pretok::decode_utf8(p + i, s.size() - i);
    if (u.cp == pretok::kInvalidCp)
      throw TokenizerError(what + ": the token text is not valid UTF-8");
    i += u.len;
    switch (u.cp) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (u.cp >= 0x20 && u.cp <= 0x7E) {
          out += static_cast<char>(u.cp);
        } else if (u.cp < 0x10000) {
          u4(u.cp);
        } else {
          u4(0xD800 + ((u.cp - 0x10000) >> 10));
          u4(0xDC00 + ((u.cp - 0x10000) & 0x3FF));
        }
    }
  }
  out += '"';
}

}  // namespace

BpeTokenizer BpeTokenizer::load(const std::string& path) {
  const fs::path p(path);
  std::error_code ec;
  const fs::file_status st = fs::status(p, ec);
  if (ec || !fs::exists(st)) {
    throw TokenizerError(
        path +
        ": no such file or directory (expected a tokenizer directory or a .tiktoken"
        " ranks file; scripts/fetch-gpt2-vocab.sh fetches GPT-2's into .cache/gpt2)");
  }
  if (fs::is_directory(st)) return BpeTokenizer(load_dir(p));
  const std::string name = p.filename().string();
  if (name == "encoder.json" || name == "vocab.bpe" || name == "vocab.json" ||
      name == "merges.txt" || name == kMetaFile) {
    return BpeTokenizer(load_dir(p.parent_path().empty() ? fs::path(".") : p.parent_path()));
  }
  return BpeTokenizer(load_tiktoken(p));
}

void BpeTokenizer::save(const std::string& dir) const {
  const Impl& m = *impl_;
  const fs::path d(dir);
  std::error_code ec;
  fs::create_directories(d, ec);
  if (ec) throw TokenizerError(dir + ": cannot create the directory: " + ec.message());
  const auto merge_list = merges();  // throws if some token has no merge

  std::string enc = "{";
  for (int32_t id = 0; id < m.vocab_size; ++id) {
    if (id > 0) enc += ", ";
    append_json_string(enc, token_string(id), (d / "encoder.json").string());
    enc += ": " + std::to_string(id);
  }
  enc += "}";
  std::string bpe = "#version: 0.2\n";
  for (const auto& [a, b] : merge_list) bpe += a + " " + b + "\n";

  json meta;
  meta["format"] = kMetaFormat;
  meta["version"] = kMetaVersion;
  meta["pre_tokenizer"] = "gpt2";
  meta["vocab_file"] = "encoder.json";
  meta["merges_file"] = "vocab.bpe";
  meta["vocab_size"] = m.vocab_size;
  meta["merges"] = merge_list.size();
  json specials = json::object();
  for (const SpecialToken& s : m.specials) specials[s.text] = s.id;
  meta["special_tokens"] = specials;
  meta["eot_token"] = std::string(kEndOfText);
  meta["note"] =
      "encoder.json and vocab.bpe are GPT-2's formats (Hugging Face vocab.json and merges.txt)";

  write_file_atomic(d / "encoder.json", enc);
  write_file_atomic(d / "vocab.bpe", bpe);
  write_file_atomic(d / kMetaFile, meta.dump(2) + "\n");
}

}  // namespace modu::data
