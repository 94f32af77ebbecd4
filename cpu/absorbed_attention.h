// MLA attention in the absorbed form (DeepSeek-V2/V3, ../shared/docs/MODEL_SPEC.md §MLA) for one
// head over a block of rows of one sequence: the block's work that runs on cached latents, not on
// the model's weights as a whole. The engine (engine/runtime/model.cpp) runs one task per
// (row block, head); `hetmoe probe` times the same function (cpu.attention in the profile) so the
// planner costs prompts with what the engine runs.
//
// Per row i at position p_i, with W_UK / W_UV the head's rows of kv_b:
//   q̃_i     = W_UKᵀ q_nope_i                                   (nope axpys of `latent`)
//   s_i[u]  = scale · (q̃_i · latent_u + q_rope_i · rope_key_u), u ≤ p_i; softmax over u
//   out_i   = W_UV · Σ_u s_i[u] · latent_u                        (v dots of `latent`)
// A block of more than one row dequantises W_UK and W_UV once into f32 rows (the values
// axpy_weight_rows / dot_weight_rows use in place for a single row) and walks the latents in
// blocks of kAbsorbedPositions, each shared by the block's rows while it is in L2. Every row's
// result is the same sequence of operations either way (dot_rows is per-row exact, axpy_rows
// adds rows in order), so it does not depend on the block. Raw pointers (kernel-header rule).
#pragma once

#include <cstdint>
#include <vector>

#include "cpu/cpu_features.h"
#include "cpu/linear.h"

namespace hetmoe::cpu {

inline constexpr int64_t kAbsorbedPositions = 64;

struct AbsorbedShape {
  int64_t nope = 0;    // qk_nope_head_dim
  int64_t rope = 0;    // qk_rope_head_dim
  int64_t latent = 0;  // kv_lora_rank
  int64_t v = 0;       // v_head_dim
  float scale = 1.0f;  // softmax scale
};

// f32 buffers of one task, reused across tasks of a thread.
struct AbsorbedScratch {
  std::vector<float> w_uk, w_uv;                      // [nope, latent], [v, latent]
  std::vector<float> q_latent, scores, rope, context;  // per row of the block
};

struct AbsorbedHead {
  AbsorbedShape shape;
  const WeightMatrix* kv_b = nullptr;  // [heads * (nope + v), latent]: head h's W_UK rows, then its W_UV rows
  int64_t head = 0;
  const float* latents = nullptr;      // cached latents by position, [> max position, latent]
  const float* rope_keys = nullptr;    // cached rotated rope keys by position, [> max position, rope]
  const int64_t* positions = nullptr;  // [rows], each row's position
  int64_t rows = 0;
  const float* q = nullptr;            // the first row's q of this head (nope, then rotated rope)
  int64_t q_stride = 0;                // floats from one row's q to the next
};

// out[i * out_stride + j], j < v: the head's attention output of each row.
void absorbed_attention_head(const AbsorbedHead& task, float* out, int64_t out_stride, AbsorbedScratch& scratch,
                             Isa isa);

}  // namespace hetmoe::cpu
