// The store format: a written store reads back through every backend; every kind of damage
// (corrupt record, corrupt header or index, truncation, another format version, wrong magic)
// gives a clear error naming the file (and the record).
#include "io/store_format.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <random>

#include "engine/core/error.h"
#include "io/aligned_buffer.h"
#include "io/fake_storage.h"

namespace hetmoe::io {
namespace {

constexpr uint64_t kRecordBytes = 3 * 4096;

StoreHeader test_header() {
  StoreHeader h;
  h.format = RecordFormat::kFP8;
  h.source = {.config_hash = 0x1234, .weights_fingerprint = 0x5678, .model_path = "/models/tiny"};
  h.num_layers = 3;
  h.n_routed_experts = 4;
  h.hidden_size = 64;
  h.moe_intermediate_size = 32;
  h.weight_block = 128;
  h.record_bytes = kRecordBytes;
  h.parts = {{.role = 0, .kind = 0, .dtype = 9, .rows = 32, .cols = 64, .offset = 0, .bytes = 2048},
             {.role = 0, .kind = 1, .dtype = 13, .rows = 1, .cols = 1, .offset = 2048, .bytes = 4}};
  h.created_by = "test";
  return h;
}

uint8_t record_byte(int layer, int expert, uint64_t i) {
  return uint8_t(layer * 31 + expert * 7 + i * 13);
}

class StoreFile : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = std::filesystem::temp_directory_path() / ("hetmoe-store-" + std::to_string(getpid()) + ".hmx");
    std::vector<std::pair<int32_t, int32_t>> keys;
    for (int l = 1; l < 3; ++l)
      for (int e = 0; e < 4; ++e) keys.emplace_back(l, e);
    StoreWriter writer(path_, test_header(), keys, {.durable = false});
    AlignedBuffer record(kRecordBytes);
    for (auto [l, e] : keys) {
      for (uint64_t i = 0; i < kRecordBytes; ++i) record.data()[i] = record_byte(l, e, i);
      writer.write_record(record.data());
    }
    writer.finish();
  }
  void TearDown() override { std::filesystem::remove(path_); }

  std::string open_error(std::unique_ptr<FakeStorage> storage) {
    try {
      StoreIndex::read(*storage);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }

  std::filesystem::path path_;
};

TEST_F(StoreFile, ReadsBackThroughEveryBackend) {
  for (auto backend : {StorageBackend::kUring, StorageBackend::kPread}) {
    auto storage = open_storage(path_, {.backend = backend});
    const StoreIndex index = StoreIndex::read(*storage);
    const StoreHeader& h = index.header();
    EXPECT_EQ(h.parts, test_header().parts);
    EXPECT_EQ(h.source.model_path, "/models/tiny");
    EXPECT_EQ(h.source.config_hash, 0x1234u);
    EXPECT_EQ(h.record_count, 8u);
    EXPECT_EQ(index.find(0, 0), nullptr);  // dense layer: no records
    const RecordEntry* entry = index.find(2, 3);
    ASSERT_NE(entry, nullptr);
    EXPECT_EQ(entry->offset % 4096, 0u);
    AlignedBuffer record(kRecordBytes);
    read_exact(*storage, entry->offset, entry->length, record.data());
    index.verify(*entry, record.data());
    for (uint64_t i = 0; i < kRecordBytes; ++i) ASSERT_EQ(record.data()[i], record_byte(2, 3, i));
  }
}

TEST_F(StoreFile, CorruptRecordNamesLayerAndExpert) {
  auto storage = FakeStorage::from_file(path_);
  const StoreIndex index = StoreIndex::read(*storage);
  const RecordEntry* entry = index.find(1, 2);
  storage->bytes()[entry->offset + 100] ^= 0x40;
  AlignedBuffer record(kRecordBytes);
  read_exact(*storage, entry->offset, entry->length, record.data());
  try {
    index.verify(*entry, record.data());
    FAIL();
  } catch (const Error& e) {
    const std::string text = e.what();
    EXPECT_NE(text.find("layer 1, expert 2"), std::string::npos) << text;
    EXPECT_NE(text.find("checksum mismatch"), std::string::npos) << text;
  }
}

TEST_F(StoreFile, TruncatedStoreIsAClearError) {
  const uint64_t size = std::filesystem::file_size(path_);
  EXPECT_NE(open_error(FakeStorage::from_file(path_, {}, size - 4096)).find("truncated"), std::string::npos);
  EXPECT_NE(open_error(FakeStorage::from_file(path_, {}, 100)).find("truncated"), std::string::npos);
  EXPECT_NE(open_error(FakeStorage::from_file(path_, {}, 0)).find("truncated"), std::string::npos);
}

TEST_F(StoreFile, OtherFormatVersionIsAClearError) {
  auto storage = FakeStorage::from_file(path_);
  storage->bytes()[8] = 1;  // version field: a store written with XXH64 checksums
  const std::string text = open_error(std::move(storage));
  EXPECT_NE(text.find("format version 1"), std::string::npos) << text;
  EXPECT_NE(text.find("re-pack"), std::string::npos) << text;
}

TEST_F(StoreFile, CorruptHeaderOrIndexIsAClearError) {
  auto header = FakeStorage::from_file(path_);
  header->bytes()[50] ^= 1;
  EXPECT_NE(open_error(std::move(header)).find("header checksum mismatch"), std::string::npos);
  auto index = FakeStorage::from_file(path_);
  index->bytes()[4096 + 40] ^= 1;
  EXPECT_NE(open_error(std::move(index)).find("index checksum mismatch"), std::string::npos);
  auto magic = FakeStorage::from_file(path_);
  magic->bytes()[0] = 'X';
  EXPECT_NE(open_error(std::move(magic)).find("not a hetmoe expert store"), std::string::npos);
}

TEST_F(StoreFile, FailingHeaderReadIsAClearError) {
  const std::string text = open_error(FakeStorage::from_file(path_, {.fail_errno = EIO, .fail_end = 4096}));
  EXPECT_NE(text.find("Input/output error"), std::string::npos) << text;
}

TEST(StoreWriter, AnUnfinishedStoreLeavesNothingBehind) {
  const auto path =
      std::filesystem::temp_directory_path() / ("hetmoe-unfinished-" + std::to_string(getpid()) + ".hmx");
  {
    StoreWriter writer(path, test_header(), {{1, 0}, {1, 1}}, {.durable = false});
    AlignedBuffer record(kRecordBytes);
    writer.write_record(record.data());
    EXPECT_THROW(writer.finish(), Error);  // one record missing
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path.string() + ".tmp"));
}

TEST(StoreFormat, HeaderRoundTrips) {
  StoreHeader h = test_header();
  h.record_count = 8;
  h.index_offset = 4096;
  h.index_bytes = 8 * 32;
  h.data_offset = 8192;
  h.file_bytes = 8192 + 8 * kRecordBytes;
  const auto page = encode_header(h);
  const StoreHeader back = decode_header(page, "x");
  EXPECT_EQ(back.parts, h.parts);
  EXPECT_EQ(back.file_bytes, h.file_bytes);
  EXPECT_EQ(back.format, RecordFormat::kFP8);
  EXPECT_EQ(parse_record_format("int4"), RecordFormat::kInt4);
  EXPECT_EQ(parse_record_format("q4"), std::nullopt);
}

}  // namespace
}  // namespace hetmoe::io
