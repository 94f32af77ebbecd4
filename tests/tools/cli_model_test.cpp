// `hetmoe inspect` and `hetmoe make-model` driven through the CLI entry point (in-process via
// run_cli, and once through the built binary).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/model/safetensors.h"
#include "tests/tools/cli_harness.h"

namespace hetmoe {
namespace {

namespace fs = std::filesystem;

const std::string kV2LiteConfig = HETMOE_TEST_DATA "/configs/deepseek-v2-lite.config.json";

using testing_cli::CliResult;
using testing_cli::kV3Config;
using testing_cli::run;
using CliModelTest = testing_cli::CliTest;

TEST_F(CliModelTest, InspectJsonOnPublishedV3Config) {
  const CliResult r = run({"inspect", kV3Config, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["architecture"], "deepseek_v3");
  EXPECT_EQ(j["total_params"].get<uint64_t>(), 671'026'419'200u);
  EXPECT_EQ(j["active_params"].get<uint64_t>(), 36'625'618'432u);
  EXPECT_EQ(j["mtp_params"].get<uint64_t>(), 13'463'426'304u);
  EXPECT_EQ(j["tensor_count"].get<uint64_t>(), 90'427u);
  EXPECT_EQ(j["tensor_count_with_mtp"].get<uint64_t>(), 91'991u);
  EXPECT_EQ(j["kv_cache_bytes_per_token"].get<uint64_t>(), 70'272u);
  EXPECT_EQ(j["dense_layers"], 3);
  EXPECT_EQ(j["moe_layers"], 58);
  EXPECT_FALSE(j["validated"].get<bool>());
  EXPECT_EQ(j["routed_expert_bytes_per_moe_layer"].get<uint64_t>(),
            uint64_t(256) * (3 * 2048 * 7168 + 3 * 896 * 4));
  uint64_t sum = 0;
  for (const auto& [group, bytes] : j["bytes_by_group"].items())
    if (group != "mtp") sum += bytes.get<uint64_t>();
  EXPECT_EQ(sum, j["total_bytes"].get<uint64_t>());
}

TEST_F(CliModelTest, InspectTextSummary) {
  CliResult r = run({"inspect", kV3Config});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("671.0B total, 36.6B active"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("70,272 bytes per token"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("3 dense + 58 MoE"), std::string::npos) << r.out;
  r = run({"inspect", kV2LiteConfig});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("15.7B total, 2.45B active"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("31,104 bytes per token"), std::string::npos) << r.out;
}

TEST_F(CliModelTest, MakeModelThenInspectValidates) {
  const std::string dir = (root_ / "tiny").string();
  CliResult r = run({"make-model", "-o", dir, "--preset", "tiny", "--seed", "3", "--zipf", "1.0",
                     "--max-shard-size", "1MB"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("wrote"), std::string::npos);
  EXPECT_TRUE(fs::exists(fs::path(dir) / "model.safetensors.index.json"));
  r = run({"inspect", dir, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_TRUE(j["validated"].get<bool>());
  EXPECT_EQ(j["checkpoint"]["tensors"], j["tensor_count"]);
  EXPECT_GT(j["checkpoint"]["files"].get<int>(), 1);
  r = run({"inspect", dir});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("main-model tensors valid"), std::string::npos) << r.out;
}

TEST_F(CliModelTest, MakeModelRefusesNonEmptyDirectory) {
  const fs::path dir = root_ / "busy";
  fs::create_directories(dir);
  std::ofstream(dir / "notes.txt") << "keep me";
  CliResult r = run({"make-model", "-o", dir.string(), "--preset", "tiny"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("not empty"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--force"), std::string::npos) << r.err;
  EXPECT_TRUE(fs::exists(dir / "notes.txt"));
  EXPECT_FALSE(fs::exists(dir / "model.safetensors"));
}

TEST_F(CliModelTest, MakeModelRejectsBadFlags) {
  const std::string dir = (root_ / "x").string();
  EXPECT_EQ(run({"make-model", "-o", dir}).exit_code, 1);  // neither --preset nor --config
  EXPECT_EQ(run({"make-model", "-o", dir, "--preset", "tiny", "--config", kV3Config}).exit_code, 1);
  EXPECT_NE(run({"make-model", "-o", dir, "--preset", "huge"}).exit_code, 0);
  const CliResult r = run({"make-model", "-o", dir, "--preset", "tiny", "--max-shard-size", "5XB"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--max-shard-size"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir));
  // The full 671B model (673 GB) is refused before anything is written — where it cannot fit.
  if (fs::space(root_).available > uint64_t(700) * 1000 * 1000 * 1000) return;
  const CliResult big = run({"make-model", "-o", dir, "--config", kV3Config});
  EXPECT_EQ(big.exit_code, 1);
  EXPECT_NE(big.err.find("GB are free"), std::string::npos) << big.err;
  EXPECT_FALSE(fs::exists(dir));
}

TEST_F(CliModelTest, MakeModelFromConfigFile) {
  const std::string dir = (root_ / "lite").string();
  const CliResult r = run({"make-model", "-o", dir, "--config", kV2LiteConfig, "--layers", "2", "--vocab",
                           "512", "--experts", "8"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(run({"inspect", dir, "--json"}).out);
  EXPECT_EQ(j["architecture"], "deepseek_v2");
  EXPECT_EQ(j["n_routed_experts"], 8);
  EXPECT_EQ(j["vocab_size"], 512);
  EXPECT_TRUE(j["validated"].get<bool>());
}

// Rewrites a tiny checkpoint with one tensor removed, one reshaped and one retyped: inspect must
// fail with ONE error naming all three.
TEST_F(CliModelTest, InspectListsEveryBrokenTensor) {
  const fs::path good = root_ / "good", bad = root_ / "bad";
  ASSERT_EQ(run({"make-model", "-o", good.string(), "--preset", "tiny"}).exit_code, 0);
  fs::create_directories(bad);
  fs::copy_file(good / "config.json", bad / "config.json");
  const std::string removed = "model.layers.2.mlp.experts.3.down_proj.weight";
  const std::string reshaped = "model.layers.1.self_attn.o_proj.weight";  // F8 [256, 128]
  const std::string retyped = "model.layers.0.input_layernorm.weight";    // BF16 [256]
  {
    const auto source = SafetensorsFile::open(good / "model.safetensors");
    SafetensorsWriter writer(bad / "model.safetensors");
    for (const TensorInfo& info : source->tensors()) {
      if (info.name == removed) continue;
      if (info.name == reshaped)
        writer.declare(info.name, info.dtype, Shape{128, 256});
      else if (info.name == retyped)
        writer.declare(info.name, DType::kF16, info.shape);
      else
        writer.declare(info.name, info.dtype, info.shape);
    }
    for (const TensorInfo& info : source->tensors())
      if (info.name != removed) writer.write(source->data(info), info.nbytes());
    writer.finish();
  }
  const CliResult r = run({"inspect", bad.string()});
  EXPECT_EQ(r.exit_code, 1);
  for (const std::string& name : {removed, reshaped, retyped})
    EXPECT_NE(r.err.find(name), std::string::npos) << name << " not in:\n" << r.err;
  EXPECT_NE(r.err.find("1 missing, 0 unexpected, 2 with the wrong shape or dtype"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("[128, 256] F8_E4M3, expected [256, 128] F8_E4M3"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("[256] F16, expected [256] BF16"), std::string::npos) << r.err;
}

// The built binary, as a user runs it (skipped when only the test target was built).
TEST_F(CliModelTest, BinaryExitCodes) {
  const fs::path binary = fs::path(HETMOE_BINARY_DIR) / "tools" / "hetmoe";
  if (!fs::exists(binary)) GTEST_SKIP() << binary << " not built";
  const std::string quiet = " > /dev/null 2>&1";
  const int ok = std::system((binary.string() + " inspect --json " + kV3Config + quiet).c_str());
  EXPECT_EQ(WEXITSTATUS(ok), 0);
  const int missing =
      std::system((binary.string() + " inspect " + (root_ / "nope").string() + quiet).c_str());
  EXPECT_EQ(WEXITSTATUS(missing), 1);
}

}  // namespace
}  // namespace hetmoe
