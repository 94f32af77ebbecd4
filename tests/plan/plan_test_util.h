// Shared fixtures of the planner tests: configs, profiles and random draws of both.
#pragma once

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <random>
#include <string>

#include "engine/model/config.h"
#include "engine/plan/hardware_profile.h"

namespace hetmoe::plan::testing {

inline const std::string kV3Config = HETMOE_TEST_DATA "/configs/deepseek-v3-r1.config.json";
inline const std::string kV2LiteConfig = HETMOE_TEST_DATA "/configs/deepseek-v2-lite.config.json";
inline const std::string kProfiles = HETMOE_SOURCE_DIR "/tools/profiles";

// Random draws: random_config (a valid DeepSeek-shaped MoE config), random_profile (1-2 sockets,
// 8 GiB..2 TiB DRAM, maybe a GPU at least as fast as DRAM, maybe an NVMe drive, CPU kernels for
// every format); simple_cpu_profile (round numbers for hand-checked costs).

template <class T>
T pick(std::mt19937_64& random, std::initializer_list<T> values) {
  std::uniform_int_distribution<size_t> index(0, values.size() - 1);
  return *(values.begin() + index(random));
}
inline double log_uniform(std::mt19937_64& random, double lo, double hi) {
  std::uniform_real_distribution<double> u(std::log(lo), std::log(hi));
  return std::exp(u(random));
}

inline ModelConfig random_config(std::mt19937_64& random) {
  ModelConfig c = load_model_config(kV3Config);
  c.hidden_size = pick<int64_t>(random, {256, 512, 1024, 2048, 4096, 7168});
  c.intermediate_size = c.hidden_size * pick<int64_t>(random, {2, 3});
  c.moe_intermediate_size = pick<int64_t>(random, {128, 256, 512, 1408, 2048});
  c.n_routed_experts = pick<int64_t>(random, {8, 16, 64, 160, 256});
  c.num_experts_per_tok = std::min<int64_t>(c.n_routed_experts, pick<int64_t>(random, {1, 2, 4, 6, 8}));
  c.n_group = 1;
  c.topk_group = 1;
  c.n_shared_experts = pick<int64_t>(random, {0, 1, 2});
  c.num_hidden_layers = pick<int64_t>(random, {2, 4, 12, 27, 61});
  c.first_k_dense_replace = std::min<int64_t>(c.num_hidden_layers - 1, pick<int64_t>(random, {0, 1, 3}));
  c.num_attention_heads = pick<int64_t>(random, {8, 16, 32, 128});
  c.num_key_value_heads = c.num_attention_heads;
  c.q_lora_rank = pick<int64_t>(random, {0, 512, 1536});
  c.vocab_size = pick<int64_t>(random, {2048, 32000, 129280});
  c.num_nextn_predict_layers = 0;
  if (pick<int>(random, {0, 1}) == 1) c.quantization.present = false;
  return c;
}

inline HardwareProfile random_profile(std::mt19937_64& random) {
  HardwareProfile p;
  p.name = "random";
  p.cpu.sockets = pick<int>(random, {1, 2});
  p.cpu.numa_nodes = p.cpu.sockets;
  p.cpu.physical_cores = p.cpu.sockets * pick<int>(random, {4, 16, 32, 64});
  p.cpu.threads = p.cpu.physical_cores * 2;
  p.cpu.kernel_call_overhead_seconds = log_uniform(random, 1e-6, 3e-5);
  p.dram.bytes = uint64_t(log_uniform(random, 8.0, 2048.0) * double(1ull << 30));
  p.dram.read_bytes_per_second = log_uniform(random, 20e9, 900e9);
  for (CpuKernelRate& k : p.cpu.kernels) {
    k.decode_weight_bytes_per_second = p.dram.read_bytes_per_second * log_uniform(random, 0.2, 1.0);
    k.prefill_flops_per_second = log_uniform(random, 0.1e12, 20e12);
  }
  if (pick<int>(random, {0, 1}) == 1) {  // a probed profile: the engine's vector ops and prompt attention
    p.cpu.vector_flops_per_second = log_uniform(random, 10e9, 200e9);
    p.cpu.vector_call_seconds = log_uniform(random, 1e-9, 1e-8);
    p.cpu.attention_row_seconds = log_uniform(random, 1e-8, 1e-6);
    p.cpu.attention_row_flops_per_second = pick<int>(random, {0, 1}) ? log_uniform(random, 10e9, 200e9) : 0.0;
    p.cpu.attention_pair_seconds = log_uniform(random, 1e-9, 1e-7);
    p.cpu.attention_pair_flops_per_second = pick<int>(random, {0, 1}) ? log_uniform(random, 10e9, 200e9) : 0.0;
  }
  if (pick<int>(random, {0, 1, 2}) > 0) {
    p.nvme.bytes = uint64_t(log_uniform(random, 64.0, 8192.0) * double(1ull << 30));
    p.nvme.read_bytes_per_second = log_uniform(random, 0.5e9, 28e9);
  }
  if (pick<int>(random, {0, 1, 2}) > 0) {
    GpuProfile g;
    g.name = "gpu";
    g.memory_bytes = uint64_t(log_uniform(random, 4.0, 192.0) * double(1ull << 30));
    g.reserved_bytes = g.memory_bytes / 16;
    // At least as fast as DRAM: a GPU slower than the host is not a machine anyone plans for.
    g.hbm_bytes_per_second = p.dram.read_bytes_per_second * log_uniform(random, 1.0, 40.0);
    g.bf16_flops_per_second = log_uniform(random, 30e12, 1000e12);
    g.fp8_flops_per_second = pick<int>(random, {0, 1}) ? 2 * g.bf16_flops_per_second : 0;
    g.pcie_h2d_bytes_per_second = log_uniform(random, 10e9, 60e9);
    g.launch_overhead_seconds = 5e-6;
    p.gpus.push_back(g);
  }
  return p;
}

inline HardwareProfile simple_cpu_profile() {
  HardwareProfile p;
  p.name = "simple";
  p.cpu.physical_cores = 8;
  p.dram.bytes = 1ull << 40;
  p.dram.read_bytes_per_second = 100e9;
  for (CpuKernelRate& k : p.cpu.kernels) {
    k.decode_weight_bytes_per_second = 50e9;
    k.prefill_flops_per_second = 1e12;
  }
  return p;
}

}  // namespace hetmoe::plan::testing
