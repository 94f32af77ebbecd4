// Whether next-layer prefetch pays, decided by measuring it (docs/STREAMING.md, "Prefetch
// auto"). A prediction starts reads early, so they overlap the next layer's attention, but its
// wrong guesses cost drive time and the cache slots they take; which side wins depends on the
// drive, the cache size and how predictable the routing is (bench/RESULTS.md measured prefetch
// winning on one configuration and losing on another). So `--prefetch auto` tries both:
//
//   decode steps (at most `max_rows` rows) run in blocks of `block_steps` with prefetch on,
//   off, off, on (ABBA, so a slow drift of the machine favours neither); the first step of a
//   block is not counted (the switch itself moves the cache); the mode with the lower mean
//   seconds per row then runs for `exploit_steps` steps, and the cycle starts again.
//
// Larger steps (prompts) run in the current mode and are not counted. Never changes results:
// prefetch only decides when reads start.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace hetmoe {

class PrefetchTuner {
 public:
  struct Options {
    int64_t block_steps = 8;
    int64_t exploit_steps = 128;
    int64_t max_rows = 8;
  };
  PrefetchTuner() : PrefetchTuner(Options{}) {}
  explicit PrefetchTuner(Options options);

  // The mode for the next step.
  bool enabled() const { return enabled_; }
  // The step just run, in the mode enabled() gave, took `seconds` for `rows` rows.
  void on_step(double seconds, int64_t rows);
  // Measurement rounds completed so far (a decision each).
  int64_t decisions() const { return decisions_; }

 private:
  static constexpr std::array<bool, 4> kPattern{true, false, false, true};

  Options options_;
  bool enabled_ = kPattern[0];
  std::size_t block_ = 0;  // < kPattern.size(): measuring that block; == size(): running the winner
  int64_t step_ = 0;  // steps into the block, or into the winner's run
  std::array<double, 2> seconds_per_row_{};  // [enabled] sums over counted steps
  std::array<int64_t, 2> counted_{};
  int64_t decisions_ = 0;
};

}  // namespace hetmoe
