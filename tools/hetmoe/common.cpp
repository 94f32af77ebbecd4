#include "tools/hetmoe/common.h"

#include <charconv>
#include <fstream>
#include <sstream>

#include "engine/core/error.h"

namespace hetmoe::cli {

ThreadLimit::ThreadLimit(int threads) {
  check(threads >= 0, "--threads must be >= 0");
  if (threads > 0)
    control_ = std::make_unique<tbb::global_control>(tbb::global_control::max_allowed_parallelism, size_t(threads));
}

void write_npy(const std::filesystem::path& path, const std::vector<float>& values, const std::vector<int64_t>& shape) {
  std::string shape_text = "(";
  for (size_t i = 0; i < shape.size(); ++i) shape_text += std::to_string(shape[i]) + (shape.size() == 1 || i + 1 < shape.size() ? "," : "");
  shape_text += ")";
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape_text + ", }";
  // Magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple of 64, ending in '\n'.
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  const std::filesystem::path temporary = path.string() + ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    check(bool(out), "cannot create file", {.path = temporary.string(), .hint = "check the folder exists and is writable"});
    out.write("\x93NUMPY\x01\x00", 8);
    const uint16_t length = uint16_t(header.size());
    const char length_bytes[2] = {char(length & 0xFF), char(length >> 8)};
    out.write(length_bytes, 2);
    out.write(header.data(), std::streamsize(header.size()));
    out.write(reinterpret_cast<const char*>(values.data()), std::streamsize(values.size() * sizeof(float)));
    out.close();
    check(bool(out), "write failed", {.path = temporary.string(), .hint = "is the disk full?"});
  }
  std::filesystem::rename(temporary, path);
}

std::vector<int32_t> parse_id_list(const std::string& text) {
  std::vector<int32_t> ids;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ',')) {
    int32_t id = 0;
    const auto [end, error] = std::from_chars(item.data(), item.data() + item.size(), id);
    check(error == std::errc() && end == item.data() + item.size() && id >= 0,
          "'" + item + "' in the id list is not a non-negative integer", {.hint = "write ids like 0,17,42"});
    ids.push_back(id);
  }
  check(!ids.empty(), "the id list is empty", {.hint = "write ids like 0,17,42"});
  return ids;
}

std::string read_text_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  check(bool(in), "cannot open file", {.path = path.string()});
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

}  // namespace hetmoe::cli

#include "engine/model/config.h"
#include "engine/model/tokenizer.h"

namespace hetmoe::cli {

Tokenizer load_tokenizer_for(const std::filesystem::path& model_dir, const ModelConfig& config) {
  check(std::filesystem::exists(model_dir / "tokenizer.json"), "no tokenizer.json in the model folder",
        {.path = model_dir.string(), .hint = "copy the model's tokenizer.json and tokenizer_config.json there, or "
                                             "use `hetmoe logits --ids` which needs no tokenizer"});
  Tokenizer tokenizer = Tokenizer::load(model_dir);
  check(tokenizer.vocab_size() <= config.vocab_size,
        "the tokenizer has " + std::to_string(tokenizer.vocab_size()) + " tokens but the model only " +
            std::to_string(config.vocab_size) + " embedding rows",
        {.path = (model_dir / "tokenizer.json").string(), .hint = "tokenizer and weights come from different models"});
  return tokenizer;
}

}  // namespace hetmoe::cli
