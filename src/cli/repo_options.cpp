#include "cli/repo_options.hpp"

namespace tandem::cli {

void add_repo_options(CLI::App* cmd, RepoOptions& o) {
  cmd->add_option("--config,-c", o.config, "Agent YAML whose backup: section names the repository");
  cmd->add_option("--dir", o.dir, "A `tandem up` directory (uses the backup: section of DIR/config/pg1.yaml)");
  cmd->add_option("--store", o.store, "Repository URL: file:///abs/dir or s3://bucket/prefix?endpoint=...");
  cmd->add_option("--key-file", o.key_file, "Backup key file (mode 0600)");
  cmd->add_option("--retired-key-file", o.retired_key_files, "Older backup key files (read only)");
  cmd->add_option("--credentials-file", o.credentials_file, "S3 credentials (INI, mode 0600)");
}

Result<config::AgentConfig> resolve_agent_config(const RepoOptions& o) {
  std::string path = o.config;
  if (path.empty() && !o.dir.empty()) path = o.dir + "/config/pg1.yaml";
  if (path.empty()) return make_error(Errc::not_found, "no --config or --dir given");
  return config::load_agent_config(path);
}

Result<backup::RepoConfig> resolve_repo_config(const RepoOptions& o) {
  backup::RepoConfig rc;
  if (!o.config.empty() || !o.dir.empty()) {
    auto cfg = resolve_agent_config(o);
    if (!cfg) return cfg.error();
    if (!cfg->backup.enabled())
      return make_error(Errc::invalid_argument, "{} has no backup: section (no repository configured)",
                        o.config.empty() ? o.dir + "/config/pg1.yaml" : o.config);
    rc = backup::repo_config_from(cfg->backup);
  }
  if (!o.store.empty()) rc.store_url = o.store;
  if (!o.key_file.empty()) rc.key_file = o.key_file;
  if (!o.retired_key_files.empty()) rc.retired_key_files = o.retired_key_files;
  if (!o.credentials_file.empty()) rc.credentials_file = o.credentials_file;
  if (rc.store_url.empty())
    return make_error(Errc::invalid_argument, "no repository: give --config AGENT.yaml, --dir DIR or --store URL");
  if (rc.key_file.empty())
    return make_error(Errc::invalid_argument, "no backup key: give --key-file (or --config / --dir)");
  return rc;
}

}  // namespace tandem::cli
