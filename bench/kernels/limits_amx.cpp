// The AMX-INT8 peak (tdpbssd), for the limits in limits.h: compiled with AMX flags, called only
// when cpu_features() reports AMX-INT8 with the tile state granted.
#include <immintrin.h>

#include <cstdint>

#include "bench/kernels/limits.h"

namespace hetmoe::bench {

// Four independent accumulator tiles (16 × 16 int32) over two A and two B tiles: each
// tdpbssd is 16 · 16 · 64 multiply-adds, and four in flight cover the instruction's latency.
int amx_int8_chains(long repeats) {
  struct alignas(64) {
    uint8_t palette = 1, start_row = 0, reserved[14] = {};
    uint16_t colsb[16] = {};
    uint8_t rows[16] = {};
  } config;
  for (int i = 0; i < 8; ++i) {
    config.rows[i] = 16;
    config.colsb[i] = 64;
  }
  alignas(64) int8_t a[16 * 64], b[16 * 64];
  for (int i = 0; i < 16 * 64; ++i) {
    a[i] = int8_t(i % 7 - 3);
    b[i] = int8_t(i % 5 - 2);
  }
  alignas(64) int32_t c[16 * 16];
  _tile_loadconfig(&config);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  _tile_loadd(4, a, 64);
  _tile_loadd(5, b, 64);
  _tile_loadd(6, b, 64);
  _tile_loadd(7, a, 64);
  for (long r = 0; r < repeats; ++r) {
    _tile_dpbssd(0, 4, 6);
    _tile_dpbssd(1, 4, 7);
    _tile_dpbssd(2, 5, 6);
    _tile_dpbssd(3, 5, 7);
  }
  _tile_stored(0, c, 64);
  _tile_release();
  return c[0];
}

}  // namespace hetmoe::bench
