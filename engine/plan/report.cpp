// Plan reports (text, JSON, the plan file) and what-if sweeps (table, SVG chart).
#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "engine/plan/planner.h"

namespace hetmoe::plan {
namespace {

using nlohmann::json;
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

std::string parts_text(const std::vector<std::pair<std::string, uint64_t>>& parts) {
  std::string out;
  for (const auto& [name, bytes] : parts) {
    if (!out.empty()) out += ", ";
    out += fmt::format("{} {:.2f}", name, double(bytes) / kGiB);
  }
  return out;
}

json parts_json(const std::vector<std::pair<std::string, uint64_t>>& parts) {
  json out = json::object();
  for (const auto& [name, bytes] : parts) out[name] = bytes;
  return out;
}

std::string format_name(const Placement& p) {
  return p.dense_format ? std::string(weight_format_name(*p.dense_format)) : std::string("as shipped");
}

std::string xml_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

const Upgrade* best_upgrade(const Plan& plan) {
  if (plan.upgrades.empty()) return nullptr;
  const Upgrade& u = plan.upgrades.front();
  const double base = plan.prediction.decode.tokens_per_second;
  if (plan.fits && u.decode_tokens_per_second <= base * 1.01) return nullptr;
  if (!plan.fits && !u.fits) return nullptr;
  return &u;
}

}  // namespace

std::string plan_report(const Plan& plan) {
  const Prediction& pr = plan.prediction;
  const Placement& pl = plan.placement;
  std::string out;
  out += fmt::format("hetmoe plan: {} on {} (engine {})\n", plan.model_name, plan.profile_name, plan.engine_name);
  out += fmt::format("workload: batch {}, prompt {}, generate {}, {} experts per token\n", plan.workload.batch,
                     plan.workload.prompt_tokens, plan.workload.gen_tokens, plan.workload.experts_per_token);
  out += fmt::format("formats: routed experts {}, attention/dense/shared/lm_head {}\n", weight_format_name(pl.expert_format), format_name(pl));
  if (!plan.fits) {
    out += "fits: NO\n";
    for (const std::string& problem : plan.problems) out += "  - " + problem + "\n";
    if (!plan.what_would_fit.empty()) out += "  would fit with: " + plan.what_would_fit + "\n";
  } else {
    out += "fits: yes\n";
  }
  out += fmt::format("memory (GiB)   used     budget\n");
  out += fmt::format("  gpu      {:>8.2f}  {:>9.2f}   {}\n", double(pr.memory.gpu_bytes) / kGiB, double(plan.gpu_budget_bytes) / kGiB,
                     parts_text(pr.memory.gpu_parts));
  out += fmt::format("  dram     {:>8.2f}  {:>9.2f}   {}\n", double(pr.memory.dram_bytes) / kGiB, double(plan.dram_budget_bytes) / kGiB,
                     parts_text(pr.memory.dram_parts));
  out += fmt::format("  nvme     {:>8.2f}  {:>9.2f}   {}\n", double(pr.memory.nvme_bytes) / kGiB, double(plan.nvme_capacity_bytes) / kGiB,
                     parts_text(pr.memory.nvme_parts));
  out += fmt::format("placement: attention+KV {}, shared {}, dense {}, lm_head {}; routed experts {} hot (GPU), {} warm (DRAM), {} cold (NVMe)\n",
                     pl.attention_gpu ? "gpu" : "cpu", pl.shared_gpu ? "gpu" : "cpu", pl.dense_gpu ? "gpu" : "cpu",
                     pl.lm_head_gpu ? "gpu" : "cpu", plan.hot_experts, plan.warm_experts, plan.cold_experts);
  const double step_bytes = pr.decode_expert_bytes_gpu + pr.decode_expert_bytes_cpu + pr.decode_expert_bytes_nvme;
  out += fmt::format("decode step: {:.1f} distinct experts per layer; expert bytes {:.0f}% GPU, {:.0f}% DRAM, {:.0f}% NVMe tier",
                     pr.decode_distinct_experts_per_layer, step_bytes > 0 ? 100 * pr.decode_expert_bytes_gpu / step_bytes : 0,
                     step_bytes > 0 ? 100 * pr.decode_expert_bytes_cpu / step_bytes : 0,
                     step_bytes > 0 ? 100 * pr.decode_expert_bytes_nvme / step_bytes : 0);
  if (plan.cold_experts > 0) out += fmt::format(" (DRAM cache hit rate {:.0f}%)", 100 * pr.cache_hit_rate);
  out += "\n";
  out += fmt::format("predicted: prefill {:.1f} tokens/s (bottleneck {}), decode {:.2f} tokens/s (bottleneck {})\n",
                     pr.prefill.tokens_per_second, resource_name(pr.prefill.bottleneck), pr.decode.tokens_per_second,
                     resource_name(pr.decode.bottleneck));
  std::vector<std::pair<double, int>> shares;
  for (int r = 0; r < kResourceCount; ++r) shares.emplace_back(pr.decode.critical_seconds[size_t(r)], r);
  std::sort(shares.rbegin(), shares.rend());
  out += fmt::format("decode step {:.2f} ms on the critical path:", pr.decode.seconds * 1e3);
  for (const auto& [seconds, r] : shares)
    if (seconds > 0) out += fmt::format(" {} {:.2f} ms;", resource_name(Resource(r)), seconds * 1e3);
  out += "\n";
  if (const Upgrade* u = best_upgrade(plan)) {
    out += fmt::format("best single upgrade: {} -> decode {:.2f} tokens/s ({:+.0f}%), prefill {:.1f} tokens/s\n", u->description,
                       u->decode_tokens_per_second,
                       pr.decode.tokens_per_second > 0 ? 100 * (u->decode_tokens_per_second / pr.decode.tokens_per_second - 1) : 0.0,
                       u->prefill_tokens_per_second);
  } else if (!plan.upgrades.empty()) {
    out += "best single upgrade: none of the single upgrades tried helps by more than 1%\n";
  }
  return out;
}

json plan_summary_json(const Plan& plan) {
  const Prediction& pr = plan.prediction;
  json critical = json::object();
  for (int r = 0; r < kResourceCount; ++r) critical[std::string(resource_name(Resource(r)))] = pr.decode.critical_seconds[size_t(r)];
  json out = {
      {"model", plan.model_name},
      {"profile", plan.profile_name},
      {"engine", plan.engine_name},
      {"workload",
       {{"batch", plan.workload.batch},
        {"prompt_tokens", plan.workload.prompt_tokens},
        {"gen_tokens", plan.workload.gen_tokens},
        {"experts_per_token", plan.workload.experts_per_token}}},
      {"expert_format", weight_format_name(plan.placement.expert_format)},
      {"dense_format", format_name(plan.placement)},
      {"fits", plan.fits},
      {"problems", plan.problems},
      {"what_would_fit", plan.what_would_fit},
      {"decode_tokens_per_second", pr.decode.tokens_per_second},
      {"prefill_tokens_per_second", pr.prefill.tokens_per_second},
      {"decode_step_seconds", pr.decode.seconds},
      {"prefill_seconds", pr.prefill.seconds},
      {"bottleneck", resource_name(pr.decode.bottleneck)},
      {"prefill_bottleneck", resource_name(pr.prefill.bottleneck)},
      {"decode_critical_seconds", critical},
      {"gpu_bytes", pr.memory.gpu_bytes},
      {"dram_bytes", pr.memory.dram_bytes},
      {"nvme_bytes", pr.memory.nvme_bytes},
      {"memory",
       {{"gpu", {{"bytes", pr.memory.gpu_bytes}, {"budget_bytes", plan.gpu_budget_bytes}, {"parts", parts_json(pr.memory.gpu_parts)}}},
        {"dram", {{"bytes", pr.memory.dram_bytes}, {"budget_bytes", plan.dram_budget_bytes}, {"parts", parts_json(pr.memory.dram_parts)}}},
        {"nvme", {{"bytes", pr.memory.nvme_bytes}, {"capacity_bytes", plan.nvme_capacity_bytes}, {"parts", parts_json(pr.memory.nvme_parts)}}}}},
      {"experts", {{"hot", plan.hot_experts}, {"warm", plan.warm_experts}, {"cold", plan.cold_experts}}},
      {"decode_distinct_experts_per_layer", pr.decode_distinct_experts_per_layer},
      {"cache_hit_rate", pr.cache_hit_rate},
  };
  json upgrades = json::array();
  for (const Upgrade& u : plan.upgrades)
    upgrades.push_back({{"name", u.name}, {"description", u.description}, {"fits", u.fits},
                        {"decode_tokens_per_second", u.decode_tokens_per_second},
                        {"prefill_tokens_per_second", u.prefill_tokens_per_second}});
  out["upgrades"] = upgrades;
  const Upgrade* best = best_upgrade(plan);
  out["best_upgrade"] = best ? json(best->name) : json(nullptr);
  return out;
}

json plan_file_json(const Plan& plan) {
  json out = plan_summary_json(plan);
  out["schema"] = "hetmoe-plan/1";
  const Placement& pl = plan.placement;
  out["placement"] = {{"attention", pl.attention_gpu ? "gpu" : "cpu"},
                      {"kv_cache", pl.attention_gpu ? "gpu" : "cpu"},
                      {"shared_experts", pl.shared_gpu ? "gpu" : "cpu"},
                      {"dense_ffn", pl.dense_gpu ? "gpu" : "cpu"},
                      {"lm_head", pl.lm_head_gpu ? "gpu" : "cpu"},
                      {"embedding", pl.embedding_gpu ? "gpu" : "cpu"},
                      {"expert_cache_bytes", pl.expert_cache_bytes}};
  json layers = json::array();
  size_t m = 0;
  // Plans are made from a config, so the MoE layer indices are recomputed here from the layout.
  for (const auto& tiers : pl.experts) {
    json gpu = json::array(), dram = json::array(), nvme = json::array();
    for (size_t e = 0; e < tiers.size(); ++e) (tiers[e] == Tier::kGpu ? gpu : tiers[e] == Tier::kDram ? dram : nvme).push_back(e);
    layers.push_back({{"moe_layer", m}, {"gpu", gpu}, {"dram", dram}, {"nvme", nvme}});
    ++m;
  }
  out["layers"] = layers;
  return out;
}

// --- sweeps -----------------------------------------------------------------------------------

void parse_sweep_spec(const std::string& spec, std::vector<double>* gpu_gib, std::vector<double>* dram_gib) {
  std::istringstream words(spec);
  std::string word;
  bool any = false;
  while (words >> word) {
    const size_t eq = word.find('=');
    check(eq != std::string::npos, "sweep term '" + word + "' is not KEY=V1,V2,...",
          {.hint = "e.g. --sweep \"gpu_mem=24,48,80 dram=128,256,512\" (GiB)"});
    const std::string key = word.substr(0, eq);
    std::vector<double>* target = key == "gpu_mem" ? gpu_gib : key == "dram" ? dram_gib : nullptr;
    check(target != nullptr, "unknown sweep axis '" + key + "'", {.hint = "sweep gpu_mem=... and/or dram=... (GiB)"});
    target->clear();
    std::istringstream values(word.substr(eq + 1));
    std::string value;
    while (std::getline(values, value, ',')) {
      double v = 0;
      try {
        size_t used = 0;
        v = std::stod(value, &used);
        check(used == value.size(), "trailing characters");
      } catch (const std::exception&) {
        throw Error("sweep value '" + value + "' of " + key + " is not a number", {.hint = "sizes are in GiB, e.g. dram=128,256"});
      }
      check(std::isfinite(v) && v >= 0 && v <= 1e6, "sweep value " + value + " of " + key + " must be between 0 and 1e6 GiB");
      target->push_back(v);
    }
    check(!target->empty(), "sweep axis " + key + " has no values");
    any = true;
  }
  check(any, "empty --sweep", {.hint = "e.g. --sweep \"gpu_mem=24,48,80 dram=128,256,512\""});
}

std::vector<SweepPoint> sweep_plans(const PlanRequest& request, const std::vector<double>& gpu_gib,
                                    const std::vector<double>& dram_gib) {
  std::vector<double> gpus = gpu_gib, drams = dram_gib;
  if (gpus.empty()) gpus.push_back(request.profile.has_gpu() ? double(request.profile.gpus[0].memory_bytes) / kGiB : 0.0);
  if (drams.empty()) drams.push_back(double(request.profile.dram.bytes) / kGiB);
  std::vector<SweepPoint> points;
  for (double g : gpus) {
    for (double d : drams) {
      PlanRequest r = request;
      r.gpu_budget_bytes.reset();
      r.dram_budget_bytes.reset();
      if (g == 0) {
        r.profile.gpus.clear();
      } else {
        check(r.profile.has_gpu(), "the sweep sets GPU memory but the profile has no GPU",
              {.hint = "sweep dram=... only, or use a profile with a GPU"});
        r.profile.gpus[0].memory_bytes = uint64_t(g * kGiB);
        r.profile.gpus[0].reserved_bytes = std::min(r.profile.gpus[0].reserved_bytes, r.profile.gpus[0].memory_bytes / 2);
      }
      check(d > 0, "a sweep DRAM size must be > 0");
      r.profile.dram.bytes = uint64_t(d * kGiB);
      points.push_back({g, d, make_plan(r, false)});
    }
  }
  return points;
}

std::string sweep_table(const std::vector<SweepPoint>& points) {
  std::string out = "| gpu_mem GiB | dram GiB | fits | decode tok/s | prefill tok/s | bottleneck | hot | warm | cold |\n"
                    "|---:|---:|:---:|---:|---:|---|---:|---:|---:|\n";
  for (const SweepPoint& p : points) {
    const Prediction& pr = p.plan.prediction;
    out += fmt::format("| {:g} | {:g} | {} | {:.2f} | {:.1f} | {} | {} | {} | {} |\n", p.gpu_gib, p.dram_gib, p.plan.fits ? "yes" : "no",
                       pr.decode.tokens_per_second, pr.prefill.tokens_per_second, resource_name(pr.decode.bottleneck),
                       p.plan.hot_experts, p.plan.warm_experts, p.plan.cold_experts);
  }
  return out;
}

std::string sweep_svg(const std::vector<SweepPoint>& points, const std::string& title) {
  // Decode tokens/s against DRAM size (evenly spaced categories), one line per GPU size;
  // plans that do not fit are drawn as hollow circles at their (infeasible) speed.
  std::vector<double> drams, gpus;
  for (const SweepPoint& p : points) {
    if (std::find(drams.begin(), drams.end(), p.dram_gib) == drams.end()) drams.push_back(p.dram_gib);
    if (std::find(gpus.begin(), gpus.end(), p.gpu_gib) == gpus.end()) gpus.push_back(p.gpu_gib);
  }
  double y_max = 0;
  for (const SweepPoint& p : points) y_max = std::max(y_max, p.plan.prediction.decode.tokens_per_second);
  y_max = y_max > 0 ? y_max * 1.1 : 1.0;
  const double width = 720, height = 440, left = 70, right = 170, top = 50, bottom = 60;
  const double plot_w = width - left - right, plot_h = height - top - bottom;
  auto x_of = [&](size_t i) { return left + (drams.size() == 1 ? plot_w / 2 : plot_w * double(i) / double(drams.size() - 1)); };
  auto y_of = [&](double v) { return top + plot_h * (1.0 - v / y_max); };
  static const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"};
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" font-family=\"sans-serif\" "
      "font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{2}\" y=\"24\" font-size=\"15\" text-anchor=\"middle\">{3}</text>\n",
      width, height, left + plot_w / 2, xml_escape(title));
  for (int i = 0; i <= 5; ++i) {
    const double v = y_max * i / 5.0, y = y_of(v);
    svg += fmt::format("<line x1=\"{}\" y1=\"{:.1f}\" x2=\"{}\" y2=\"{:.1f}\" stroke=\"#ddd\"/>\n", left, y, left + plot_w, y);
    svg += fmt::format("<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{:.1f}</text>\n", left - 6, y + 4, v);
  }
  for (size_t i = 0; i < drams.size(); ++i)
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{:g}</text>\n", x_of(i), top + plot_h + 18, drams[i]);
  svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">DRAM (GiB)</text>\n", left + plot_w / 2, height - 16);
  svg += fmt::format("<text x=\"18\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 18 {})\">decode tokens/s</text>\n",
                     top + plot_h / 2, top + plot_h / 2);
  svg += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#333\"/>\n", left, top, plot_w, plot_h);
  for (size_t g = 0; g < gpus.size(); ++g) {
    const char* color = kColors[g % 8];
    std::string line;
    for (size_t i = 0; i < drams.size(); ++i) {
      for (const SweepPoint& p : points) {
        if (p.gpu_gib != gpus[g] || p.dram_gib != drams[i]) continue;
        const double x = x_of(i), y = y_of(p.plan.prediction.decode.tokens_per_second);
        if (p.plan.fits) line += fmt::format("{:.1f},{:.1f} ", x, y);
        svg += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"4\" fill=\"{}\" stroke=\"{}\"/>\n", x, y,
                           p.plan.fits ? color : "white", color);
      }
    }
    if (!line.empty())
      svg += fmt::format("<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"/>\n", line, color);
    const double ly = top + 10 + 20.0 * double(g);
    svg += fmt::format("<line x1=\"{}\" y1=\"{:.1f}\" x2=\"{}\" y2=\"{:.1f}\" stroke=\"{}\" stroke-width=\"2\"/>\n", left + plot_w + 15, ly,
                       left + plot_w + 40, ly, color);
    svg += fmt::format("<text x=\"{}\" y=\"{:.1f}\">GPU {:g} GiB</text>\n", left + plot_w + 46, ly + 4, gpus[g]);
  }
  svg += fmt::format("<text x=\"{}\" y=\"{}\" fill=\"#555\">hollow: does not fit</text>\n", left + plot_w + 15,
                     top + 20 + 20.0 * double(gpus.size()));
  svg += "</svg>\n";
  return svg;
}

}  // namespace hetmoe::plan
