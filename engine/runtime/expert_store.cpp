#include "engine/runtime/expert_store.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#include <tbb/parallel_for.h>
#include <nlohmann/json.hpp>

#include "engine/core/dtype.h"
#include "engine/core/error.h"
#include "io/aligned_buffer.h"

namespace hetmoe {
namespace {

constexpr uint64_t kPartAlignment = 64;  // a cache line: vector loads of a part never straddle two

enum PartRole : uint32_t { kGate = 0, kUp = 1, kDown = 2 };
enum PartKind : uint32_t { kWeight = 0, kScale = 1 };

const cpu::WeightMatrix& matrix_of(const FfnWeights& w, uint32_t role) {
  return role == kGate ? w.gate : role == kUp ? w.up : w.down;
}

std::string version_string() {
  return "hetmoe 0.1.0";
}

}  // namespace

bool is_packed_format(io::RecordFormat format) {
  return format != io::RecordFormat::kRef;
}

cpu::PackedFormat packed_format_of(io::RecordFormat format) {
  switch (format) {
    case io::RecordFormat::kInt8:
      return cpu::PackedFormat::kINT8;
    case io::RecordFormat::kInt4:
      return cpu::PackedFormat::kINT4;
    case io::RecordFormat::kBF16:
      return cpu::PackedFormat::kBF16;
    default:
      return cpu::PackedFormat::kFP8;
  }
}

ExpertRecordLayout expert_record_layout(io::RecordFormat format, const FfnWeights& sample) {
  ExpertRecordLayout layout{.format = format};
  uint64_t offset = 0;
  if (is_packed_format(format)) {
    const cpu::PackedFormat packed = packed_format_of(format);
    for (uint32_t role : {kGate, kUp, kDown}) {
      const cpu::WeightMatrix& m = matrix_of(sample, role);
      const cpu::PackedLayout l = cpu::packed_layout(packed, m.rows, m.cols);
      layout.parts.push_back({.role = role,
                              .kind = kWeight,
                              .dtype = uint32_t(packed),
                              .rows = m.rows,
                              .cols = m.cols,
                              .offset = offset,
                              .bytes = l.bytes()});
      offset = io::round_up(offset + l.bytes(), kPartAlignment);
    }
  } else {
    const cpu::WeightFormat shipped = sample.gate.format;
    check(shipped == cpu::WeightFormat::kFP8Block || shipped == cpu::WeightFormat::kBF16,
          "the checkpoint's experts are neither FP8 nor BF16: nothing to store as shipped",
          {.hint = "pack with --format fp8, int8, int4 or bf16"});
    for (uint32_t role : {kGate, kUp, kDown}) {
      const cpu::WeightMatrix& m = matrix_of(sample, role);
      check(m.format == shipped, "the expert's gate, up and down differ in format");
      const bool bf16 = shipped == cpu::WeightFormat::kBF16;
      const uint64_t weight_bytes = uint64_t(m.rows) * uint64_t(m.cols) * (bf16 ? 2 : 1);
      layout.parts.push_back({.role = role,
                              .kind = kWeight,
                              .dtype = uint32_t(bf16 ? DType::kBF16 : DType::kF8E4M3),
                              .rows = m.rows,
                              .cols = m.cols,
                              .offset = offset,
                              .bytes = weight_bytes});
      offset = io::round_up(offset + weight_bytes, kPartAlignment);
      if (!bf16) {
        const int64_t rows = (m.rows + m.block - 1) / m.block, cols = (m.cols + m.block - 1) / m.block;
        const uint64_t scale_bytes = uint64_t(rows * cols) * sizeof(float);
        layout.parts.push_back({.role = role,
                                .kind = kScale,
                                .dtype = uint32_t(DType::kF32),
                                .rows = rows,
                                .cols = cols,
                                .offset = offset,
                                .bytes = scale_bytes});
        offset = io::round_up(offset + scale_bytes, kPartAlignment);
      }
    }
  }
  layout.record_bytes = io::round_up(offset, io::kRecordAlignment);
  return layout;
}

void fill_expert_record(const ExpertRecordLayout& layout, const FfnWeights& w, uint8_t* record) {
  std::memset(record, 0, layout.record_bytes);  // padding is part of the checksum: keep it zero
  if (is_packed_format(layout.format)) {
    // Repacking (INT4/INT8 requantise) is the CPU-heavy part of a pack: the three matrices in parallel.
    const cpu::PackedFormat packed = packed_format_of(layout.format);
    tbb::parallel_for(size_t(0), layout.parts.size(), [&](size_t i) {
      const io::RecordPart& part = layout.parts[i];
      cpu::pack_matrix(matrix_of(w, part.role), packed, record + part.offset);
    });
    return;
  }
  for (const io::RecordPart& part : layout.parts) {
    const cpu::WeightMatrix& m = matrix_of(w, part.role);
    const void* from = part.kind == kWeight ? m.data : static_cast<const void*>(m.scale_inv);
    std::memcpy(record + part.offset, from, part.bytes);
  }
}

FfnWeights bind_shipped_record(const ModelConfig& config, std::span<const io::RecordPart> parts,
                               const uint8_t* record) {
  FfnWeights w;
  for (const io::RecordPart& part : parts) {
    check(part.role <= kDown, "unknown record part role " + std::to_string(part.role));
    cpu::WeightMatrix& m = part.role == kGate ? w.gate : part.role == kUp ? w.up : w.down;
    if (part.kind == kWeight) {
      m.data = record + part.offset;
      m.rows = part.rows;
      m.cols = part.cols;
      m.format =
          part.dtype == uint32_t(DType::kBF16) ? cpu::WeightFormat::kBF16 : cpu::WeightFormat::kFP8Block;
      m.block = config.quantization.block_rows;
    } else {
      m.scale_inv = reinterpret_cast<const float*>(record + part.offset);
    }
  }
  return w;
}

cpu::PackedFfn bind_packed_record(io::RecordFormat format, std::span<const io::RecordPart> parts,
                                  const uint8_t* record) {
  cpu::PackedFfn ffn;
  const cpu::PackedFormat packed = packed_format_of(format);
  for (const io::RecordPart& part : parts) {
    check(part.role <= kDown, "unknown record part role " + std::to_string(part.role));
    cpu::PackedMatrix& m = part.role == kGate ? ffn.gate : part.role == kUp ? ffn.up : ffn.down;
    m = {.layout = cpu::packed_layout(packed, part.rows, part.cols), .data = record + part.offset};
  }
  return ffn;
}

io::StoreSource identify_model(const ModelWeights& weights, const std::filesystem::path& model_dir) {
  io::StoreSource source;
  const std::string canonical = model_config_to_json(weights.config).dump();
  source.config_hash = io::checksum(canonical.data(), canonical.size());
  if (!model_dir.empty())
    source.model_path = std::filesystem::absolute(model_dir).lexically_normal().string();
  uint64_t fingerprint = 0;
  for (const LayerWeights& layer : weights.layers) {
    if (!layer.is_moe || layer.moe.experts.empty()) continue;
    const auto& router = layer.moe.router;
    fingerprint = io::checksum(router.data(), router.size() * sizeof(float));
    const cpu::WeightMatrix& gate = layer.moe.experts[0].gate;
    fingerprint ^= io::checksum(gate.data, std::min<uint64_t>(gate.bytes(), 65536)) * 0x9E3779B97F4A7C15ull;
    break;
  }
  source.weights_fingerprint = fingerprint;
  return source;
}

void check_store_matches_model(const io::StoreHeader& store, const std::string& store_path,
                               const io::StoreSource& model, const ModelConfig& c) {
  const std::string packed_from =
      store.source.model_path.empty() ? "" : " (packed from " + store.source.model_path + ")";
  const Error::Context context{
      .path = store_path, .hint = "pack this model with `hetmoe pack -m MODEL -o STORE` and use that store"};
  check(store.num_layers == c.num_hidden_layers && store.n_routed_experts == c.n_routed_experts &&
            store.hidden_size == c.hidden_size && store.moe_intermediate_size == c.moe_intermediate_size,
        "the store is for a model with " + std::to_string(store.num_layers) + " layers, " +
            std::to_string(store.n_routed_experts) + " experts, hidden " + std::to_string(store.hidden_size) +
            ", expert width " + std::to_string(store.moe_intermediate_size) + packed_from +
            "; this model has " + std::to_string(c.num_hidden_layers) + ", " +
            std::to_string(c.n_routed_experts) + ", " + std::to_string(c.hidden_size) + ", " +
            std::to_string(c.moe_intermediate_size),
        context);
  check(store.source.config_hash == model.config_hash,
        "the store was packed from a model with a different config" + packed_from, context);
  check(store.source.weights_fingerprint == model.weights_fingerprint,
        "the store was packed from a different model with the same config (weights differ)" + packed_from,
        context);
}

PackSummary pack_expert_store(const PackOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  const ModelWeights weights = load_model_weights(options.model_dir);
  const ModelConfig& c = weights.config;
  std::vector<std::pair<int32_t, int32_t>> keys;
  const FfnWeights* sample = nullptr;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& layer = weights.layers[size_t(l)];
    if (!layer.is_moe) continue;
    for (int64_t e = 0; e < int64_t(layer.moe.experts.size()); ++e) keys.emplace_back(int32_t(l), int32_t(e));
    if (sample == nullptr && !layer.moe.experts.empty()) sample = &layer.moe.experts[0];
  }
  check(sample != nullptr, "the model has no routed experts: nothing to pack",
        {.path = options.model_dir.string()});
  const ExpertRecordLayout layout = expert_record_layout(options.format, *sample);

  io::StoreHeader header;
  header.format = options.format;
  header.source = identify_model(weights, options.model_dir);
  header.num_layers = c.num_hidden_layers;
  header.n_routed_experts = c.n_routed_experts;
  header.hidden_size = c.hidden_size;
  header.moe_intermediate_size = c.moe_intermediate_size;
  header.weight_block = c.quantization.block_rows;
  header.record_bytes = layout.record_bytes;
  header.parts = layout.parts;
  header.created_by = version_string();
  io::StoreWriter writer(options.output, header, keys, {.durable = options.durable});

  // Two record buffers: the main thread fills one from the checkpoint mapping while a writer
  // thread hashes and writes the other, so reading the model and writing the store overlap.
  io::AlignedBuffer buffers[2] = {io::AlignedBuffer(layout.record_bytes),
                                  io::AlignedBuffer(layout.record_bytes)};
  std::mutex mutex;
  std::condition_variable changed;
  int full = -1;  // buffer waiting for the writer
  bool stop = false;
  std::exception_ptr failure;
  std::thread writer_thread([&] {
    for (;;) {
      int index;
      {
        std::unique_lock lock(mutex);
        changed.wait(lock, [&] { return full >= 0 || stop; });
        if (full < 0) return;
        index = full;
      }
      try {
        writer.write_record(buffers[index].data());
      } catch (...) {
        std::lock_guard lock(mutex);
        failure = std::current_exception();
        stop = true;
        full = -1;
        changed.notify_all();
        return;
      }
      {
        std::lock_guard lock(mutex);
        full = -1;
      }
      changed.notify_all();
    }
  });
  auto finish_thread = [&] {
    {
      std::lock_guard lock(mutex);
      stop = true;
    }
    changed.notify_all();
    writer_thread.join();
  };

  try {
    int64_t done = 0;
    int current = 0;
    for (auto [l, e] : keys) {
      fill_expert_record(layout, weights.layers[size_t(l)].moe.experts[size_t(e)], buffers[current].data());
      {
        std::unique_lock lock(mutex);
        changed.wait(lock, [&] { return full < 0 || stop; });
        if (failure) std::rethrow_exception(failure);
        full = current;
      }
      changed.notify_all();
      current ^= 1;
      ++done;
      if (options.progress) options.progress(done, int64_t(keys.size()));
    }
    {
      std::unique_lock lock(mutex);
      changed.wait(lock, [&] { return full < 0 || stop; });
      if (failure) std::rethrow_exception(failure);
    }
    finish_thread();
  } catch (...) {
    finish_thread();
    throw;
  }
  writer.finish();

  PackSummary summary;
  summary.records = keys.size();
  summary.record_bytes = layout.record_bytes;
  summary.file_bytes = writer.file_bytes();
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return summary;
}

}  // namespace hetmoe
