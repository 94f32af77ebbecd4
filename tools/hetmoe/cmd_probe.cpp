// hetmoe probe [-o FILE] [--dir PATH] [--disk-size SIZE] [--no-disk] [--no-gpu] [-t T]: measures this
// machine into a hardware profile (engine/plan/probe.h says how; docs/PLANNER.md the schema).
#include <cstdio>
#include <fstream>

#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "engine/model/model_builder.h"
#include "engine/plan/probe.h"
#include "tools/hetmoe/commands.h"
#include "tools/hetmoe/common.h"

namespace hetmoe::cli {
namespace {

struct ProbeFlags {
  std::string output;
  std::string directory = ".";
  std::string disk_size = "1GiB";
  bool no_disk = false;
  bool no_gpu = false;
  bool cpu_time = false;
  double seconds = 1.0;
  int threads = 0;
};

void run_probe(const ProbeFlags& flags) {
  ThreadLimit limit(flags.threads);
  plan::ProbeOptions options;
  options.disk_directory = flags.directory;
  options.skip_disk = flags.no_disk;
  options.skip_gpu = flags.no_gpu;
  options.seconds_per_test = flags.seconds;
  options.cpu_time = flags.cpu_time;
  const auto size = parse_byte_size(flags.disk_size);
  check(size.has_value() && *size >= (16u << 20), "bad --disk-size '" + flags.disk_size + "'",
        {.hint = "a size of at least 16MiB, e.g. 1GiB"});
  options.disk_test_bytes = *size;
  options.progress = [](const std::string& line) { std::fprintf(stderr, "hetmoe probe: %s\n", line.c_str()); };
  const plan::HardwareProfile profile = plan::probe_machine(options);
  const std::string text = plan::hardware_profile_to_json(profile).dump(2) + "\n";
  if (flags.output.empty()) {
    std::fputs(text.c_str(), stdout);
    return;
  }
  std::ofstream out(flags.output, std::ios::trunc);
  check(bool(out), "cannot create file", {.path = flags.output});
  out << text;
  out.close();
  check(bool(out), "write failed", {.path = flags.output, .hint = "is the disk full?"});
  std::fprintf(stderr, "hetmoe probe: wrote %s\n", flags.output.c_str());
}

}  // namespace

void register_probe(CLI::App& app) {
  auto f = std::make_shared<ProbeFlags>();
  CLI::App* cmd = app.add_subcommand("probe", "Measure this machine into a hardware profile (JSON) for `hetmoe plan`");
  cmd->add_option("-o,--output", f->output, "Write the profile here (default: stdout)");
  cmd->add_option("--dir", f->directory, "Directory whose drive is measured (a temporary file is written there)")
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--disk-size", f->disk_size, "Size of the disk test file (default 1GiB)");
  cmd->add_flag("--no-disk", f->no_disk, "Skip the disk measurement");
  cmd->add_flag("--no-gpu", f->no_gpu, "Skip the GPU measurements");
  cmd->add_flag("--cpu-time", f->cpu_time,
                "Time CPU measurements in process CPU seconds / threads, median pass (a machine shared with other jobs)");
  cmd->add_option("--seconds", f->seconds, "Minimum duration of each measurement (default 1)")->check(CLI::Range(0.0, 600.0));
  cmd->add_option("-t,--threads", f->threads, "Worker threads for the CPU measurements (0: all cores)");
  cmd->callback([f] { run_probe(*f); });
}

}  // namespace hetmoe::cli
