#include "engine/model/unicode.h"

#include <array>

namespace hetmoe::unicode {
namespace {

// The printable bytes keep their own code point; the other 68 (0-32, 127-160, 173) map, in
// increasing byte order, to U+0100, U+0101, ... (GPT-2's bytes_to_unicode).
constexpr bool is_printable_byte(int b) {
  return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
}

constexpr std::array<char32_t, 256> kByteToChar = [] {
  std::array<char32_t, 256> table{};
  char32_t next = 0x100;
  for (int b = 0; b < 256; ++b) table[b] = is_printable_byte(b) ? char32_t(b) : next++;
  return table;
}();

constexpr int kCharTableSize = 0x100 + 68;
constexpr std::array<int16_t, kCharTableSize> kCharToByte = [] {
  std::array<int16_t, kCharTableSize> table{};
  for (auto& entry : table) entry = -1;
  for (int b = 0; b < 256; ++b) table[kByteToChar[b]] = int16_t(b);
  return table;
}();

enum class SeqKind { kComplete, kInvalid, kIncomplete };
struct SeqScan {
  SeqKind kind;
  size_t length;  // bytes of the character, of the maximal invalid subpart, or of the valid start
};

// Well-formed sequences per the Unicode standard's table 3-7; the second byte's range depends on the
// lead byte (this is what rules out overlongs, surrogates and code points above U+10FFFF).
SeqScan scan_sequence(std::string_view bytes, size_t at) {
  const uint8_t lead = uint8_t(bytes[at]);
  if (lead < 0x80) return {SeqKind::kComplete, 1};
  size_t continuation_count = 0;
  uint8_t second_lo = 0x80, second_hi = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    continuation_count = 1;
  } else if (lead == 0xE0) {
    continuation_count = 2, second_lo = 0xA0;
  } else if (lead == 0xED) {
    continuation_count = 2, second_hi = 0x9F;
  } else if (lead >= 0xE1 && lead <= 0xEF) {
    continuation_count = 2;
  } else if (lead == 0xF0) {
    continuation_count = 3, second_lo = 0x90;
  } else if (lead == 0xF4) {
    continuation_count = 3, second_hi = 0x8F;
  } else if (lead >= 0xF1 && lead <= 0xF3) {
    continuation_count = 3;
  } else {
    return {SeqKind::kInvalid, 1};
  }
  for (size_t i = 1; i <= continuation_count; ++i) {
    if (at + i >= bytes.size()) return {SeqKind::kIncomplete, i};
    const uint8_t byte = uint8_t(bytes[at + i]);
    const uint8_t lo = i == 1 ? second_lo : 0x80, hi = i == 1 ? second_hi : 0xBF;
    if (byte < lo || byte > hi) return {SeqKind::kInvalid, i};
  }
  return {SeqKind::kComplete, continuation_count + 1};
}

}  // namespace

void append_utf8(char32_t cp, std::string& out) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

size_t find_invalid_utf8(std::string_view bytes) {
  size_t at = 0;
  while (at < bytes.size()) {
    if (uint8_t(bytes[at]) < 0x80) {  // ASCII fast path
      ++at;
      continue;
    }
    const SeqScan seq = scan_sequence(bytes, at);
    if (seq.kind != SeqKind::kComplete) return at;
    at += seq.length;
  }
  return bytes.size();
}

size_t complete_utf8_prefix(std::string_view bytes) {
  // Only the last character can be incomplete; it starts at most 3 bytes before the end.
  size_t start = bytes.size();
  for (size_t back = 1; back <= 3 && back <= bytes.size(); ++back) {
    const uint8_t byte = uint8_t(bytes[bytes.size() - back]);
    if ((byte & 0xC0) != 0x80) {  // not a continuation byte: the last candidate lead byte
      start = bytes.size() - back;
      break;
    }
  }
  if (start == bytes.size()) return bytes.size();
  const SeqScan seq = scan_sequence(bytes, start);
  return seq.kind == SeqKind::kIncomplete ? start : bytes.size();
}

void append_utf8_lossy(std::string_view bytes, std::string& out) {
  size_t at = 0;
  while (at < bytes.size()) {
    const SeqScan seq = scan_sequence(bytes, at);
    if (seq.kind == SeqKind::kComplete) {
      out.append(bytes.substr(at, seq.length));
    } else {
      append_utf8(kReplacementChar, out);
    }
    at += seq.length;
  }
}

bool is_whitespace(char32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

char32_t decode_utf8(std::string_view bytes, size_t at, size_t* length) {
  const uint8_t lead = uint8_t(bytes[at]);
  if (lead < 0x80) {
    *length = 1;
    return lead;
  }
  const size_t n = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
  char32_t cp = lead & (0x7F >> n);
  for (size_t i = 1; i < n; ++i) cp = (cp << 6) | (uint8_t(bytes[at + i]) & 0x3F);
  *length = n;
  return cp;
}

char32_t byte_to_char(uint8_t byte) {
  return kByteToChar[byte];
}

int char_to_byte(char32_t cp) {
  return cp < char32_t(kCharTableSize) ? kCharToByte[cp] : -1;
}

}  // namespace hetmoe::unicode
