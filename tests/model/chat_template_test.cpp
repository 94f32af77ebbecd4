// The C++ DeepSeek chat template against MODEL_SPEC.md §5.4 and against jinja2 renderings of the
// family's template (tests/data/tokenizer/cases.json, made by tools/fixtures/make_tokenizer_fixtures.py).
#include "engine/model/chat_template.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "engine/model/tokenizer.h"

namespace hetmoe {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

const fs::path kTemplateFixtures = fs::path(HETMOE_TEST_DATA) / "tokenizer";
const std::string kBosText = "<｜begin▁of▁sentence｜>";

ChatTemplate r1() {
  return {.style = ChatStyle::kDeepseekR1, .bos_token = kBosText};
}

std::vector<ChatMessage> parse_messages(const json& list) {
  std::vector<ChatMessage> messages;
  for (const json& entry : list) {
    ChatMessage message{.role = entry["role"].get<std::string>()};
    if (entry["content"].is_string()) message.content = entry["content"].get<std::string>();
    for (const json& call : entry.value("tool_calls", json::array())) {
      message.tool_calls.push_back({.type = call["type"].get<std::string>(),
                                    .name = call["function"]["name"].get<std::string>(),
                                    .arguments = call["function"]["arguments"].get<std::string>()});
    }
    messages.push_back(std::move(message));
  }
  return messages;
}

TEST(ChatTemplate, SpecExample) {
  const std::vector<ChatMessage> messages = {{.role = "user", .content = "Hi"}};
  EXPECT_EQ(r1().render(messages), "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜><think>\n");
  const ChatTemplate v3{.style = ChatStyle::kDeepseekV3, .bos_token = kBosText};
  EXPECT_EQ(v3.render(messages), "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜>");
  EXPECT_EQ(r1().render(messages, /*add_generation_prompt=*/false), "<｜begin▁of▁sentence｜><｜User｜>Hi");
}

TEST(ChatTemplate, MultiTurnDropsEarlierReasoning) {
  const std::vector<ChatMessage> messages = {
      {.role = "system", .content = "Be brief."},
      {.role = "user", .content = "2+2?"},
      {.role = "assistant", .content = "<think>\nfirst</think>draft</think>\n\n4"},
      {.role = "user", .content = "3+3?"},
  };
  EXPECT_EQ(r1().render(messages),
            "<｜begin▁of▁sentence｜>Be brief.<｜User｜>2+2?<｜Assistant｜>\n\n4<｜end▁of▁sentence｜>"
            "<｜User｜>3+3?<｜Assistant｜><think>\n");
}

TEST(ChatTemplate, MatchesJinjaRenderings) {
  std::ifstream in(kTemplateFixtures / "cases.json");
  std::stringstream text;
  text << in.rdbuf();
  const json cases = json::parse(text.str());
  int compared = 0;
  for (const json& entry : cases["chat"]) {
    const ChatTemplate chat{.style = entry["style"] == "r1" ? ChatStyle::kDeepseekR1 : ChatStyle::kDeepseekV3,
                            .bos_token = kBosText};
    EXPECT_EQ(chat.render(parse_messages(entry["messages"]), entry["add_generation_prompt"].get<bool>()),
              entry["text"].get<std::string>())
        << entry["name"];
    ++compared;
  }
  EXPECT_GE(compared, 20);
}

TEST(ChatTemplate, ToolResultsAreClosedBeforeTheNextMessage) {
  // The published template forgets <｜tool▁outputs▁end｜> before a user message and never restarts
  // <｜tool▁outputs▁begin｜> for a second round of tool results; hetmoe closes and reopens them.
  const std::vector<ChatMessage> messages = {
      {.role = "user", .content = "q"},
      {.role = "assistant", .tool_calls = {{.name = "f", .arguments = "{}"}}},
      {.role = "tool", .content = "r1"},
      {.role = "user", .content = "again"},
      {.role = "assistant", .tool_calls = {{.name = "g", .arguments = "{}"}}},
      {.role = "tool", .content = "r2"},
  };
  EXPECT_EQ(
      r1().render(messages),
      "<｜begin▁of▁sentence｜><｜User｜>q<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function"
      "<｜tool▁sep｜>f\n```json\n{}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜>"
      "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>r1<｜tool▁output▁end｜><｜tool▁outputs▁end｜>"
      "<｜User｜>again<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>g\n"
      "```json\n{}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜>"
      "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>r2<｜tool▁output▁end｜><｜tool▁outputs▁end｜>");
}

TEST(ChatTemplate, RejectsUnknownRoles) {
  const std::vector<ChatMessage> messages = {{.role = "developer", .content = "x"}};
  EXPECT_THROW(r1().render(messages), Error);
}

TEST(ChatTemplate, StyleComesFromTheTokenizerConfig) {
  EXPECT_EQ(detect_chat_style(""), ChatStyle::kDeepseekV3);
  EXPECT_EQ(detect_chat_style("{{'<｜Assistant｜>'}}"), ChatStyle::kDeepseekV3);
  EXPECT_EQ(detect_chat_style("{{'<｜Assistant｜><think>\\n'}}"), ChatStyle::kDeepseekR1);
  EXPECT_EQ(detect_chat_style("{{'<｜Assistant｜><think>\n'}}"), ChatStyle::kDeepseekR1);

  const Tokenizer tokenizer = Tokenizer::load(kTemplateFixtures);
  const ChatTemplate chat = ChatTemplate::for_tokenizer(tokenizer);
  EXPECT_EQ(chat.style, ChatStyle::kDeepseekR1);
  EXPECT_EQ(chat.bos_token, kBosText);
  // Encoded without add_bos: the rendering starts with BOS already, and the role tags are single ids.
  const std::vector<ChatMessage> messages = {{.role = "user", .content = "Hi"}};
  const std::vector<TokenId> ids = tokenizer.encode(chat.render(messages), /*add_bos=*/false);
  ASSERT_GE(ids.size(), 5u);
  EXPECT_EQ(ids.front(), tokenizer.bos_id());
  EXPECT_EQ(std::count(ids.begin(), ids.end(), tokenizer.bos_id()), 1);
  EXPECT_EQ(ids[1], tokenizer.token_to_id("<｜User｜>"));
  EXPECT_EQ(ids[ids.size() - 3], tokenizer.token_to_id("<｜Assistant｜>"));
  EXPECT_EQ(ids[ids.size() - 2], tokenizer.token_to_id("<think>"));
  EXPECT_EQ(tokenizer.decode({ids.end() - 1, ids.end()}), "\n");
}

}  // namespace
}  // namespace hetmoe
