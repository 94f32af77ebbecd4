#include "io/store_reads.h"

#include <algorithm>
#include <chrono>
#include <random>
#include <vector>

#include "engine/core/error.h"
#include "io/aligned_buffer.h"
#include "io/store_format.h"

namespace hetmoe::io {

StoreReadResult measure_store_reads(const std::filesystem::path& path, const StoreReadTest& test) {
  auto storage = open_storage(path, test.storage);
  const StoreIndex index = StoreIndex::read(*storage);
  const uint64_t record = index.header().record_bytes;
  const uint64_t block = std::max<uint64_t>(kRecordAlignment, round_up(test.block_bytes, kRecordAlignment));
  const int64_t chunks = int64_t((record + block - 1) / block);
  const int64_t slots = std::max<int64_t>(1, test.records_in_flight);
  AlignedBuffer arena(uint64_t(slots) * record);
  const BufferRegion region{arena.data(), arena.size()};
  storage->register_buffers(std::span(&region, 1));
  std::vector<ReadOp> ops(size_t(slots * chunks));
  std::vector<int64_t> left(size_t(slots), 0);
  std::vector<const RecordEntry*> entry_of(size_t(slots), nullptr);
  std::mt19937_64 random(test.seed);
  std::uniform_int_distribution<size_t> pick(0, index.records().size() - 1);

  StoreReadResult result{.backend = std::string(storage->backend())};
  auto start_record = [&](int64_t s) {
    const RecordEntry& entry = index.records()[pick(random)];
    entry_of[size_t(s)] = &entry;
    left[size_t(s)] = chunks;
    for (int64_t k = 0; k < chunks; ++k) {
      ReadOp& op = ops[size_t(s * chunks + k)];
      op.offset = entry.offset + uint64_t(k) * block;
      op.length = std::min<uint64_t>(block, record - uint64_t(k) * block);
      op.buffer = arena.data() + uint64_t(s) * record + uint64_t(k) * block;
      op.tag = uint64_t(s);
      storage->submit(&op);
    }
  };
  const auto begin = std::chrono::steady_clock::now();
  const auto end = begin + std::chrono::duration<double>(test.seconds);
  for (int64_t s = 0; s < slots; ++s) start_record(s);
  storage->flush();
  bool stopping = false;
  while (ReadOp* op = storage->wait(true)) {
    if (op->error != 0) throw Error(describe_read_error(*storage, *op));
    result.bytes += op->done;
    const int64_t s = int64_t(op->tag);
    if (--left[size_t(s)] > 0) continue;
    if (test.verify) index.verify(*entry_of[size_t(s)], arena.data() + uint64_t(s) * record);
    ++result.records;
    if (!stopping && std::chrono::steady_clock::now() >= end) stopping = true;
    if (!stopping) {
      start_record(s);
      storage->flush();
    }
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  return result;
}

}  // namespace hetmoe::io
