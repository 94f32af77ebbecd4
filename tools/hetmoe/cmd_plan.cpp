// hetmoe plan -m DIR|config.json --hw PROFILE [--stats STATS] [--batch B --prompt P --gen G]
//   [--gpu-budget X --dram-budget Y] [--expert-format fp8|int8|int4|auto] [--dense-format F]
//   [--experts-per-token K] [--engine NAME] [--json] [-o PLAN] [--sweep "gpu_mem=.. dram=.." --svg FILE]
// Places attention, KV cache and every expert on GPU / DRAM / NVMe and predicts prefill and
// decode tokens/s (engine/plan/planner.h; docs/PLANNER.md).
#include <cstdio>
#include <fstream>
#include <optional>

#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "engine/model/model_builder.h"
#include "engine/plan/planner.h"
#include "tools/hetmoe/commands.h"

namespace hetmoe::cli {
namespace {

struct PlanFlags {
  std::string model;
  std::string hardware;
  std::string stats;
  int64_t batch = 1, prompt = 512, gen = 128, experts_per_token = 0;
  std::string gpu_budget, dram_budget;
  std::string expert_format, dense_format;
  std::string engine = "hetmoe";
  bool json = false;
  bool no_upgrades = false;
  std::string output;
  std::string sweep;
  std::string svg;
};

// "24" (GiB), "24GiB", "80GB", "512MiB".
uint64_t parse_budget(const std::string& text, const char* flag) {
  bool plain = !text.empty();
  for (char c : text) plain = plain && (std::isdigit(static_cast<unsigned char>(c)) || c == '.');
  const auto bytes = parse_byte_size(plain ? text + "GiB" : text);
  check(bytes.has_value(), std::string("bad ") + flag + " '" + text + "'", {.hint = "a size in GiB (24) or with a unit (24GiB, 80GB)"});
  return *bytes;
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  check(bool(out), "cannot create file", {.path = path, .hint = "check the folder exists and is writable"});
  out << text;
  out.close();
  check(bool(out), "write failed", {.path = path, .hint = "is the disk full?"});
}

void run_plan(const PlanFlags& f) {
  plan::PlanRequest request;
  request.config = load_model_config(f.model);
  request.model_name = f.model;
  request.profile = plan::load_hardware_profile(f.hardware);
  request.traits = plan::engine_traits(f.engine);
  request.workload = {.batch = f.batch, .prompt_tokens = f.prompt, .gen_tokens = f.gen, .experts_per_token = f.experts_per_token};
  if (!f.stats.empty()) request.stats = plan::load_expert_stats(f.stats);
  if (!f.gpu_budget.empty()) request.gpu_budget_bytes = parse_budget(f.gpu_budget, "--gpu-budget");
  if (!f.dram_budget.empty()) request.dram_budget_bytes = parse_budget(f.dram_budget, "--dram-budget");
  if (f.expert_format == "auto") {
    request.expert_format_auto = true;
  } else if (!f.expert_format.empty()) {
    request.expert_format = plan::parse_weight_format(f.expert_format);
  }
  if (!f.dense_format.empty()) request.dense_format = plan::parse_weight_format(f.dense_format);

  if (!f.sweep.empty()) {
    std::vector<double> gpu_gib, dram_gib;
    plan::parse_sweep_spec(f.sweep, &gpu_gib, &dram_gib);
    const std::vector<plan::SweepPoint> points = plan::sweep_plans(request, gpu_gib, dram_gib);
    if (f.json) {
      nlohmann::json out = nlohmann::json::array();
      for (const plan::SweepPoint& p : points) {
        nlohmann::json item = plan::plan_summary_json(p.plan);
        item["gpu_mem_gib"] = p.gpu_gib;
        item["dram_gib"] = p.dram_gib;
        out.push_back(item);
      }
      std::printf("%s\n", out.dump().c_str());
    } else {
      std::printf("sweep: %s on %s (engine %s), batch %lld, prompt %lld, generate %lld\n%s", f.model.c_str(),
                  request.profile.name.c_str(), request.traits.name.c_str(), static_cast<long long>(f.batch),
                  static_cast<long long>(f.prompt), static_cast<long long>(f.gen), plan::sweep_table(points).c_str());
    }
    if (!f.svg.empty()) {
      write_text(f.svg, plan::sweep_svg(points, "decode tokens/s: " + f.model + " on " + request.profile.name));
      std::fprintf(stderr, "hetmoe plan: wrote %s\n", f.svg.c_str());
    }
    return;
  }
  check(f.svg.empty(), "--svg needs --sweep", {.hint = "e.g. --sweep \"gpu_mem=24,48,80 dram=128,256,512\" --svg chart.svg"});
  const plan::Plan result = plan::make_plan(request, !f.no_upgrades);
  if (f.json) {
    std::printf("%s\n", plan::plan_summary_json(result).dump().c_str());
  } else {
    std::fputs(plan::plan_report(result).c_str(), stdout);
  }
  if (!f.output.empty()) {
    write_text(f.output, plan::plan_file_json(result).dump() + "\n");
    std::fprintf(stderr, "hetmoe plan: wrote %s\n", f.output.c_str());
  }
}

}  // namespace

void register_plan(CLI::App& app) {
  auto f = std::make_shared<PlanFlags>();
  CLI::App* cmd = app.add_subcommand("plan", "Plan tensor and expert placement over GPU/DRAM/NVMe and predict tokens/s");
  cmd->add_option("-m,--model", f->model, "Model folder or config.json (no weights needed)")->required();
  cmd->add_option("--hw", f->hardware, "Hardware profile (hetmoe probe -o FILE, or tools/profiles/*.json)")->required();
  cmd->add_option("--stats", f->stats, "Expert statistics from `hetmoe profile` (default: uniform routing)");
  cmd->add_option("-b,--batch", f->batch, "Sequences decoded together (default 1)");
  cmd->add_option("--prompt", f->prompt, "Prompt tokens per sequence (default 512)");
  cmd->add_option("--gen", f->gen, "Generated tokens per sequence (default 128)");
  cmd->add_option("--gpu-budget", f->gpu_budget, "GPU memory to use, GiB or with a unit (default: all)");
  cmd->add_option("--dram-budget", f->dram_budget, "DRAM to use, GiB or with a unit (default: all less an OS reserve)");
  cmd->add_option("--expert-format", f->expert_format, "Routed expert format: fp8, bf16, int8, int4 or auto (default: as shipped)");
  cmd->add_option("--dense-format", f->dense_format, "Format of attention, dense, shared and lm_head (default: as shipped)");
  cmd->add_option("--experts-per-token", f->experts_per_token, "Routed experts per token (default: the config's)");
  cmd->add_option("--engine", f->engine, "Engine modelled: hetmoe (planned pipeline), hetmoe-cpu-0[-ref] (today's CPU engine), ktransformers-0.2, llama.cpp");
  cmd->add_flag("--json", f->json, "Print one JSON object (an array with --sweep)");
  cmd->add_flag("--no-upgrades", f->no_upgrades, "Skip the single-upgrade analysis");
  cmd->add_option("-o,--output", f->output, "Write the plan file (JSON: every expert's tier)");
  cmd->add_option("--sweep", f->sweep, "What-if grid, GiB: \"gpu_mem=24,48,80 dram=128,256,512\"");
  cmd->add_option("--svg", f->svg, "With --sweep: write an SVG chart of decode tokens/s");
  cmd->callback([f] { run_plan(*f); });
}

}  // namespace hetmoe::cli
