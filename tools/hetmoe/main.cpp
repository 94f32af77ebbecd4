#include "tools/hetmoe/commands.h"

int main(int argc, char** argv) { return hetmoe::cli::run_cli(argc, argv); }
