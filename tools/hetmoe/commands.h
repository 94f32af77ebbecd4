// Subcommands of the `hetmoe` CLI. Each registers its flags on `app` and sets its callback;
// callbacks throw hetmoe::Error on bad input and main() turns that into a message and exit code.
#pragma once

#include <CLI/CLI.hpp>

namespace hetmoe::cli {

void register_inspect(CLI::App& app);
void register_make_model(CLI::App& app);
void register_logits(CLI::App& app);
void register_run(CLI::App& app);
void register_perplexity(CLI::App& app);
void register_tokenize(CLI::App& app);
void register_plan(CLI::App& app);
void register_profile(CLI::App& app);
void register_probe(CLI::App& app);
void register_pack(CLI::App& app);
void register_bench(CLI::App& app);

// Builds the full CLI (all subcommands) — main() and the CLI tests share it.
void register_all(CLI::App& app);
// Runs the CLI on argv as main() would; returns the process exit code. Errors go to stderr.
int run_cli(int argc, const char* const* argv);

}  // namespace hetmoe::cli
