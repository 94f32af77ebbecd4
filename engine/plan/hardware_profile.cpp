#include "engine/plan/hardware_profile.h"

#include <cmath>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "engine/model/model_builder.h"

namespace hetmoe::plan {
namespace {

using nlohmann::json;

constexpr std::string_view kSchema = "hetmoe-hardware-profile/1";
constexpr std::string_view kFormatNames[kWeightFormatCount] = {"f32", "bf16", "fp8", "int8", "int4"};

// Reads fields of one JSON object, naming "cpu.kernels.fp8.prefill_flops_per_second" in errors,
// and rejects keys it was never asked about (a typo in a hand-written profile must not pass).
class ObjectReader {
 public:
  ObjectReader(const json& object, std::string path, const std::string& origin)
      : object_(object), path_(std::move(path)), origin_(origin) {
    check(object_.is_object(), where("") + " must be a JSON object", {.path = origin_});
  }
  ~ObjectReader() = default;

  bool has(const std::string& key) const { return object_.contains(key) && !object_.at(key).is_null(); }
  const json& raw(const std::string& key) {
    seen_.insert(key);
    return object_.at(key);
  }

  // A non-negative number; strings with a byte unit ("1TiB", "512GB") are accepted for *bytes fields.
  double number(const std::string& key, bool required, double fallback = 0) {
    seen_.insert(key);
    if (!has(key)) {
      check(!required, where(key) + " is missing", {.path = origin_, .hint = "see docs/PLANNER.md for the profile schema"});
      return fallback;
    }
    const json& value = object_.at(key);
    double result = 0;
    if (value.is_string()) {
      const auto bytes = parse_byte_size(value.get<std::string>());
      check(bytes.has_value(), where(key) + " = \"" + value.get<std::string>() + "\" is not a size",
            {.path = origin_, .hint = "write a number, or a size like \"512GiB\" / \"1TB\""});
      result = double(*bytes);
    } else {
      check(value.is_number(), where(key) + " must be a number", {.path = origin_});
      result = value.get<double>();
    }
    check(std::isfinite(result) && result >= 0, where(key) + " must be a finite number >= 0", {.path = origin_});
    return result;
  }
  double positive(const std::string& key, bool required, double fallback = 0) {
    const double value = number(key, required, fallback);
    check(!has(key) || value > 0, where(key) + " must be > 0", {.path = origin_});
    return value;
  }
  uint64_t bytes(const std::string& key, bool required) {
    const double value = number(key, required);
    check(value < 1.8e19, where(key) + " is too large", {.path = origin_});
    return uint64_t(value);
  }
  int count(const std::string& key, bool required, int fallback) {
    const double value = number(key, required, fallback);
    check(value >= 1 && value <= 1e6 && value == std::floor(value), where(key) + " must be a whole number >= 1",
          {.path = origin_});
    return int(value);
  }
  std::string text(const std::string& key) {
    seen_.insert(key);
    if (!has(key)) return {};
    check(object_.at(key).is_string(), where(key) + " must be a string", {.path = origin_});
    return object_.at(key).get<std::string>();
  }
  bool boolean(const std::string& key) {
    seen_.insert(key);
    if (!has(key)) return false;
    check(object_.at(key).is_boolean(), where(key) + " must be true or false", {.path = origin_});
    return object_.at(key).get<bool>();
  }
  std::vector<std::string> strings(const std::string& key) {
    seen_.insert(key);
    std::vector<std::string> out;
    if (!has(key)) return out;
    const json& value = object_.at(key);
    if (value.is_string()) return {value.get<std::string>()};
    check(value.is_array(), where(key) + " must be a string or a list of strings", {.path = origin_});
    for (const json& item : value) {
      check(item.is_string(), where(key) + " must hold strings only", {.path = origin_});
      out.push_back(item.get<std::string>());
    }
    return out;
  }
  // Every key must have been read; "notes" is free text anywhere.
  void finish() const {
    for (const auto& [key, value] : object_.items()) {
      if (key == "notes" || seen_.count(key)) continue;
      throw Error(where(key) + " is not a known field", {.path = origin_, .hint = "see docs/PLANNER.md for the profile schema"});
    }
  }
  std::string where(const std::string& key) const {
    if (key.empty()) return path_.empty() ? "the profile" : path_;
    return path_.empty() ? key : path_ + "." + key;
  }

 private:
  const json& object_;
  std::string path_;
  const std::string& origin_;
  std::set<std::string> seen_;
};

// Reads {"fp8": {...}, "int4": {...}} into `rates`; returns how many formats it named.
int parse_kernels(const json& value, const std::string& path, const std::string& origin, CpuKernelRate* rates) {
  ObjectReader kernels(value, path, origin);
  int present = 0;
  for (int f = 0; f < kWeightFormatCount; ++f) {
    const std::string name(kFormatNames[f]);
    if (!kernels.has(name)) {
      kernels.number(name, false);  // mark as seen
      continue;
    }
    ObjectReader k(kernels.raw(name), path + "." + name, origin);
    rates[f].decode_weight_bytes_per_second = k.positive("decode_weight_bytes_per_second", true);
    rates[f].prefill_flops_per_second = k.positive("prefill_flops_per_second", true);
    rates[f].small_batch_flops_per_second = k.positive("small_batch_flops_per_second", false);
    k.text("source");
    k.finish();
    ++present;
  }
  kernels.finish();
  return present;
}

CpuProfile parse_cpu(const json& value, const std::string& origin) {
  ObjectReader r(value, "cpu", origin);
  CpuProfile cpu;
  cpu.model = r.text("model");
  cpu.sockets = r.count("sockets", true, 1);
  cpu.numa_nodes = r.count("numa_nodes", false, cpu.sockets);
  cpu.physical_cores = r.count("physical_cores", true, 1);
  cpu.threads = r.count("threads", false, cpu.physical_cores);
  cpu.l1d_bytes = r.bytes("l1d_bytes", false);
  cpu.l2_bytes = r.bytes("l2_bytes", false);
  cpu.l3_bytes = r.bytes("l3_bytes", false);
  cpu.isa = r.strings("isa");
  cpu.kernel_call_overhead_seconds = r.number("kernel_call_overhead_seconds", false);
  cpu.vector_flops_per_second = r.number("vector_flops_per_second", false);
  cpu.vector_call_seconds = r.number("vector_call_seconds", false);
  cpu.vector_stream_bytes_per_second = r.number("vector_stream_bytes_per_second", false);
  cpu.linear_output_seconds = r.number("linear_output_seconds", false);
  cpu.attention_row_seconds = r.number("attention_row_seconds", false);
  cpu.attention_row_flops_per_second = r.number("attention_row_flops_per_second", false);
  cpu.attention_pair_seconds = r.number("attention_pair_seconds", false);
  cpu.attention_pair_flops_per_second = r.number("attention_pair_flops_per_second", false);
  check(cpu.physical_cores >= cpu.sockets, "cpu.physical_cores must be >= cpu.sockets", {.path = origin});
  check(r.has("kernels"), "cpu.kernels is missing",
        {.path = origin, .hint = "give at least one format, e.g. \"kernels\": {\"fp8\": {\"decode_weight_bytes_per_second\": "
                                 "..., \"prefill_flops_per_second\": ...}}"});
  const int present = parse_kernels(r.raw("kernels"), "cpu.kernels", origin, cpu.kernels);
  check(present > 0, "cpu.kernels names no format", {.path = origin, .hint = "add fp8, bf16, f32, int8 or int4"});
  if (r.has("dense_kernels")) parse_kernels(r.raw("dense_kernels"), "cpu.dense_kernels", origin, cpu.dense_kernels);
  else r.number("dense_kernels", false);
  r.text("source");
  r.finish();
  return cpu;
}

GpuProfile parse_gpu(const json& value, const std::string& path, const std::string& origin) {
  ObjectReader r(value, path, origin);
  GpuProfile gpu;
  gpu.name = r.text("name");
  gpu.memory_bytes = r.bytes("memory_bytes", true);
  check(gpu.memory_bytes > 0, path + ".memory_bytes must be > 0", {.path = origin});
  gpu.hbm_bytes_per_second = r.positive("hbm_bytes_per_second", true);
  gpu.bf16_flops_per_second = r.positive("bf16_flops_per_second", true);
  gpu.fp8_flops_per_second = r.number("fp8_flops_per_second", false);
  gpu.pcie_h2d_bytes_per_second = r.positive("pcie_h2d_bytes_per_second", true);
  gpu.reserved_bytes = r.bytes("reserved_bytes", false);
  if (!r.has("reserved_bytes")) gpu.reserved_bytes = std::min<uint64_t>(gpu.memory_bytes / 16, uint64_t(1) << 30);
  check(gpu.reserved_bytes < gpu.memory_bytes, path + ".reserved_bytes must be below memory_bytes", {.path = origin});
  gpu.launch_overhead_seconds = r.number("launch_overhead_seconds", false, 5e-6);
  r.text("source");
  r.finish();
  return gpu;
}

}  // namespace

std::string_view weight_format_name(WeightFormat format) { return kFormatNames[int(format)]; }

WeightFormat parse_weight_format(std::string_view name) {
  for (int f = 0; f < kWeightFormatCount; ++f)
    if (name == kFormatNames[f]) return WeightFormat(f);
  throw Error("unknown weight format '" + std::string(name) + "'", {.hint = "use one of f32, bf16, fp8, int8, int4"});
}

double weight_format_bits(WeightFormat format) {
  switch (format) {
    case WeightFormat::kF32: return 32.0;
    case WeightFormat::kBF16: return 16.0;
    case WeightFormat::kFP8: return 8.0 + 32.0 / (16.0 * 128.0);
    case WeightFormat::kINT8: return 8.0 + 32.0 / 128.0;
    case WeightFormat::kINT4: return 4.0 + 32.0 / 128.0;
  }
  return 16.0;
}

HardwareProfile parse_hardware_profile(const json& value, const std::string& origin) {
  ObjectReader r(value, "", origin);
  const std::string schema = r.text("schema");
  check(schema == kSchema, "profile schema is '" + schema + "', expected '" + std::string(kSchema) + "'",
        {.path = origin, .hint = "write \"schema\": \"" + std::string(kSchema) + "\" (docs/PLANNER.md)"});
  HardwareProfile profile;
  profile.name = r.text("name");
  check(!profile.name.empty(), "the profile has no \"name\"", {.path = origin});
  profile.source = r.strings("source");
  profile.measured = r.boolean("measured");
  check(r.has("cpu"), "cpu is missing", {.path = origin, .hint = "every profile describes its CPU (docs/PLANNER.md)"});
  profile.cpu = parse_cpu(r.raw("cpu"), origin);
  check(r.has("dram"), "dram is missing", {.path = origin});
  {
    ObjectReader d(r.raw("dram"), "dram", origin);
    profile.dram.bytes = d.bytes("bytes", true);
    check(profile.dram.bytes > 0, "dram.bytes must be > 0", {.path = origin});
    profile.dram.read_bytes_per_second = d.positive("read_bytes_per_second", true);
    d.text("source");
    d.finish();
  }
  if (r.has("nvme")) {
    ObjectReader n(r.raw("nvme"), "nvme", origin);
    profile.nvme.bytes = n.bytes("bytes", true);
    profile.nvme.read_bytes_per_second = n.positive("read_bytes_per_second", true);
    profile.nvme.path = n.text("path");
    profile.nvme.method = n.text("method");
    n.text("source");
    n.finish();
  } else {
    r.number("nvme", false);
  }
  if (r.has("gpus")) {
    const json& gpus = r.raw("gpus");
    check(gpus.is_array(), "gpus must be a list (empty when the machine has none)", {.path = origin});
    for (size_t i = 0; i < gpus.size(); ++i)
      profile.gpus.push_back(parse_gpu(gpus[i], "gpus[" + std::to_string(i) + "]", origin));
  } else {
    r.number("gpus", false);
  }
  r.finish();
  return profile;
}

HardwareProfile load_hardware_profile(const std::filesystem::path& path) {
  std::ifstream in(path);
  check(bool(in), "cannot open hardware profile", {.path = path.string(), .hint = "run `hetmoe probe -o FILE` or use tools/profiles/*.json"});
  json value;
  try {
    value = json::parse(in);
  } catch (const json::parse_error& error) {
    throw Error(std::string("hardware profile is not valid JSON: ") + error.what(), {.path = path.string()});
  }
  return parse_hardware_profile(value, path.string());
}

json hardware_profile_to_json(const HardwareProfile& p) {
  auto kernels_json = [](const CpuKernelRate* rates) {
    json kernels = json::object();
    for (int f = 0; f < kWeightFormatCount; ++f) {
      if (!rates[f].present()) continue;
      json& k = kernels[std::string(kFormatNames[f])];
      k = {{"decode_weight_bytes_per_second", rates[f].decode_weight_bytes_per_second},
           {"prefill_flops_per_second", rates[f].prefill_flops_per_second}};
      if (rates[f].small_batch_flops_per_second > 0) k["small_batch_flops_per_second"] = rates[f].small_batch_flops_per_second;
    }
    return kernels;
  };
  const json kernels = kernels_json(p.cpu.kernels), dense_kernels = kernels_json(p.cpu.dense_kernels);
  json out = {{"schema", kSchema},
              {"name", p.name},
              {"source", p.source},
              {"measured", p.measured},
              {"cpu",
               {{"model", p.cpu.model},
                {"sockets", p.cpu.sockets},
                {"numa_nodes", p.cpu.numa_nodes},
                {"physical_cores", p.cpu.physical_cores},
                {"threads", p.cpu.threads},
                {"l1d_bytes", p.cpu.l1d_bytes},
                {"l2_bytes", p.cpu.l2_bytes},
                {"l3_bytes", p.cpu.l3_bytes},
                {"isa", p.cpu.isa},
                {"kernel_call_overhead_seconds", p.cpu.kernel_call_overhead_seconds},
                {"vector_flops_per_second", p.cpu.vector_flops_per_second},
                {"vector_call_seconds", p.cpu.vector_call_seconds},
                {"vector_stream_bytes_per_second", p.cpu.vector_stream_bytes_per_second},
                {"linear_output_seconds", p.cpu.linear_output_seconds},
                {"attention_row_seconds", p.cpu.attention_row_seconds},
                {"attention_row_flops_per_second", p.cpu.attention_row_flops_per_second},
                {"attention_pair_seconds", p.cpu.attention_pair_seconds},
                {"attention_pair_flops_per_second", p.cpu.attention_pair_flops_per_second},
                {"kernels", kernels}}},
              {"dram", {{"bytes", p.dram.bytes}, {"read_bytes_per_second", p.dram.read_bytes_per_second}}}};
  if (!dense_kernels.empty()) out["cpu"]["dense_kernels"] = dense_kernels;
  if (p.nvme.present() || !p.nvme.path.empty())
    out["nvme"] = {{"bytes", p.nvme.bytes},
                   {"read_bytes_per_second", p.nvme.read_bytes_per_second},
                   {"path", p.nvme.path},
                   {"method", p.nvme.method}};
  json gpus = json::array();
  for (const GpuProfile& g : p.gpus)
    gpus.push_back({{"name", g.name},
                    {"memory_bytes", g.memory_bytes},
                    {"hbm_bytes_per_second", g.hbm_bytes_per_second},
                    {"fp8_flops_per_second", g.fp8_flops_per_second},
                    {"bf16_flops_per_second", g.bf16_flops_per_second},
                    {"pcie_h2d_bytes_per_second", g.pcie_h2d_bytes_per_second},
                    {"reserved_bytes", g.reserved_bytes},
                    {"launch_overhead_seconds", g.launch_overhead_seconds}});
  out["gpus"] = gpus;
  return out;
}

}  // namespace hetmoe::plan
