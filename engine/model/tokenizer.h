// Byte-level BPE tokenizer loaded from a Hugging Face tokenizer.json (+ tokenizer_config.json), for
// the DeepSeek-V3 family (MODEL_SPEC.md §5, docs/TOKENIZER.md).
//
// The pipeline is read from the file, not hard-coded: added tokens are cut out first, the text
// between them goes through the pre-tokenizer (Split regexes with behaviour Isolated, then
// ByteLevel), and each piece is merged by BPE rank. Anything the file asks for that is not
// implemented (another model type, a normalizer, byte fallback, ...) is rejected with an Error that
// names it, so a tokenizer never silently encodes differently from Hugging Face `tokenizers`.
//
// A Tokenizer is immutable after loading and cheap to copy (the tables are shared); encode() and
// decode() may run concurrently from several threads.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace hetmoe {

using TokenId = int32_t;
inline constexpr TokenId kNoToken = -1;

// One entry of tokenizer.json `added_tokens`.
struct AddedToken {
  TokenId id = kNoToken;
  std::string content;      // matched exactly in the input text
  bool special = false;     // control token: decode(..., skip_special = true) drops it
  bool lstrip = false;      // a match also takes the whitespace before it
  bool rstrip = false;      // a match also takes the whitespace after it
  bool normalized = false;  // matched in a second pass over the text the first pass left
};

class Tokenizer {
 public:
  // Reads <model_dir>/tokenizer.json and, when present, <model_dir>/tokenizer_config.json.
  static Tokenizer load(const std::filesystem::path& model_dir);
  // `tokenizer_config_json` may be empty: no config file.
  static Tokenizer load_files(const std::filesystem::path& tokenizer_json,
                              const std::filesystem::path& tokenizer_config_json = {});
  // From JSON text; `source` names the origin in errors. `tokenizer_config_json` may be empty.
  static Tokenizer from_json(std::string_view tokenizer_json, std::string_view tokenizer_config_json,
                             const std::string& source);

  // Ids of `text` (UTF-8; invalid UTF-8 throws). With add_bos the BOS id comes first, and none
  // otherwise: the caller decides (a rendered chat template already starts with BOS).
  std::vector<TokenId> encode(std::string_view text, bool add_bos = false) const;
  // Text of `ids`; ids outside the vocabulary are skipped and invalid UTF-8 becomes U+FFFD, as in
  // Hugging Face `tokenizers`. skip_special drops added tokens marked special.
  std::string decode(std::span<const TokenId> ids, bool skip_special = false) const;

  TokenId bos_id() const;  // kNoToken when the tokenizer has none
  TokenId eos_id() const;
  bool add_bos_default() const;  // tokenizer_config.json add_bos_token (false when absent)
  const std::string& bos_token() const;
  const std::string& eos_token() const;
  // tokenizer_config.json chat_template ("" when absent); chat_template.h interprets it.
  const std::string& chat_template_source() const;

  TokenId token_to_id(std::string_view token) const;  // kNoToken when unknown
  std::string_view id_to_token(TokenId id) const;     // "" when `id` has no token
  // Bytes `id` decodes to (may be part of a UTF-8 character); "" when `id` has no token.
  std::string_view token_bytes(TokenId id) const;
  bool is_special(TokenId id) const;
  // One past the largest id of the vocabulary and added tokens (the embedding rows it needs).
  int64_t vocab_size() const;
  const std::vector<AddedToken>& added_tokens() const;
  const std::string& source() const;  // the file it was loaded from

 private:
  struct Impl;
  static Tokenizer build(const std::string& tokenizer_json, std::string source,
                         const std::string* config_json, std::string config_source);
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

// Incremental decoding for generation: push() returns only complete UTF-8 characters and keeps an
// incomplete trailing byte sequence until the next token completes it (a character may span several
// byte-level tokens). The concatenation of every push() and the final flush() equals
// Tokenizer::decode of the same ids.
class StreamDecoder {
 public:
  explicit StreamDecoder(Tokenizer tokenizer, bool skip_special = false)
      : tokenizer_(std::move(tokenizer)), skip_special_(skip_special) {}

  std::string push(TokenId id);
  // Returns what is still held (an incomplete sequence becomes U+FFFD) and resets the decoder.
  std::string flush();

 private:
  Tokenizer tokenizer_;
  bool skip_special_;
  std::string pending_bytes_;  // incomplete UTF-8 sequence, at most 3 bytes
};

}  // namespace hetmoe
