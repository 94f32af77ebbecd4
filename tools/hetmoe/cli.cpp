#include <cstdio>
#include <exception>

#include "engine/core/error.h"
#include "tools/hetmoe/commands.h"

namespace hetmoe::cli {

void register_all(CLI::App& app) {
  app.require_subcommand(1);
  app.set_version_flag("--version", "hetmoe 0.1.0");
  register_inspect(app);
  register_make_model(app);
  register_run(app);
  register_perplexity(app);
  register_logits(app);
  register_tokenize(app);
  register_plan(app);
  register_profile(app);
  register_probe(app);
  register_pack(app);
  register_bench(app);
}

int run_cli(int argc, const char* const* argv) {
  CLI::App app{"hetmoe: Mixture-of-Experts inference across GPU, DRAM and NVMe", "hetmoe"};
  register_all(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error);
  } catch (const Error& error) {
    std::fprintf(stderr, "hetmoe: error: %s\n", error.what());
    return 1;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "hetmoe: error: %s\n", error.what());
    return 1;
  }
  return 0;
}

}  // namespace hetmoe::cli
