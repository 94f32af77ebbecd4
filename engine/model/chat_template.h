// The DeepSeek-V3 / R1 chat template written out in C++ (MODEL_SPEC.md §5.4, docs/TOKENIZER.md).
//
// hetmoe does not run Jinja: it implements the one template family it serves and reads from the
// tokenizer_config.json chat_template only which variant it is (the generation prompt). Encode the
// rendered text with add_bos = false: the template already starts with the BOS token.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace hetmoe {

class Tokenizer;

enum class ChatStyle {
  kDeepseekV3,  // generation prompt "<｜Assistant｜>"
  kDeepseekR1,  // generation prompt "<｜Assistant｜><think>\n" (the revised R1 template)
};

struct ChatToolCall {
  std::string type = "function";
  std::string name;
  std::string arguments;  // JSON text, inserted verbatim
};

struct ChatMessage {
  std::string role;  // "system", "user", "assistant" or "tool"
  std::string content;
  std::vector<ChatToolCall> tool_calls;  // assistant only
};

// kDeepseekR1 when the template's generation prompt opens a think block ("<｜Assistant｜><think>\n",
// with the newline as a Jinja escape or a real newline), else kDeepseekV3 (also for "").
ChatStyle detect_chat_style(std::string_view chat_template_source);

struct ChatTemplate {
  ChatStyle style = ChatStyle::kDeepseekV3;
  std::string bos_token;

  // Style from the tokenizer's chat_template, BOS text from its config.
  static ChatTemplate for_tokenizer(const Tokenizer& tokenizer);

  // Throws hetmoe::Error on an unknown role.
  std::string render(std::span<const ChatMessage> messages, bool add_generation_prompt = true) const;
};

}  // namespace hetmoe
