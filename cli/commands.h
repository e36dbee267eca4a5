// Subcommand registration for the cityledger binary.
#pragma once

#include <CLI/CLI.hpp>

namespace cl::cli {

// `wallet new`, `sign`.
void register_wallet_commands(CLI::App& app);
// `node`, `submit`.
void register_node_commands(CLI::App& app);
// `audit`, `export`, `verify-receipt`.
void register_audit_commands(CLI::App& app);
// `bench apply`, and `bench run` (HTTP load against a running node).
void register_bench_commands(CLI::App& app);
void register_http_bench(CLI::App& bench);
void register_audit_bench(CLI::App& bench);
// `bench rush` (cityledger vs PostgreSQL), `bench ceilings`, `bench growth`.
void register_rush_bench(CLI::App& bench);
void register_ceilings_bench(CLI::App& bench);
void register_growth_bench(CLI::App& bench);

// The exit code set by the subcommand that ran (0 unless it failed).
int exit_code();
void set_exit_code(int code);

}  // namespace cl::cli
