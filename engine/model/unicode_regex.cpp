#include "engine/model/unicode_regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "engine/core/error.h"
#include "engine/model/unicode.h"

namespace hetmoe {
namespace {

// Oniguruma's \s is the Unicode White_Space property; PCRE2's (10.42) also matches U+180E, which
// Unicode no longer counts as a space. Spelling the set out makes both engines agree.
constexpr std::string_view kWhiteSpaceSet =
    "\\t\\n\\x0B\\f\\r\\x20\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}"
    "\\x{205F}\\x{3000}";

// Rewrites an Oniguruma pattern for PCRE2: \s and \S become the explicit White_Space set. Nested
// character classes (an Oniguruma extension PCRE2 reads as a literal '[') are rejected rather than
// silently matched differently.
std::string translate_pattern(std::string_view pattern) {
  std::string out;
  out.reserve(pattern.size() + 64);
  bool in_class = false;
  size_t class_start = 0;  // offset just after the class's '[' or '[^'
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char next = pattern[++i];
      if (next == 's') {
        out += in_class ? std::string(kWhiteSpaceSet) : "[" + std::string(kWhiteSpaceSet) + "]";
      } else if (next == 'S' && !in_class) {
        out += "[^" + std::string(kWhiteSpaceSet) + "]";
      } else {
        out += c;
        out += next;
      }
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out += c;
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') out += pattern[++i];
      class_start = i + 1;
      continue;
    }
    if (in_class) {
      if (c == '[') {
        const size_t posix_end = i + 1 < pattern.size() && pattern[i + 1] == ':' ? pattern.find(":]", i + 2)
                                                                                 : std::string_view::npos;
        check(posix_end != std::string_view::npos, "nested character class at offset " + std::to_string(i) +
                                                       " of regex '" + std::string(pattern) +
                                                       "' is an Oniguruma extension PCRE2 does not support");
        out.append(pattern.substr(i, posix_end + 2 - i));
        i = posix_end + 1;
        continue;
      }
      if (c == ']' && i != class_start) in_class = false;
    }
    out += c;
  }
  return out;
}

}  // namespace

struct UnicodeRegex::Code {
  pcre2_code* code = nullptr;
  ~Code() { pcre2_code_free(code); }
};

struct UnicodeRegex::Scratch::State {
  pcre2_match_data* match_data = nullptr;
  pcre2_match_context* match_context = nullptr;
  pcre2_jit_stack* jit_stack = nullptr;
  ~State() {
    pcre2_match_data_free(match_data);
    pcre2_match_context_free(match_context);
    pcre2_jit_stack_free(jit_stack);
  }
};

UnicodeRegex::Scratch::Scratch() : state_(std::make_unique<State>()) {
  // Only the whole-match offsets are read, so one pair suffices for every pattern.
  state_->match_data = pcre2_match_data_create(1, nullptr);
  state_->match_context = pcre2_match_context_create(nullptr);
  // The default 32 KiB JIT stack overflows on long backtracking runs (`\s+(?!\S)` over a long run
  // of spaces); the stack grows on demand up to the maximum.
  state_->jit_stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
  if (state_->match_data == nullptr || state_->match_context == nullptr || state_->jit_stack == nullptr) {
    throw Error("out of memory creating PCRE2 match state");
  }
  pcre2_jit_stack_assign(state_->match_context, nullptr, state_->jit_stack);
}

UnicodeRegex::Scratch::~Scratch() = default;

UnicodeRegex::UnicodeRegex(std::string_view pattern) : pattern_(pattern), code_(std::make_unique<Code>()) {
  const std::string translated = translate_pattern(pattern);
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  code_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                              PCRE2_UTF | PCRE2_UCP, &error_code, &error_offset, nullptr);
  if (code_->code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error_code, message, sizeof(message));
    throw Error("cannot compile regex '" + pattern_ + "': " + reinterpret_cast<const char*>(message) +
                " at offset " + std::to_string(error_offset) + " of the PCRE2 form '" + translated + "'");
  }
  // JIT is a large speed-up but optional: when it is unavailable the interpreter runs the same code.
  pcre2_jit_compile(code_->code, PCRE2_JIT_COMPLETE);
}

UnicodeRegex::~UnicodeRegex() = default;
UnicodeRegex::UnicodeRegex(UnicodeRegex&&) noexcept = default;
UnicodeRegex& UnicodeRegex::operator=(UnicodeRegex&&) noexcept = default;

void UnicodeRegex::split_isolated(std::string_view text, Scratch& scratch,
                                  std::vector<std::string_view>& pieces) const {
  auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(scratch.state_->match_data);
  size_t piece_start = 0;   // end of what has been emitted
  size_t search_start = 0;  // where the next search begins
  while (search_start <= text.size()) {
    // The caller validated the UTF-8 once; without NO_UTF_CHECK PCRE2 re-validates the whole
    // subject on every call, which is quadratic.
    const int rc = pcre2_match(code_->code, subject, text.size(), search_start, PCRE2_NO_UTF_CHECK,
                               scratch.state_->match_data, scratch.state_->match_context);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(rc, message, sizeof(message));
      throw Error("regex '" + pattern_ + "' failed on a " + std::to_string(text.size()) +
                  "-byte piece: " + reinterpret_cast<const char*>(message));
    }
    const size_t match_start = ovector[0], match_end = ovector[1];
    if (match_start > piece_start) pieces.push_back(text.substr(piece_start, match_start - piece_start));
    if (match_end > match_start) pieces.push_back(text.substr(match_start, match_end - match_start));
    piece_start = match_end;
    if (match_end > match_start) {
      search_start = match_end;
    } else {  // empty match: step over one character, as Oniguruma's iterator does
      if (match_end >= text.size()) break;
      size_t length = 0;
      unicode::decode_utf8(text, match_end, &length);
      search_start = match_end + length;
    }
  }
  if (piece_start < text.size()) pieces.push_back(text.substr(piece_start));
}

}  // namespace hetmoe
