// `hetmoe run --plan FILE`: the run follows a `hetmoe plan -o` file (its expert format; with
// --store its resident experts and DRAM budget), gives the same text as the resident run, and
// refuses plans that are not plans or belong to another model.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/tools/cli_harness.h"

namespace hetmoe {
namespace {

namespace fs = std::filesystem;

const std::string kProfile = HETMOE_SOURCE_DIR "/tools/profiles/desktop-24g-nvme.json";

using testing_cli::CliResult;
using testing_cli::kModel;
using testing_cli::kV3Config;
using testing_cli::run;
using CliPlanRun = testing_cli::CliTest;

TEST_F(CliPlanRun, FollowsThePlansFormatResidentExpertsAndBudget) {
  const std::string plan = (root_ / "plan.json").string(), store = (root_ / "ts.hmx").string();
  // A DRAM budget that holds some of the 128 INT4 experts and leaves the rest on NVMe (the
  // planner also keeps room for the runtime, so search upwards from 256 MiB).
  size_t pinned = 0, cold = 0;
  std::string budget;
  for (int mib = 256; mib <= 1024 && (pinned == 0 || cold == 0); mib += 4) {
    budget = std::to_string(mib) + "MiB";
    const CliResult planned = run({"plan", "-m", kModel, "--hw", kProfile, "--expert-format", "int4", "--dram-budget",
                                   budget, "--gpu-budget", "1MiB", "-o", plan});
    ASSERT_EQ(planned.exit_code, 0) << planned.err;
    pinned = cold = 0;
    std::ifstream in(plan);
    const nlohmann::json doc = nlohmann::json::parse(in);
    for (const auto& layer : doc.at("layers")) {
      pinned += layer.at("gpu").size() + layer.at("dram").size();
      cold += layer.at("nvme").size();
    }
  }
  ASSERT_GT(pinned, 0u);
  ASSERT_GT(cold, 0u);
  ASSERT_EQ(run({"pack", "-m", kModel, "-o", store, "--format", "int4"}).exit_code, 0);

  const std::vector<std::string> prompt = {"-m", kModel, "-p", "ROMEO:", "-n", "24", "--temp", "0"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = {"run"};
    args.insert(args.end(), prompt.begin(), prompt.end());
    args.insert(args.end(), extra.begin(), extra.end());
    return run(args);
  };
  const CliResult resident = with({"--format", "int4"});
  ASSERT_EQ(resident.exit_code, 0) << resident.err;

  const CliResult followed = with({"--plan", plan});
  ASSERT_EQ(followed.exit_code, 0) << followed.err;
  EXPECT_NE(followed.err.find("experts int4"), std::string::npos) << followed.err;
  EXPECT_EQ(followed.out, resident.out);

  const CliResult streamed = with({"--plan", plan, "--store", store});
  ASSERT_EQ(streamed.exit_code, 0) << streamed.err;
  EXPECT_NE(streamed.err.find(", " + std::to_string(pinned) + " kept resident"), std::string::npos) << streamed.err;
  // The session really holds them: its summary counts the pinned experts.
  EXPECT_NE(streamed.err.find("(" + std::to_string(pinned) + " pinned)"), std::string::npos) << streamed.err;
  EXPECT_NE(streamed.err.find("DRAM budget " + budget.substr(0, budget.size() - 3) + ".00 MiB (the plan's)"),
            std::string::npos)
      << streamed.err;
  EXPECT_EQ(streamed.out, resident.out);
}

TEST_F(CliPlanRun, RefusesWhatIsNotAPlanForThisModel) {
  const fs::path not_plan = root_ / "not_plan.json";
  std::ofstream(not_plan) << R"({"layers": []})";
  CliResult r = run({"run", "-m", kModel, "-p", "x", "-n", "1", "--plan", not_plan.string()});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("not a hetmoe plan file"), std::string::npos) << r.err;

  const std::string v3_plan = (root_ / "v3.json").string();
  ASSERT_EQ(run({"plan", "-m", kV3Config, "--hw", kProfile, "--expert-format", "int4", "-o", v3_plan}).exit_code, 0);
  r = run({"run", "-m", kModel, "-p", "x", "-n", "1", "--plan", v3_plan});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("MoE layers"), std::string::npos) << r.err;

  r = run({"run", "-m", kModel, "-p", "x", "-n", "1", "--plan", (root_ / "missing.json").string()});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("cannot open the plan file"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace hetmoe
