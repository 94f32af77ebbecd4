// Read throughput of a packed store in the engine's access pattern, without compute: random
// records, each as `block_bytes` reads straight into its own (registered) slot, with
// `records_in_flight` records outstanding (the misses of one MoE layer) and every record's
// checksum verified on arrival, as StreamingExperts does. bench/streaming/read_vs_fio.sh
// compares it with fio on the same file.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "io/storage.h"

namespace hetmoe::io {

struct StoreReadTest {
  StorageOptions storage;
  uint64_t block_bytes = 1 << 20;
  int64_t records_in_flight = 8;
  double seconds = 5.0;
  bool verify = true;
  uint64_t seed = 1;
};

struct StoreReadResult {
  std::string backend;
  uint64_t bytes = 0;
  uint64_t records = 0;
  double seconds = 0;
  double bytes_per_second() const { return seconds > 0 ? double(bytes) / seconds : 0.0; }
};

StoreReadResult measure_store_reads(const std::filesystem::path& store, const StoreReadTest& test);

}  // namespace hetmoe::io
