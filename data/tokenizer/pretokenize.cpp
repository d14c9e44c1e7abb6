// UTF-8 validation and U+FFFD replacement for the tokenizer (see pretokenize.h). Ill-formed input
// is cut into maximal subparts exactly as in pretok::decode_utf8, so replacement matches CPython's
// bytes.decode("utf-8", "replace"), which tiktoken users apply to bytes before encoding.
#include "data/tokenizer/pretokenize.h"

#include <cstring>

namespace modu::data::pretok {

size_t first_invalid_utf8(std::string_view text) {
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    // Skip ASCII eight bytes at a time.
    while (i + 8 <= n) {
      uint64_t v;
      std::memcpy(&v, s + i, 8);
      if (v & 0x8080808080808080ull) break;
      i += 8;
    }
    if (i >= n) break;
    if (s[i] < 0x80) {
      ++i;
      continue;
    }
    const Utf8Unit u = decode_utf8(s + i, n - i);
    if (u.cp == kInvalidCp) return i;
    i += u.len;
  }
  return std::string_view::npos;
}

std::string replace_invalid_utf8(std::string_view text) {
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  const size_t n = text.size();
  std::string out;
  out.reserve(n + 16);
  for (size_t i = 0; i < n;) {
    const Utf8Unit u = decode_utf8(s + i, n - i);
    if (u.cp == kInvalidCp) {
      out += "\xEF\xBF\xBD";
    } else {
      out.append(text.data() + i, u.len);
    }
    i += u.len;
  }
  return out;
}

}  // namespace modu::data::pretok
