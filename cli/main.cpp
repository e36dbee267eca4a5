// cityledger: one binary, subcommands (DESIGN §11).  Argument parsing and wiring only.
#include <CLI/CLI.hpp>

#include <iostream>

#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"cityledger: a replicated, append-only ledger for a city's digital-ruble wallets"};
  app.require_subcommand(1);
  cl::cli::register_wallet_commands(app);
  cl::cli::register_node_commands(app);
  cl::cli::register_audit_commands(app);
  cl::cli::register_bench_commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return cl::cli::exit_code();
}
