#include "tools/hetmoe/run_plan.h"

#include <nlohmann/json.hpp>

#include <fstream>

#include "cpu/packed_matrix.h"
#include "engine/core/error.h"
#include "engine/runtime/streaming_experts.h"

namespace hetmoe::cli {

RunPlan load_run_plan(const std::filesystem::path& path, const ModelConfig& config) {
  std::ifstream in(path);
  check(bool(in), "cannot open the plan file", {.path = path.string(), .hint = "write one with `hetmoe plan ... -o FILE`"});
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("plan file is not valid JSON: ") + e.what(), {.path = path.string()});
  }
  check(doc.is_object() && doc.value("schema", "") == "hetmoe-plan/1", "not a hetmoe plan file (schema hetmoe-plan/1)",
        {.path = path.string(), .hint = "write one with `hetmoe plan ... -o FILE`"});
  RunPlan plan;
  try {
    plan.expert_format = doc.at("expert_format").get<std::string>();
    check(cpu::parse_packed_format(plan.expert_format).has_value(),
          "the plan's expert format '" + plan.expert_format + "' has no CPU kernel",
          {.path = path.string(), .hint = "plan with --expert-format fp8|int8|int4|bf16"});
    plan.dram_budget_bytes = doc.at("memory").at("dram").at("budget_bytes").get<uint64_t>();
    int64_t plan_layers = 0, model_layers = 0;
    for (const auto& layer : doc.at("layers")) {
      plan.gpu_experts += int64_t(layer.at("gpu").size());
      plan.dram_experts += int64_t(layer.at("dram").size());
      plan.nvme_experts += int64_t(layer.at("nvme").size());
      ++plan_layers;
    }
    for (int64_t l = 0; l < config.num_hidden_layers; ++l) model_layers += config.is_moe_layer(l) ? 1 : 0;
    check(plan_layers == model_layers,
          "the plan has " + std::to_string(plan_layers) + " MoE layers, the model " + std::to_string(model_layers),
          {.path = path.string(), .hint = "a plan made for another model?"});
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("unexpected plan file: ") + e.what(), {.path = path.string()});
  }
  plan.resident = hot_experts_from_json(doc, config, path);
  return plan;
}

}  // namespace hetmoe::cli
