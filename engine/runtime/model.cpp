#include "engine/runtime/model.h"

#include <tbb/enumerable_thread_specific.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "cpu/absorbed_attention.h"
#include "cpu/linear.h"
#include "cpu/ops.h"
#include "engine/core/error.h"
#include "engine/model/footprint.h"
#include "engine/runtime/router.h"

namespace hetmoe {

struct Model::Rows {
  struct Row {
    KvCache* cache;
    int64_t position;
  };
  std::vector<Row> rows;
  int64_t size() const { return int64_t(rows.size()); }
};

namespace {

// Experts layer `next` is predicted to route to for the rows of `h` (the hidden state entering
// it, before its attention): its router and selection rule on post_norm(h), union over
// rows, the most often chosen first, then the highest routing weight (so the likeliest reads
// start first, and a wrong guess is more likely still queued, and withdrawn, when the layer's
// router runs). For source.prefetch().
std::vector<int32_t> predict_next_layer(const ModelWeights& weights, int64_t next, const float* h, int64_t n) {
  const ModelConfig& c = weights.config;
  const LayerWeights& layer = weights.layers[size_t(next)];
  const int64_t hidden = c.hidden_size, experts = c.n_routed_experts, k = c.num_experts_per_tok;
  std::vector<RoutedExpert> routes(static_cast<size_t>(n * k));
  tbb::parallel_for(int64_t(0), n, [&](int64_t t) {
    std::vector<float> x(static_cast<size_t>(hidden)), logits(static_cast<size_t>(experts));
    cpu::rms_norm(h + t * hidden, layer.post_norm.data(), hidden, float(c.rms_norm_eps), x.data());
    for (int64_t e = 0; e < experts; ++e) logits[size_t(e)] = cpu::dot(&layer.moe.router[size_t(e * hidden)], x.data(), hidden);
    route_token(c, logits, layer.moe.score_bias, std::span(routes).subspan(size_t(t * k), size_t(k)));
  });
  std::vector<int64_t> votes(static_cast<size_t>(experts), 0);
  std::vector<float> weight(static_cast<size_t>(experts), 0.0f);
  for (const RoutedExpert& r : routes) {
    ++votes[size_t(r.expert)];
    weight[size_t(r.expert)] += r.weight;
  }
  std::vector<int32_t> predicted;
  for (int64_t e = 0; e < experts; ++e)
    if (votes[size_t(e)] > 0) predicted.push_back(int32_t(e));
  std::stable_sort(predicted.begin(), predicted.end(), [&](int32_t a, int32_t b) {
    const size_t i = size_t(a), j = size_t(b);
    return votes[i] != votes[j] ? votes[i] > votes[j] : weight[i] > weight[j];
  });
  return predicted;
}

// Whether Model predicts layer `next`'s experts for the source: a MoE layer, and the source asks.
bool predicts(const ModelWeights& weights, const ExpertSource& source, int64_t next) {
  return next < weights.config.num_hidden_layers && weights.layers[size_t(next)].is_moe && source.wants_prefetch();
}

}  // namespace

Model::Model(ModelWeights weights) : weights_(std::move(weights)), rope_(weights_.config) {}

void Model::forward(std::span<SequenceStep> steps) const {
  const ModelConfig& c = weights_.config;
  const int64_t hidden = c.hidden_size;
  Rows rows;
  for (const SequenceStep& step : steps) {
    check(step.cache != nullptr && step.logits != nullptr, "sequence step without cache or logits");
    check(!step.tokens.empty(), "a sequence step needs at least one token");
    check(step.cache->size() + int64_t(step.tokens.size()) <= step.cache->capacity(),
          "prompt and generation of " + std::to_string(step.cache->size() + int64_t(step.tokens.size())) +
              " tokens exceed the context of " + std::to_string(step.cache->capacity()),
          {.hint = "use a shorter prompt or a larger --ctx"});
    for (size_t t = 0; t < step.tokens.size(); ++t) rows.rows.push_back({step.cache, step.cache->size() + int64_t(t)});
  }
  const int64_t n = rows.size();
  expert_source_->begin_step(n);

  // Embedding rows, as shipped (BF16) -> f32.
  std::vector<float> h(static_cast<size_t>(n * hidden));
  int64_t row = 0;
  const cpu::Isa isa = cpu::active_isa();
  for (const SequenceStep& step : steps) {
    for (int32_t token : step.tokens) {
      check(token >= 0 && token < c.vocab_size,
            "token id " + std::to_string(token) + " is outside the vocabulary of " + std::to_string(c.vocab_size));
      cpu::weight_row(weights_.embed, token, h.data() + row * hidden, isa);
      ++row;
    }
  }

  std::vector<float> x(h.size()), delta(h.size());
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& layer = weights_.layers[size_t(l)];
    for (int64_t r = 0; r < n; ++r)
      cpu::rms_norm(&h[size_t(r * hidden)], layer.input_norm.data(), hidden, float(c.rms_norm_eps), &x[size_t(r * hidden)]);
    attention(layer, l, rows, x.data(), delta.data());
    for (size_t i = 0; i < h.size(); ++i) h[i] += delta[i];
    for (int64_t r = 0; r < n; ++r)
      cpu::rms_norm(&h[size_t(r * hidden)], layer.post_norm.data(), hidden, float(c.rms_norm_eps), &x[size_t(r * hidden)]);
    bool predicted = false;
    if (layer.is_moe) {
      predicted = moe(layer.moe, l, x.data(), h.data(), n, delta.data());
    } else {
      ffn_forward(layer.dense, x.data(), n, delta.data());
    }
    for (size_t i = 0; i < h.size(); ++i) h[i] += delta[i];
    // Next-layer prefetch (docs/STREAMING.md): layer l+1's gate on this layer's output predicts
    // the experts l+1 will route to, so a streaming source can read them during l+1's
    // attention — or earlier, from the outputs computed so far, when the drive went idle inside
    // moe(). Only computed when the source asks; it never changes the results. (Predicting
    // from the stream right after this layer's attention, before any expert, was measured on
    // ds3-layers: recall 65% -> 47%, over-fetch 47% -> 68%, slower.)
    if (!predicted && predicts(weights_, *expert_source_, l + 1))
      expert_source_->prefetch(l + 1, predict_next_layer(weights_, l + 1, h.data(), n));
  }

  // Final norm and lm_head for the rows each sequence asked for.
  row = 0;
  for (SequenceStep& step : steps) {
    const int64_t count = int64_t(step.tokens.size());
    const int64_t first = step.all_logits ? row : row + count - 1;
    const int64_t wanted = step.all_logits ? count : 1;
    std::vector<float> normed(static_cast<size_t>(wanted * hidden));
    for (int64_t r = 0; r < wanted; ++r)
      cpu::rms_norm(&h[size_t((first + r) * hidden)], weights_.final_norm.data(), hidden, float(c.rms_norm_eps),
                    &normed[size_t(r * hidden)]);
    step.logits->resize(size_t(wanted * c.vocab_size));
    cpu::linear(weights_.lm_head, normed.data(), wanted, step.logits->data());
    step.cache->set_size(step.cache->size() + count);
    row += count;
  }
}

void Model::attention(const LayerWeights& layer, int64_t l, const Rows& rows, const float* x, float* out) const {
  const ModelConfig& c = weights_.config;
  const AttentionWeights& a = layer.attention;
  const int64_t n = rows.size(), heads = c.num_attention_heads;
  const int64_t qk = c.qk_head_dim(), nope = c.qk_nope_head_dim, rope_dim = c.qk_rope_head_dim;
  const int64_t latent = c.kv_lora_rank;
  const float eps = float(c.rms_norm_eps);

  std::vector<float> q(static_cast<size_t>(n * heads * qk));
  if (a.q_a) {
    std::vector<float> q_compressed(static_cast<size_t>(n * c.q_lora_rank));
    cpu::linear(*a.q_a, x, n, q_compressed.data());
    for (int64_t r = 0; r < n; ++r) {
      float* v = &q_compressed[size_t(r * c.q_lora_rank)];
      cpu::rms_norm(v, a.q_a_norm.data(), c.q_lora_rank, eps, v);
    }
    cpu::linear(a.q_b, q_compressed.data(), n, q.data());
  } else {
    cpu::linear(a.q_b, x, n, q.data());
  }
  std::vector<float> kv_a(static_cast<size_t>(n * (latent + rope_dim)));
  cpu::linear(a.kv_a, x, n, kv_a.data());

  // Cache the normalised latent and the rotated rope key; rotate each head's q_pe.
  for (int64_t r = 0; r < n; ++r) {
    const auto& [cache, position] = rows.rows[size_t(r)];
    const float* kv = &kv_a[size_t(r * (latent + rope_dim))];
    cpu::rms_norm(kv, a.kv_a_norm.data(), latent, eps, cache->latent(l, position));
    float* k_pe = cache->rope_key(l, position);
    std::copy(kv + latent, kv + latent + rope_dim, k_pe);
    rope_.apply(k_pe, position);
    for (int64_t hd = 0; hd < heads; ++hd) rope_.apply(&q[size_t((r * heads + hd) * qk + nope)], position);
  }

  std::vector<float> context(static_cast<size_t>(n * heads * c.v_head_dim));
  if (attention_form_ == AttentionForm::kAbsorbed) {
    attend_absorbed(a, l, rows, q.data(), context.data());
  } else {
    attend_naive(a, l, rows, q.data(), context.data());
  }
  cpu::linear(a.o, context.data(), n, out);
}

void Model::attend_naive(const AttentionWeights& a, int64_t l, const Rows& rows, const float* q,
                         float* context) const {
  const ModelConfig& c = weights_.config;
  const int64_t heads = c.num_attention_heads, qk = c.qk_head_dim(), nope = c.qk_nope_head_dim;
  const int64_t rope_dim = c.qk_rope_head_dim, v_dim = c.v_head_dim, latent = c.kv_lora_rank;
  const int64_t kv_width = heads * (nope + v_dim);
  const float scale = float(c.softmax_scale());

  // Expand k_nope and v of every cached position each row can see, once per sequence.
  for (int64_t begin = 0; begin < rows.size();) {
    KvCache* cache = rows.rows[size_t(begin)].cache;
    int64_t end = begin;
    while (end < rows.size() && rows.rows[size_t(end)].cache == cache) ++end;
    const int64_t visible = rows.rows[size_t(end - 1)].position + 1;
    std::vector<float> kv(static_cast<size_t>(visible * kv_width));
    cpu::linear(a.kv_b, cache->latent(l, 0), visible, kv.data());
    tbb::parallel_for(begin * heads, end * heads, [&](int64_t index) {
      const int64_t r = index / heads, hd = index % heads;
      const int64_t position = rows.rows[size_t(r)].position;
      const float* qh = q + (r * heads + hd) * qk;
      std::vector<float> scores(static_cast<size_t>(position + 1));
      for (int64_t u = 0; u <= position; ++u) {
        const float* kh = &kv[size_t(u * kv_width + hd * (nope + v_dim))];
        scores[size_t(u)] =
            scale * (cpu::dot(qh, kh, nope) + cpu::dot(qh + nope, cache->rope_key(l, u), rope_dim));
      }
      cpu::softmax(scores.data(), position + 1);
      float* out = context + (r * heads + hd) * v_dim;
      std::fill(out, out + v_dim, 0.0f);
      for (int64_t u = 0; u <= position; ++u)
        cpu::axpy(scores[size_t(u)], &kv[size_t(u * kv_width + hd * (nope + v_dim) + nope)], out, v_dim);
    });
    begin = end;
  }
  (void)latent;
}

// The absorbed form per (row block, head) (cpu/absorbed_attention.h). A prompt's rows of one
// sequence go in blocks of up to kAbsorbedRows (64: 4x fewer dequantisations of the head's W_UK
// and W_UV than 16, +5% on a 102-token DeepSeek-shaped INT4 prompt; the block's f32 buffers are
// in forward_activation_bytes). A decode step's single row reads kv_b in place. A token's output
// does not depend on the batch (Model.LongPrefillEqualsDecodingTokenByToken).
namespace {

constexpr int64_t kAbsorbedRows = kAbsorbedAttentionRows;

struct AbsorbedScratch {
  cpu::AbsorbedScratch buffers;
  int64_t positions[kAbsorbedRows];
};

}  // namespace

void Model::attend_absorbed(const AttentionWeights& a, int64_t l, const Rows& rows, const float* q,
                            float* context) const {
  const ModelConfig& c = weights_.config;
  const int64_t heads = c.num_attention_heads, qk = c.qk_head_dim(), v_dim = c.v_head_dim;
  // Consecutive rows of one sequence, at most kAbsorbedRows per block.
  std::vector<std::pair<int64_t, int64_t>> blocks;
  for (int64_t begin = 0; begin < rows.size();) {
    int64_t end = begin + 1;
    while (end < rows.size() && end - begin < kAbsorbedRows &&
           rows.rows[size_t(end)].cache == rows.rows[size_t(begin)].cache)
      ++end;
    blocks.emplace_back(begin, end);
    begin = end;
  }
  tbb::enumerable_thread_specific<AbsorbedScratch> scratch;
  const cpu::AbsorbedShape shape{.nope = c.qk_nope_head_dim, .rope = c.qk_rope_head_dim, .latent = c.kv_lora_rank,
                                 .v = v_dim, .scale = float(c.softmax_scale())};
  tbb::parallel_for(int64_t(0), int64_t(blocks.size()) * heads, [&](int64_t index) {
    const auto [r0, r1] = blocks[size_t(index / heads)];
    const int64_t hd = index % heads;
    AbsorbedScratch& s = scratch.local();
    for (int64_t r = r0; r < r1; ++r) s.positions[r - r0] = rows.rows[size_t(r)].position;
    const KvCache& cache = *rows.rows[size_t(r0)].cache;
    const cpu::AbsorbedHead task{.shape = shape, .kv_b = &a.kv_b, .head = hd, .latents = cache.latent(l, 0),
                                 .rope_keys = cache.rope_key(l, 0), .positions = s.positions, .rows = r1 - r0,
                                 .q = q + (r0 * heads + hd) * qk, .q_stride = heads * qk};
    cpu::absorbed_attention_head(task, context + (r0 * heads + hd) * v_dim, heads * v_dim, s.buffers,
                                 cpu::active_isa());
  });
}

bool Model::moe(const MoeWeights& moe, int64_t l, const float* x, const float* residual, int64_t tokens,
                float* out) const {
  const ModelConfig& c = weights_.config;
  const int64_t hidden = c.hidden_size, experts = c.n_routed_experts, k = c.num_experts_per_tok;

  // Route every token (router in FP32).
  std::vector<RoutedExpert> routes(static_cast<size_t>(tokens * k));
  tbb::parallel_for(int64_t(0), tokens, [&](int64_t t) {
    std::vector<float> logits(static_cast<size_t>(experts));
    for (int64_t e = 0; e < experts; ++e)
      logits[size_t(e)] = cpu::dot(&moe.router[size_t(e * hidden)], x + t * hidden, hidden);
    route_token(c, logits, moe.score_bias, std::span(routes).subspan(size_t(t * k), size_t(k)));
  });
  if (observer_ != nullptr) {
    std::vector<int32_t> chosen(routes.size());
    for (size_t i = 0; i < routes.size(); ++i) chosen[i] = routes[i].expert;
    observer_->on_route(l, chosen);
  }

  // Group tokens by expert and let the expert source run each expert once over its tokens;
  // every (token, slot) output is kept so the combine below runs in a fixed order.
  std::vector<std::vector<int64_t>> slots_of(static_cast<size_t>(experts));  // slot = t * k + r
  for (int64_t s = 0; s < tokens * k; ++s) slots_of[size_t(routes[size_t(s)].expert)].push_back(s);
  std::vector<float> gathered(static_cast<size_t>(tokens * k * hidden)), slot_out(gathered.size());
  std::vector<ExpertTask> tasks;
  int64_t filled = 0;  // rows of `gathered` used so far, in expert order
  for (int64_t e = 0; e < experts; ++e) {
    const auto& slots = slots_of[size_t(e)];
    if (slots.empty()) continue;
    for (size_t i = 0; i < slots.size(); ++i)
      std::copy_n(x + (slots[i] / k) * hidden, hidden, &gathered[size_t((filled + int64_t(i)) * hidden)]);
    tasks.push_back({int32_t(e), &gathered[size_t(filled * hidden)], int64_t(slots.size()),
                     &slot_out[size_t(filled * hidden)]});
    filled += int64_t(slots.size());
  }
  // Row of slot s inside slot_out: tasks are laid out expert by expert.
  std::vector<int64_t> row_of_slot(static_cast<size_t>(tokens * k)), task_of_slot(row_of_slot.size());
  filled = 0;
  for (int64_t e = 0, task = 0; e < experts; ++e) {
    for (int64_t s : slots_of[size_t(e)]) {
      row_of_slot[size_t(s)] = filled++;
      task_of_slot[size_t(s)] = task;
    }
    task += slots_of[size_t(e)].empty() ? 0 : 1;
  }

  LayerWork work;
  // The shared expert runs while the source's reads are in flight.
  work.alongside = [&] {
    if (moe.shared) {
      ffn_forward(*moe.shared, x, tokens, out);
    } else {
      std::fill(out, out + tokens * hidden, 0.0f);
    }
  };
  // Adds token t's weighted routed outputs to `row`, in route order; only the tasks marked in
  // `done` when it is given.
  auto add_routed = [&](int64_t t, float* row, const uint8_t* done) {
    for (int64_t r = 0; r < k; ++r) {
      const int64_t s = t * k + r;
      if (done == nullptr || done[size_t(task_of_slot[size_t(s)])])
        cpu::axpy(routes[size_t(s)].weight, &slot_out[size_t(row_of_slot[size_t(s)] * hidden)], row, hidden);
    }
  };
  const int64_t next = l + 1;
  bool predicted = false;
  if (predicts(weights_, *expert_source_, next)) {
    // The stream as it will leave this layer, from the shared expert and the routed outputs
    // written so far (it only chooses reads).
    work.drive_idle = [&](std::span<const uint8_t> done) {
      std::vector<float> partial(residual, residual + tokens * hidden);
      for (int64_t t = 0; t < tokens; ++t) {
        float* row = &partial[size_t(t * hidden)];
        for (int64_t i = 0; i < hidden; ++i) row[i] += out[t * hidden + i];
        add_routed(t, row, done.data());
      }
      expert_source_->prefetch(next, predict_next_layer(weights_, next, partial.data(), tokens));
      predicted = true;
    };
  }
  expert_source_->run(l, tasks, work);

  std::vector<float> routed(static_cast<size_t>(hidden));
  for (int64_t t = 0; t < tokens; ++t) {
    std::fill(routed.begin(), routed.end(), 0.0f);
    add_routed(t, routed.data(), nullptr);
    for (int64_t i = 0; i < hidden; ++i) out[t * hidden + i] += routed[size_t(i)];
  }
  return predicted;
}

}  // namespace hetmoe
