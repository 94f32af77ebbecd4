// Tokenizer against Hugging Face `tokenizers`: the ids in tests/data/tokenizer/cases.json come from
// tools/fixtures/make_tokenizer_fixtures.py, never from this code.
#include "engine/model/tokenizer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "engine/model/unicode.h"

namespace hetmoe {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

const fs::path kFixtureDir = fs::path(HETMOE_TEST_DATA) / "tokenizer";
constexpr TokenId kBos = 0, kEos = 1, kUser = 3, kAssistant = 4, kThink = 5, kThinkEnd = 6;

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

const json& cases() {
  static const json kCases = json::parse(read_text(kFixtureDir / "cases.json"));
  return kCases;
}

const Tokenizer& deepseek_style() {
  static const Tokenizer kTokenizer = Tokenizer::load(kFixtureDir);
  return kTokenizer;
}

const Tokenizer& gpt2_style() {
  static const Tokenizer kTokenizer = Tokenizer::load(kFixtureDir / "gpt2_style");
  return kTokenizer;
}

// The case text with control and non-ASCII bytes escaped, for failure messages.
std::string printable(std::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    const auto byte = uint8_t(c);
    if (byte >= 0x20 && byte < 0x7F && c != '\\') {
      out += c;
    } else {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "\\x%02X", byte);
      out += hex;
    }
  }
  return out + "\"";
}

std::string join(const std::vector<TokenId>& ids) {
  std::string out;
  for (const TokenId id : ids) {
    if (!out.empty()) out += ',';
    out += std::to_string(id);
  }
  return out;
}

void expect_ids_match(const Tokenizer& tokenizer, const char* key) {
  int compared = 0;
  for (const json& entry : cases()["cases"]) {
    if (!entry.contains(key)) continue;
    const std::string text = entry["text"].get<std::string>();
    const auto expected = entry[key].get<std::vector<TokenId>>();
    const std::vector<TokenId> ids = tokenizer.encode(text);
    EXPECT_EQ(ids, expected) << "text " << printable(text) << "\n  got      " << join(ids) << "\n  expected "
                             << join(expected);
    ++compared;
  }
  EXPECT_GE(compared, 60);
}

TEST(Tokenizer, LoadsTheDeepseekStyleFixture) {
  const Tokenizer& tokenizer = deepseek_style();
  EXPECT_EQ(tokenizer.vocab_size(), 1000);
  EXPECT_EQ(tokenizer.bos_id(), kBos);
  EXPECT_EQ(tokenizer.eos_id(), kEos);
  EXPECT_EQ(tokenizer.bos_token(), "<｜begin▁of▁sentence｜>");
  EXPECT_TRUE(tokenizer.add_bos_default());
  EXPECT_EQ(tokenizer.token_to_id("<｜User｜>"), kUser);
  EXPECT_EQ(tokenizer.token_to_id("</think>"), kThinkEnd);
  EXPECT_EQ(tokenizer.token_to_id("no such token"), kNoToken);
  EXPECT_EQ(tokenizer.id_to_token(kAssistant), "<｜Assistant｜>");
  EXPECT_EQ(tokenizer.id_to_token(-1), "");
  EXPECT_EQ(tokenizer.id_to_token(1000), "");
  const TokenId space = tokenizer.token_to_id("Ġ");  // byte-level stand-in for ' '
  ASSERT_NE(space, kNoToken);
  EXPECT_EQ(tokenizer.token_bytes(space), " ");
  EXPECT_TRUE(tokenizer.is_special(kThink));
  EXPECT_FALSE(tokenizer.is_special(space));
  EXPECT_EQ(tokenizer.added_tokens().size(), 7u);
}

TEST(Tokenizer, DeepseekStyleIdsMatchHuggingFace) {
  expect_ids_match(deepseek_style(), "ids");
}

TEST(Tokenizer, Gpt2StyleIdsMatchHuggingFace) {
  // ByteLevel with its own regex and add_prefix_space, "a b" merges, ignore_merges, and
  // non-special added tokens with lstrip/rstrip (normalized and not).
  expect_ids_match(gpt2_style(), "ids_gpt2");
}

TEST(Tokenizer, DecodeInvertsEncode) {
  // (Not for the GPT-2 style fixture: its add_prefix_space puts a space in front of every piece.)
  for (const json& entry : cases()["cases"]) {
    const std::string text = entry["text"].get<std::string>();
    EXPECT_EQ(deepseek_style().decode(deepseek_style().encode(text)), text) << printable(text);
  }
}

TEST(Tokenizer, StreamDecodeYieldsWholeCharactersAndTheSameText) {
  for (const Tokenizer* tokenizer : {&deepseek_style(), &gpt2_style()}) {
    for (const json& entry : cases()["cases"]) {
      const std::string text = entry["text"].get<std::string>();
      const std::vector<TokenId> ids = tokenizer->encode(text);
      StreamDecoder stream(*tokenizer);
      std::string streamed;
      for (const TokenId id : ids) {
        const std::string chunk = stream.push(id);
        EXPECT_EQ(unicode::find_invalid_utf8(chunk), chunk.size())
            << "broken UTF-8 chunk in " << printable(text);
        streamed += chunk;
      }
      EXPECT_EQ(stream.flush(), "") << printable(text);
      EXPECT_EQ(streamed, tokenizer->decode(ids)) << printable(text);
    }
  }
}

TEST(Tokenizer, StreamDecodeHoldsPartialCharactersAndReplacesInvalidBytes) {
  const Tokenizer& tokenizer = deepseek_style();
  // Single-byte tokens: the first two bytes of "€" (E2 82 AC), then an ASCII letter.
  const auto byte_token = [&](uint8_t byte) {
    std::string symbol;
    unicode::append_utf8(unicode::byte_to_char(byte), symbol);
    return tokenizer.token_to_id(symbol);
  };
  const TokenId e2 = byte_token(0xE2), x82 = byte_token(0x82), xac = byte_token(0xAC), a = byte_token('a');
  StreamDecoder stream(tokenizer);
  EXPECT_EQ(stream.push(e2), "");
  EXPECT_EQ(stream.push(x82), "");
  EXPECT_EQ(stream.push(xac), "€");
  EXPECT_EQ(stream.push(e2), "");
  EXPECT_EQ(stream.push(x82), "");
  EXPECT_EQ(stream.push(a), "\uFFFDa");   // the incomplete E2 82 is one replacement character
  EXPECT_EQ(stream.push(xac), "\uFFFD");  // a lone continuation byte
  EXPECT_EQ(stream.push(e2), "");
  EXPECT_EQ(stream.flush(), "\uFFFD");
  const std::vector<TokenId> ids = {e2, x82, xac, e2, x82, a, xac, e2};
  EXPECT_EQ(tokenizer.decode(ids), "€\uFFFDa\uFFFD\uFFFD");
  // Special tokens: kept by default, dropped with skip_special.
  StreamDecoder skipping(tokenizer, /*skip_special=*/true);
  EXPECT_EQ(skipping.push(kThink), "");
  EXPECT_EQ(skipping.push(a), "a");
}

TEST(Tokenizer, SpecialTokensAreRecognisedInsideText) {
  const Tokenizer& tokenizer = deepseek_style();
  const std::vector<TokenId> ids = tokenizer.encode("x<think>y</think>z<｜User｜>");
  const std::vector<TokenId> x = tokenizer.encode("x"), y = tokenizer.encode("y"), z = tokenizer.encode("z");
  ASSERT_EQ(x.size(), 1u);
  EXPECT_EQ(ids, (std::vector<TokenId>{x[0], kThink, y[0], kThinkEnd, z[0], kUser}));
  // Lookalikes are plain text: ASCII '|' instead of U+FF5C, a token cut short.
  for (const char* text : {"<｜User|>", "<think", "think>", "<｜end▁of▁sentence"}) {
    for (const TokenId id : tokenizer.encode(text)) EXPECT_FALSE(tokenizer.is_special(id)) << text;
  }
  EXPECT_EQ(tokenizer.decode(ids), "x<think>y</think>z<｜User｜>");
  EXPECT_EQ(tokenizer.decode(ids, /*skip_special=*/true), "xyz");
  const std::vector<TokenId> with_bos = tokenizer.encode("x", /*add_bos=*/true);
  EXPECT_EQ(with_bos, (std::vector<TokenId>{kBos, x[0]}));
  EXPECT_EQ(tokenizer.encode("", true), std::vector<TokenId>{kBos});
  EXPECT_TRUE(tokenizer.encode("").empty());
}

TEST(Tokenizer, DecodeSkipsIdsOutsideTheVocabulary) {
  const Tokenizer& tokenizer = deepseek_style();
  const std::vector<TokenId> ids = {-5, tokenizer.encode("a")[0], 1000, 1 << 30};
  EXPECT_EQ(tokenizer.decode(ids), "a");
}

TEST(Tokenizer, RejectsInvalidUtf8Input) {
  for (const char* text : {"\xC3", "a\xFF", "\xED\xA0\x80" /* surrogate */, "\xC0\xAF" /* overlong */}) {
    EXPECT_THROW(deepseek_style().encode(text), Error) << printable(text);
  }
}

TEST(Tokenizer, LongRunsEncodeAndRoundTrip) {
  const Tokenizer& tokenizer = deepseek_style();
  // Long single pieces: a whitespace run that `\s+(?!\S)` backtracks over, a letter run, a digit run.
  for (const std::string& text : {std::string(200000, ' ') + "x", std::string(200000, 'a'),
                                  std::string(100000, '7') + "\n", std::string(50000, '\n')}) {
    const std::vector<TokenId> ids = tokenizer.encode(text);
    EXPECT_EQ(tokenizer.decode(ids), text);
  }
}

TEST(Tokenizer, EncodesConcurrently) {
  const Tokenizer& tokenizer = deepseek_style();
  const std::string text = "Hello, 世界! 12345 <think>x</think>\n";
  const std::vector<TokenId> expected = tokenizer.encode(text);
  std::vector<std::vector<TokenId>> results(4);
  std::vector<std::thread> threads;
  for (auto& result : results) {
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) result = tokenizer.encode(text);
    });
  }
  for (auto& thread : threads) thread.join();
  for (const auto& result : results) EXPECT_EQ(result, expected);
}

TEST(Tokenizer, EncodesTinyShakespeareQuickly) {
  const char* env = std::getenv("HETMOE_TINYSHAKESPEARE");
  const fs::path path = env != nullptr ? fs::path(env) : fs::path("/work/shared/data/tinyshakespeare.txt");
  if (!fs::exists(path)) GTEST_SKIP() << path << " not found (set HETMOE_TINYSHAKESPEARE)";
  const std::string text = read_text(path);
  const auto start = std::chrono::steady_clock::now();
  const std::vector<TokenId> ids = deepseek_style().encode(text);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("encoded %zu bytes into %zu ids in %.3f s\n", text.size(), ids.size(), seconds);
  EXPECT_EQ(deepseek_style().decode(ids), text);
#if defined(NDEBUG) && !defined(__SANITIZE_ADDRESS__)
  EXPECT_LT(seconds, 2.0);
#endif
}

TEST(Tokenizer, BundledTinyShakespeareMatchesHuggingFace) {
  const fs::path fixture = kFixtureDir / "tiny_shakespeare_ids.json";
  const fs::path model_dir = fs::path(HETMOE_SOURCE_DIR) / "models" / "tiny-shakespeare";
  if (!fs::exists(fixture)) {
    GTEST_SKIP() << fixture << " is absent: run tools/fixtures/make_tokenizer_fixtures.py once "
                 << model_dir / "tokenizer.json"
                 << " exists";
  }
  if (!fs::exists(model_dir / "tokenizer.json"))
    GTEST_SKIP() << model_dir / "tokenizer.json"
                 << " not found";
  const json expected = json::parse(read_text(fixture));
  const Tokenizer tokenizer = Tokenizer::load(model_dir);
  const std::string text = expected["text"].get<std::string>();
  const std::vector<TokenId> ids = tokenizer.encode(text);
  EXPECT_EQ(ids, expected["ids"].get<std::vector<TokenId>>());
  EXPECT_EQ(tokenizer.decode(ids), text);
}

// --- malformed input ------------------------------------------------------------------------------

// A small valid byte-level BPE tokenizer.json to break in one place per test.
json minimal_tokenizer() {
  json vocab = json::object();
  for (int byte = 0; byte < 256; ++byte) {
    std::string symbol;
    unicode::append_utf8(unicode::byte_to_char(uint8_t(byte)), symbol);
    vocab[symbol] = byte;
  }
  vocab["ab"] = 256;
  vocab["abc"] = 257;
  return {
      {"version", "1.0"},
      {"added_tokens",
       json::array({{{"id", 258}, {"content", "<s>"}, {"special", true}, {"normalized", false}}})},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model",
       {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array({"a b", json::array({"ab", "c"})})}}},
  };
}

// Writes `tokenizer` (and `config_text` unless empty) to a fresh folder and loads it, expecting an
// Error whose text names the file and contains `phrase`.
void expect_load_error(const json& tokenizer, const std::string& phrase,
                       const std::string& config_text = "") {
  static int counter = 0;
  // The process id keeps ctest's parallel processes (each counting from 1) out of each other's folder.
  const fs::path dir = fs::path(::testing::TempDir()) /
                       ("hetmoe_tokenizer_" + std::to_string(::getpid()) + "_" + std::to_string(++counter));
  fs::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << tokenizer.dump();
  if (!config_text.empty()) std::ofstream(dir / "tokenizer_config.json") << config_text;
  const fs::path named = config_text.empty() ? dir / "tokenizer.json" : dir / "tokenizer_config.json";
  try {
    Tokenizer::load(dir);
    ADD_FAILURE() << "no error; expected one containing '" << phrase << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(phrase), std::string::npos) << e.what();
    EXPECT_EQ(e.context().path, named.string()) << e.what();
  }
  fs::remove_all(dir);
}

TEST(TokenizerErrors, MinimalTokenizerLoads) {
  const Tokenizer tokenizer = Tokenizer::from_json(minimal_tokenizer().dump(), "", "minimal");
  EXPECT_EQ(tokenizer.encode("abcab<s>"), (std::vector<TokenId>{257, 256, 258}));
  EXPECT_EQ(tokenizer.vocab_size(), 259);
  EXPECT_EQ(tokenizer.bos_id(), kNoToken);
  EXPECT_THROW(tokenizer.encode("x", /*add_bos=*/true), Error);
}

TEST(TokenizerErrors, MissingFileOrInvalidJson) {
  const fs::path dir =
      fs::path(::testing::TempDir()) / ("hetmoe_tokenizer_missing_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  try {
    Tokenizer::load(dir);
    ADD_FAILURE() << "no error for a folder without tokenizer.json";
  } catch (const Error& e) {
    EXPECT_EQ(e.context().path, (dir / "tokenizer.json").string());
    EXPECT_NE(std::string(e.what()).find("cannot open"), std::string::npos) << e.what();
  }
  std::ofstream(dir / "tokenizer.json") << "{\"model\": {\"type\": \"BPE\",";  // truncated
  try {
    Tokenizer::load(dir);
    ADD_FAILURE() << "no error for truncated JSON";
  } catch (const Error& e) {
    EXPECT_EQ(e.context().path, (dir / "tokenizer.json").string());
    EXPECT_NE(std::string(e.what()).find("invalid JSON"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
  expect_load_error(minimal_tokenizer(), "invalid JSON", "{not json");
}

TEST(TokenizerErrors, UnsupportedComponentsAreNamed) {
  json t = minimal_tokenizer();
  t["model"]["type"] = "WordPiece";
  expect_load_error(t, "model type 'WordPiece' is not supported");
  t = minimal_tokenizer();
  t["normalizer"] = {{"type", "NFC"}};
  expect_load_error(t, "normalizer 'NFC' is not supported");
  t = minimal_tokenizer();
  t["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "▁"}};
  expect_load_error(t, "pre_tokenizer type 'Metaspace' is not supported");
  t = minimal_tokenizer();
  t["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       json::array(
           {{{"type", "Split"}, {"pattern", {{"Regex", "\\d"}}}, {"behavior", "Removed"}, {"invert", false}},
            {{"type", "ByteLevel"}, {"use_regex", false}}})}};
  expect_load_error(t, "Split behavior 'Removed' is not supported");
  t["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Isolated";
  t["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {{"Regex", "(unclosed"}};
  expect_load_error(t, "cannot compile regex '(unclosed'");
  t["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {{"Regex", "[a[b]]"}};
  expect_load_error(t, "nested character class");
  t["pre_tokenizer"]["pretokenizers"].erase(1);
  t["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {{"Regex", "\\d"}};
  expect_load_error(t, "no ByteLevel step");
  t = minimal_tokenizer();
  t["decoder"] = {{"type", "WordPiece"}};
  expect_load_error(t, "decoder 'WordPiece' is not supported");
  t = minimal_tokenizer();
  t["model"]["byte_fallback"] = true;
  expect_load_error(t, "byte_fallback is not supported");
  t = minimal_tokenizer();
  t["model"]["dropout"] = 0.1;
  expect_load_error(t, "dropout 0.1 is not supported");
  t = minimal_tokenizer();
  t["added_tokens"][0]["single_word"] = true;
  expect_load_error(t, "single_word = true is not supported");
}

TEST(TokenizerErrors, BadMerges) {
  json t = minimal_tokenizer();
  t["model"]["merges"].push_back("ab zz");
  expect_load_error(t, "refers to 'zz', which is not in the vocab");
  t = minimal_tokenizer();
  t["model"]["merges"].push_back(json::array({"abc", "a"}));
  expect_load_error(t, "makes 'abca', which is not in the vocab");
  t = minimal_tokenizer();
  t["model"]["merges"].push_back("abc");
  expect_load_error(t, "is not of the form \"left right\"");
  t = minimal_tokenizer();
  t["model"]["merges"].push_back(42);
  expect_load_error(t, "is neither");
}

TEST(TokenizerErrors, BadVocabIds) {
  json t = minimal_tokenizer();
  t["model"]["vocab"]["abc"] = -3;
  expect_load_error(t, "vocab token 'abc' has id -3, outside");
  t["model"]["vocab"]["abc"] = 1LL << 40;
  expect_load_error(t, "outside [0, ");
  t["model"]["vocab"]["abc"] = "257";
  expect_load_error(t, "non-integer id");
  t["model"]["vocab"]["abc"] = 256;
  expect_load_error(t, "vocab id 256 is used by both");
  t = minimal_tokenizer();
  t["model"].erase("vocab");
  expect_load_error(t, "no \"vocab\" object");
}

TEST(TokenizerErrors, ConflictingAddedTokens) {
  json t = minimal_tokenizer();
  t["added_tokens"][0]["id"] = 256;  // the vocab's "ab"
  expect_load_error(t, "which the vocab gives to 'ab'");
  t = minimal_tokenizer();
  t["added_tokens"].push_back({{"id", 258}, {"content", "</s>"}, {"special", true}});
  expect_load_error(t, "already used by added token '<s>'");
  t = minimal_tokenizer();
  t["added_tokens"].push_back({{"id", 259}, {"content", "<s>"}, {"special", true}});
  expect_load_error(t, "is listed twice");
  t = minimal_tokenizer();
  t["added_tokens"][0]["content"] = "ab";  // in the vocab with id 256
  expect_load_error(t, "but the vocab gives it id 256");
  t = minimal_tokenizer();
  t["added_tokens"][0]["content"] = "";
  expect_load_error(t, "empty content");
}

TEST(TokenizerErrors, BadConfig) {
  expect_load_error(minimal_tokenizer(), "bos_token '<bos>' is not a token",
                    json{{"bos_token", "<bos>"}}.dump());
  expect_load_error(minimal_tokenizer(), "add_bos_token must be true or false",
                    json{{"add_bos_token", "yes"}}.dump());
  const Tokenizer tokenizer = Tokenizer::from_json(
      minimal_tokenizer().dump(),
      json{{"bos_token", {{"__type", "AddedToken"}, {"content", "<s>"}}}, {"eos_token", "<s>"}}.dump(),
      "minimal");
  EXPECT_EQ(tokenizer.bos_id(), 258);
  EXPECT_EQ(tokenizer.eos_id(), 258);
  EXPECT_FALSE(tokenizer.add_bos_default());
}

}  // namespace
}  // namespace hetmoe
