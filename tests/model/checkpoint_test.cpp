#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "engine/model/safetensors.h"
#include "tests/scratch_dir.h"

namespace hetmoe {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Tensor {
  std::string name;
  DType dtype;
  Shape shape;
  std::vector<uint8_t> bytes;
};

Tensor random_tensor(const std::string& name, DType dtype, Shape shape, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> bytes(*dtype_bytes(dtype, uint64_t(shape.numel())));
  for (auto& byte : bytes) byte = uint8_t(rng());
  return {name, dtype, shape, std::move(bytes)};
}

template <typename T>
Tensor tensor_of(const std::string& name, DType dtype, Shape shape, const std::vector<T>& values) {
  std::vector<uint8_t> bytes(values.size() * sizeof(T));
  std::memcpy(bytes.data(), values.data(), bytes.size());
  return {name, dtype, shape, std::move(bytes)};
}

void write_file(const fs::path& path, const std::vector<Tensor>& tensors) {
  SafetensorsWriter writer(path, {{"format", "pt"}});
  writer.set_durable(false);
  for (const Tensor& tensor : tensors) writer.declare(tensor.name, tensor.dtype, tensor.shape);
  for (const Tensor& tensor : tensors) writer.write(tensor.bytes.data(), tensor.bytes.size());
  writer.finish();
}

void write_json(const fs::path& path, const json& value) {
  std::ofstream(path) << value.dump(2);
}

std::string open_error(const fs::path& directory) {
  try {
    Checkpoint::open(directory);
  } catch (const Error& error) {
    return error.what();
  }
  return "";
}

// Three shards and their index, the way Hugging Face lays out a large model.
struct ShardedCheckpoint {
  const testing::ScratchDir dir{"checkpoint"};
  std::vector<std::vector<Tensor>> shards;
  json index;

  ShardedCheckpoint() {
    uint32_t seed = 100;
    for (int shard = 0; shard < 3; ++shard) {
      std::vector<Tensor> tensors;
      for (int layer = 0; layer < 4; ++layer) {
        const std::string prefix = "model.layers." + std::to_string(shard * 4 + layer) + ".";
        tensors.push_back(
            random_tensor(prefix + "mlp.up_proj.weight", DType::kF8E4M3, Shape{16, 24}, seed++));
        tensors.push_back(
            random_tensor(prefix + "mlp.up_proj.weight_scale_inv", DType::kF32, Shape{1, 1}, seed++));
        tensors.push_back(random_tensor(prefix + "input_layernorm.weight", DType::kBF16, Shape{24}, seed++));
      }
      shards.push_back(std::move(tensors));
    }
    index = {{"metadata", {{"total_size", 0}}}, {"weight_map", json::object()}};
    for (size_t shard = 0; shard < shards.size(); ++shard)
      for (const Tensor& tensor : shards[shard]) index["weight_map"][tensor.name] = shard_name(shard);
  }
  static std::string shard_name(size_t shard) {
    return "model-0000" + std::to_string(shard + 1) + "-of-00003.safetensors";
  }
  void write() const {
    for (size_t shard = 0; shard < shards.size(); ++shard) write_file(dir / shard_name(shard), shards[shard]);
    write_json(dir / "model.safetensors.index.json", index);
  }
};

TEST(Checkpoint, OpensShardsThroughTheIndex) {
  ShardedCheckpoint model;
  model.write();
  auto checkpoint = Checkpoint::open(model.dir.path());
  ASSERT_EQ(checkpoint->files().size(), 3u);
  for (size_t shard = 0; shard < 3; ++shard)  // in shard-name order
    EXPECT_EQ(checkpoint->files()[shard]->path().filename(), ShardedCheckpoint::shard_name(shard));
  EXPECT_EQ(checkpoint->tensors().size(), 36u);
  for (size_t shard = 0; shard < model.shards.size(); ++shard) {
    for (const Tensor& tensor : model.shards[shard]) {
      SCOPED_TRACE(tensor.name);
      const Checkpoint::Entry& entry = checkpoint->at(tensor.name);
      EXPECT_EQ(entry.file->path().filename(), ShardedCheckpoint::shard_name(shard));
      EXPECT_EQ(entry.info->dtype, tensor.dtype);
      EXPECT_EQ(entry.info->shape, tensor.shape);
      ASSERT_EQ(entry.info->nbytes(), tensor.bytes.size());
      EXPECT_EQ(std::memcmp(entry.file->data(*entry.info), tensor.bytes.data(), tensor.bytes.size()), 0);
    }
  }
  EXPECT_EQ(checkpoint->find("lm_head.weight"), nullptr);
  try {
    checkpoint->at("lm_head.weight");
    FAIL() << "expected an error";
  } catch (const Error& error) {
    EXPECT_EQ(error.context().tensor, "lm_head.weight");
  }
}

TEST(Checkpoint, IndexNamingAMissingShardIsAnError) {
  ShardedCheckpoint model;
  model.write();
  fs::remove(model.dir / ShardedCheckpoint::shard_name(1));
  const std::string message = open_error(model.dir.path());
  EXPECT_NE(message.find(ShardedCheckpoint::shard_name(1)), std::string::npos) << message;
  EXPECT_NE(message.find("missing"), std::string::npos) << message;
}

TEST(Checkpoint, IndexAndShardsMustAgree) {
  {  // Listed in the index, absent from its shard.
    ShardedCheckpoint model;
    model.index["weight_map"]["lm_head.weight"] = ShardedCheckpoint::shard_name(2);
    model.write();
    const std::string message = open_error(model.dir.path());
    EXPECT_NE(message.find("lm_head.weight"), std::string::npos) << message;
    EXPECT_NE(message.find("does not hold it"), std::string::npos) << message;
  }
  {  // In a shard, absent from the index.
    ShardedCheckpoint model;
    model.index["weight_map"].erase("model.layers.5.input_layernorm.weight");
    model.write();
    const std::string message = open_error(model.dir.path());
    EXPECT_NE(message.find("model.layers.5.input_layernorm.weight"), std::string::npos) << message;
    EXPECT_NE(message.find("not in model.safetensors.index.json"), std::string::npos) << message;
  }
  {  // The index places a tensor in another shard.
    ShardedCheckpoint model;
    model.index["weight_map"]["model.layers.0.input_layernorm.weight"] = ShardedCheckpoint::shard_name(1);
    model.write();
    const std::string message = open_error(model.dir.path());
    EXPECT_NE(message.find("model.layers.0.input_layernorm.weight"), std::string::npos) << message;
    EXPECT_NE(message.find("places it in"), std::string::npos) << message;
  }
  {  // A shard name that leaves the folder.
    ShardedCheckpoint model;
    model.index["weight_map"]["model.layers.0.input_layernorm.weight"] = "../elsewhere.safetensors";
    model.write();
    EXPECT_NE(open_error(model.dir.path()).find("not a file inside the model folder"), std::string::npos);
  }
  {  // Broken indexes.
    ShardedCheckpoint model;
    model.write();
    const fs::path index = model.dir / "model.safetensors.index.json";
    write_json(index, json{{"metadata", json::object()}});
    EXPECT_NE(open_error(model.dir.path()).find("no \"weight_map\""), std::string::npos);
    write_json(index, json{{"weight_map", json::array()}});
    EXPECT_NE(open_error(model.dir.path()).find("\"weight_map\" is not an object"), std::string::npos);
    write_json(index, json{{"weight_map", {{"a", 5}}}});
    EXPECT_NE(open_error(model.dir.path()).find("not a file name"), std::string::npos);
    std::ofstream(index) << R"({"weight_map": {"a": "x.safetensors", "a": "y.safetensors"}})";
    EXPECT_NE(open_error(model.dir.path()).find("lists the tensor twice"), std::string::npos);
    std::ofstream(index) << R"({"weight_map": {"a": )";
    EXPECT_NE(open_error(model.dir.path()).find("not valid JSON"), std::string::npos);
    std::ofstream(index) << "[]";
    EXPECT_NE(open_error(model.dir.path()).find("not a JSON object"), std::string::npos);
  }
}

TEST(Checkpoint, OpensSingleFileFolders) {
  const std::vector<Tensor> tensors = {random_tensor("a", DType::kBF16, Shape{2, 3}, 1),
                                       random_tensor("b", DType::kF32, Shape{5}, 2)};
  {
    const testing::ScratchDir dir("checkpoint");
    write_file(dir / "model.safetensors", tensors);
    EXPECT_EQ(Checkpoint::open(dir.path())->tensors().size(), 2u);
    EXPECT_EQ(Checkpoint::open(dir / "model.safetensors")->tensors().size(), 2u);  // the file itself
  }
  {  // One file under another name, no index: accepted.
    const testing::ScratchDir dir("checkpoint");
    write_file(dir / "weights.safetensors", tensors);
    EXPECT_EQ(Checkpoint::open(dir.path())->at("b").info->shape, Shape{5});
    // A second one without an index is ambiguous.
    write_file(dir / "more.safetensors", {random_tensor("c", DType::kF32, Shape{1}, 3)});
    EXPECT_NE(open_error(dir.path()).find("no model.safetensors.index.json"), std::string::npos);
  }
  {
    const testing::ScratchDir dir("checkpoint");
    EXPECT_NE(open_error(dir.path()).find("no model.safetensors"), std::string::npos);
    EXPECT_NE(open_error(dir / "absent").find("not a model folder"), std::string::npos);
  }
}

// --- load_float --------------------------------------------------------------------------------

// Independent reference: decode E4M3 from its bit fields (MODEL_SPEC §4.4).
float e4m3_formula(uint8_t code) {
  const int sign = code >> 7, exponent = (code >> 3) & 15, mantissa = code & 7;
  if (exponent == 15 && mantissa == 7) return std::nanf("");
  const double magnitude =
      exponent == 0 ? std::ldexp(mantissa / 8.0, -6) : std::ldexp(1.0 + mantissa / 8.0, exponent - 7);
  return float(sign ? -magnitude : magnitude);
}

TEST(Checkpoint, DequantisesFp8BlocksWithPartialEdges) {
  const testing::ScratchDir dir("checkpoint");
  const int64_t rows = 200, cols = 300;
  Tensor weight = random_tensor("w", DType::kF8E4M3, Shape{rows, cols}, 7);
  for (auto& code : weight.bytes)
    if ((code & 0x7F) == 0x7F) code = 0x38;  // no NaNs: keep the comparison exact
  std::vector<float> scales(2 * 3);
  for (size_t i = 0; i < scales.size(); ++i) scales[i] = 0.25f * float(i + 1) + 0.001f;
  // The same weight with 64-blocks: [4, 5] scales.
  std::vector<float> scales64(4 * 5);
  for (size_t i = 0; i < scales64.size(); ++i) scales64[i] = 1.0f / float(i + 3);
  Tensor weight64 = weight;
  weight64.name = "w64";
  write_file(dir / "model.safetensors",
             {weight, tensor_of("w_scale_inv", DType::kF32, Shape{2, 3}, scales), weight64,
              tensor_of("w64_scale_inv", DType::kF32, Shape{4, 5}, scales64)});
  auto checkpoint = Checkpoint::open(dir.path());

  const std::vector<float> got = checkpoint->load_float("w");
  const std::vector<float> got64 = checkpoint->load_float("w64", 64);
  ASSERT_EQ(got.size(), size_t(rows * cols));
  ASSERT_EQ(got64.size(), size_t(rows * cols));
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) {
      const float code = e4m3_formula(weight.bytes[size_t(i * cols + j)]);
      ASSERT_EQ(got[size_t(i * cols + j)], code * scales[size_t((i / 128) * 3 + j / 128)]) << i << "," << j;
      ASSERT_EQ(got64[size_t(i * cols + j)], code * scales64[size_t((i / 64) * 5 + j / 64)]) << i << "," << j;
    }
  }
}

TEST(Checkpoint, RejectsWrongScales) {
  const testing::ScratchDir dir("checkpoint");
  const Tensor weight = random_tensor("w", DType::kF8E4M3, Shape{200, 300}, 7);
  Tensor other = weight;
  other.name = "noscale";
  Tensor bf16_scaled = weight;
  bf16_scaled.name = "bf16scale";
  write_file(
      dir / "model.safetensors",
      {weight, tensor_of("w_scale_inv", DType::kF32, Shape{2, 2}, std::vector<float>(4, 1.0f)), other,
       bf16_scaled, tensor_of("bf16scale_scale_inv", DType::kBF16, Shape{2, 3}, std::vector<uint16_t>(6)),
       random_tensor("ids", DType::kI64, Shape{3}, 1),
       random_tensor("cube", DType::kF8E4M3, Shape{2, 2, 2}, 2)});
  auto checkpoint = Checkpoint::open(dir.path());
  auto message = [&](const std::string& name, int64_t block = 128) {
    try {
      checkpoint->load_float(name, block);
    } catch (const Error& error) {
      return std::string(error.what());
    }
    return std::string();
  };
  EXPECT_NE(message("w").find("scale shape [2, 2] does not match weight [200, 300]"), std::string::npos)
      << message("w");
  EXPECT_NE(message("w").find("expected [2, 3]"), std::string::npos) << message("w");
  EXPECT_NE(message("w", 64).find("expected [4, 5]"), std::string::npos) << message("w", 64);
  EXPECT_NE(message("noscale").find("no scale tensor 'noscale_scale_inv'"), std::string::npos)
      << message("noscale");
  EXPECT_NE(message("bf16scale").find("expected F32"), std::string::npos) << message("bf16scale");
  EXPECT_NE(message("ids").find("cannot be loaded as float"), std::string::npos) << message("ids");
  EXPECT_NE(message("cube").find("2-D"), std::string::npos) << message("cube");
  EXPECT_NE(message("absent").find("no such tensor"), std::string::npos) << message("absent");
}

TEST(Checkpoint, ConvertsBf16F16F32) {
  const testing::ScratchDir dir("checkpoint");
  const std::vector<float> values = {1.0f, -2.5f, 0.15625f, 3e-5f, -1e4f, 0.0f};
  std::vector<uint16_t> bf16, f16;
  for (float value : values) {
    bf16.push_back(bf16_from_float(value));
    f16.push_back(fp16_from_float(value));
  }
  // A 1-byte tensor first makes the next ones start at odd offsets: load_float must cope.
  write_file(
      dir / "model.safetensors",
      {random_tensor("pad", DType::kU8, Shape{1}, 1), tensor_of("bf16", DType::kBF16, Shape{2, 3}, bf16),
       tensor_of("f16", DType::kF16, Shape{6}, f16), tensor_of("f32", DType::kF32, Shape{3, 2}, values)});
  auto checkpoint = Checkpoint::open(dir.path());
  const auto got_bf16 = checkpoint->load_float("bf16");
  const auto got_f16 = checkpoint->load_float("f16");
  EXPECT_EQ(checkpoint->load_float("f32"), values);
  ASSERT_EQ(got_bf16.size(), values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    EXPECT_EQ(got_bf16[i], bf16_to_float(bf16[i]));
    EXPECT_EQ(got_f16[i], fp16_to_float(f16[i]));
    EXPECT_NEAR(got_bf16[i], values[i], std::fabs(values[i]) / 128);
  }
}

}  // namespace
}  // namespace hetmoe
