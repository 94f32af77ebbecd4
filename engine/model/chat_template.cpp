#include "engine/model/chat_template.h"

#include "engine/core/error.h"
#include "engine/model/tokenizer.h"

namespace hetmoe {
namespace {

constexpr std::string_view kUser = "<｜User｜>";
constexpr std::string_view kAssistant = "<｜Assistant｜>";
constexpr std::string_view kEndOfSentence = "<｜end▁of▁sentence｜>";
constexpr std::string_view kThinkEnd = "</think>";
constexpr std::string_view kToolCallsBegin = "<｜tool▁calls▁begin｜>";
constexpr std::string_view kToolCallsEnd = "<｜tool▁calls▁end｜>";
constexpr std::string_view kToolCallBegin = "<｜tool▁call▁begin｜>";
constexpr std::string_view kToolCallEnd = "<｜tool▁call▁end｜>";
constexpr std::string_view kToolSep = "<｜tool▁sep｜>";
constexpr std::string_view kToolOutputsBegin = "<｜tool▁outputs▁begin｜>";
constexpr std::string_view kToolOutputsEnd = "<｜tool▁outputs▁end｜>";
constexpr std::string_view kToolOutputBegin = "<｜tool▁output▁begin｜>";
constexpr std::string_view kToolOutputEnd = "<｜tool▁output▁end｜>";

void append_tool_call(const ChatToolCall& call, std::string& out) {
  out.append(kToolCallBegin).append(call.type).append(kToolSep).append(call.name);
  out.append("\n```json\n").append(call.arguments).append("\n```").append(kToolCallEnd);
}

}  // namespace

ChatStyle detect_chat_style(std::string_view chat_template_source) {
  // Only the revised R1 generation prompt puts a newline right after <think>.
  const bool opens_think = chat_template_source.find("<think>\\n") != std::string_view::npos ||
                           chat_template_source.find("<think>\n") != std::string_view::npos;
  return opens_think ? ChatStyle::kDeepseekR1 : ChatStyle::kDeepseekV3;
}

ChatTemplate ChatTemplate::for_tokenizer(const Tokenizer& tokenizer) {
  return {.style = detect_chat_style(tokenizer.chat_template_source()), .bos_token = tokenizer.bos_token()};
}

std::string ChatTemplate::render(std::span<const ChatMessage> messages, bool add_generation_prompt) const {
  std::string out = bos_token;
  // All system messages, joined by a blank line, go right after BOS with no role tag.
  bool first_system = true;
  for (const ChatMessage& message : messages) {
    if (message.role != "system") continue;
    if (!first_system) out += "\n\n";
    out += message.content;
    first_system = false;
  }

  bool in_tool_outputs = false;  // inside a run of tool results
  for (const ChatMessage& message : messages) {
    const std::string& role = message.role;
    if (role == "system") continue;
    if (role == "tool") {
      out.append(in_tool_outputs ? "\n" : std::string(kToolOutputsBegin));
      out.append(kToolOutputBegin).append(message.content).append(kToolOutputEnd);
      in_tool_outputs = true;
      continue;
    }
    check(role == "user" || role == "assistant",
          "chat message role '" + role + "' is not one of system, user, assistant, tool");
    // A run of tool results is closed before the next message. An assistant reply to them follows
    // directly, without its role tag, as the published template has it.
    const bool after_tool_outputs = in_tool_outputs;
    if (in_tool_outputs) out.append(kToolOutputsEnd);
    in_tool_outputs = false;

    if (role == "user") {
      out.append(kUser).append(message.content);
    } else if (!message.tool_calls.empty()) {
      out.append(kAssistant).append(message.content).append(kToolCallsBegin);
      for (size_t i = 0; i < message.tool_calls.size(); ++i) {
        if (i > 0) out += '\n';
        append_tool_call(message.tool_calls[i], out);
      }
      out.append(kToolCallsEnd).append(kEndOfSentence);
    } else if (after_tool_outputs) {
      out.append(message.content).append(kEndOfSentence);
    } else {
      // Earlier reasoning is not replayed: keep only what follows the last </think>.
      std::string_view content = message.content;
      if (const size_t at = content.rfind(kThinkEnd); at != std::string_view::npos) {
        content.remove_prefix(at + kThinkEnd.size());
      }
      out.append(kAssistant).append(content).append(kEndOfSentence);
    }
  }
  if (in_tool_outputs) {
    out.append(kToolOutputsEnd);
  } else if (add_generation_prompt) {
    out.append(kAssistant);
    if (style == ChatStyle::kDeepseekR1) out.append("<think>\n");
  }
  return out;
}

}  // namespace hetmoe
