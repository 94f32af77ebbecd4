#include "engine/runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "engine/core/error.h"

namespace hetmoe {

Sampler::Sampler(SamplingParams params, int64_t vocab_limit)
    : params_(params), vocab_limit_(vocab_limit), rng_(params.seed) {
  check(params.top_p > 0.0f && params.top_p <= 1.0f, "top-p must be in (0, 1]");
  check(params.min_p >= 0.0f && params.min_p < 1.0f, "min-p must be in [0, 1)");
  check(params.repetition_penalty > 0.0f, "repetition penalty must be positive");
  check(params.top_k >= 0, "top-k must be >= 0");
}

int32_t Sampler::sample(std::span<float> logits, std::span<const int32_t> history) {
  const int64_t n = std::min<int64_t>(vocab_limit_, int64_t(logits.size()));
  if (params_.repetition_penalty != 1.0f) {
    const size_t window = std::min(history.size(), size_t(params_.repetition_window));
    std::vector<bool> seen(size_t(n), false);
    for (int32_t token : history.last(window)) {
      if (token < 0 || token >= n || seen[size_t(token)]) continue;
      seen[size_t(token)] = true;
      float& value = logits[size_t(token)];
      value = value > 0 ? value / params_.repetition_penalty : value * params_.repetition_penalty;
    }
  }
  if (params_.temperature <= 0.0f)
    return int32_t(std::max_element(logits.begin(), logits.begin() + n) - logits.begin());

  // Candidates sorted by logit, descending (ties: lower id first, so draws are reproducible).
  std::vector<int32_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  const int64_t keep = params_.top_k > 0 ? std::min(params_.top_k, n) : n;
  auto by_logit = [&](int32_t a, int32_t b) {
    return logits[size_t(a)] > logits[size_t(b)] || (logits[size_t(a)] == logits[size_t(b)] && a < b);
  };
  std::partial_sort(order.begin(), order.begin() + keep, order.end(), by_logit);
  order.resize(size_t(keep));

  std::vector<double> probs(order.size());
  const double top = logits[size_t(order[0])] / params_.temperature;
  double sum = 0.0;
  for (size_t i = 0; i < order.size(); ++i) sum += probs[i] = std::exp(logits[size_t(order[i])] / params_.temperature - top);
  for (double& p : probs) p /= sum;

  size_t count = probs.size();
  if (params_.top_p < 1.0f) {
    double cumulative = 0.0;
    for (size_t i = 0; i < probs.size(); ++i) {
      cumulative += probs[i];
      if (cumulative >= params_.top_p) {
        count = i + 1;
        break;
      }
    }
  }
  if (params_.min_p > 0.0f) {
    const double threshold = probs[0] * params_.min_p;
    size_t above = 1;
    while (above < count && probs[above] >= threshold) ++above;
    count = above;
  }
  const double total = std::accumulate(probs.begin(), probs.begin() + long(count), 0.0);
  const double draw = std::uniform_real_distribution<double>(0.0, total)(rng_);
  double cumulative = 0.0;
  for (size_t i = 0; i < count; ++i) {
    cumulative += probs[i];
    if (draw < cumulative) return order[i];
  }
  return order[count - 1];
}

}  // namespace hetmoe
