// Next-token sampling: greedy, temperature, top-k, top-p, min-p, repetition penalty, seed.
//
// Order (as llama.cpp's default chain): repetition penalty on the raw logits → greedy when
// temperature <= 0 → top-k → temperature → softmax → top-p → min-p → renormalise → draw.
#pragma once

#include <cstdint>
#include <random>
#include <span>

namespace hetmoe {

struct SamplingParams {
  float temperature = 0.0f;         // <= 0: greedy
  int64_t top_k = 0;                // 0: off
  float top_p = 1.0f;               // 1: off
  float min_p = 0.0f;               // 0: off
  float repetition_penalty = 1.0f;  // 1: off; applies to the last `repetition_window` tokens
  int64_t repetition_window = 64;
  uint64_t seed = 0;
};

class Sampler {
 public:
  // Only ids < vocab_limit are ever sampled (padding rows of lm_head never are).
  Sampler(SamplingParams params, int64_t vocab_limit);

  // `logits` is modified (penalties, scaling). `history`: tokens so far (prompt + generated).
  int32_t sample(std::span<float> logits, std::span<const int32_t> history);

 private:
  SamplingParams params_;
  int64_t vocab_limit_;
  std::mt19937_64 rng_;
};

}  // namespace hetmoe
