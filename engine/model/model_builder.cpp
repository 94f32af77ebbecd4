#include "engine/model/model_builder.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "engine/model/deepseek_v3.h"
#include "engine/model/safetensors.h"

namespace hetmoe {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kRowBlock = 128;                      // rows generated per step (non-FP8 tensors)
constexpr uint64_t kChunkBytesMin = uint64_t(8) << 20;  // bytes handed to the writer at a time
constexpr int kChunkCount = 3;                          // one being generated, up to two being written
constexpr float kFp8CodeSigma = 112.0f;                 // code units per sigma: max |z| ≈ 4 → 448
constexpr float kFp8Max = 448.0f;
constexpr double kRouterBiasTemperature = 0.08;  // τ in model_builder.h
constexpr float kNormMean = 1.0f, kNormSigma = 0.02f;
constexpr float kEmbeddingSigma = 1.0f;

// --- random numbers -------------------------------------------------------------------------

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t fnv1a64(std::string_view text) {
  uint64_t hash = 0xCBF29CE484222325ull;
  for (unsigned char ch : text) hash = (hash ^ ch) * 0x100000001B3ull;
  return hash;
}

// xoshiro256** (Blackman & Vigna): ~1 ns per 64 bits, far ahead of what the disk needs.
class Xoshiro256 {
 public:
  Xoshiro256(uint64_t seed, std::string_view key) {
    uint64_t state = seed ^ fnv1a64(key);
    for (uint64_t& word : s_) word = splitmix64(state);
  }
  uint64_t next() {
    const uint64_t result = std::rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = std::rotl(s_[3], 45);
    return result;
  }
  // Uniform in [0, 1) with 24 bits.
  float uniform() { return float(next() >> 40) * 0x1p-24f; }
  // Uniform in [0, bound); the modulo bias is below 2^-40 for the bounds used here.
  uint64_t below(uint64_t bound) { return next() % bound; }

 private:
  std::array<uint64_t, 4> s_{};
};

// Acklam's rational approximation of the standard normal quantile (relative error < 1.2e-9).
double inverse_normal_cdf(double p) {
  static constexpr double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,  -2.759285104469687e+02,
                                 1.383577518672690e+02,  -3.066479806614716e+01, 2.506628277459239e+00};
  static constexpr double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                                 6.680131188771011e+01, -1.328068155288572e+01};
  static constexpr double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                                 -2.549732539343734e+00, 4.374664141464968e+00,  2.938163982698783e+00};
  static constexpr double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                                 3.754408661907416e+00};
  auto tail = [&](double q) {
    return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
           ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
  };
  constexpr double kLow = 0.02425;
  if (p < kLow) return tail(std::sqrt(-2.0 * std::log(p)));
  if (p > 1.0 - kLow) return -tail(std::sqrt(-2.0 * std::log(1.0 - p)));
  const double q = p - 0.5, r = q * q;
  return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
         (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0);
}

// Lookup tables indexed by 16 random bits: one normal draw costs a shift and a load.
class DrawTables {
 public:
  static constexpr size_t kSize = 1 << 16;

  DrawTables() : unit_normal_(kSize), fp8_codes_(kSize) {
    for (size_t i = 0; i < kSize; ++i) {
      unit_normal_[i] = float(inverse_normal_cdf((double(i) + 0.5) / double(kSize)));
      fp8_codes_[i] = fp8_e4m3_from_float(kFp8CodeSigma * unit_normal_[i]);  // saturates at 448
    }
  }
  const uint8_t* fp8_codes() const { return fp8_codes_.data(); }
  const float* unit_normal() const { return unit_normal_.data(); }
  // BF16 bits of mean + sigma·z (cached: all experts of a model share a few sigmas).
  const uint16_t* bf16(float mean, float sigma) {
    auto [it, inserted] = bf16_.try_emplace({mean, sigma});
    if (inserted) {
      it->second.resize(kSize);
      for (size_t i = 0; i < kSize; ++i) it->second[i] = bf16_from_float(mean + sigma * unit_normal_[i]);
    }
    return it->second.data();
  }

 private:
  std::vector<float> unit_normal_;
  std::vector<uint8_t> fp8_codes_;
  std::map<std::pair<float, float>, std::vector<uint16_t>> bf16_;
};

template <typename T>
void fill_from_table(const T* table, T* out, int64_t count, Xoshiro256& rng) {
  int64_t i = 0;
  for (; i + 4 <= count; i += 4) {
    const uint64_t bits = rng.next();
    out[i] = table[bits & 0xFFFF];
    out[i + 1] = table[(bits >> 16) & 0xFFFF];
    out[i + 2] = table[(bits >> 32) & 0xFFFF];
    out[i + 3] = table[bits >> 48];
  }
  if (i < count) {
    uint64_t bits = rng.next();
    for (; i < count; ++i, bits >>= 16) out[i] = table[bits & 0xFFFF];
  }
}

// --- per-tensor value streams ----------------------------------------------------------------

struct GenerationContext {
  const ModelConfig& config;
  const RandomCheckpointOptions& options;
  DrawTables& tables;
};

// Produces one tensor's bytes row-block by row-block, in order.
class TensorStream {
 public:
  // `scaled_weight` is the FP8 weight a kScale tensor belongs to (nullptr otherwise).
  TensorStream(const TensorSpec& spec, const TensorSpec* scaled_weight, GenerationContext& context)
      : spec_(spec), rng_(context.options.seed, spec.name), context_(context) {
    rows_ = spec.shape.rank == 2 ? spec.shape[0] : 1;
    cols_ = spec.shape.rank == 2 ? spec.shape[1] : spec.shape[0];
    row_bytes_ = int64_t(dtype_bytes(spec.dtype, uint64_t(cols_)).value());
    block_rows_ = kRowBlock;
    switch (spec.role) {
      case TensorRole::kLinear:
        sigma_ = 1.0f / std::sqrt(float(cols_));
        if (spec.dtype == DType::kF8E4M3) block_rows_ = context.config.quantization.block_rows;
        break;
      case TensorRole::kScale:
        check(scaled_weight != nullptr, "internal: scale tensor without its weight: " + spec.name);
        sigma_ = 1.0f / std::sqrt(float(scaled_weight->shape[1]));
        break;
      case TensorRole::kEmbedding:
        sigma_ = kEmbeddingSigma;
        break;
      case TensorRole::kNorm:
        sigma_ = kNormSigma;
        break;
      case TensorRole::kRouterBias:
        plant_router_bias();
        break;
    }
  }

  int64_t rows() const { return rows_; }
  int64_t row_bytes() const { return row_bytes_; }
  int64_t block_rows() const { return block_rows_; }

  // Rows [row_begin, row_begin + count), count <= block_rows(), called in order.
  void fill(int64_t row_begin, int64_t count, uint8_t* out) {
    const int64_t n = count * cols_;
    switch (spec_.role) {
      case TensorRole::kLinear:
        if (spec_.dtype == DType::kF8E4M3) {
          fill_fp8(count, out);
        } else {
          fill_from_table(context_.tables.bf16(0.0f, sigma_), reinterpret_cast<uint16_t*>(out), n, rng_);
        }
        return;
      case TensorRole::kEmbedding:
        fill_from_table(context_.tables.bf16(0.0f, sigma_), reinterpret_cast<uint16_t*>(out), n, rng_);
        return;
      case TensorRole::kNorm:
        fill_from_table(context_.tables.bf16(kNormMean, sigma_), reinterpret_cast<uint16_t*>(out), n, rng_);
        return;
      case TensorRole::kScale: {
        // Dequantised weights are code·scale with code ~ 112·z, so their std is sigma·U[0.5, 1.5).
        const float base = sigma_ / kFp8CodeSigma;
        for (int64_t i = 0; i < n; ++i) {
          const float scale = base * (0.5f + rng_.uniform());
          std::memcpy(out + 4 * i, &scale, 4);
        }
        return;
      }
      case TensorRole::kRouterBias:
        std::memcpy(out, router_bias_.data() + row_begin * cols_, size_t(n) * 4);
        return;
    }
  }

 private:
  // Codes drawn directly as RNE(112·z); one planted ±448 per block makes scale = amax/448.
  void fill_fp8(int64_t count, uint8_t* out) {
    fill_from_table(context_.tables.fp8_codes(), out, count * cols_, rng_);
    const int64_t block_cols = context_.config.quantization.block_cols;
    for (int64_t col = 0; col < cols_; col += block_cols) {
      const int64_t width = std::min(block_cols, cols_ - col);
      const int64_t r = int64_t(rng_.below(uint64_t(count)));
      const int64_t c = int64_t(rng_.below(uint64_t(width)));
      out[r * cols_ + col + c] = (rng_.next() >> 63) ? 0xFE : 0x7E;  // -448 : +448
    }
  }

  void plant_router_bias() {
    router_bias_.assign(size_t(cols_), 0.0f);
    if (context_.options.zipf_alpha <= 0.0) return;
    // A random permutation: expert perm[i] gets rank i + 1.
    std::vector<int64_t> perm(static_cast<size_t>(cols_));
    std::iota(perm.begin(), perm.end(), 0);
    for (int64_t i = cols_ - 1; i > 0; --i) std::swap(perm[size_t(i)], perm[rng_.below(uint64_t(i + 1))]);
    std::vector<int64_t> rank(static_cast<size_t>(cols_));
    for (int64_t i = 0; i < cols_; ++i) rank[size_t(perm[size_t(i)])] = i + 1;
    router_bias_ = zipf_router_bias(rank, context_.options.zipf_alpha);
  }

  const TensorSpec& spec_;
  Xoshiro256 rng_;
  GenerationContext& context_;
  int64_t rows_ = 0, cols_ = 0, row_bytes_ = 0, block_rows_ = kRowBlock;
  float sigma_ = 0.0f;
  std::vector<float> router_bias_;
};

// --- shards and the writer thread -----------------------------------------------------------

struct Shard {
  size_t begin = 0, end = 0;  // tensor range in inventory order
  uint64_t data_bytes = 0;
  std::string file_name;
};

std::vector<Shard> plan_shards(const std::vector<TensorSpec>& tensors, uint64_t max_shard_bytes) {
  std::vector<Shard> shards;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const uint64_t bytes = tensors[i].nbytes();
    if (shards.empty() || (max_shard_bytes > 0 && shards.back().data_bytes > 0 &&
                           shards.back().data_bytes + bytes > max_shard_bytes))
      shards.push_back(Shard{.begin = i, .end = i});
    shards.back().end = i + 1;
    shards.back().data_bytes += bytes;
  }
  if (shards.size() == 1) {
    shards[0].file_name = "model.safetensors";
  } else {
    for (size_t s = 0; s < shards.size(); ++s)
      shards[s].file_name = fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, shards.size());
  }
  return shards;
}

void fsync_path(const fs::path& path, bool directory) {
  const int fd = ::open(path.c_str(), (directory ? O_DIRECTORY : 0) | O_RDONLY | O_CLOEXEC);
  check(fd >= 0, fmt::format("cannot open for fsync: {}", std::strerror(errno)), {.path = path.string()});
  const int rc = ::fsync(fd);
  const int saved = errno;
  ::close(fd);
  check(rc == 0, fmt::format("fsync failed: {}", std::strerror(saved)),
        {.path = path.string(), .hint = "check free space and the disk's health"});
}

// Hands filled chunks to SafetensorsWriter on its own thread, so generation and disk writes
// overlap. The caller owns nothing between acquire() and submit(); a write error stops the
// thread and is rethrown to the generating thread at its next acquire() or at finish().
class ChunkWriter {
 public:
  struct Chunk {
    std::vector<uint8_t> bytes;
    uint64_t size = 0;
    size_t shard = 0;
  };

  ChunkWriter(const std::vector<TensorSpec>& tensors, const std::vector<Shard>& shards, fs::path directory,
              std::map<std::string, std::string> metadata, uint64_t chunk_bytes)
      : tensors_(tensors),
        shards_(shards),
        directory_(std::move(directory)),
        metadata_(std::move(metadata)),
        chunks_(kChunkCount) {
    for (Chunk& chunk : chunks_) {
      chunk.bytes.resize(chunk_bytes);
      free_.push_back(&chunk);
    }
    thread_ = std::thread([this] { run(); });
  }

  ~ChunkWriter() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    ready_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  Chunk& acquire(size_t shard) {
    std::unique_lock lock(mutex_);
    ready_.wait(lock, [&] { return !free_.empty() || error_; });
    if (error_) std::rethrow_exception(error_);
    Chunk* chunk = free_.front();
    free_.pop_front();
    chunk->size = 0;
    chunk->shard = shard;
    return *chunk;
  }

  void submit(Chunk& chunk) {
    {
      std::lock_guard lock(mutex_);
      full_.push_back(&chunk);
    }
    ready_.notify_all();
  }

  // Waits until everything is written, finishes and fsyncs the last file.
  void finish() {
    {
      std::lock_guard lock(mutex_);
      done_ = true;
    }
    ready_.notify_all();
    thread_.join();
    if (error_) std::rethrow_exception(error_);
  }

  uint64_t file_bytes() const { return file_bytes_; }

 private:
  void run() {
    std::unique_ptr<SafetensorsWriter> writer;
    size_t shard = SIZE_MAX;
    try {
      for (;;) {
        Chunk* chunk = nullptr;
        {
          std::unique_lock lock(mutex_);
          ready_.wait(lock, [&] { return !full_.empty() || done_ || stop_; });
          if (stop_ || full_.empty()) break;
          chunk = full_.front();
          full_.pop_front();
        }
        if (chunk->shard != shard) {
          if (writer) close_shard(*writer, shard);
          shard = chunk->shard;
          writer = open_shard(shard);
        }
        writer->write(chunk->bytes.data(), chunk->size);
        {
          std::lock_guard lock(mutex_);
          free_.push_back(chunk);
        }
        ready_.notify_all();
      }
      bool clean_end = false;
      {
        std::lock_guard lock(mutex_);
        clean_end = done_ && !stop_;
      }
      if (writer && clean_end) close_shard(*writer, shard);
    } catch (...) {
      std::lock_guard lock(mutex_);
      error_ = std::current_exception();
    }
    ready_.notify_all();
  }

  std::unique_ptr<SafetensorsWriter> open_shard(size_t index) {
    const Shard& shard = shards_[index];
    auto writer = std::make_unique<SafetensorsWriter>(directory_ / shard.file_name, metadata_);
    for (size_t i = shard.begin; i < shard.end; ++i)
      writer->declare(tensors_[i].name, tensors_[i].dtype, tensors_[i].shape);
    return writer;
  }

  // finish() fdatasyncs the file and renames it into place.
  void close_shard(SafetensorsWriter& writer, size_t /*index*/) {
    writer.finish();
    file_bytes_ += writer.total_bytes();
  }

  const std::vector<TensorSpec>& tensors_;
  const std::vector<Shard>& shards_;
  const fs::path directory_;
  const std::map<std::string, std::string> metadata_;
  std::vector<Chunk> chunks_;
  std::deque<Chunk*> free_, full_;
  std::mutex mutex_;
  std::condition_variable ready_;
  bool done_ = false, stop_ = false;
  std::exception_ptr error_;
  uint64_t file_bytes_ = 0;
  std::thread thread_;
};

void write_text_file(const fs::path& path, const std::string& text) {
  {
    std::ofstream file(path, std::ios::binary | std::ios::trunc);
    check(bool(file), "cannot create file", {.path = path.string()});
    file << text;
    file.flush();
    check(bool(file), "cannot write file", {.path = path.string(), .hint = "check free space"});
  }
  fsync_path(path, false);
}

bool is_nonempty_directory(const fs::path& path) {
  return fs::is_directory(path) && fs::directory_iterator(path) != fs::directory_iterator();
}

// Removes the temporary directory unless release() was called.
class TempDirectory {
 public:
  explicit TempDirectory(fs::path path) : path_(std::move(path)) {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
    fs::create_directories(path_);
  }
  ~TempDirectory() {
    std::error_code ignored;
    if (!released_) fs::remove_all(path_, ignored);
  }
  const fs::path& path() const { return path_; }
  void release() { released_ = true; }

 private:
  fs::path path_;
  bool released_ = false;
};

void write_tensors(const ModelConfig& config, const RandomCheckpointOptions& options,
                   const std::vector<TensorSpec>& tensors, const std::vector<Shard>& shards,
                   const fs::path& directory, RandomCheckpointSummary& summary) {
  DrawTables tables;
  GenerationContext context{config, options, tables};
  // A chunk must hold the biggest row-block.
  uint64_t chunk_bytes = kChunkBytesMin;
  for (const TensorSpec& spec : tensors) {
    const int64_t cols = spec.shape[spec.shape.rank - 1];
    const int64_t block = spec.dtype == DType::kF8E4M3 ? config.quantization.block_rows : kRowBlock;
    chunk_bytes = std::max(chunk_bytes, uint64_t(block) * dtype_bytes(spec.dtype, cols).value());
  }
  const std::map<std::string, std::string> metadata = {
      {"format", "pt"},
      {"generator", fmt::format("hetmoe make-model seed={} zipf={}", options.seed, options.zipf_alpha)}};
  ChunkWriter writer(tensors, shards, directory, metadata, chunk_bytes);
  for (size_t s = 0; s < shards.size(); ++s) {
    ChunkWriter::Chunk* chunk = &writer.acquire(s);
    for (size_t i = shards[s].begin; i < shards[s].end; ++i) {
      const TensorSpec& spec = tensors[i];
      const TensorSpec* weight = spec.role == TensorRole::kScale ? &tensors[i - 1] : nullptr;
      check(!weight || weight->name + "_scale_inv" == spec.name,
            "internal: scale tensor does not follow its weight: " + spec.name);
      TensorStream stream(spec, weight, context);
      for (int64_t row = 0; row < stream.rows(); row += stream.block_rows()) {
        const int64_t count = std::min(stream.block_rows(), stream.rows() - row);
        const uint64_t bytes = uint64_t(count * stream.row_bytes());
        if (chunk->size + bytes > chunk->bytes.size()) {
          writer.submit(*chunk);
          chunk = &writer.acquire(s);
        }
        stream.fill(row, count, chunk->bytes.data() + chunk->size);
        chunk->size += bytes;
      }
    }
    writer.submit(*chunk);
  }
  writer.finish();
  summary.file_bytes = writer.file_bytes();
}

// --- presets ----------------------------------------------------------------------------------

ModelConfig deepseek_v3_dimensions() {
  ModelConfig c;
  c.architecture = Architecture::kDeepseekV3;
  c.model_type = "deepseek_v3";
  c.vocab_size = 129280;
  c.hidden_size = 7168;
  c.intermediate_size = 18432;
  c.moe_intermediate_size = 2048;
  c.num_hidden_layers = 61;
  c.num_attention_heads = 128;
  c.num_key_value_heads = 128;
  c.n_routed_experts = 256;
  c.n_shared_experts = 1;
  c.num_experts_per_tok = 8;
  c.n_group = 8;
  c.topk_group = 4;
  c.routed_scaling_factor = 2.5;
  c.scoring_func = ScoringFunc::kSigmoid;
  c.topk_method = TopkMethod::kNoauxTc;
  c.norm_topk_prob = true;
  c.first_k_dense_replace = 3;
  c.moe_layer_freq = 1;
  c.q_lora_rank = 1536;
  c.kv_lora_rank = 512;
  c.qk_nope_head_dim = 128;
  c.qk_rope_head_dim = 64;
  c.v_head_dim = 128;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 10000.0;
  c.max_position_embeddings = 163840;
  c.rope_scaling = RopeScaling{.type = "yarn",
                               .factor = 40.0,
                               .original_max_position_embeddings = 4096,
                               .beta_fast = 32.0,
                               .beta_slow = 1.0,
                               .mscale = 1.0,
                               .mscale_all_dim = 1.0};
  c.bos_token_id = 0;
  c.eos_token_id = 1;
  c.num_nextn_predict_layers = 1;
  c.quantization = FP8Quantization{.present = true, .fmt = "e4m3", .block_rows = 128, .block_cols = 128};
  return c;
}

ModelConfig deepseek_v2_lite_dimensions() {
  ModelConfig c = deepseek_v3_dimensions();
  c.architecture = Architecture::kDeepseekV2;
  c.model_type = "deepseek_v2";
  c.vocab_size = 102400;
  c.hidden_size = 2048;
  c.intermediate_size = 10944;
  c.moe_intermediate_size = 1408;
  c.num_hidden_layers = 27;
  c.num_attention_heads = 16;
  c.num_key_value_heads = 16;
  c.n_routed_experts = 64;
  c.n_shared_experts = 2;
  c.num_experts_per_tok = 6;
  c.n_group = 1;
  c.topk_group = 1;
  c.routed_scaling_factor = 1.0;
  c.scoring_func = ScoringFunc::kSoftmax;
  c.topk_method = TopkMethod::kGreedy;
  c.norm_topk_prob = false;
  c.first_k_dense_replace = 1;
  c.q_lora_rank = 0;
  c.rope_scaling.mscale = 0.707;
  c.rope_scaling.mscale_all_dim = 0.707;
  c.bos_token_id = 100000;
  c.eos_token_id = 100001;
  c.num_nextn_predict_layers = 0;
  c.quantization = FP8Quantization{};
  return c;
}

// Small enough for unit tests (≈4 MB) yet every code path of the real model: q_lora, FP8 with
// partial edge blocks (q_a/q_b 192 = 1.5 blocks, kv_a 144 rows, dense FFN 704 = 5.5 blocks),
// group-limited noaux_tc routing, a shared expert.
ModelConfig tiny_dimensions() {
  ModelConfig c = deepseek_v3_dimensions();
  c.vocab_size = 1024;
  c.hidden_size = 256;
  c.intermediate_size = 704;
  c.moe_intermediate_size = 128;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 4;
  c.n_routed_experts = 16;
  c.n_shared_experts = 1;
  c.num_experts_per_tok = 4;
  c.n_group = 4;
  c.topk_group = 2;
  c.first_k_dense_replace = 1;
  c.q_lora_rank = 192;
  c.kv_lora_rank = 128;
  c.qk_nope_head_dim = 32;
  c.qk_rope_head_dim = 16;
  c.v_head_dim = 32;
  c.num_nextn_predict_layers = 0;
  return c;
}

constexpr std::array<std::string_view, 3> kPresetNames = {"tiny", "ds3-layers", "v2-lite"};

}  // namespace

std::span<const std::string_view> preset_names() {
  return kPresetNames;
}

std::vector<float> zipf_router_bias(std::span<const int64_t> rank_of_expert, double alpha) {
  const size_t experts = rank_of_expert.size();
  double mean_log_rank = 0.0;
  for (size_t r = 1; r <= experts; ++r) mean_log_rank += std::log(double(r));
  mean_log_rank /= double(std::max<size_t>(experts, 1));
  std::vector<float> bias(experts);
  for (size_t e = 0; e < experts; ++e)
    bias[e] = float(alpha * kRouterBiasTemperature * (mean_log_rank - std::log(double(rank_of_expert[e]))));
  return bias;
}

std::optional<uint64_t> parse_byte_size(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
  size_t digits = 0;
  while (digits < text.size() &&
         (std::isdigit(static_cast<unsigned char>(text[digits])) || text[digits] == '.'))
    ++digits;
  if (digits == 0) return std::nullopt;
  double number = 0.0;
  try {
    size_t used = 0;
    number = std::stod(std::string(text.substr(0, digits)), &used);
    if (used != digits) return std::nullopt;
  } catch (const std::exception&) {
    return std::nullopt;
  }
  std::string unit;
  for (char ch : text.substr(digits))
    if (!std::isspace(static_cast<unsigned char>(ch)))
      unit += char(std::toupper(static_cast<unsigned char>(ch)));
  static const std::map<std::string, double> kUnits = {
      {"", 1.0},    {"B", 1.0},      {"KB", 1e3},        {"MB", 1e6},           {"GB", 1e9},
      {"TB", 1e12}, {"KIB", 1024.0}, {"MIB", 1048576.0}, {"GIB", 1073741824.0}, {"TIB", 1099511627776.0}};
  const auto it = kUnits.find(unit);
  if (it == kUnits.end()) return std::nullopt;
  const double bytes = std::floor(number * it->second);
  if (!(bytes >= 1.0) || bytes > 1.8e19) return std::nullopt;
  return uint64_t(bytes);
}

void apply_overrides(ModelConfig& config, const ModelOverrides& overrides) {
  const Error::Context context{.hint = "choose another value"};
  if (overrides.layers) {
    check(*overrides.layers >= 1 && *overrides.layers <= 4096,
          fmt::format("--layers must be in 1..4096, got {}", *overrides.layers), context);
    if (*overrides.layers != config.num_hidden_layers) config.num_nextn_predict_layers = 0;
    config.num_hidden_layers = *overrides.layers;
  }
  if (overrides.vocab) {
    check(*overrides.vocab >= 2 && *overrides.vocab <= (int64_t(1) << 24),
          fmt::format("--vocab must be in 2..16777216, got {}", *overrides.vocab), context);
    config.vocab_size = *overrides.vocab;
    // Keep the special tokens inside a shrunken vocabulary.
    if (config.bos_token_id >= config.vocab_size || config.eos_token_id >= config.vocab_size) {
      config.bos_token_id = 0;
      config.eos_token_id = 1;
    }
  }
  if (overrides.experts) {
    const int64_t experts = *overrides.experts;
    check(experts >= 1 && experts <= 65536, fmt::format("--experts must be in 1..65536, got {}", experts),
          context);
    check(experts % config.n_group == 0,
          fmt::format("--experts {} is not a multiple of n_group {}", experts, config.n_group), context);
    check(
        experts >= config.num_experts_per_tok,
        fmt::format("--experts {} is fewer than num_experts_per_tok {}", experts, config.num_experts_per_tok),
        context);
    config.n_routed_experts = experts;
  }
  model_tensors(config);  // validates the result
}

ModelConfig preset_model_config(std::string_view preset, const ModelOverrides& overrides) {
  ModelConfig config;
  int64_t default_layers = 4;
  if (preset == "tiny") {
    config = tiny_dimensions();
    default_layers = 3;
  } else if (preset == "ds3-layers") {
    config = deepseek_v3_dimensions();
    config.vocab_size = 2048;
  } else if (preset == "v2-lite") {
    config = deepseek_v2_lite_dimensions();
    config.vocab_size = 2048;
    config.bos_token_id = 0;
    config.eos_token_id = 1;
  } else {
    throw Error(fmt::format("unknown preset '{}'", preset),
                {.hint = "use one of: tiny, ds3-layers, v2-lite (or --config FILE)"});
  }
  const int64_t layers = overrides.layers.value_or(default_layers);
  config.num_hidden_layers = layers;
  config.num_nextn_predict_layers = 0;
  config.first_k_dense_replace = layers > 1 ? 1 : 0;  // one dense layer first, the rest MoE
  ModelOverrides rest = overrides;
  rest.layers.reset();
  apply_overrides(config, rest);
  return config;
}

RandomCheckpointSummary write_random_checkpoint(const ModelConfig& input_config, const fs::path& directory,
                                                const RandomCheckpointOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  ModelConfig config = input_config;
  config.num_nextn_predict_layers = 0;  // no MTP tensors are written
  const std::vector<TensorSpec> tensors = model_tensors(config);

  check(std::isfinite(options.zipf_alpha) && options.zipf_alpha >= 0.0,
        fmt::format("--zipf must be >= 0, got {}", options.zipf_alpha));
  if (options.zipf_alpha > 0.0) {
    check(config.topk_method == TopkMethod::kNoauxTc && config.n_routed_experts > 0,
          "--zipf plants skew through e_score_correction_bias, which only noaux_tc (V3) routers "
          "have",
          {.hint = "drop --zipf for this config, or use a V3-style config (ds3-layers, tiny)"});
  }

  fs::path target = fs::absolute(directory).lexically_normal();
  if (!target.has_filename()) target = target.parent_path();
  check(!fs::exists(target) || fs::is_directory(target), "output path exists and is not a directory",
        {.path = target.string()});
  check(options.force || !is_nonempty_directory(target), "output directory exists and is not empty",
        {.path = target.string(), .hint = "choose another directory or pass --force to replace it"});
  fs::create_directories(target.parent_path());

  // Fail now rather than after writing most of a model that cannot fit.
  uint64_t model_bytes = 0;
  for (const TensorSpec& spec : tensors) model_bytes += spec.nbytes();
  const uint64_t free_bytes = fs::space(target.parent_path()).available;
  check(model_bytes <= free_bytes,
        fmt::format("the checkpoint needs {:.2f} GB but only {:.2f} GB are free", double(model_bytes) / 1e9,
                    double(free_bytes) / 1e9),
        {.path = target.parent_path().string(),
         .hint = "free space, write elsewhere, or shrink the model (--layers, --experts, --vocab)"});

  TempDirectory temp(target.parent_path() /
                     fmt::format(".{}.tmp-{}", target.filename().string(), ::getpid()));
  const std::vector<Shard> shards = plan_shards(tensors, options.max_shard_bytes);

  RandomCheckpointSummary summary;
  summary.tensor_count = tensors.size();
  summary.shard_count = int64_t(shards.size());
  for (const Shard& shard : shards) summary.data_bytes += shard.data_bytes;

  write_tensors(config, options, tensors, shards, temp.path(), summary);

  if (shards.size() > 1) {
    nlohmann::json index;
    index["metadata"] = {{"total_size", summary.data_bytes}};
    nlohmann::json& weight_map = index["weight_map"];
    for (const Shard& shard : shards)
      for (size_t i = shard.begin; i < shard.end; ++i) weight_map[tensors[i].name] = shard.file_name;
    write_text_file(temp.path() / "model.safetensors.index.json", index.dump(2) + "\n");
  }
  write_text_file(temp.path() / "config.json", model_config_to_json(config).dump(2) + "\n");
  const nlohmann::json generation = {{"_from_model_config", true},
                                     {"bos_token_id", config.bos_token_id},
                                     {"eos_token_id", config.eos_token_id},
                                     {"do_sample", true},
                                     {"temperature", 0.6},
                                     {"top_p", 0.95}};
  write_text_file(temp.path() / "generation_config.json", generation.dump(2) + "\n");
  fsync_path(temp.path(), true);

  // Swap the finished directory in; an old one (empty, or with --force) goes only after.
  fs::path old;
  if (fs::exists(target)) {
    old = target.parent_path() / fmt::format(".{}.old-{}", target.filename().string(), ::getpid());
    fs::rename(target, old);
  }
  fs::rename(temp.path(), target);
  temp.release();
  if (!old.empty()) fs::remove_all(old);
  fsync_path(target.parent_path(), true);

  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return summary;
}

}  // namespace hetmoe
