#include "cpu/absorbed_attention.h"

#include <algorithm>

#include "cpu/ops.h"

namespace hetmoe::cpu {
namespace {

struct Task {
  const AbsorbedHead& t;
  AbsorbedScratch& s;
  Isa isa;
  int64_t visible;  // 1 + the block's last position

  int64_t w_uk() const { return t.head * (t.shape.nope + t.shape.v); }
  int64_t w_uv() const { return w_uk() + t.shape.nope; }
  // Positions [u0, u0 + kAbsorbedPositions) row i sees.
  int64_t seen(int64_t i, int64_t u0) const { return std::min(u0 + kAbsorbedPositions, t.positions[i] + 1) - u0; }
};

float* zeroed(std::vector<float>& v, int64_t count) {
  v.assign(size_t(count), 0.0f);
  return v.data();
}

// Room for `count` floats; the caller writes every element it later reads.
float* sized(std::vector<float>& v, int64_t count) {
  if (v.size() < size_t(count)) v.resize(size_t(count));
  return v.data();
}

// q̃ = W_UKᵀ q_nope per row into s.q_latent.
void absorb_queries(const Task& k) {
  const AbsorbedHead& t = k.t;
  const int64_t nope = t.shape.nope, latent = t.shape.latent;
  float* q_latent = zeroed(k.s.q_latent, t.rows * latent);
  if (t.rows == 1) return axpy_weight_rows(t.q, *t.kv_b, k.w_uk(), nope, q_latent, k.isa);
  weight_rows(*t.kv_b, k.w_uk(), nope, sized(k.s.w_uk, nope * latent), k.isa);
  for (int64_t i = 0; i < t.rows; ++i)
    axpy_rows(t.q + i * t.q_stride, k.s.w_uk.data(), latent, nope, q_latent + i * latent, latent, k.isa);
}

// Softmax of scale · (q̃ · latent + q_rope · rope key) over the positions each row sees, into
// s.scores (rows `visible` apart).
void attention_weights(const Task& k) {
  const AbsorbedHead& t = k.t;
  const int64_t nope = t.shape.nope, rope_dim = t.shape.rope, latent = t.shape.latent;
  // dot_rows writes each score a row sees (positions ≤ its own); the rest are never read.
  float* scores = sized(k.s.scores, t.rows * k.visible);
  float* rope = sized(k.s.rope, t.rows * k.visible);
  for (int64_t u0 = 0; u0 < k.visible; u0 += kAbsorbedPositions)
    for (int64_t i = 0; i < t.rows; ++i) {
      const int64_t count = k.seen(i, u0);
      if (count <= 0) continue;
      dot_rows(&k.s.q_latent[size_t(i * latent)], t.latents + u0 * latent, latent, count, latent,
               scores + i * k.visible + u0, k.isa);
      dot_rows(t.q + i * t.q_stride + nope, t.rope_keys + u0 * rope_dim, rope_dim, count, rope_dim,
               rope + i * k.visible + u0, k.isa);
    }
  for (int64_t i = 0; i < t.rows; ++i) {
    float* si = scores + i * k.visible;
    for (int64_t u = 0; u <= t.positions[i]; ++u) si[u] = t.shape.scale * (si[u] + rope[i * k.visible + u]);
    softmax(si, t.positions[i] + 1);
  }
}

// out = W_UV · Σ_u weight_u · latent_u per row.
void weighted_context(const Task& k, float* out, int64_t out_stride) {
  const AbsorbedHead& t = k.t;
  const int64_t v_dim = t.shape.v, latent = t.shape.latent;
  float* context_latent = zeroed(k.s.context, t.rows * latent);
  for (int64_t u0 = 0; u0 < k.visible; u0 += kAbsorbedPositions)
    for (int64_t i = 0; i < t.rows; ++i) {
      const int64_t count = k.seen(i, u0);
      if (count > 0)
        axpy_rows(&k.s.scores[size_t(i * k.visible + u0)], t.latents + u0 * latent, latent, count,
                  context_latent + i * latent, latent, k.isa);
    }
  if (t.rows == 1) return dot_weight_rows(context_latent, *t.kv_b, k.w_uv(), v_dim, out, k.isa);
  weight_rows(*t.kv_b, k.w_uv(), v_dim, sized(k.s.w_uv, v_dim * latent), k.isa);
  for (int64_t i = 0; i < t.rows; ++i)
    dot_rows(context_latent + i * latent, k.s.w_uv.data(), latent, v_dim, latent, out + i * out_stride, k.isa);
}

}  // namespace

void absorbed_attention_head(const AbsorbedHead& task, float* out, int64_t out_stride, AbsorbedScratch& scratch,
                             Isa isa) {
  int64_t visible = 0;
  for (int64_t i = 0; i < task.rows; ++i) visible = std::max(visible, task.positions[i] + 1);
  const Task k{task, scratch, isa, visible};
  absorb_queries(k);
  attention_weights(k);
  weighted_context(k, out, out_stride);
}

}  // namespace hetmoe::cpu
