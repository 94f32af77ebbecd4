// Text generation over a batch of sequences: one prefill for all prompts, then decode steps
// for the sequences still running. A sequence stops at EOS, at a stop string, or at its
// token limit.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/runtime/model.h"
#include "engine/runtime/sampler.h"

namespace hetmoe {

struct GenerationRequest {
  std::vector<int32_t> prompt;
  int64_t max_new_tokens = 128;
  SamplingParams sampling;
  std::vector<std::string> stop_strings;  // matched against the generated text's bytes
};

enum class StopReason { kEos, kStopString, kLength };

struct GenerationResult {
  std::vector<int32_t> tokens;  // generated ids (a stop string's tokens included)
  StopReason stop_reason = StopReason::kLength;
};

struct GenerationStats {
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;
};

struct GenerationOptions {
  int64_t context_tokens = 4096;        // KV cache capacity per sequence
  std::vector<int32_t> eos_ids;         // stop tokens
  int64_t vocab_limit = 0;              // ids >= this are never sampled (0: whole vocab)
  std::function<std::string(int32_t)> token_bytes;         // needed for stop strings
  std::function<void(size_t sequence, int32_t token)> on_token;  // streaming
};

std::vector<GenerationResult> generate(const Model& model, const std::vector<GenerationRequest>& requests,
                                       const GenerationOptions& options, GenerationStats* stats = nullptr);

}  // namespace hetmoe
