// TokenizerError: the one exception type of the tokenizer layer (bad vocabulary files, bad ids, bad
// text under InvalidUtf8::kError, trainer misuse). Messages name the file (and line) and what was
// expected. Kept as a std::runtime_error subclass so it can later derive from the core's
// modu::Error unchanged at the throw sites: only this header would change.
#pragma once

#include <stdexcept>
#include <string>

namespace modu::data {

class TokenizerError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace modu::data
