// hetmoe tokenize -m DIR (-p TEXT | -f FILE) [--json] [--bos]: token ids of a text, as
// llama-tokenize prints them. Special tokens inside the text are recognised.
#include <cstdio>

#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "engine/model/tokenizer.h"
#include "tools/hetmoe/commands.h"
#include "tools/hetmoe/common.h"

namespace hetmoe::cli {
namespace {

struct TokenizeOptions {
  std::string model_dir;
  std::string prompt;
  std::string file;
  bool json = false;
  bool bos = false;
};

void run_tokenize(const TokenizeOptions& options) {
  check(options.prompt.empty() != options.file.empty(), "give exactly one of -p TEXT and -f FILE");
  const Tokenizer tokenizer = Tokenizer::load(options.model_dir);
  const std::string text = options.file.empty() ? options.prompt : read_text_file(options.file);
  const auto ids = tokenizer.encode(text, options.bos);
  if (options.json) {
    std::printf("%s\n", nlohmann::json(ids).dump().c_str());
    return;
  }
  for (int32_t id : ids)
    std::printf("%6d -> '%s'\n", id, tokenizer.decode(std::span(&id, 1)).c_str());
}

}  // namespace

void register_tokenize(CLI::App& app) {
  auto o = std::make_shared<TokenizeOptions>();
  CLI::App* cmd = app.add_subcommand("tokenize", "Print the token ids of a text");
  cmd->add_option("-m,--model", o->model_dir, "Model folder (tokenizer.json)")->required();
  cmd->add_option("-p,--prompt", o->prompt, "Text");
  cmd->add_option("-f,--file", o->file, "Text file")->check(CLI::ExistingFile);
  cmd->add_flag("--json", o->json, "Print one JSON array of ids");
  cmd->add_flag("--bos", o->bos, "Prepend the BOS token");
  cmd->callback([o] { run_tokenize(*o); });
}

}  // namespace hetmoe::cli
