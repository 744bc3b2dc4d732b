#pragma once
// How backup commands (wal-push, wal-fetch, backup, restore) find the repository:
// `--config AGENT.yaml` (its backup: section), `--dir DIR` (a `tandem up` directory: the
// backup: section of DIR/config/pg1.yaml), or explicit `--store URL --key-file F`.
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "backup/repo.hpp"
#include "base/result.hpp"
#include "config/agent_config.hpp"

namespace tandem::cli {

// Filled by CLI11; owned by the subcommand's closure.
struct RepoOptions {
  std::string config;  // agent YAML
  std::string dir;     // tandem up directory
  std::string store;
  std::string key_file;
  std::vector<std::string> retired_key_files;
  std::string credentials_file;
};

// Adds --config, --dir, --store, --key-file, --retired-key-file, --credentials-file.
void add_repo_options(CLI::App* cmd, RepoOptions& o);

// The repository configuration the options name; explicit --store/--key-file override.
Result<backup::RepoConfig> resolve_repo_config(const RepoOptions& o);

// The agent config the options name (--config, or --dir's pg1.yaml); not_found otherwise.
Result<config::AgentConfig> resolve_agent_config(const RepoOptions& o);

}  // namespace tandem::cli
