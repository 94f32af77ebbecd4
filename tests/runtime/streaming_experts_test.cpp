// Streaming experts from a packed store on a random tiny model: logits bitwise identical to the
// resident model with a cache of ~10% of the experts (prefetch on/off, 1 and 2 threads,
// io_uring / pread / fake storage with faults); every store or read fault gives a clear error
// and leaves nothing hanging; the DRAM budget holds over a run.
#include "engine/runtime/streaming_experts.h"

#include <gtest/gtest.h>
#include <tbb/global_control.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>

#include "engine/core/error.h"
#include "engine/model/model_builder.h"
#include "engine/runtime/model.h"
#include "engine/runtime/oracle_prefetch.h"
#include "engine/runtime/packed_experts.h"
#include "io/fake_storage.h"

namespace hetmoe {
namespace {

namespace fs = std::filesystem;

struct Fixture {
  fs::path root;
  fs::path model_dir, other_model_dir, store, other_store, ref_store, int4_store;
  Fixture() {
    root = fs::temp_directory_path() / ("hetmoe-streaming-" + std::to_string(::getpid()));
    fs::create_directories(root);
    model_dir = root / "tiny";
    other_model_dir = root / "tiny-seed2";
    store = root / "tiny.hmx";
    other_store = root / "tiny-seed2.hmx";
    ref_store = root / "tiny-ref.hmx";
    int4_store = root / "tiny-int4.hmx";
    write_random_checkpoint(preset_model_config("tiny"), model_dir,
                            {.seed = 7, .zipf_alpha = 1.0, .force = true});
    write_random_checkpoint(preset_model_config("tiny"), other_model_dir, {.seed = 8, .force = true});
    pack_expert_store({.model_dir = model_dir, .output = store, .durable = false});
    pack_expert_store({.model_dir = other_model_dir, .output = other_store, .durable = false});
    pack_expert_store(
        {.model_dir = model_dir, .output = ref_store, .format = io::RecordFormat::kRef, .durable = false});
    pack_expert_store(
        {.model_dir = model_dir, .output = int4_store, .format = io::RecordFormat::kInt4, .durable = false});
  }
  ~Fixture() {
    std::error_code ignored;
    fs::remove_all(root, ignored);
  }
};

const Fixture& fixture() {
  static Fixture f;
  return f;
}

const std::vector<int32_t> kPrompt = {0, 17, 42, 5, 999, 3, 3, 3, 128, 77, 500, 1, 64, 9};
constexpr int kDecodeSteps = 6;

// Prefill logits for kPrompt (all rows) and the last-row logits of greedy decode steps.
std::vector<float> run_logits(const Model& model) {
  KvCache cache(model.config(), int64_t(kPrompt.size()) + kDecodeSteps);
  std::vector<float> all, logits;
  SequenceStep prefill{&cache, kPrompt, true, &logits};
  model.forward(std::span(&prefill, 1));
  all = logits;
  const int64_t vocab = model.config().vocab_size;
  for (int s = 0; s < kDecodeSteps; ++s) {
    const float* last = &logits[logits.size() - size_t(vocab)];
    const int32_t next = int32_t(std::max_element(last, last + vocab) - last);
    SequenceStep step{&cache, std::span(&next, 1), false, &logits};
    model.forward(std::span(&step, 1));
    all.insert(all.end(), logits.begin(), logits.end());
  }
  return all;
}

// The resident model with the experts in `format`: the checkpoint mapping for ref, else
// PackedExperts (what `hetmoe run --format` uses).
std::vector<float> resident_logits(io::RecordFormat format = io::RecordFormat::kFP8) {
  static std::map<io::RecordFormat, std::vector<float>> memo;
  auto& logits = memo[format];
  if (logits.empty()) {
    Model model(load_model_weights(fixture().model_dir));
    std::optional<PackedExperts> packed;
    if (format != io::RecordFormat::kRef) {
      packed.emplace(model.weights(), PackedExpertsOptions{.format = packed_format_of(format)});
      model.set_expert_source(&*packed);
    }
    logits = run_logits(model);
  }
  return logits;
}

const fs::path& store_for(io::RecordFormat format) {
  return format == io::RecordFormat::kRef    ? fixture().ref_store
         : format == io::RecordFormat::kInt4 ? fixture().int4_store
                                             : fixture().store;
}

int64_t total_experts(const ModelConfig& c) {
  int64_t n = 0;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) n += c.is_moe_layer(l) ? c.n_routed_experts : 0;
  return n;
}

void expect_bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float))) << "logits differ";
}

struct StreamCase {
  PrefetchMode prefetch;
  int threads;
  io::StorageBackend backend;
  io::RecordFormat format = io::RecordFormat::kFP8;
};

constexpr PrefetchMode kOff = PrefetchMode::kOff, kOn = PrefetchMode::kOn, kAuto = PrefetchMode::kAuto;

class StreamedLogits : public ::testing::TestWithParam<StreamCase> {};

TEST_P(StreamedLogits, BitwiseIdenticalToResident) {
  const StreamCase param = GetParam();
  tbb::global_control threads(tbb::global_control::max_allowed_parallelism, size_t(param.threads));
  Model model(load_model_weights(fixture().model_dir));
  const int64_t slots = std::max<int64_t>(1, total_experts(model.config()) / 10);  // ~10% of the experts
  MemoryBudget budget(0);
  StreamingExperts source(model.weights(),
                          io::open_storage(store_for(param.format), {.backend = param.backend}), budget,
                          {.cache_slots = slots, .prefetch = param.prefetch, .read_block_bytes = 8192});
  EXPECT_EQ(source.storage().backend(), param.backend == io::StorageBackend::kUring ? "io_uring" : "pread");
  model.set_expert_source(&source);
  const auto start = std::chrono::steady_clock::now();
  expect_bitwise_equal(run_logits(model), resident_logits(param.format));
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const StreamingStats& stats = source.stats();
  EXPECT_GT(stats.misses, 0u);
  EXPECT_GT(stats.bytes_read, 0u);
  EXPECT_GT(stats.drive_busy_seconds, 0.0);  // reads were in flight for a while ...
  EXPECT_LE(stats.drive_busy_seconds, wall);  // ... within the run
  EXPECT_EQ(stats.hits + stats.misses + stats.prefetch_pending, stats.lookups);
  if (param.prefetch != PrefetchMode::kOff) {
    EXPECT_GT(stats.prefetch_reads, 0u);
    EXPECT_GT(stats.needed_after_prediction, 0u);
  } else {
    EXPECT_EQ(stats.prefetch_reads, 0u);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Streaming, StreamedLogits,
    ::testing::Values(StreamCase{kOff, 1, io::StorageBackend::kUring}, StreamCase{kOn, 1, io::StorageBackend::kUring},
                      StreamCase{kOff, 2, io::StorageBackend::kUring}, StreamCase{kOn, 2, io::StorageBackend::kUring},
                      StreamCase{kAuto, 1, io::StorageBackend::kUring}, StreamCase{kAuto, 2, io::StorageBackend::kPread},
                      StreamCase{kOn, 1, io::StorageBackend::kPread}, StreamCase{kOff, 2, io::StorageBackend::kPread},
                      StreamCase{kOn, 2, io::StorageBackend::kUring, io::RecordFormat::kRef},
                      StreamCase{kOff, 1, io::StorageBackend::kPread, io::RecordFormat::kRef},
                      StreamCase{kOn, 2, io::StorageBackend::kUring, io::RecordFormat::kInt4},
                      StreamCase{kOff, 1, io::StorageBackend::kPread, io::RecordFormat::kInt4}));

TEST(Streaming, PackedFp8DiffersFromTheReferenceOnlyByRounding) {
  // Sanity of the comparison above: the two resident paths are different kernels.
  const auto ref = resident_logits(io::RecordFormat::kRef), fp8 = resident_logits(io::RecordFormat::kFP8);
  ASSERT_EQ(ref.size(), fp8.size());
  double worst = 0;
  for (size_t i = 0; i < ref.size(); ++i) worst = std::max(worst, double(std::fabs(ref[i] - fp8[i])));
  EXPECT_LT(worst, 1e-2);
}

TEST(Streaming, OneSlotAndPinnedExpertsGiveTheSameLogits) {
  Model model(load_model_weights(fixture().model_dir));
  MemoryBudget budget(0);
  StreamingExperts one(model.weights(), io::open_storage(fixture().store), budget, {.cache_slots = 1});
  model.set_expert_source(&one);
  expect_bitwise_equal(run_logits(model), resident_logits());

  StreamingExperts pinned(
      model.weights(), io::open_storage(fixture().store), budget,
      {.cache_slots = 2, .policy = CachePolicyKind::kLru, .hot = {{1, 0}, {1, 3}, {2, 5}}});
  model.set_expert_source(&pinned);
  expect_bitwise_equal(run_logits(model), resident_logits());
  EXPECT_EQ(pinned.cache_slots(), 5);
}

TEST(Streaming, FakeStorageWithShortReadsAndRetriesGivesTheSameLogits) {
  Model model(load_model_weights(fixture().model_dir));
  MemoryBudget budget(0);
  auto storage = io::FakeStorage::from_file(
      fixture().store,
      {.short_read_bytes = 3000, .eagain_every = 7, .eintr_every = 11, .device_slots = 5, .seed = 3});
  StreamingExperts source(model.weights(), std::move(storage), budget,
                          {.cache_slots = 4, .read_block_bytes = 16384});
  model.set_expert_source(&source);
  expect_bitwise_equal(run_logits(model), resident_logits());
}

TEST(Streaming, IoUringForcedOffGivesTheSameLogits) {
  setenv("HETMOE_IO", "pread", 1);
  Model model(load_model_weights(fixture().model_dir));
  MemoryBudget budget(0);
  StreamingExperts source(model.weights(), io::open_storage(fixture().store, {.quiet = true}), budget,
                          {.cache_slots = 3});
  unsetenv("HETMOE_IO");
  EXPECT_EQ(source.storage().backend(), "pread");
  model.set_expert_source(&source);
  expect_bitwise_equal(run_logits(model), resident_logits());
}

TEST(Streaming, CancelledMispredictionsGiveTheSameLogitsWithFewerBytes) {
  // A slow fake device (2 reads at a time, small reads) keeps most prefetch reads queued when
  // the router runs, so the mispredicted ones are withdrawn; some are half in the device.
  Model model(load_model_weights(fixture().model_dir));
  const int64_t slots = std::max<int64_t>(2, total_experts(model.config()) / 4);
  StreamingStats stats[2];
  for (const bool cancel : {false, true}) {
    MemoryBudget budget(0);
    StreamingExperts source(
        model.weights(), io::FakeStorage::from_file(fixture().store, {.device_slots = 2, .seed = 5}), budget,
        {.cache_slots = slots, .prefetch = PrefetchMode::kOn, .cancel_mispredicted = cancel, .read_block_bytes = 4096});
    model.set_expert_source(&source);
    expect_bitwise_equal(run_logits(model), resident_logits());
    stats[cancel] = source.stats();
  }
  EXPECT_EQ(stats[0].prefetch_cancelled, 0u);
  EXPECT_GT(stats[0].prefetch_wasted, 0u);
  EXPECT_GT(stats[1].prefetch_cancelled, 0u);
  EXPECT_LE(stats[1].prefetch_cancelled, stats[1].prefetch_wasted);
  EXPECT_LT(stats[1].bytes_read, stats[0].bytes_read);
}

TEST(Streaming, SpeculativeDepthKeepsOnlyPredictionsWithdrawable) {
  // A 32-read device: with speculative_depth 32 a prediction's reads are all in the device
  // before its layer's router runs; with 2, most still wait in the queue and are withdrawn.
  // Once a layer's router has run, its reads get the whole depth again.
  Model model(load_model_weights(fixture().model_dir));
  const int64_t slots = std::max<int64_t>(2, total_experts(model.config()) / 4);
  uint64_t cancelled[2] = {};
  for (const uint32_t depth : {32u, 2u}) {
    MemoryBudget budget(0);
    StreamingExperts source(
        model.weights(), io::FakeStorage::from_file(fixture().store, {.device_slots = 32, .seed = 5}), budget,
        {.cache_slots = slots, .prefetch = PrefetchMode::kOn, .speculative_depth = depth, .read_block_bytes = 4096});
    model.set_expert_source(&source);
    expect_bitwise_equal(run_logits(model), resident_logits());
    EXPECT_EQ(source.storage().depth_limit(), 32u);
    EXPECT_GT(source.stats().prefetch_wasted, 0u);
    cancelled[depth == 2] = source.stats().prefetch_cancelled;
  }
  EXPECT_GT(cancelled[1], cancelled[0]);
}

TEST(Streaming, NextLayerIsPredictedWhenTheDriveGoesIdleMidLayer) {
  // Once a layer's last read is in, Model predicts the next layer from the outputs computed so
  // far (LayerWork::drive_idle) instead of after the layer; never with prefetch off. The
  // logits stay bitwise those of the resident model either way.
  Model model(load_model_weights(fixture().model_dir));
  const int64_t slots = std::max<int64_t>(2, total_experts(model.config()) / 3);
  for (const PrefetchMode mode : {PrefetchMode::kOn, PrefetchMode::kOff}) {
    MemoryBudget budget(0);
    StreamingExperts source(model.weights(), io::FakeStorage::from_file(fixture().store, {.seed = 9}), budget,
                            {.cache_slots = slots, .prefetch = mode, .read_block_bytes = 8192});
    model.set_expert_source(&source);
    expect_bitwise_equal(run_logits(model), resident_logits());
    const StreamingStats& stats = source.stats();
    if (mode == PrefetchMode::kOn) {
      EXPECT_GT(stats.early_predictions, 0u);
      EXPECT_GT(stats.prefetch_reads, 0u);
    } else {
      EXPECT_EQ(stats.early_predictions, 0u);
      EXPECT_EQ(stats.prefetch_reads, 0u);
    }
    model.set_expert_source(nullptr);
  }
}

TEST(Streaming, HotExpertsFromAListOrAPlanFile) {
  const ModelConfig config = preset_model_config("tiny");  // layers 1, 2 are MoE
  const fs::path list = fixture().root / "hot.json", plan = fixture().root / "plan.json",
                 bad = fixture().root / "bad.json";
  std::ofstream(list) << "[[1, 0], [2, 15]]";
  std::ofstream(plan) << R"({"schema": "hetmoe-plan/1", "layers": [
      {"moe_layer": 0, "gpu": [3], "dram": [4, 5], "nvme": [0]},
      {"moe_layer": 1, "gpu": [], "dram": [7], "nvme": []}]})";
  std::ofstream(bad) << "[[0, 1]]";  // layer 0 is dense
  const auto from_list = load_hot_experts(list, config);
  ASSERT_EQ(from_list.size(), 2u);
  EXPECT_EQ(from_list[1], (ExpertKey{2, 15}));
  const auto from_plan = load_hot_experts(plan, config);
  ASSERT_EQ(from_plan.size(), 4u);
  EXPECT_EQ(from_plan[0], (ExpertKey{1, 3}));
  EXPECT_EQ(from_plan[3], (ExpertKey{2, 7}));
  EXPECT_THROW(load_hot_experts(bad, config), Error);
}

// --- faults ---------------------------------------------------------------------------------

std::string error_of(const std::function<void()>& body) {
  try {
    body();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(StreamingFaults, CorruptRecordNamesTheRecord) {
  Model model(load_model_weights(fixture().model_dir));
  MemoryBudget budget(0);
  auto storage = io::FakeStorage::from_file(fixture().store);
  const io::StoreIndex index = io::StoreIndex::read(*storage);
  for (const io::RecordEntry& entry : index.records()) storage->bytes()[entry.offset + 777] ^= 0x10;
  StreamingExperts source(model.weights(), std::move(storage), budget, {.cache_slots = 3});
  model.set_expert_source(&source);
  const std::string text = error_of([&] { run_logits(model); });
  EXPECT_NE(text.find("checksum mismatch"), std::string::npos) << text;
  EXPECT_NE(text.find("layer 1, expert"), std::string::npos) << text;
  // Still usable, still failing the same way: nothing left hanging.
  EXPECT_NE(error_of([&] { run_logits(model); }).find("checksum mismatch"), std::string::npos);
}

TEST(StreamingFaults, ACorruptRecordIsNotKeptInTheCache) {
  // Checksums are checked while the CPU waits for the drive, after the expert may have been
  // computed: the layer still fails before its outputs are used, and the record is dropped,
  // so once the bytes are right again the next run reads it afresh and matches.
  Model model(load_model_weights(fixture().model_dir));
  MemoryBudget budget(0);
  auto storage = io::FakeStorage::from_file(fixture().store);
  auto* fake = storage.get();
  const io::StoreIndex index = io::StoreIndex::read(*storage);
  const uint64_t at = index.records()[3].offset + 100;
  fake->bytes()[at] ^= 0x40;
  StreamingExperts source(model.weights(), std::move(storage), budget, {.cache_slots = 12});
  model.set_expert_source(&source);
  EXPECT_NE(error_of([&] { run_logits(model); }).find("checksum mismatch"), std::string::npos);
  fake->bytes()[at] ^= 0x40;
  expect_bitwise_equal(run_logits(model), resident_logits());
}

TEST(StreamingFaults, VerifyAlwaysCatchesCorruptionOnReReads) {
  Model model(load_model_weights(fixture().model_dir));
  MemoryBudget budget(0);
  auto storage = io::FakeStorage::from_file(fixture().store);
  auto* fake = storage.get();
  const io::StoreIndex index = io::StoreIndex::read(*storage);
  StreamingExperts source(model.weights(), std::move(storage), budget,
                          {.cache_slots = 1, .verify = Verify::kAlways});
  model.set_expert_source(&source);
  expect_bitwise_equal(run_logits(model), resident_logits());
  EXPECT_EQ(source.stats().records_verified, source.stats().records_read);
  for (const io::RecordEntry& entry : index.records()) fake->bytes()[entry.offset + 5] ^= 1;
  EXPECT_NE(error_of([&] { run_logits(model); }).find("checksum mismatch"), std::string::npos);
}

TEST(StreamingFaults, FailingReadCarriesErrno) {
  Model model(load_model_weights(fixture().model_dir));
  MemoryBudget budget(0);
  auto storage = io::FakeStorage::from_file(fixture().store);
  const uint64_t data = io::StoreIndex::read(*storage).header().data_offset;
  storage->faults() = {.fail_errno = EIO, .fail_begin = data, .device_slots = 4};
  StreamingExperts source(model.weights(), std::move(storage), budget,
                          {.cache_slots = 3, .read_block_bytes = 8192});
  model.set_expert_source(&source);
  const std::string text = error_of([&] { run_logits(model); });
  EXPECT_NE(text.find("errno 5"), std::string::npos) << text;
  EXPECT_NE(text.find("expert"), std::string::npos) << text;
}

TEST(StreamingFaults, PersistentShortReadOnATruncatedDeviceIsAnError) {
  // The file shrank after the store was opened: reads hit the end of file.
  Model model(load_model_weights(fixture().model_dir));
  MemoryBudget budget(0);
  auto storage = io::FakeStorage::from_file(fixture().store);
  auto* fake = storage.get();
  StreamingExperts source(model.weights(), std::move(storage), budget, {.cache_slots = 3});
  fake->bytes().resize(fake->bytes().size() / 2);
  model.set_expert_source(&source);
  const std::string text = error_of([&] { run_logits(model); });
  EXPECT_NE(text.find("truncated"), std::string::npos) << text;
}

TEST(StreamingFaults, TruncatedStoreIsRefusedAtOpen) {
  const ModelWeights weights = load_model_weights(fixture().model_dir);
  MemoryBudget budget(0);
  const uint64_t size = fs::file_size(fixture().store);
  const std::string text = error_of([&] {
    StreamingExperts(weights, io::FakeStorage::from_file(fixture().store, {}, size - 8192), budget);
  });
  EXPECT_NE(text.find("truncated"), std::string::npos) << text;
}

TEST(StreamingFaults, StoreOfAnotherModelIsRefused) {
  const ModelWeights weights = load_model_weights(fixture().model_dir);
  MemoryBudget budget(0);
  std::string text =
      error_of([&] { StreamingExperts(weights, io::open_storage(fixture().other_store), budget); });
  EXPECT_NE(text.find("different model"), std::string::npos) << text;
  EXPECT_NE(text.find("tiny-seed2"), std::string::npos) << text;  // names where it came from

  // A store of another shape (other expert count): the dimensions differ.
  const fs::path small_dir = fixture().root / "tiny-8-experts", small_store = fixture().root / "tiny-8.hmx";
  write_random_checkpoint(preset_model_config("tiny", {.experts = 8}), small_dir, {.seed = 7, .force = true});
  pack_expert_store({.model_dir = small_dir, .output = small_store, .durable = false});
  text = error_of([&] { StreamingExperts(weights, io::open_storage(small_store), budget); });
  EXPECT_NE(text.find("8 experts"), std::string::npos) << text;
}

TEST(StreamingFaults, StoreOfAnotherFormatVersionIsRefused) {
  const ModelWeights weights = load_model_weights(fixture().model_dir);
  MemoryBudget budget(0);
  auto storage = io::FakeStorage::from_file(fixture().store);
  storage->bytes()[8] = 9;  // format version
  const std::string text = error_of([&] { StreamingExperts(weights, std::move(storage), budget); });
  EXPECT_NE(text.find("format version 9"), std::string::npos) << text;
}

// --- budget ---------------------------------------------------------------------------------

TEST(StreamingBudget, AccountedPeakNeverExceedsTheBudget) {
  Model model(load_model_weights(fixture().model_dir));
  const RunShape shape{.sequences = 1,
                       .context = 64,
                       .batch_tokens = int64_t(kPrompt.size()),
                       .logit_rows = int64_t(kPrompt.size()),
                       .threads = 2};
  // Measure what everything but the cache needs, then allow 3 records on top.
  MemoryBudget probe(0);
  auto probe_reservations = reserve_run_memory(probe, model.weights(), shape, 0);
  StreamingExperts probe_source(model.weights(), io::open_storage(fixture().store), probe,
                                {.cache_slots = 1});
  const uint64_t record = probe_source.record_bytes();
  const uint64_t limit = probe.used_bytes() - record + 3 * record + record / 2;

  MemoryBudget budget(limit);
  auto reservations = reserve_run_memory(budget, model.weights(), shape, record);
  StreamingExperts source(model.weights(), io::open_storage(fixture().store),
                          budget);  // slots from the budget
  EXPECT_EQ(source.cache_slots(), 3);
  model.set_expert_source(&source);
  expect_bitwise_equal(run_logits(model), resident_logits());
  EXPECT_LE(budget.peak_bytes(), limit);
  EXPECT_LE(budget.used_bytes(), limit);
  // One more record does not fit.
  EXPECT_THROW(budget.reserve(record, "one more record"), Error);
}

TEST(StreamingBudget, TooSmallForTheNonExpertWeightsSaysHowMuchIsNeeded) {
  const ModelWeights weights = load_model_weights(fixture().model_dir);
  MemoryBudget budget(1 << 20);
  const std::string text = error_of([&] { reserve_run_memory(budget, weights, {.context = 64}, 4096); });
  EXPECT_NE(text.find("needs at least"), std::string::npos) << text;
  EXPECT_NE(text.find("non-expert weights"), std::string::npos) << text;
  EXPECT_EQ(budget.used_bytes(), 0u);
}

TEST(StreamingBudget, BudgetWithoutRoomForOneRecordIsRefused) {
  const ModelWeights weights = load_model_weights(fixture().model_dir);
  MemoryBudget probe(0);
  auto held = reserve_run_memory(probe, weights, {.context = 64}, 0);
  MemoryBudget budget(probe.used_bytes() + 4096);
  auto reservations = reserve_run_memory(budget, weights, {.context = 64}, 0);
  const std::string text =
      error_of([&] { StreamingExperts(weights, io::open_storage(fixture().store), budget); });
  EXPECT_NE(text.find("cannot hold expert cache"), std::string::npos) << text;
}

TEST(Streaming, SessionPrefetchModeFromItsName) {
  Model model(load_model_weights(fixture().model_dir));
  for (const auto& [name, mode] : {std::pair{"off", PrefetchMode::kOff}, std::pair{"on", PrefetchMode::kOn},
                                   std::pair{"auto", PrefetchMode::kAuto}, std::pair{"0", PrefetchMode::kOff}}) {
    const auto session = open_streaming_session(model, fixture().store.string(), "", {.context = 64}, {}, name);
    EXPECT_EQ(session->source().options().prefetch, mode) << name;
    EXPECT_EQ(session->source().wants_prefetch(), mode != PrefetchMode::kOff) << name;  // auto starts on
  }
  const std::string text =
      error_of([&] { open_streaming_session(model, fixture().store.string(), "", {.context = 64}, {}, "sometimes"); });
  EXPECT_NE(text.find("bad --prefetch 'sometimes'"), std::string::npos) << text;
}

TEST(Streaming, OraclePrefetchReplaysTheRoutingAsPerfectPredictions) {
  Model model(load_model_weights(fixture().model_dir));
  const int64_t slots = std::max<int64_t>(2, total_experts(model.config()) / 4);
  int64_t first_moe = 0;
  while (!model.config().is_moe_layer(first_moe)) ++first_moe;
  for (const bool early : {false, true}) {
    MemoryBudget budget(0);
    StreamingExperts source(model.weights(), io::open_storage(fixture().store), budget,
                            {.cache_slots = slots, .prefetch = PrefetchMode::kOn, .read_block_bytes = 8192});
    OraclePrefetch oracle(source, first_moe, early);
    model.set_expert_source(&oracle);
    oracle.restart();  // records
    expect_bitwise_equal(run_logits(model), resident_logits());
    const StreamingStats recorded = source.stats();
    EXPECT_LT(recorded.prefetch_recall(), 1.0);  // the model's own predictor on this run
    source.reset_stats();
    oracle.restart();  // replays: the same tokens, so the same routing
    expect_bitwise_equal(run_logits(model), resident_logits());
    const StreamingStats& replayed = source.stats();
    EXPECT_GT(replayed.needed_after_prediction, 0u);
    EXPECT_EQ(replayed.predicted_needed, replayed.needed_after_prediction) << "recall 100%";
    EXPECT_EQ(replayed.prefetch_wasted, 0u) << "over-fetch 0%";
    model.set_expert_source(nullptr);
  }
  MemoryBudget budget(0);
  StreamingExperts off(model.weights(), io::open_storage(fixture().store), budget,
                       {.cache_slots = slots, .prefetch = PrefetchMode::kOff});
  EXPECT_THROW(OraclePrefetch(off, first_moe, false), Error);
}

}  // namespace
}  // namespace hetmoe
