// What the forward pass of engine/runtime holds besides weights, as functions of the config
// alone: the runtime's MemoryBudget reserves these for a streamed run (reserve_run_memory),
// and the planner counts the same bytes for the engine as it runs today (hetmoe-cpu-0).
#pragma once

#include <cstdint>

#include "engine/model/config.h"

namespace hetmoe {

// A prompt's absorbed MLA attention runs per (block of up to this many consecutive rows of one
// sequence, head) (engine/runtime/model.cpp attend_absorbed): each worker holds the head's W_UK
// and W_UV in f32 and, per row of the block, q̃, the latent context, scores and rope scores.
inline constexpr int64_t kAbsorbedAttentionRows = 64;

// KvCache of one sequence of `tokens` positions (f32 latent + rope key per layer).
uint64_t kv_cache_bytes(const ModelConfig& config, int64_t tokens);

// Upper bound of what one Model::forward allocates for `tokens` rows (all sequences of the
// batch together) at up to `context` positions, with `logit_rows` rows of logits returned
// and kept by the caller, and `threads` workers. From the buffers engine/runtime/model.cpp
// allocates, with a 25% margin.
uint64_t forward_activation_bytes(const ModelConfig& config, int64_t tokens, int64_t context,
                                  int64_t logit_rows, int threads);

}  // namespace hetmoe
