#include "engine/model/tokenizer.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <fstream>
#include <limits>
#include <optional>
#include <source_location>
#include <sstream>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "engine/model/unicode.h"
#include "engine/model/unicode_regex.h"

namespace hetmoe {
namespace {

using nlohmann::json;

// Larger ids are treated as corruption: published vocabularies stay below ~260K, and the per-id
// tables are sized by the largest id.
constexpr int64_t kMaxTokenId = (int64_t{1} << 24) - 1;

// The regex ByteLevel applies itself when `use_regex` is true (GPT-2's).
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Used for bos/eos when tokenizer_config.json does not name them (MODEL_SPEC.md §5.3).
constexpr std::string_view kDeepseekBos = "<｜begin▁of▁sentence｜>";
constexpr std::string_view kDeepseekEos = "<｜end▁of▁sentence｜>";

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view text) const noexcept { return std::hash<std::string_view>{}(text); }
};
using TokenMap = std::unordered_map<std::string, TokenId, StringHash, std::equal_to<>>;

uint64_t pair_key(TokenId left, TokenId right) {
  return (uint64_t(uint32_t(left)) << 32) | uint32_t(right);
}

struct Merge {
  int32_t rank;  // line index in `merges`: lower merges first
  TokenId merged_id;
};

// A run of input text (id == kNoToken) or an added token that matched there.
struct Segment {
  std::string_view text;
  TokenId id;
};

// Leftmost-longest matching of the added tokens over bytes: the semantics of the Aho-Corasick
// automaton `tokenizers` builds (MatchKind::LeftmostLongest), with a plain trie, since added tokens
// are few and the first-byte filter rejects almost every position.
class AddedTokenMatcher {
 public:
  void add(std::string_view content, int32_t token_index) {
    int32_t node = 0;
    for (const char c : content) {
      const uint8_t byte = uint8_t(c);
      int32_t child = -1;
      for (const auto& [edge, target] : nodes_[node].children) {
        if (edge == byte) child = target;
      }
      if (child < 0) {
        child = int32_t(nodes_.size());
        nodes_[node].children.emplace_back(byte, child);
        nodes_.emplace_back();
      }
      node = child;
    }
    nodes_[node].token_index = token_index;
    is_first_byte_[uint8_t(content.front())] = true;
  }

  // Cuts `text` into segments; tokens[i] is the token of index i.
  void split(std::string_view text, const std::vector<AddedToken>& tokens, std::vector<Segment>& out) const {
    size_t emitted = 0;  // end of the last segment
    size_t at = 0;
    while (at < text.size()) {
      size_t length = 0;
      const int32_t index = is_first_byte_[uint8_t(text[at])] ? longest_at(text, at, &length) : -1;
      if (index < 0) {
        ++at;
        continue;
      }
      const AddedToken& token = tokens[size_t(index)];
      size_t start = at, end = at + length;
      if (token.lstrip) start = std::max(emitted, start - trailing_whitespace_bytes(text.substr(0, start)));
      if (token.rstrip) end += leading_whitespace_bytes(text.substr(end));
      if (start > emitted) out.push_back({text.substr(emitted, start - emitted), kNoToken});
      out.push_back({text.substr(start, end - start), token.id});
      emitted = at = end;
    }
    if (emitted < text.size()) out.push_back({text.substr(emitted), kNoToken});
  }

 private:
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> children;
    int32_t token_index = -1;
  };

  int32_t longest_at(std::string_view text, size_t at, size_t* length) const {
    int32_t node = 0, found = -1;
    for (size_t i = at; i < text.size(); ++i) {
      int32_t child = -1;
      for (const auto& [edge, target] : nodes_[node].children) {
        if (edge == uint8_t(text[i])) child = target;
      }
      if (child < 0) break;
      node = child;
      if (nodes_[node].token_index >= 0) {
        found = nodes_[node].token_index;
        *length = i + 1 - at;
      }
    }
    return found;
  }

  static size_t leading_whitespace_bytes(std::string_view text) {
    size_t at = 0;
    while (at < text.size()) {
      size_t length = 0;
      if (!unicode::is_whitespace(unicode::decode_utf8(text, at, &length))) break;
      at += length;
    }
    return at;
  }

  static size_t trailing_whitespace_bytes(std::string_view text) {
    size_t start = text.size();
    while (start > 0) {
      size_t char_start = start - 1;
      while (char_start > 0 && (uint8_t(text[char_start]) & 0xC0) == 0x80) --char_start;
      size_t length = 0;
      if (!unicode::is_whitespace(unicode::decode_utf8(text, char_start, &length))) break;
      start = char_start;
    }
    return text.size() - start;
  }

  std::vector<Node> nodes_ = std::vector<Node>(1);
  std::array<bool, 256> is_first_byte_{};
};

// One BPE symbol of the piece being merged (a doubly linked list over a vector).
struct Symbol {
  TokenId id;
  int32_t prev;
  int32_t next;
  bool removed;
};

struct MergeCandidate {
  int32_t rank;
  int32_t pos;  // index of the left symbol
  TokenId merged_id;
};

// Order of a min-heap on (rank, pos): lowest rank first, leftmost among equal ranks.
bool merges_later(const MergeCandidate& a, const MergeCandidate& b) {
  return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
}

// Buffers one encode() call reuses across pieces.
struct EncodeState {
  UnicodeRegex::Scratch regex_scratch;
  std::vector<Segment> segments;
  std::vector<Segment> normalized_segments;
  std::vector<std::string_view> pieces;
  std::vector<std::string_view> next_pieces;
  std::vector<std::string_view> byte_level_pieces;
  std::string prefixed_piece;
  std::string mapped_piece;
  std::vector<Symbol> symbols;
  std::vector<MergeCandidate> queue;
};

std::string read_file(const std::filesystem::path& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  check(in.good(), "cannot open " + std::string(what),
        {.path = path.string(), .hint = "a model folder holds the Hugging Face tokenizer.json"});
  std::ostringstream text;
  text << in.rdbuf();
  check(!in.bad(), "cannot read " + std::string(what), {.path = path.string()});
  return std::move(text).str();
}

// Escapes a literal for PCRE2 (a Split with a String pattern).
std::string escape_regex(std::string_view literal) {
  std::string out;
  for (const char c : literal) {
    const auto byte = uint8_t(c);
    if (byte < 0x80 && !std::isalnum(byte)) out += '\\';
    out += c;
  }
  return out;
}

// What `tokenizers`' ByteLevel decoder does per token: map each character back to its byte, or,
// when any character is not one of the 256 stand-ins (e.g. in "<｜User｜>"), keep the token's UTF-8.
std::string token_to_bytes(std::string_view token) {
  std::string bytes;
  size_t at = 0;
  while (at < token.size()) {
    size_t length = 0;
    const int byte = unicode::char_to_byte(unicode::decode_utf8(token, at, &length));
    if (byte < 0) return std::string(token);
    bytes += char(byte);
    at += length;
  }
  return bytes;
}

}  // namespace

struct Tokenizer::Impl {
  std::string source;         // tokenizer.json path (or the name given to from_json)
  std::string config_source;  // tokenizer_config.json path, "" when none

  // BPE model
  TokenMap vocab;
  std::unordered_map<uint64_t, Merge> merges;  // (left id, right id) -> rank and result
  std::array<TokenId, 256> byte_ids{};         // initial symbol of each byte; kNoToken if absent
  TokenId unk_id = kNoToken;
  bool fuse_unk = false;
  bool ignore_merges = false;

  // pre-tokenizer: each Split in order, then ByteLevel
  std::vector<UnicodeRegex> splits;
  bool add_prefix_space = false;
  std::optional<UnicodeRegex> byte_level_regex;  // set when ByteLevel has use_regex

  // added tokens
  std::vector<AddedToken> added;
  TokenMap added_ids;
  AddedTokenMatcher raw_matcher;         // tokens with normalized = false: matched first
  AddedTokenMatcher normalized_matcher;  // normalized = true: matched in what is left

  // per id, indexed by id; empty token = no token with that id
  std::vector<std::string> tokens;
  std::vector<std::string> token_bytes;
  std::vector<uint8_t> special;

  // tokenizer_config.json
  TokenId bos = kNoToken, eos = kNoToken;
  std::string bos_token, eos_token;
  bool add_bos = false;
  std::string chat_template;

  [[noreturn]] void fail(std::string what, std::string hint = {},
                         std::source_location where = std::source_location::current()) const {
    throw Error(std::move(what), {.path = source, .hint = std::move(hint)}, where);
  }
  [[noreturn]] void fail_config(std::string what, std::string hint = {},
                                std::source_location where = std::source_location::current()) const {
    throw Error(std::move(what), {.path = config_source, .hint = std::move(hint)}, where);
  }

  void load(const json& root);
  void load_normalizer(const json& node) const;
  void load_pre_tokenizer(const json& node);
  void load_decoder(const json& node) const;
  void load_model(const json& model);
  void load_added_tokens(const json& node);
  void build_id_tables();
  void load_config(const json* config);
  TokenId config_token(const json& config, const char* key, std::string* content) const;
  int64_t read_id(const json& value, const std::string& what) const;

  void encode_text(std::string_view text, EncodeState& state, std::vector<TokenId>& ids) const;
  void encode_piece(std::string_view piece, EncodeState& state, std::vector<TokenId>& ids) const;
};

// --- loading -------------------------------------------------------------------------------------

int64_t Tokenizer::Impl::read_id(const json& value, const std::string& what) const {
  if (!value.is_number_integer()) fail(what + " has a non-integer id " + value.dump());
  const int64_t id =
      value.is_number_unsigned()
          ? int64_t(std::min<uint64_t>(value.get<uint64_t>(), std::numeric_limits<int64_t>::max()))
          : value.get<int64_t>();
  if (id < 0 || id > kMaxTokenId) {
    fail(what + " has id " + std::to_string(id) + ", outside [0, " + std::to_string(kMaxTokenId) + "]");
  }
  return id;
}

void Tokenizer::Impl::load(const json& root) {
  if (!root.is_object()) fail("tokenizer.json must hold a JSON object");
  const auto member = [&](const char* key) -> const json& {
    static const json kNull;
    const auto it = root.find(key);
    return it == root.end() ? kNull : *it;
  };
  const json& model = member("model");
  if (!model.is_object()) fail("tokenizer.json has no \"model\" object");
  load_normalizer(member("normalizer"));
  load_pre_tokenizer(member("pre_tokenizer"));
  load_decoder(member("decoder"));
  // post_processor only says which special tokens encode(add_special_tokens=True) adds; here the
  // caller says so with encode(add_bos), so it is not read.
  load_model(model);
  load_added_tokens(member("added_tokens"));
  build_id_tables();
}

void Tokenizer::Impl::load_normalizer(const json& node) const {
  if (node.is_null()) return;
  const std::string type = node.value("type", "");
  if (type == "Sequence" && node.value("normalizers", json::array()).empty()) return;
  fail("normalizer '" + (type.empty() ? node.dump() : type) + "' is not supported",
       "hetmoe implements the byte-level BPE tokenizers of the DeepSeek-V3 family, which have none");
}

void Tokenizer::Impl::load_pre_tokenizer(const json& node) {
  const std::string supported =
      "supported: Split (Regex or String pattern, behavior Isolated) steps "
      "followed by one ByteLevel, alone or in a Sequence";
  std::vector<const json*> steps;
  const auto flatten = [&](const auto& self, const json& step) -> void {
    if (!step.is_object()) fail("pre_tokenizer step is not an object: " + step.dump(), supported);
    if (step.value("type", "") == "Sequence") {
      const auto it = step.find("pretokenizers");
      if (it == step.end() || !it->is_array()) fail("pre_tokenizer Sequence has no \"pretokenizers\" list");
      for (const json& inner : *it) self(self, inner);
    } else {
      steps.push_back(&step);
    }
  };
  if (node.is_null())
    fail("pre_tokenizer is null; byte-level BPE needs a ByteLevel pre-tokenizer", supported);
  flatten(flatten, node);

  bool seen_byte_level = false;
  for (const json* step : steps) {
    const std::string type = step->value("type", "");
    if (seen_byte_level)
      fail("pre_tokenizer step '" + type + "' after ByteLevel is not supported", supported);
    if (type == "Split") {
      const std::string behavior = step->value("behavior", "");
      if (behavior != "Isolated")
        fail("pre_tokenizer Split behavior '" + behavior + "' is not supported", supported);
      if (step->value("invert", false))
        fail("pre_tokenizer Split with invert = true is not supported", supported);
      const json pattern = step->value("pattern", json());
      std::string regex;
      if (pattern.is_object() && pattern.contains("Regex") && pattern["Regex"].is_string()) {
        regex = pattern["Regex"].get<std::string>();
      } else if (pattern.is_object() && pattern.contains("String") && pattern["String"].is_string()) {
        regex = escape_regex(pattern["String"].get<std::string>());
      } else {
        fail("pre_tokenizer Split pattern must be {\"Regex\": ...} or {\"String\": ...}, not " +
             pattern.dump());
      }
      try {
        splits.emplace_back(regex);
      } catch (const Error& e) {
        fail("pre_tokenizer Split: " + e.message());
      }
    } else if (type == "ByteLevel") {
      seen_byte_level = true;
      add_prefix_space = step->value("add_prefix_space", true);
      if (step->value("use_regex", true)) byte_level_regex.emplace(kGpt2Pattern);
    } else {
      fail("pre_tokenizer type '" + type + "' is not supported", supported);
    }
  }
  if (!seen_byte_level) fail("pre_tokenizer has no ByteLevel step; byte-level BPE needs one", supported);
}

void Tokenizer::Impl::load_decoder(const json& node) const {
  const std::string type = node.is_object() ? node.value("type", "") : "";
  if (type != "ByteLevel") {
    fail("decoder '" + (type.empty() ? node.dump() : type) + "' is not supported",
         "byte-level BPE needs the ByteLevel decoder");
  }
}

void Tokenizer::Impl::load_model(const json& model) {
  std::string type = model.value("type", "");
  if (type.empty() && model.contains("merges")) type = "BPE";  // old files leave the type out
  if (type != "BPE") {
    fail("model type '" + type + "' is not supported", "hetmoe implements byte-level BPE (model type BPE)");
  }
  const auto dropout = model.find("dropout");
  if (dropout != model.end() && !dropout->is_null() &&
      !(dropout->is_number() && dropout->get<double>() == 0.0)) {
    fail("BPE dropout " + dropout->dump() + " is not supported (it makes encoding random)");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const auto it = model.find(key);
    if (it != model.end() && !it->is_null() && !(it->is_string() && it->get<std::string>().empty())) {
      fail(std::string("BPE ") + key + " " + it->dump() + " is not supported (byte-level BPE has none)");
    }
  }
  if (model.value("byte_fallback", false))
    fail("BPE byte_fallback is not supported (byte-level BPE has no use for it)");
  fuse_unk = model.value("fuse_unk", false);
  ignore_merges = model.value("ignore_merges", false);

  const auto vocab_it = model.find("vocab");
  if (vocab_it == model.end() || !vocab_it->is_object()) fail("model has no \"vocab\" object");
  std::unordered_map<int64_t, const std::string*> token_of_id;
  vocab.reserve(vocab_it->size());
  for (const auto& [token, value] : vocab_it->items()) {
    const int64_t id = read_id(value, "vocab token '" + token + "'");
    const auto [it, inserted] = token_of_id.emplace(id, &token);
    if (!inserted)
      fail("vocab id " + std::to_string(id) + " is used by both '" + *it->second + "' and '" + token + "'");
    vocab.emplace(token, TokenId(id));
  }

  const auto unk = model.find("unk_token");
  if (unk != model.end() && !unk->is_null()) {
    if (!unk->is_string()) fail("model unk_token must be a string or null, not " + unk->dump());
    const auto it = vocab.find(unk->get<std::string>());
    if (it == vocab.end()) fail("model unk_token '" + unk->get<std::string>() + "' is not in the vocab");
    unk_id = it->second;
  }

  for (int byte = 0; byte < 256; ++byte) {
    std::string symbol;
    unicode::append_utf8(unicode::byte_to_char(uint8_t(byte)), symbol);
    const auto it = vocab.find(symbol);
    byte_ids[size_t(byte)] = it == vocab.end() ? kNoToken : it->second;
  }

  const auto merges_it = model.find("merges");
  if (merges_it == model.end() || !merges_it->is_array()) fail("model has no \"merges\" list");
  merges.reserve(merges_it->size());
  int32_t rank = 0;
  for (const json& entry : *merges_it) {
    const std::string where = "merges[" + std::to_string(rank) + "] " + entry.dump();
    std::string left, right;
    if (entry.is_string()) {  // "left right", the form files used before tokenizers 0.20
      const std::string& line = entry.get_ref<const std::string&>();
      const size_t space = line.find(' ');
      if (space == std::string::npos || space == 0 || space + 1 == line.size() ||
          line.find(' ', space + 1) != std::string::npos) {
        fail(where + " is not of the form \"left right\"");
      }
      left = line.substr(0, space);
      right = line.substr(space + 1);
    } else if (entry.is_array() && entry.size() == 2 && entry[0].is_string() && entry[1].is_string()) {
      left = entry[0].get<std::string>();
      right = entry[1].get<std::string>();
    } else {
      fail(where + " is neither \"left right\" nor [\"left\", \"right\"]");
    }
    const auto left_it = vocab.find(left), right_it = vocab.find(right);
    if (left_it == vocab.end()) fail(where + " refers to '" + left + "', which is not in the vocab");
    if (right_it == vocab.end()) fail(where + " refers to '" + right + "', which is not in the vocab");
    const auto merged_it = vocab.find(left + right);
    if (merged_it == vocab.end()) fail(where + " makes '" + left + right + "', which is not in the vocab");
    // A repeated pair keeps its last rank, as in `tokenizers` (a hash map filled in order).
    merges[pair_key(left_it->second, right_it->second)] = {rank, merged_it->second};
    ++rank;
  }
}

void Tokenizer::Impl::load_added_tokens(const json& node) {
  if (node.is_null()) return;
  if (!node.is_array()) fail("\"added_tokens\" must be a list");
  std::unordered_map<int64_t, std::string> content_of_id;
  for (const json& entry : node) {
    if (!entry.is_object() || !entry.contains("content") || !entry["content"].is_string() ||
        !entry.contains("id")) {
      fail("added_tokens entry " + entry.dump() + " needs an \"id\" and a string \"content\"");
    }
    AddedToken token;
    token.content = entry["content"].get<std::string>();
    const std::string what = "added token '" + token.content + "'";
    if (token.content.empty()) fail("added token with id " + entry["id"].dump() + " has empty content");
    const int64_t id = read_id(entry["id"], what);
    token.id = TokenId(id);
    token.special = entry.value("special", false);
    token.lstrip = entry.value("lstrip", false);
    token.rstrip = entry.value("rstrip", false);
    token.normalized = entry.value("normalized", !token.special);
    if (entry.value("single_word", false)) fail(what + ": single_word = true is not supported");
    if (unicode::find_invalid_utf8(token.content) != token.content.size()) fail(what + " is not valid UTF-8");

    if (const auto [it, inserted] = content_of_id.emplace(id, token.content); !inserted) {
      fail(what + " has id " + std::to_string(id) + ", already used by added token '" + it->second + "'");
    }
    if (added_ids.contains(token.content)) fail(what + " is listed twice");
    const auto in_vocab = vocab.find(token.content);
    if (in_vocab != vocab.end() && in_vocab->second != token.id) {
      fail(what + " has id " + std::to_string(id) + " but the vocab gives it id " +
           std::to_string(in_vocab->second));
    }
    added_ids.emplace(token.content, token.id);
    added.push_back(std::move(token));
  }
  // An added id may also be a vocab id only when both name the same token.
  for (const auto& [token, id] : vocab) {
    const auto it = content_of_id.find(id);
    if (it != content_of_id.end() && it->second != token) {
      fail("added token '" + it->second + "' has id " + std::to_string(id) + ", which the vocab gives to '" +
           token + "'");
    }
  }
  for (size_t i = 0; i < added.size(); ++i) {
    (added[i].normalized ? normalized_matcher : raw_matcher).add(added[i].content, int32_t(i));
  }
}

void Tokenizer::Impl::build_id_tables() {
  int64_t size = 0;
  for (const auto& [token, id] : vocab) size = std::max<int64_t>(size, int64_t(id) + 1);
  for (const AddedToken& token : added) size = std::max<int64_t>(size, int64_t(token.id) + 1);
  tokens.assign(size_t(size), {});
  special.assign(size_t(size), 0);
  for (const auto& [token, id] : vocab) tokens[size_t(id)] = token;
  for (const AddedToken& token : added) {
    tokens[size_t(token.id)] = token.content;
    special[size_t(token.id)] = token.special;
  }
  token_bytes.resize(tokens.size());
  for (size_t id = 0; id < tokens.size(); ++id) token_bytes[id] = token_to_bytes(tokens[id]);
}

TokenId Tokenizer::Impl::config_token(const json& config, const char* key, std::string* content) const {
  const auto it = config.find(key);
  if (it == config.end() || it->is_null()) return kNoToken;
  if (it->is_string()) {
    *content = it->get<std::string>();
  } else if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
    *content = (*it)["content"].get<std::string>();  // {"__type": "AddedToken", "content": ...}
  } else {
    fail_config(std::string(key) + " must be a string or an AddedToken object, not " + it->dump());
  }
  const auto added_it = added_ids.find(*content);
  if (added_it != added_ids.end()) return added_it->second;
  const auto vocab_it = vocab.find(*content);
  if (vocab_it != vocab.end()) return vocab_it->second;
  fail_config(std::string(key) + " '" + *content + "' is not a token of " + source);
}

void Tokenizer::Impl::load_config(const json* config) {
  if (config != nullptr) {
    if (!config->is_object()) fail_config("tokenizer_config.json must hold a JSON object");
    bos = config_token(*config, "bos_token", &bos_token);
    eos = config_token(*config, "eos_token", &eos_token);
    const auto add_bos_it = config->find("add_bos_token");
    if (add_bos_it != config->end() && !add_bos_it->is_null()) {
      if (!add_bos_it->is_boolean()) fail_config("add_bos_token must be true or false");
      add_bos = add_bos_it->get<bool>();
    }
    const auto template_it = config->find("chat_template");
    if (template_it != config->end() && template_it->is_string()) {
      chat_template = template_it->get<std::string>();
    } else if (template_it != config->end() && template_it->is_array()) {
      // A list of named templates: the one named "default", else the first.
      for (const json& named : *template_it) {
        if (!named.is_object() || !named.contains("template") || !named["template"].is_string()) {
          fail_config("chat_template list entries need a string \"template\"");
        }
        if (chat_template.empty() || named.value("name", "") == "default") {
          chat_template = named["template"].get<std::string>();
        }
      }
    } else if (template_it != config->end() && !template_it->is_null()) {
      fail_config("chat_template must be a string or a list of {name, template}");
    }
  }
  // When the config does not name them, fall back to the DeepSeek names if the tokenizer has them.
  if (bos == kNoToken && added_ids.contains(kDeepseekBos)) bos = added_ids.find(kDeepseekBos)->second;
  if (eos == kNoToken && added_ids.contains(kDeepseekEos)) eos = added_ids.find(kDeepseekEos)->second;
  if (bos != kNoToken) bos_token = tokens[size_t(bos)];
  if (eos != kNoToken) eos_token = tokens[size_t(eos)];
}

Tokenizer Tokenizer::load(const std::filesystem::path& model_dir) {
  const std::filesystem::path config = model_dir / "tokenizer_config.json";
  return load_files(model_dir / "tokenizer.json",
                    std::filesystem::exists(config) ? config : std::filesystem::path());
}

namespace {

json parse_json(const std::string& text, const std::string& source) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw Error(std::string("invalid JSON: ") + e.what(), {.path = source});
  }
}

}  // namespace

Tokenizer Tokenizer::load_files(const std::filesystem::path& tokenizer_json,
                                const std::filesystem::path& tokenizer_config_json) {
  const std::string text = read_file(tokenizer_json, "tokenizer.json");
  if (tokenizer_config_json.empty()) return build(text, tokenizer_json.string(), nullptr, {});
  const std::string config_text = read_file(tokenizer_config_json, "tokenizer_config.json");
  return build(text, tokenizer_json.string(), &config_text, tokenizer_config_json.string());
}

Tokenizer Tokenizer::from_json(std::string_view tokenizer_json, std::string_view tokenizer_config_json,
                               const std::string& source) {
  const std::string config_text(tokenizer_config_json);
  return build(std::string(tokenizer_json), source, config_text.empty() ? nullptr : &config_text,
               source + " (tokenizer_config.json)");
}

Tokenizer Tokenizer::build(const std::string& tokenizer_json, std::string source,
                           const std::string* config_json, std::string config_source) {
  auto impl = std::make_shared<Impl>();
  impl->source = std::move(source);
  impl->config_source = std::move(config_source);
  const json root = parse_json(tokenizer_json, impl->source);
  std::optional<json> config;
  if (config_json != nullptr) config = parse_json(*config_json, impl->config_source);
  try {
    impl->load(root);
    impl->load_config(config ? &*config : nullptr);
  } catch (const json::exception& e) {  // a field of an unexpected JSON type
    throw Error(std::string("malformed tokenizer files: ") + e.what(), {.path = impl->source});
  }
  return Tokenizer(std::move(impl));
}

// --- encoding ------------------------------------------------------------------------------------

void Tokenizer::Impl::encode_text(std::string_view text, EncodeState& state,
                                  std::vector<TokenId>& ids) const {
  // Each Split applies to every piece the previous one produced, as its own subject (a lookahead
  // never sees past the end of its piece).
  state.pieces.assign(1, text);
  for (const UnicodeRegex& split : splits) {
    state.next_pieces.clear();
    for (const std::string_view piece : state.pieces)
      split.split_isolated(piece, state.regex_scratch, state.next_pieces);
    std::swap(state.pieces, state.next_pieces);
  }
  for (std::string_view piece : state.pieces) {
    if (add_prefix_space && piece.front() != ' ') {  // ByteLevel prefixes each piece it receives
      state.prefixed_piece.assign(1, ' ');
      state.prefixed_piece.append(piece);
      piece = state.prefixed_piece;
    }
    if (!byte_level_regex) {
      encode_piece(piece, state, ids);
      continue;
    }
    state.byte_level_pieces.clear();
    byte_level_regex->split_isolated(piece, state.regex_scratch, state.byte_level_pieces);
    for (const std::string_view part : state.byte_level_pieces) encode_piece(part, state, ids);
  }
}

// BPE over the byte-level symbols of one piece, merging the lowest-ranked adjacent pair first (the
// leftmost among equal ranks). This is `tokenizers`' Word::merge_all step for step, including how it
// recognises stale queue entries, so ties resolve identically.
void Tokenizer::Impl::encode_piece(std::string_view piece, EncodeState& state,
                                   std::vector<TokenId>& ids) const {
  if (ignore_merges) {  // a piece that is itself a token is taken whole
    state.mapped_piece.clear();
    for (const char c : piece) unicode::append_utf8(unicode::byte_to_char(uint8_t(c)), state.mapped_piece);
    if (const auto it = vocab.find(state.mapped_piece); it != vocab.end()) {
      ids.push_back(it->second);
      return;
    }
  }

  std::vector<Symbol>& symbols = state.symbols;
  symbols.clear();
  const auto push_symbol = [&](TokenId id) {
    const auto index = int32_t(symbols.size());
    symbols.push_back({id, index - 1, index + 1, false});
  };
  bool pending_unk = false;  // bytes without a symbol become unk_token (fused when fuse_unk)
  for (const char c : piece) {
    const TokenId id = byte_ids[uint8_t(c)];
    if (id != kNoToken) {
      if (pending_unk) push_symbol(unk_id);
      pending_unk = false;
      push_symbol(id);
    } else if (unk_id != kNoToken) {
      if (pending_unk && !fuse_unk) push_symbol(unk_id);
      pending_unk = true;
    }  // no unk_token: the byte is dropped, as `tokenizers` does
  }
  if (pending_unk) push_symbol(unk_id);
  if (symbols.empty()) return;
  symbols.back().next = -1;

  const auto find_merge = [&](TokenId left, TokenId right) -> const Merge* {
    const auto it = merges.find(pair_key(left, right));
    return it == merges.end() ? nullptr : &it->second;
  };
  std::vector<MergeCandidate>& queue = state.queue;
  queue.clear();
  for (size_t i = 0; i + 1 < symbols.size(); ++i) {
    if (const Merge* merge = find_merge(symbols[i].id, symbols[i + 1].id)) {
      queue.push_back({merge->rank, int32_t(i), merge->merged_id});
    }
  }
  std::make_heap(queue.begin(), queue.end(), merges_later);
  while (!queue.empty()) {
    std::pop_heap(queue.begin(), queue.end(), merges_later);
    const MergeCandidate top = queue.back();
    queue.pop_back();
    Symbol& left = symbols[size_t(top.pos)];
    if (left.removed || left.next < 0) continue;
    const Symbol right = symbols[size_t(left.next)];
    const Merge* current = find_merge(left.id, right.id);
    if (current == nullptr || current->merged_id != top.merged_id) continue;  // stale entry

    left.id = top.merged_id;
    symbols[size_t(left.next)].removed = true;
    left.next = right.next;
    if (right.next >= 0) symbols[size_t(right.next)].prev = top.pos;
    if (left.prev >= 0) {
      if (const Merge* merge = find_merge(symbols[size_t(left.prev)].id, left.id)) {
        queue.push_back({merge->rank, left.prev, merge->merged_id});
        std::push_heap(queue.begin(), queue.end(), merges_later);
      }
    }
    if (left.next >= 0) {
      if (const Merge* merge = find_merge(left.id, symbols[size_t(left.next)].id)) {
        queue.push_back({merge->rank, top.pos, merge->merged_id});
        std::push_heap(queue.begin(), queue.end(), merges_later);
      }
    }
  }
  for (const Symbol& symbol : symbols) {
    if (!symbol.removed) ids.push_back(symbol.id);
  }
}

std::vector<TokenId> Tokenizer::encode(std::string_view text, bool add_bos) const {
  const Impl& impl = *impl_;
  const size_t invalid_at = unicode::find_invalid_utf8(text);
  check(invalid_at == text.size(),
        "encode: text is not valid UTF-8 (byte " + std::to_string(invalid_at) + ")",
        {.path = impl.source, .hint = "pass UTF-8 text"});
  std::vector<TokenId> ids;
  ids.reserve(text.size() / 3 + 2);
  if (add_bos) {
    check(impl.bos != kNoToken, "encode: add_bos requested but the tokenizer has no BOS token",
          {.path = impl.source, .hint = "set bos_token in tokenizer_config.json"});
    ids.push_back(impl.bos);
  }
  if (text.empty()) return ids;

  EncodeState state;
  // Added tokens with normalized = false are cut from the raw text; those with normalized = true
  // from what is left (tokenizers normalises in between; these tokenizers have no normalizer).
  impl.raw_matcher.split(text, impl.added, state.segments);
  for (const Segment& segment : state.segments) {
    if (segment.id != kNoToken) {
      ids.push_back(segment.id);
      continue;
    }
    state.normalized_segments.clear();
    impl.normalized_matcher.split(segment.text, impl.added, state.normalized_segments);
    for (const Segment& inner : state.normalized_segments) {
      if (inner.id != kNoToken) {
        ids.push_back(inner.id);
      } else {
        impl.encode_text(inner.text, state, ids);
      }
    }
  }
  return ids;
}

// --- decoding and lookups ------------------------------------------------------------------------

std::string Tokenizer::decode(std::span<const TokenId> ids, bool skip_special) const {
  std::string bytes;
  for (const TokenId id : ids) {
    if (id < 0 || size_t(id) >= impl_->tokens.size()) continue;
    if (skip_special && impl_->special[size_t(id)]) continue;
    bytes += impl_->token_bytes[size_t(id)];
  }
  std::string text;
  text.reserve(bytes.size());
  unicode::append_utf8_lossy(bytes, text);
  return text;
}

std::string StreamDecoder::push(TokenId id) {
  if (skip_special_ && tokenizer_.is_special(id)) return {};
  pending_bytes_ += tokenizer_.token_bytes(id);
  const size_t complete = unicode::complete_utf8_prefix(pending_bytes_);
  std::string text;
  unicode::append_utf8_lossy(std::string_view(pending_bytes_).substr(0, complete), text);
  pending_bytes_.erase(0, complete);
  return text;
}

std::string StreamDecoder::flush() {
  std::string text;
  unicode::append_utf8_lossy(pending_bytes_, text);
  pending_bytes_.clear();
  return text;
}

TokenId Tokenizer::bos_id() const {
  return impl_->bos;
}
TokenId Tokenizer::eos_id() const {
  return impl_->eos;
}
bool Tokenizer::add_bos_default() const {
  return impl_->add_bos;
}
const std::string& Tokenizer::bos_token() const {
  return impl_->bos_token;
}
const std::string& Tokenizer::eos_token() const {
  return impl_->eos_token;
}
const std::string& Tokenizer::chat_template_source() const {
  return impl_->chat_template;
}
const std::vector<AddedToken>& Tokenizer::added_tokens() const {
  return impl_->added;
}
const std::string& Tokenizer::source() const {
  return impl_->source;
}
int64_t Tokenizer::vocab_size() const {
  return int64_t(impl_->tokens.size());
}

TokenId Tokenizer::token_to_id(std::string_view token) const {
  if (const auto it = impl_->added_ids.find(token); it != impl_->added_ids.end()) return it->second;
  if (const auto it = impl_->vocab.find(token); it != impl_->vocab.end()) return it->second;
  return kNoToken;
}

std::string_view Tokenizer::id_to_token(TokenId id) const {
  return id >= 0 && size_t(id) < impl_->tokens.size() ? std::string_view(impl_->tokens[size_t(id)]) : "";
}

std::string_view Tokenizer::token_bytes(TokenId id) const {
  return id >= 0 && size_t(id) < impl_->tokens.size() ? std::string_view(impl_->token_bytes[size_t(id)]) : "";
}

bool Tokenizer::is_special(TokenId id) const {
  return id >= 0 && size_t(id) < impl_->special.size() && impl_->special[size_t(id)] != 0;
}

}  // namespace hetmoe
