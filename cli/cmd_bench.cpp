#include "cli/commands.h"
namespace cl::cli {
void register_bench_commands(CLI::App&) {}
}  // namespace cl::cli
