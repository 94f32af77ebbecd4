#include "engine/runtime/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace hetmoe {

Rope::Rope(const ModelConfig& config) {
  const int64_t dim = config.qk_rope_head_dim;
  const double base = config.rope_theta;
  inverse_frequencies_.resize(size_t(dim / 2));
  const RopeScaling& yarn = config.rope_scaling;
  const bool use_yarn = yarn.type == "yarn";
  // Correction dimension for `rotations` full turns over the original context.
  auto correction_dim = [&](double rotations) {
    return double(dim) * std::log(double(yarn.original_max_position_embeddings) / (2 * std::numbers::pi * rotations)) /
           (2 * std::log(base));
  };
  double low = 0, high = 0;
  if (use_yarn) {
    low = std::max(std::floor(correction_dim(yarn.beta_fast)), 0.0);
    high = std::min(std::ceil(correction_dim(yarn.beta_slow)), double(dim - 1));
    if (low == high) high += 0.001;
  }
  for (int64_t i = 0; i < dim / 2; ++i) {
    const double frequency = std::pow(base, -2.0 * double(i) / double(dim));
    if (!use_yarn) {
      inverse_frequencies_[size_t(i)] = float(frequency);
      continue;
    }
    const double ramp = std::clamp((double(i) - low) / (high - low), 0.0, 1.0);
    inverse_frequencies_[size_t(i)] = float(frequency * (1 - ramp) + frequency / yarn.factor * ramp);
  }
}

void Rope::apply(float* x, int64_t position) const {
  for (size_t i = 0; i < inverse_frequencies_.size(); ++i) {
    // FP32 angle, as the reference computes its table.
    const float angle = float(position) * inverse_frequencies_[i];
    const float c = std::cos(angle), s = std::sin(angle);
    const float x0 = x[2 * i], x1 = x[2 * i + 1];
    x[2 * i] = x0 * c - x1 * s;
    x[2 * i + 1] = x0 * s + x1 * c;
  }
}

}  // namespace hetmoe
