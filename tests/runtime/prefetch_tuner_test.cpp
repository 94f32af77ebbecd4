// The prefetch tuner: measures both modes in ABBA blocks, keeps the faster, measures again after
// its run; prompts neither count nor move the schedule.
#include "engine/runtime/prefetch_tuner.h"

#include <gtest/gtest.h>

#include <vector>

#include "engine/core/error.h"

namespace hetmoe {
namespace {

constexpr PrefetchTuner::Options kOptions{.block_steps = 3, .exploit_steps = 5, .max_rows = 4};

// Runs `steps` one-row steps, each taking on_seconds or off_seconds by the mode the tuner
// chose; returns the modes it chose.
std::vector<bool> drive(PrefetchTuner& tuner, int steps, double on_seconds, double off_seconds) {
  std::vector<bool> modes;
  for (int i = 0; i < steps; ++i) {
    modes.push_back(tuner.enabled());
    tuner.on_step(tuner.enabled() ? on_seconds : off_seconds, 1);
  }
  return modes;
}

TEST(PrefetchTuner, MeasuresOnOffOffOnThenKeepsTheFasterMode) {
  for (const bool prefetch_wins : {true, false}) {
    PrefetchTuner tuner(kOptions);
    const auto modes = drive(tuner, 12 + 5, prefetch_wins ? 0.1 : 0.2, prefetch_wins ? 0.2 : 0.1);
    const std::vector<bool> measured(modes.begin(), modes.begin() + 12);
    EXPECT_EQ(measured, (std::vector<bool>{true, true, true, false, false, false, false, false, false, true,
                                           true, true}));
    for (size_t i = 12; i < modes.size(); ++i) EXPECT_EQ(modes[i], prefetch_wins) << "step " << i;
    EXPECT_EQ(tuner.decisions(), 1);
  }
}

TEST(PrefetchTuner, TheFirstStepOfABlockIsNotCounted) {
  // Each block's first step (the switch) is 100x slower in the faster mode: ignored.
  PrefetchTuner tuner(kOptions);
  for (int block = 0; block < 4; ++block)
    for (int step = 0; step < 3; ++step) {
      const double seconds = tuner.enabled() ? (step == 0 ? 10.0 : 0.1) : 0.2;
      tuner.on_step(seconds, 1);
    }
  EXPECT_TRUE(tuner.enabled());
}

TEST(PrefetchTuner, ComparesSecondsPerRowAndSkipsPrompts) {
  PrefetchTuner tuner(kOptions);
  for (int i = 0; i < 12; ++i) {
    // Prompts in between: too many rows to count, and the schedule does not move.
    const bool before = tuner.enabled();
    tuner.on_step(100.0, 512);
    EXPECT_EQ(tuner.enabled(), before);
    // Prefetch-on steps have 4 rows at 0.3 s (0.075 s/row), off steps 1 row at 0.1 s.
    tuner.on_step(tuner.enabled() ? 0.3 : 0.1, tuner.enabled() ? 4 : 1);
  }
  EXPECT_TRUE(tuner.enabled());
  EXPECT_EQ(tuner.decisions(), 1);
}

TEST(PrefetchTuner, MeasuresAgainAfterTheWinnersRun) {
  PrefetchTuner tuner(kOptions);
  drive(tuner, 12, 0.2, 0.1);  // off wins
  EXPECT_FALSE(tuner.enabled());
  drive(tuner, 5, 0.2, 0.1);  // the winner's run
  // The machine changed: prefetch now wins the second round.
  const auto modes = drive(tuner, 12, 0.1, 0.2);
  EXPECT_TRUE(modes.front());
  EXPECT_TRUE(tuner.enabled());
  EXPECT_EQ(tuner.decisions(), 2);
}

TEST(PrefetchTuner, RejectsABlockTooShortToMeasure) {
  EXPECT_THROW(PrefetchTuner({.block_steps = 1}), Error);
}

}  // namespace
}  // namespace hetmoe
