// The plain linear's decode benchmarks (linear_bench.cpp), registered by the kernels benchmark's main.
#pragma once

#include <cstdint>

namespace hetmoe::bench {

// linear/decode/<fp8|bf16>/threads:{1, max_threads}; pool_bytes: the weights cycled through.
void register_linear_benchmarks(int max_threads, uint64_t pool_bytes);

}  // namespace hetmoe::bench
