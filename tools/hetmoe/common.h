// Pieces shared by the CLI subcommands.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <tbb/global_control.h>

namespace hetmoe::cli {

// Caps oneTBB's worker count for the lifetime of the object (0: all cores).
class ThreadLimit {
 public:
  explicit ThreadLimit(int threads);

 private:
  std::unique_ptr<tbb::global_control> control_;
};

// Writes a float32 C-order .npy file (NumPy format 1.0).
void write_npy(const std::filesystem::path& path, const std::vector<float>& values, const std::vector<int64_t>& shape);

// "0,17,42" -> ids. Throws hetmoe::Error on anything that is not a comma-separated integer list.
std::vector<int32_t> parse_id_list(const std::string& text);

// Reads a whole text file. Throws hetmoe::Error naming the file.
std::string read_text_file(const std::filesystem::path& path);

}  // namespace hetmoe::cli

namespace hetmoe {
class Tokenizer;
struct ModelConfig;
}  // namespace hetmoe

namespace hetmoe::cli {

// Loads DIR's tokenizer and checks it fits the model: every token id must have an embedding row.
Tokenizer load_tokenizer_for(const std::filesystem::path& model_dir, const ModelConfig& config);

}  // namespace hetmoe::cli
