// modu_tokenize_tool: a small command-line front end to modu's tokenizer library, used by the
// tiktoken equality test (tests/data/tiktoken_equality.py) and by hand. The real `modu tokenize`
// subcommand will call the same library. Ids are written as little-endian int32 ("bin") or one
// decimal per line ("text").
//
//   modu_tokenize_tool encode --vocab PATH [--ordinary] [--invalid replace|keep|error]
//                             [--format bin|text] [--out FILE] INPUT        (INPUT '-' = stdin)
//   modu_tokenize_tool decode --vocab PATH [--format bin|text] [--out FILE] IDS
//   modu_tokenize_tool train  --vocab-size N --out DIR INPUT...
//   modu_tokenize_tool info   --vocab PATH
// Exit status: 0 on success, 1 on a tokenizer or I/O error (message on stderr), 2 on bad usage.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "data/tokenizer/bpe.h"
#include "data/tokenizer/trainer.h"

namespace {

using modu::data::BpeTokenizer;
using modu::data::TokenizerError;

[[noreturn]] void usage(const std::string& why) {
  std::cerr
      << "modu_tokenize_tool: " << why << "\n"
      << "usage: modu_tokenize_tool encode --vocab PATH [--ordinary] [--invalid "
         "replace|keep|error]\n"
      << "                                 [--format bin|text] [--out FILE] INPUT\n"
      << "       modu_tokenize_tool decode --vocab PATH [--format bin|text] [--out FILE] IDS\n"
      << "       modu_tokenize_tool train --vocab-size N --out DIR INPUT...\n"
      << "       modu_tokenize_tool info --vocab PATH\n";
  std::exit(2);
}

std::string read_input(const std::string& path) {
  std::ostringstream ss;
  if (path == "-") {
    ss << std::cin.rdbuf();
    return std::move(ss).str();
  }
  std::ifstream f(path, std::ios::binary);
  if (!f) throw TokenizerError(path + ": cannot open for reading");
  ss << f.rdbuf();
  return std::move(ss).str();
}

void write_output(const std::string& path, const std::string& data) {
  if (path.empty() || path == "-") {
    std::fwrite(data.data(), 1, data.size(), stdout);
    std::fflush(stdout);
    return;
  }
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(data.data(), static_cast<std::streamsize>(data.size()));
  if (!f) throw TokenizerError(path + ": write error");
}

std::string ids_to_bytes(const std::vector<int32_t>& ids, bool text) {
  std::string out;
  if (text) {
    for (int32_t id : ids) out += std::to_string(id) + "\n";
  } else {
    out.resize(ids.size() * 4);
    for (size_t i = 0; i < ids.size(); ++i) {
      const uint32_t v = static_cast<uint32_t>(ids[i]);
      for (int k = 0; k < 4; ++k) out[4 * i + k] = static_cast<char>((v >> (8 * k)) & 0xFF);
    }
  }
  return out;
}

std::vector<int32_t> bytes_to_ids(const std::string& data, bool text, const std::string& path) {
  std::vector<int32_t> ids;
  if (text) {
    std::istringstream ss(data);
    long long v;
    while (ss >> v) ids.push_back(static_cast<int32_t>(v));
    if (!ss.eof()) throw TokenizerError(path + ": expected one decimal id per line");
    return ids;
  }
  if (data.size() % 4 != 0)
    throw TokenizerError(path + ": size is not a multiple of 4 (int32 ids)");
  ids.resize(data.size() / 4);
  for (size_t i = 0; i < ids.size(); ++i) {
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) v |= uint32_t{static_cast<uint8_t>(data[4 * i + k])} << (8 * k);
    ids[i] = static_cast<int32_t>(v);
  }
  return ids;
}

int run(int argc, char** argv) {
  if (argc < 2) usage("missing command");
  const std::string cmd = argv[1];
  std::string vocab, out, format = "bin", invalid = "replace";
  bool ordinary = false;
  int vocab_size = 0;
  std::vector<std::string> inputs;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(a + " needs a value");
      return argv[++i];
    };
    if (a == "--vocab")
      vocab = value();
    else if (a == "--out")
      out = value();
    else if (a == "--format")
      format = value();
    else if (a == "--invalid")
      invalid = value();
    else if (a == "--vocab-size")
      vocab_size = std::stoi(value());
    else if (a == "--ordinary")
      ordinary = true;
    else if (a.size() > 1 && a[0] == '-' && a != "-")
      usage("unknown option " + a);
    else
      inputs.push_back(a);
  }
  if (format != "bin" && format != "text") usage("--format must be bin or text");
  const bool text_ids = format == "text";
  using Clock = std::chrono::steady_clock;

  if (cmd == "train") {
    if (vocab_size <= 0 || out.empty() || inputs.empty())
      usage("train needs --vocab-size, --out and inputs");
    modu::data::BpeTrainer trainer({.vocab_size = vocab_size});
    for (const std::string& in : inputs) trainer.add_file(in);
    const BpeTokenizer tok = trainer.train();
    tok.save(out);
    const auto& st = trainer.stats();
    std::fprintf(stderr,
                 "train: %llu bytes, %llu pieces (%llu distinct), %d merges (last count %llu); "
                 "counting %.2f s, merging %.2f s; saved %s\n",
                 static_cast<unsigned long long>(st.bytes),
                 static_cast<unsigned long long>(st.pieces),
                 static_cast<unsigned long long>(st.unique_pieces), st.merges,
                 static_cast<unsigned long long>(st.last_merge_count), st.count_seconds,
                 st.merge_seconds, out.c_str());
    return 0;
  }
  if (vocab.empty()) usage(cmd + " needs --vocab");
  BpeTokenizer tok = BpeTokenizer::load(vocab);
  if (cmd == "info") {
    std::printf("source %s\nvocab_size %d\neot_id %d\n", tok.source().c_str(), tok.vocab_size(),
                tok.eot_id());
    return 0;
  }
  if (inputs.size() != 1) usage(cmd + " takes one input");
  if (cmd == "encode") {
    if (invalid == "replace")
      tok.set_invalid_utf8(modu::data::InvalidUtf8::kReplace);
    else if (invalid == "keep")
      tok.set_invalid_utf8(modu::data::InvalidUtf8::kKeepBytes);
    else if (invalid == "error")
      tok.set_invalid_utf8(modu::data::InvalidUtf8::kError);
    else
      usage("--invalid must be replace, keep or error");
    const std::string text = read_input(inputs[0]);
    const auto t0 = Clock::now();
    const std::vector<int32_t> ids = ordinary ? tok.encode_ordinary(text) : tok.encode(text, true);
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    write_output(out, ids_to_bytes(ids, text_ids));
    std::fprintf(stderr, "encode: %zu bytes -> %zu tokens in %.3f s\n", text.size(), ids.size(), s);
    return 0;
  }
  if (cmd == "decode") {
    const std::vector<int32_t> ids = bytes_to_ids(read_input(inputs[0]), text_ids, inputs[0]);
    write_output(out, tok.decode(ids));
    return 0;
  }
  usage("unknown command " + cmd);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "modu_tokenize_tool: error: %s\n", e.what());
    return 1;
  }
}
