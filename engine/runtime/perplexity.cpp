#include "engine/runtime/perplexity.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <vector>

#include "engine/core/error.h"

namespace hetmoe {

PerplexityResult evaluate_perplexity(const Model& model, std::span<const int32_t> ids, int64_t context,
                                     const std::function<int64_t(int32_t)>& token_bytes,
                                     const std::function<void(int64_t, int64_t)>& progress) {
  check(context >= 2, "perplexity needs a context of at least 2 tokens");
  const int64_t vocab = model.config().vocab_size;
  PerplexityResult result;
  KvCache cache(model.config(), context);
  std::vector<float> logits;
  const int64_t total = int64_t(ids.size());
  for (int64_t begin = 0; begin + 1 < total; begin += context) {
    const int64_t count = std::min(context, total - begin);
    if (count < 2) break;
    cache.clear();
    SequenceStep step{&cache, ids.subspan(size_t(begin), size_t(count)), true, &logits};
    model.forward(std::span(&step, 1));
    for (int64_t t = 0; t + 1 < count; ++t) {
      const float* row = &logits[size_t(t * vocab)];
      const float max_logit = *std::max_element(row, row + vocab);
      double sum = 0.0;
      for (int64_t v = 0; v < vocab; ++v) sum += std::exp(double(row[v]) - max_logit);
      const int32_t target = ids[size_t(begin + t + 1)];
      result.nll_sum += std::log(sum) + max_logit - double(row[target]);
      result.bytes += token_bytes(target);
      ++result.tokens;
    }
    if (progress) progress(begin + count, total);
  }
  check(result.tokens > 0, "the text has fewer than 2 tokens; nothing to score");
  result.perplexity = std::exp(result.nll_sum / double(result.tokens));
  result.bits_per_byte = result.bytes > 0 ? result.nll_sum / std::numbers::ln2 / double(result.bytes) : 0.0;
  return result;
}

}  // namespace hetmoe
