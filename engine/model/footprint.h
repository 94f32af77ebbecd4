// What the forward pass of engine/runtime holds besides weights, as functions of the config
// alone: the runtime's MemoryBudget reserves these for a streamed run (reserve_run_memory),
// and the planner counts the same bytes for the engine as it runs today (hetmoe-cpu-0).
#pragma once

#include <cstdint>

#include "engine/model/config.h"

namespace hetmoe {

// KvCache of one sequence of `tokens` positions (f32 latent + rope key per layer).
uint64_t kv_cache_bytes(const ModelConfig& config, int64_t tokens);

// Upper bound of what one Model::forward allocates for `tokens` rows (all sequences of the
// batch together) at up to `context` positions, with `logit_rows` rows of logits returned
// and kept by the caller, and `threads` workers. From the buffers engine/runtime/model.cpp
// allocates, with a 25% margin.
uint64_t forward_activation_bytes(const ModelConfig& config, int64_t tokens, int64_t context,
                                  int64_t logit_rows, int threads);

}  // namespace hetmoe
