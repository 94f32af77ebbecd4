// UTF-8 helpers and the GPT-2 byte-level alphabet used by the tokenizer (MODEL_SPEC.md §5.2 step 3).
//
// Decoding follows Rust's String::from_utf8_lossy (what Hugging Face `tokenizers` uses): each maximal
// invalid subsequence becomes one U+FFFD, so a streamed decode and a one-shot decode agree.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace hetmoe::unicode {

inline constexpr char32_t kReplacementChar = 0xFFFD;

// Appends the UTF-8 encoding of `cp` (a Unicode scalar value) to `out`.
void append_utf8(char32_t cp, std::string& out);

// Offset of the first byte that is not part of a well-formed UTF-8 sequence, or text.size() when the
// whole text is valid (no surrogates, no overlongs, nothing above U+10FFFF).
size_t find_invalid_utf8(std::string_view bytes);

// Length of the prefix of `bytes` that can be converted now: everything except a trailing sequence
// that is a valid but incomplete start of a character (it may still be completed by later bytes).
size_t complete_utf8_prefix(std::string_view bytes);

// Appends `bytes` to `out`, replacing each maximal invalid subsequence with U+FFFD.
void append_utf8_lossy(std::string_view bytes, std::string& out);

// Unicode White_Space property (Rust's char::is_whitespace).
bool is_whitespace(char32_t cp);

// Decodes the code point starting at bytes[at] of valid UTF-8; sets *length to its byte count.
char32_t decode_utf8(std::string_view bytes, size_t at, size_t* length);

// GPT-2 byte-level alphabet: byte -> code point of the printable stand-in character.
char32_t byte_to_char(uint8_t byte);
// Inverse of byte_to_char; -1 when `cp` is not one of the 256 stand-ins.
int char_to_byte(char32_t cp);

}  // namespace hetmoe::unicode
