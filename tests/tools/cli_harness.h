// What the CLI tests share: running `hetmoe ARGS...` in-process through the CLI entry point with
// stdout and stderr captured, and a fixture owning a fresh temporary directory per test.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "tools/hetmoe/commands.h"

namespace hetmoe::testing_cli {

// Inputs more than one CLI test file uses.
inline const std::string kModel = HETMOE_SOURCE_DIR "/models/tiny-shakespeare";
inline const std::string kV3Config = HETMOE_TEST_DATA "/configs/deepseek-v3-r1.config.json";

struct CliResult {
  int exit_code = 0;
  std::string out, err;
};

// `hetmoe` + args, as the binary would run them.
inline CliResult run(std::vector<std::string> args) {
  args.insert(args.begin(), "hetmoe");
  std::vector<const char*> argv;
  for (const std::string& arg : args) argv.push_back(arg.c_str());
  ::testing::internal::CaptureStdout();
  ::testing::internal::CaptureStderr();
  CliResult result;
  result.exit_code = cli::run_cli(int(argv.size()), argv.data());
  std::fflush(stdout);
  std::fflush(stderr);
  result.out = ::testing::internal::GetCapturedStdout();
  result.err = ::testing::internal::GetCapturedStderr();
  return result;
}

// root_: an empty directory of the test's own, removed afterwards.
class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = std::filesystem::temp_directory_path() /
            ("hetmoe_cli_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->test_suite_name() + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(root_);
    std::filesystem::create_directories(root_);
  }
  void TearDown() override { std::filesystem::remove_all(root_); }
  std::filesystem::path root_;
};

}  // namespace hetmoe::testing_cli
