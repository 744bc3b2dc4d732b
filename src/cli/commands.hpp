#pragma once
// The subcommands of the tandem binary. Each registers its options on a CLI11 app and
// returns a function that runs it (exit code).
#include <functional>

#include <CLI/CLI.hpp>

namespace tandem::cli {

using Runner = std::function<int()>;

Runner add_up(CLI::App& app);
Runner add_down(CLI::App& app);
Runner add_agent(CLI::App& app);
Runner add_portal(CLI::App& app);
void add_ctl(CLI::App& app, std::vector<std::pair<CLI::App*, Runner>>& runners);
// wal-push and wal-fetch (archive_command / restore_command).
void add_wal(CLI::App& app, std::vector<std::pair<CLI::App*, Runner>>& runners);
// restore (PITR into a new data directory).
void add_restore(CLI::App& app, std::vector<std::pair<CLI::App*, Runner>>& runners);
// backup create | list | show | verify | delete | expire.
void add_backup(CLI::App& app, std::vector<std::pair<CLI::App*, Runner>>& runners);

}  // namespace tandem::cli
