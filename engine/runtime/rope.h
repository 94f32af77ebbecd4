// Rotary position embedding with YaRN frequency blending, on interleaved pairs (2i, 2i+1)
// as DeepSeek-V2/V3 checkpoints expect (MODEL_SPEC §3).
#pragma once

#include <cstdint>
#include <vector>

#include "engine/model/config.h"

namespace hetmoe {

class Rope {
 public:
  explicit Rope(const ModelConfig& config);

  // f'_i for i < rope_dim / 2 (MODEL_SPEC §3.1 step 5).
  const std::vector<float>& inverse_frequencies() const { return inverse_frequencies_; }
  // Rotates x[2i], x[2i+1] by position * f'_i in place (rope_dim values).
  void apply(float* x, int64_t position) const;

 private:
  std::vector<float> inverse_frequencies_;
};

}  // namespace hetmoe
