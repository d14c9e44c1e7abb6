// GPT-2's pre-tokenisation, written by hand: the pieces of tiktoken's r50k/gpt2 pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// (leftmost-first alternation, as in tiktoken's fancy-regex), plus strict UTF-8 decoding.
// Invariants:
//  - next_piece_end(s, i, n) > i for every i < n, and pieces never split a UTF-8 sequence, so the
//    pieces of a text concatenate back to exactly that text.
//  - Ill-formed UTF-8 is cut into "maximal subparts" (Unicode ch. 3, Table 3-7; the units for
//    which Python's bytes.decode("utf-8", "replace") emits one U+FFFD each); each such unit is
//    classed like U+FFFD (kOther). So splitting raw bytes gives the same piece boundaries as
//    splitting the text with every ill-formed unit replaced by U+FFFD.
//  - A piece is matched against the text [0, n) only: the (?!\S) look-ahead sees the end at n.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "data/tokenizer/unicode_class.h"

namespace modu::data::pretok {

using unicode::CharClass;

inline constexpr uint32_t kInvalidCp = 0xFFFFFFFFu;

struct Utf8Unit {
  uint32_t cp;   // the code point, or kInvalidCp for an ill-formed unit
  uint32_t len;  // bytes consumed, >= 1
};

// Decodes one unit at s[0..n), n >= 1, following Table 3-7 (no overlongs, surrogates or >
// U+10FFFF).
inline Utf8Unit decode_utf8(const uint8_t* s, size_t n) {
  const uint8_t c = s[0];
  if (c < 0x80) return {c, 1};
  uint32_t need, cp;
  uint8_t lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    need = 1, cp = c & 0x1Fu;
  } else if (c >= 0xE0 && c <= 0xEF) {
    need = 2, cp = c & 0x0Fu;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 3, cp = c & 0x07u;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return {kInvalidCp, 1};
  }
  for (uint32_t k = 1; k <= need; ++k) {
    if (k >= n || s[k] < lo || s[k] > hi) return {kInvalidCp, k};
    lo = 0x80, hi = 0xBF;
    cp = (cp << 6) | (s[k] & 0x3Fu);
  }
  return {cp, need + 1};
}

inline constexpr std::array<CharClass, 128> kAsciiClass = [] {
  std::array<CharClass, 128> t{};
  for (int c = 0; c < 128; ++c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
      t[c] = CharClass::kLetter;
    else if (c >= '0' && c <= '9')
      t[c] = CharClass::kNumber;
    else if ((c >= 0x09 && c <= 0x0D) || c == ' ')
      t[c] = CharClass::kSpace;
    else
      t[c] = CharClass::kOther;
  }
  return t;
}();

// Class and byte length of the unit at s[i], i < n.
inline CharClass unit_class(const uint8_t* s, size_t i, size_t n, size_t& len) {
  const uint8_t c = s[i];
  if (c < 0x80) {
    len = 1;
    return kAsciiClass[c];
  }
  const Utf8Unit u = decode_utf8(s + i, n - i);
  len = u.len;
  return u.cp == kInvalidCp ? CharClass::kOther : unicode::char_class(u.cp);
}

// End (exclusive) of the piece that starts at i, for i < n.
inline size_t next_piece_end(const uint8_t* s, size_t i, size_t n) {
  const uint8_t c = s[i];
  // 's 't 'm 'd 're 've 'll (case-sensitive, ASCII apostrophe only)
  if (c == '\'' && i + 1 < n) {
    const uint8_t d = s[i + 1];
    if (d == 's' || d == 't' || d == 'm' || d == 'd') return i + 2;
    if (i + 2 < n) {
      const uint8_t e = s[i + 2];
      if ((d == 'r' && e == 'e') || (d == 'v' && e == 'e') || (d == 'l' && e == 'l')) return i + 3;
    }
  }
  // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: an optional space, then a run of one class.
  size_t j = (c == ' ') ? i + 1 : i;
  if (j < n) {
    size_t len;
    const CharClass k = unit_class(s, j, n, len);
    if (k != CharClass::kSpace) {
      j += len;
      if (k == CharClass::kLetter) {  // fast path for ASCII letters, the bulk of most text
        for (;;) {
          while (j < n && s[j] < 0x80 && kAsciiClass[s[j]] == CharClass::kLetter) ++j;
          if (j >= n || s[j] < 0x80 || unit_class(s, j, n, len) != CharClass::kLetter) break;
          j += len;
        }
        return j;
      }
      while (j < n && unit_class(s, j, n, len) == k) j += len;
      return j;
    }
  }
  // Whitespace: `\s+(?!\S)` takes the run up to the end of the text, or all of it but the last unit
  // when a non-space follows and the run has 2+ units; otherwise `\s+` takes the single unit.
  size_t last = i, units = 0, len;
  j = i;
  while (j < n && unit_class(s, j, n, len) == CharClass::kSpace) {
    last = j;
    j += len;
    ++units;
  }
  if (j < n && units >= 2) return last;
  return j;
}

// Calls f(piece) for each piece of text, in order.
template <class F>
inline void for_each_piece(std::string_view text, F&& f) {
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    const size_t e = next_piece_end(s, i, n);
    f(text.substr(i, e - i));
    i = e;
  }
}

// Offset of the first ill-formed UTF-8 unit in text, or std::string_view::npos when it is all
// valid.
size_t first_invalid_utf8(std::string_view text);

// text with each ill-formed unit replaced by U+FFFD (EF BF BD): Python's decode("utf-8",
// "replace").
std::string replace_invalid_utf8(std::string_view text);

}  // namespace modu::data::pretok
