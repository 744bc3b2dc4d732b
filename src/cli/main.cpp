// tandem: one binary, one subcommand per part of a deployment.
#include <CLI/CLI.hpp>

#include "cli/commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{"tandem: highly available PostgreSQL (agents, etcd-backed leader election, portals)"};
  app.require_subcommand(1);
  std::vector<std::pair<CLI::App*, tandem::cli::Runner>> runners;
  runners.reserve(64);  // add_ctl keeps pointers into it
  runners.emplace_back(nullptr, tandem::cli::add_up(app));
  runners.back().first = app.get_subcommand("up");
  runners.emplace_back(nullptr, tandem::cli::add_down(app));
  runners.back().first = app.get_subcommand("down");
  runners.emplace_back(nullptr, tandem::cli::add_agent(app));
  runners.back().first = app.get_subcommand("agent");
  runners.emplace_back(nullptr, tandem::cli::add_portal(app));
  runners.back().first = app.get_subcommand("portal");
  tandem::cli::add_ctl(app, runners);
  tandem::cli::add_wal(app, runners);
  tandem::cli::add_restore(app, runners);
  tandem::cli::add_backup(app, runners);
  CLI11_PARSE(app, argc, argv);
  for (auto& [cmd, run] : runners) {
    if (cmd->parsed() && run) return run();
  }
  return 2;
}
