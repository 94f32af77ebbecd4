// A compiled Unicode regular expression (PCRE2 in UTF + UCP mode, JIT when available) for the
// tokenizer's pre-tokenizer splits. PCRE2 stays out of this header.
//
// Patterns are written for Oniguruma, the engine Hugging Face `tokenizers` uses. The two agree on
// everything the DeepSeek and GPT-2 patterns use, except that Oniguruma's \s also matches U+0085
// (NEL), so \s and \S are rewritten to include it (see translate_pattern in the .cpp).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace hetmoe {

class UnicodeRegex {
 public:
  // Per-thread match state (match data and JIT stack); create one per encode call and reuse it
  // for every search in that call.
  class Scratch {
   public:
    Scratch();
    ~Scratch();
    Scratch(const Scratch&) = delete;
    Scratch& operator=(const Scratch&) = delete;

   private:
    friend class UnicodeRegex;
    struct State;
    std::unique_ptr<State> state_;
  };

  // Throws hetmoe::Error naming `pattern` and the position PCRE2 rejects.
  explicit UnicodeRegex(std::string_view pattern);
  ~UnicodeRegex();
  UnicodeRegex(UnicodeRegex&&) noexcept;
  UnicodeRegex& operator=(UnicodeRegex&&) noexcept;

  // Splits `text` (valid UTF-8) into matches and the gaps between them, in order, dropping empty
  // pieces: the `Isolated` behaviour of a tokenizers Split. Appends views into `text` to `pieces`.
  void split_isolated(std::string_view text, Scratch& scratch, std::vector<std::string_view>& pieces) const;

  const std::string& pattern() const { return pattern_; }

 private:
  struct Code;
  std::string pattern_;
  std::unique_ptr<Code> code_;
};

}  // namespace hetmoe
