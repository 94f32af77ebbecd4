#include "engine/plan/planner.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <fmt/format.h>

#include "engine/core/error.h"
#include "engine/plan/cost_terms.h"

namespace hetmoe::plan {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

std::string gib(double bytes) { return fmt::format("{:.1f} GiB", bytes / kGiB); }

// Everything one placement attempt needs, with the inputs kept alive for the cost model.
class Placer {
 public:
  Placer(const PlanRequest& request, const ModelShape& shape, const std::vector<std::vector<double>>& probabilities,
         WeightFormat expert_format)
      : request_(request), shape_(shape), probabilities_(probabilities) {
    inputs_.shape = &shape_;
    inputs_.profile = &request_.profile;
    inputs_.traits = &request_.traits;
    inputs_.workload = request_.workload;
    inputs_.probabilities = &probabilities_;
    placement_.expert_format = expert_format;
    placement_.dense_format = request_.dense_format;
    placement_.experts.assign(probabilities_.size(), std::vector<Tier>(size_t(shape_.config.n_routed_experts), Tier::kDram));
  }

  Plan run() {
    Plan plan;
    plan.model_name = request_.model_name;
    plan.profile_name = request_.profile.name;
    plan.engine_name = request_.traits.name;
    plan.workload = request_.workload;
    const HardwareProfile& hw = request_.profile;
    const bool gpu = request_.traits.use_gpu && hw.has_gpu();
    plan.gpu_budget_bytes = gpu ? request_.gpu_budget_bytes.value_or(hw.gpus[0].memory_bytes) : 0;
    plan.dram_budget_bytes = request_.dram_budget_bytes.value_or(default_dram_budget(hw));
    plan.nvme_capacity_bytes = hw.nvme.present() ? hw.nvme.bytes : 0;

    if (gpu) place_on_gpu(plan.gpu_budget_bytes);
    place_dram_nvme(plan);
    plan.placement = placement_;
    plan.prediction = predict(inputs_, placement_);
    for (const auto& layer : placement_.experts)
      for (Tier t : layer) (t == Tier::kGpu ? plan.hot_experts : t == Tier::kDram ? plan.warm_experts : plan.cold_experts) += 1;
    const MemoryUse& m = plan.prediction.memory;
    if (m.gpu_bytes > plan.gpu_budget_bytes)
      plan.problems.push_back(fmt::format("GPU needs {} but the budget is {}", gib(double(m.gpu_bytes)), gib(double(plan.gpu_budget_bytes))));
    plan.fits = plan.problems.empty();
    return plan;
  }

 private:
  double decode_seconds() const { return predict(inputs_, placement_).decode.seconds; }

  uint64_t gpu_bytes() const { return memory_use(inputs_, placement_).gpu_bytes; }

  // Non-expert weights first (every token reads them), then hot experts by touch probability,
  // each only when it fits and does not slow the predicted decode step.
  void place_on_gpu(uint64_t budget) {
    placement_.attention_gpu = true;
    if (gpu_bytes() > budget) {
      placement_.attention_gpu = false;  // attention and its KV cache must live together
      return;
    }
    {
      Placement cpu_only = placement_;
      cpu_only.attention_gpu = false;
      if (predict(inputs_, cpu_only).decode.seconds < decode_seconds()) {
        placement_ = cpu_only;
        return;
      }
    }
    for (bool Placement::*part : {&Placement::shared_gpu, &Placement::dense_gpu, &Placement::lm_head_gpu}) {
      const double before = decode_seconds();
      placement_.*part = true;
      if (gpu_bytes() > budget || decode_seconds() > before) placement_.*part = false;
    }
    if (request_.traits.gpu_routed_experts) place_hot_experts(budget);
    bool all_gpu = placement_.shared_gpu && placement_.dense_gpu && placement_.lm_head_gpu;
    for (const auto& layer : placement_.experts)
      for (Tier t : layer) all_gpu = all_gpu && t == Tier::kGpu;
    if (all_gpu) {
      placement_.embedding_gpu = true;
      if (gpu_bytes() > budget) placement_.embedding_gpu = false;
    }
  }

  void place_hot_experts(uint64_t budget) {
    const uint64_t used = gpu_bytes();
    const CostTerms terms(inputs_, placement_);
    const double expert_bytes = terms.expert().bytes;
    if (used >= budget) return;
    int64_t room = int64_t(double(budget - used) / expert_bytes);
    if (room <= 0) return;
    const double tokens = double(request_.workload.batch);
    const double context = double(request_.workload.prompt_tokens) + 0.5 * double(request_.workload.gen_tokens);
    struct Item {
      double touch;
      size_t layer, expert;
    };
    std::vector<Item> items;
    for (size_t l = 0; l < probabilities_.size(); ++l)
      for (size_t e = 0; e < probabilities_[l].size(); ++e)
        items.push_back({touch_probability(probabilities_[l][e], tokens), l, e});
    std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) { return a.touch > b.touch; });
    // Per-layer decode state, updated as experts move, so each decision costs O(1).
    std::vector<LayerState> states;
    for (size_t l = 0; l < probabilities_.size(); ++l)
      states.push_back(terms.moe_layer_state(probabilities_[l], placement_.experts[l], tokens, context, false, nullptr));
    for (const Item& item : items) {
      if (room <= 0) break;
      const ExpertCost cost = terms.expert_cost(probabilities_[item.layer][item.expert], tokens);
      LayerState& state = states[item.layer];
      LayerState trial = state;
      trial.cpu.add(cost.cpu.scaled(-1.0));
      trial.gpu_memory_s += cost.gpu_memory_s;
      trial.gpu_compute_s += cost.gpu_compute_s;
      if (terms.combine(trial).seconds > terms.combine(state).seconds * (1 + 1e-12) + 1e-15) continue;
      state = trial;
      placement_.experts[item.layer][item.expert] = Tier::kGpu;
      --room;
    }
    // A layer whose last CPU experts also move saves the GPU->CPU handoff, which no single move
    // sees: try emptying each layer's CPU side while room lasts.
    for (size_t l = 0; l < placement_.experts.size() && room > 0; ++l) {
      std::vector<size_t> left;
      for (size_t e = 0; e < placement_.experts[l].size(); ++e)
        if (placement_.experts[l][e] != Tier::kGpu) left.push_back(e);
      if (left.empty() || int64_t(left.size()) > room) continue;
      std::vector<Tier> tiers = placement_.experts[l];
      for (size_t e : left) tiers[e] = Tier::kGpu;
      const LayerState all_gpu = terms.moe_layer_state(probabilities_[l], tiers, tokens, context, false, nullptr);
      if (terms.combine(all_gpu).seconds > terms.combine(states[l]).seconds) continue;
      placement_.experts[l] = tiers;
      states[l] = all_gpu;
      room -= int64_t(left.size());
    }
  }

  void place_dram_nvme(Plan& plan) {
    const HardwareProfile& hw = request_.profile;
    const double tokens = double(request_.workload.batch);
    const int64_t k = request_.workload.experts_per_token;
    const CostTerms terms(inputs_, placement_);
    const double expert_bytes = terms.expert().bytes;
    // DRAM without any warm expert or cache: every non-GPU expert cold for the moment.
    struct Item {
      double touch;
      size_t layer, expert;
    };
    std::vector<Item> rest;
    for (size_t l = 0; l < placement_.experts.size(); ++l)
      for (size_t e = 0; e < placement_.experts[l].size(); ++e)
        if (placement_.experts[l][e] != Tier::kGpu) {
          rest.push_back({touch_probability(probabilities_[l][e], tokens), l, e});
          placement_.experts[l][e] = Tier::kNvme;
        }
    placement_.expert_cache_bytes = 0;
    std::stable_sort(rest.begin(), rest.end(), [](const Item& a, const Item& b) { return a.touch > b.touch; });
    const uint64_t dram_fixed = memory_use(inputs_, placement_).dram_bytes;
    const double warm_bytes = expert_bytes * terms.dram_copies();  // DRAM one warm expert takes
    const double all_warm_bytes = double(rest.size()) * warm_bytes;
    // Slots for streamed experts: staging_layers layers' worth of the experts one step can touch.
    const double staging_experts = std::min<double>(double(rest.size()), double(request_.traits.staging_layers) * std::min<double>(double(shape_.config.n_routed_experts),
                                                                                            std::ceil(tokens * double(k))));
    const double staging_bytes = staging_experts * expert_bytes;
    if (double(dram_fixed) > double(plan.dram_budget_bytes)) {
      plan.problems.push_back(fmt::format("DRAM budget {} is below the {} the non-expert weights, KV cache and activations need",
                                          gib(double(plan.dram_budget_bytes)), gib(double(dram_fixed))));
    }
    const double room = double(plan.dram_budget_bytes) - double(dram_fixed);
    size_t warm = 0;
    if (room >= all_warm_bytes) {
      warm = rest.size();
    } else if (room >= staging_bytes) {
      warm = size_t(std::floor((room - staging_bytes) / warm_bytes));
      placement_.expert_cache_bytes = uint64_t(staging_bytes);
    } else if (!rest.empty()) {
      warm = 0;
      placement_.expert_cache_bytes = uint64_t(staging_bytes);
      if (room >= 0)
        plan.problems.push_back(fmt::format("DRAM left after the fixed parts ({}) cannot hold the {} of expert staging buffers",
                                            gib(std::max(0.0, room)), gib(staging_bytes)));
    }
    for (size_t i = 0; i < rest.size(); ++i)
      placement_.experts[rest[i].layer][rest[i].expert] = i < warm ? Tier::kDram : Tier::kNvme;
    const bool any_cold = warm < rest.size();
    const double store_bytes = double(shape_.moe_layers) * double(shape_.config.n_routed_experts) * expert_bytes;
    if (any_cold && !hw.nvme.present()) {
      plan.problems.push_back(fmt::format("{} routed experts ({}) fit neither the GPU nor the DRAM budget, and the profile has no NVMe drive",
                                          rest.size() - warm, gib(double(rest.size() - warm) * expert_bytes)));
    } else if (any_cold && double(hw.nvme.bytes) < store_bytes) {
      plan.problems.push_back(fmt::format("the expert store needs {} on NVMe, the drive has {} (a probed profile holds the "
                                          "free space at probe time: a store already on the drive counts as used)",
                                          gib(store_bytes), gib(double(hw.nvme.bytes))));
    }
    if (!plan.problems.empty()) {
      const double need_min = double(dram_fixed) + staging_bytes;
      const double need_all = double(dram_fixed) + all_warm_bytes;
      std::vector<std::string> options;
      if (hw.nvme.present() && double(hw.nvme.bytes) >= store_bytes && double(plan.dram_budget_bytes) < need_min)
        options.push_back(fmt::format("a DRAM budget of at least {} (cold experts streamed from NVMe)", gib(need_min)));
      options.push_back(fmt::format("a DRAM budget of {}, enough to hold every expert not on the GPU", gib(need_all)));
      if (!hw.nvme.present() || double(hw.nvme.bytes) < store_bytes)
        options.push_back(fmt::format("an NVMe drive with {} free for the expert store, with at least {} of DRAM budget", gib(store_bytes),
                                      gib(need_min)));
      if (request_.traits.use_gpu && hw.has_gpu() && !placement_.attention_gpu)
        options.push_back("(the GPU budget is too small even for attention and its KV cache at this batch and context)");
      plan.what_would_fit.clear();
      for (const std::string& option : options) plan.what_would_fit += (plan.what_would_fit.empty() ? "" : "; or ") + option;
    }
  }

  const PlanRequest& request_;
  const ModelShape& shape_;
  const std::vector<std::vector<double>>& probabilities_;
  CostInputs inputs_;
  Placement placement_;
};

Plan plan_once(const PlanRequest& request, const ModelShape& shape, const std::vector<std::vector<double>>& p) {
  std::vector<WeightFormat> formats;
  if (request.expert_format_auto) {
    formats = {shape.shipped_linear, WeightFormat::kINT8, WeightFormat::kINT4};
  } else {
    formats = {request.expert_format.value_or(shape.shipped_linear)};
  }
  std::optional<Plan> best;
  std::string first_error;
  for (WeightFormat format : formats) {
    // In auto mode a format the profile has no CPU kernel for is skipped, not an error.
    if (request.expert_format_auto && !request.profile.cpu.kernel(format).present()) continue;
    Plan plan = Placer(request, shape, p, format).run();
    const auto better = [&](const Plan& a, const Plan& b) {
      if (a.fits != b.fits) return a.fits;
      return a.prediction.decode.tokens_per_second > b.prediction.decode.tokens_per_second * 1.05;
    };
    if (!best || better(plan, *best)) best = std::move(plan);
  }
  check(best.has_value(), "no expert format can be planned: the profile has no CPU kernel rate for fp8, int8 or int4",
        {.hint = "add cpu.kernels entries to the profile"});
  return *best;
}

HardwareProfile upgraded(const HardwareProfile& hw, const std::string& what) {
  HardwareProfile u = hw;
  const double dram = hw.dram.read_bytes_per_second;
  if (what == "gpu_memory_x2") {
    u.gpus[0].memory_bytes *= 2;
  } else if (what == "add_gpu_24g") {
    // An RTX 4090-class card: 24 GiB, ~0.9 TB/s achievable, PCIe 4.0 x16.
    u.gpus.push_back({.name = "24 GiB GPU (RTX 4090 class)", .memory_bytes = 24ull << 30, .hbm_bytes_per_second = 0.9e12,
                      .fp8_flops_per_second = 200e12, .bf16_flops_per_second = 100e12, .pcie_h2d_bytes_per_second = 25e9,
                      .reserved_bytes = 1ull << 30, .launch_overhead_seconds = 5e-6});
  } else if (what == "gpu_faster_x2") {
    u.gpus[0].hbm_bytes_per_second *= 2;
    u.gpus[0].bf16_flops_per_second *= 2;
    u.gpus[0].fp8_flops_per_second *= 2;
  } else if (what == "pcie_x2") {
    u.gpus[0].pcie_h2d_bytes_per_second *= 2;
  } else if (what == "dram_capacity_x2") {
    u.dram.bytes *= 2;
  } else if (what == "dram_bandwidth_x2") {
    u.dram.read_bytes_per_second *= 2;
    // A kernel close to the bandwidth was bound by it and speeds up with it.
    for (CpuKernelRate& k : u.cpu.kernels)
      if (k.decode_weight_bytes_per_second >= 0.7 * dram) k.decode_weight_bytes_per_second *= 2;
  } else if (what == "cpu_cores_x2") {
    u.cpu.physical_cores *= 2;
    for (CpuKernelRate& k : u.cpu.kernels) {
      if (k.decode_weight_bytes_per_second < 0.7 * dram) k.decode_weight_bytes_per_second *= 2;
      k.prefill_flops_per_second *= 2;
    }
  } else if (what == "nvme_bandwidth_x2") {
    u.nvme.read_bytes_per_second *= 2;
  }
  return u;
}

std::vector<Upgrade> rank_upgrades(const PlanRequest& request, const ModelShape& shape, const std::vector<std::vector<double>>& p) {
  const HardwareProfile& hw = request.profile;
  std::vector<std::pair<std::string, std::string>> options;
  if (request.traits.use_gpu && hw.has_gpu()) {
    options.push_back({"gpu_memory_x2", "GPU memory x2"});
    options.push_back({"gpu_faster_x2", "a GPU with 2x the memory bandwidth and FLOPS"});
    options.push_back({"pcie_x2", "PCIe bandwidth x2 (next generation)"});
  } else if (request.traits.use_gpu) {
    options.push_back({"add_gpu_24g", "add a 24 GiB GPU (RTX 4090 class)"});
  }
  options.push_back({"dram_capacity_x2", "DRAM capacity x2"});
  options.push_back({"dram_bandwidth_x2", "DRAM bandwidth x2 (twice the memory channels)"});
  options.push_back({"cpu_cores_x2", "CPU cores x2"});
  if (hw.nvme.present()) options.push_back({"nvme_bandwidth_x2", "NVMe read bandwidth x2 (a second drive, striped)"});
  std::vector<Upgrade> out;
  for (const auto& [name, description] : options) {
    PlanRequest r = request;
    r.profile = upgraded(hw, name);
    if (name == "gpu_memory_x2" && r.gpu_budget_bytes) *r.gpu_budget_bytes *= 2;
    if (name == "dram_capacity_x2" && r.dram_budget_bytes) *r.dram_budget_bytes *= 2;
    const Plan plan = plan_once(r, shape, p);
    out.push_back({.name = name, .description = description, .fits = plan.fits,
                   .decode_tokens_per_second = plan.prediction.decode.tokens_per_second,
                   .prefill_tokens_per_second = plan.prediction.prefill.tokens_per_second});
  }
  std::stable_sort(out.begin(), out.end(), [](const Upgrade& a, const Upgrade& b) {
    if (a.fits != b.fits) return a.fits;
    return a.decode_tokens_per_second > b.decode_tokens_per_second;
  });
  return out;
}

}  // namespace

uint64_t default_dram_budget(const HardwareProfile& profile) {
  const double reserve = std::clamp(0.05 * double(profile.dram.bytes), kGiB, 16 * kGiB);
  return uint64_t(std::max(0.0, double(profile.dram.bytes) - reserve));
}

Plan make_plan(const PlanRequest& original, bool with_upgrades) {
  PlanRequest request = original;
  const ModelShape shape = model_shape(request.config);
  Workload& w = request.workload;
  check(w.batch >= 1 && w.batch <= 1 << 20, "--batch must be between 1 and 1048576");
  check(w.prompt_tokens >= 1 && w.prompt_tokens <= 1 << 24, "--prompt must be between 1 and 16777216 tokens");
  check(w.gen_tokens >= 0 && w.gen_tokens <= 1 << 24, "--gen must be between 0 and 16777216 tokens");
  if (w.experts_per_token <= 0) w.experts_per_token = request.config.num_experts_per_tok;
  check(w.experts_per_token <= request.config.n_routed_experts,
        fmt::format("--experts-per-token {} exceeds the model's {} routed experts", w.experts_per_token, request.config.n_routed_experts));
  const HardwareProfile& hw = request.profile;
  if (request.gpu_budget_bytes) {
    check(hw.has_gpu(), "--gpu-budget given but the profile has no GPU", {.hint = "drop --gpu-budget or use a profile with a GPU"});
    check(*request.gpu_budget_bytes <= hw.gpus[0].memory_bytes,
          fmt::format("--gpu-budget {} exceeds the GPU's {}", gib(double(*request.gpu_budget_bytes)), gib(double(hw.gpus[0].memory_bytes))));
  }
  if (request.dram_budget_bytes)
    check(*request.dram_budget_bytes <= hw.dram.bytes,
          fmt::format("--dram-budget {} exceeds the machine's {} of DRAM", gib(double(*request.dram_budget_bytes)), gib(double(hw.dram.bytes))));
  const std::vector<std::vector<double>> p =
      activation_probabilities(request.config, request.stats ? &*request.stats : nullptr, w.experts_per_token);
  Plan plan = plan_once(request, shape, p);
  if (!plan.fits && !request.expert_format_auto) {
    // Would smaller experts fit? Say so: it is the cheapest way out.
    for (WeightFormat smaller : {WeightFormat::kINT8, WeightFormat::kINT4}) {
      if (weight_format_bits(smaller) >= weight_format_bits(plan.placement.expert_format) ||
          !request.profile.cpu.kernel(smaller).present())
        continue;
      PlanRequest r = request;
      r.expert_format = smaller;
      const Plan alternative = plan_once(r, shape, p);
      if (!alternative.fits) continue;
      plan.what_would_fit += fmt::format("; or --expert-format {}, which fits (predicted decode {:.2f} tokens/s)",
                                         weight_format_name(smaller), alternative.prediction.decode.tokens_per_second);
      break;
    }
  }
  if (with_upgrades) plan.upgrades = rank_upgrades(request, shape, p);
  return plan;
}

}  // namespace hetmoe::plan
