// Hardware profiles: every shipped profile parses and round-trips; malformed ones fail with an
// error that names the field.
#include <gtest/gtest.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "engine/plan/hardware_profile.h"
#include "tests/plan/plan_test_util.h"

namespace hetmoe::plan {
namespace {

using nlohmann::json;

json minimal_profile() {
  return json::parse(R"({
    "schema": "hetmoe-hardware-profile/1", "name": "m",
    "cpu": {"sockets": 1, "physical_cores": 4,
            "kernels": {"fp8": {"decode_weight_bytes_per_second": 1e10, "prefill_flops_per_second": 1e11}}},
    "dram": {"bytes": "16GiB", "read_bytes_per_second": 2e10}
  })");
}

std::string error_of(const json& j) {
  try {
    parse_hardware_profile(j, "test.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(HardwareProfile, ShippedProfilesParseAndRoundTrip) {
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(testing::kProfiles)) {
    if (entry.path().extension() != ".json") continue;
    SCOPED_TRACE(entry.path().string());
    const HardwareProfile p = load_hardware_profile(entry.path());
    EXPECT_FALSE(p.source.empty()) << "a hand-written profile must cite its sources";
    EXPECT_GT(p.dram.read_bytes_per_second, 0);
    const HardwareProfile q = parse_hardware_profile(hardware_profile_to_json(p));
    EXPECT_EQ(q.name, p.name);
    EXPECT_EQ(q.dram.bytes, p.dram.bytes);
    EXPECT_EQ(q.gpus.size(), p.gpus.size());
    for (int f = 0; f < kWeightFormatCount; ++f)
      EXPECT_EQ(q.cpu.kernels[f].prefill_flops_per_second, p.cpu.kernels[f].prefill_flops_per_second);
    ++count;
  }
  EXPECT_GE(count, 4);
}

TEST(HardwareProfile, SmallBatchRateIsOptionalAndRoundTrips) {
  json j = minimal_profile();
  const HardwareProfile without = parse_hardware_profile(j);
  EXPECT_EQ(without.cpu.kernel(WeightFormat::kFP8).small_batch_flops_per_second, 0);
  EXPECT_EQ(without.cpu.kernel(WeightFormat::kFP8).small_batch_rate(), 1e11);  // the GEMM slope stands in
  EXPECT_FALSE(hardware_profile_to_json(without)["cpu"]["kernels"]["fp8"].contains("small_batch_flops_per_second"));
  j["cpu"]["kernels"]["fp8"]["small_batch_flops_per_second"] = 3e10;
  const HardwareProfile with = parse_hardware_profile(hardware_profile_to_json(parse_hardware_profile(j)));
  EXPECT_EQ(with.cpu.kernel(WeightFormat::kFP8).small_batch_flops_per_second, 3e10);
  EXPECT_EQ(with.cpu.kernel(WeightFormat::kFP8).small_batch_rate(), 3e10);
}

TEST(HardwareProfile, SizesAcceptUnits) {
  const HardwareProfile p = parse_hardware_profile(minimal_profile());
  EXPECT_EQ(p.dram.bytes, 16ull << 30);
  EXPECT_TRUE(p.cpu.kernel(WeightFormat::kFP8).present());
  EXPECT_FALSE(p.cpu.kernel(WeightFormat::kINT4).present());
  EXPECT_FALSE(p.has_gpu());
}

TEST(HardwareProfile, BadProfilesNameTheField) {
  json j = minimal_profile();
  j["schema"] = "other/2";
  EXPECT_NE(error_of(j).find("schema"), std::string::npos);

  j = minimal_profile();
  j.erase("cpu");
  EXPECT_NE(error_of(j).find("cpu is missing"), std::string::npos);

  j = minimal_profile();
  j["dram"]["read_bytes_per_second"] = -5;
  EXPECT_NE(error_of(j).find("dram.read_bytes_per_second"), std::string::npos);

  j = minimal_profile();
  j["dram"]["bytes"] = "lots";
  EXPECT_NE(error_of(j).find("dram.bytes"), std::string::npos);

  j = minimal_profile();
  j["cpu"]["kernals"] = json::object();  // a typo must not pass silently
  EXPECT_NE(error_of(j).find("cpu.kernals is not a known field"), std::string::npos);

  j = minimal_profile();
  j["cpu"]["kernels"] = json::object();
  EXPECT_NE(error_of(j).find("cpu.kernels names no format"), std::string::npos);

  j = minimal_profile();
  j["cpu"]["kernels"]["fp8"]["small_batch_flops_per_second"] = 0;
  EXPECT_NE(error_of(j).find("cpu.kernels.fp8.small_batch_flops_per_second must be > 0"), std::string::npos);

  j = minimal_profile();
  j["cpu"]["kernels"]["int4"] = {{"decode_weight_bytes_per_second", 1e9}};
  EXPECT_NE(error_of(j).find("cpu.kernels.int4.prefill_flops_per_second is missing"), std::string::npos);

  j = minimal_profile();
  j["gpus"] = json::array({{{"memory_bytes", "24GiB"}, {"hbm_bytes_per_second", 1e12}, {"bf16_flops_per_second", 1e14}}});
  EXPECT_NE(error_of(j).find("gpus[0].pcie_h2d_bytes_per_second is missing"), std::string::npos);

  j = minimal_profile();
  j["gpus"] = json::array({{{"memory_bytes", "1GiB"}, {"reserved_bytes", "2GiB"}, {"hbm_bytes_per_second", 1e12},
                            {"bf16_flops_per_second", 1e14}, {"pcie_h2d_bytes_per_second", 2e10}}});
  EXPECT_NE(error_of(j).find("reserved_bytes"), std::string::npos);

  EXPECT_THROW(load_hardware_profile("/nonexistent/profile.json"), Error);
}

TEST(HardwareProfile, FormatNamesAndSizes) {
  EXPECT_EQ(parse_weight_format("int4"), WeightFormat::kINT4);
  EXPECT_THROW(parse_weight_format("q4_k"), Error);
  EXPECT_DOUBLE_EQ(weight_format_bits(WeightFormat::kINT4), 4.25);  // cpu/packed_matrix.h: 1088 B per 16x128
  EXPECT_DOUBLE_EQ(weight_format_bits(WeightFormat::kINT8), 8.25);
  EXPECT_GT(weight_format_bits(WeightFormat::kFP8), 8.0);
}

}  // namespace
}  // namespace hetmoe::plan
