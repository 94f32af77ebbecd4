// Perplexity and bits per byte over a token sequence, with the protocol of docs/TINY_MODEL.md:
// consecutive non-overlapping windows of `context` tokens (a last partial window counts if it
// has at least 2 tokens), each evaluated from position 0; every token but a window's first is
// scored; ppl = exp(mean NLL); bpb = sum NLL / ln 2 / bytes of the scored tokens.
#pragma once

#include <cstdint>
#include <functional>
#include <span>

#include "engine/runtime/model.h"

namespace hetmoe {

struct PerplexityResult {
  double perplexity = 0;
  double bits_per_byte = 0;
  int64_t tokens = 0;  // scored tokens
  int64_t bytes = 0;   // bytes of the scored tokens
  double nll_sum = 0;
};

// token_bytes(id) = byte length of the token's decoded text.
PerplexityResult evaluate_perplexity(const Model& model, std::span<const int32_t> ids, int64_t context,
                                     const std::function<int64_t(int32_t)>& token_bytes,
                                     const std::function<void(int64_t done, int64_t total)>& progress = {});

}  // namespace hetmoe
