#include "cli/up_from_backup.hpp"

#include <sys/stat.h>

#include <filesystem>

#include <fmt/format.h>

#include "backup/base_backup.hpp"
#include "backup/restore.hpp"
#include "config/agent_config.hpp"

namespace tandem::cli {

namespace fs = std::filesystem;

namespace {

bool is_url(const std::string& s) {
  return s.rfind("file://", 0) == 0 || s.rfind("s3://", 0) == 0;
}

std::string normalized_dir(const std::string& d) {
  std::error_code ec;
  fs::path p = fs::weakly_canonical(fs::absolute(d, ec), ec);
  std::string out = p.lexically_normal().string();
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

// file:///a/b/ and file:///a/b name the same store.
std::string normalized_url(const std::string& url) {
  if (url.rfind("file://", 0) == 0) return "file://" + normalized_dir(url.substr(7));
  std::string out = url;
  while (!out.empty() && out.back() == '/') out.pop_back();
  return out;
}

Status copy_secret(const std::string& from, const std::string& to) {
  std::error_code ec;
  fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
  if (ec) return make_error(Errc::io, "cannot copy the key {} to {}: {}", from, to, ec.message());
  if (::chmod(to.c_str(), 0600) != 0) return make_error(Errc::io, "chmod {}: {}", to, strerror(errno));
  return {};
}

}  // namespace

void add_from_backup_options(CLI::App* cmd, FromBackupOptions& o) {
  cmd->add_option("--from-backup", o.source,
                  "New deployment from a backup: a repository URL (file:///DIR, s3://...) or another deployment's "
                  "directory (its repository and key); that repository is only read");
  cmd->add_option("--key", o.key_file, "With --from-backup URL: the key file of that repository");
  cmd->add_option("--from-credentials-file", o.credentials_file,
                  "With --from-backup s3://...: S3 credentials (INI) for that repository");
  cmd->add_option("--backup-id", o.backup_id,
                  "With --from-backup: restore this backup (default: the newest that fits)");
  cmd->add_option("--to", o.to, "With --from-backup: 'latest' (default): replay all archived WAL");
  cmd->add_option("--to-time", o.to_time, "With --from-backup: point in time, e.g. 2026-11-28T13:05:00Z");
  cmd->add_option("--to-lsn", o.to_lsn, "With --from-backup: WAL position, e.g. 0/3000060");
}

Result<CheckedSource> check_backup_source(const FromBackupOptions& o, const std::string& new_dir,
                                          const std::string& new_store_url) {
  CheckedSource c;
  backup::RepoConfig rc;
  if (is_url(o.source)) {
    if (o.key_file.empty())
      return make_error(Errc::invalid_argument, "--from-backup {}: give the key file of that repository with --key",
                        o.source);
    rc.store_url = o.source;
    rc.key_file = o.key_file;
    rc.credentials_file = o.credentials_file;
  } else {
    std::string old_dir = normalized_dir(o.source);
    if (old_dir == normalized_dir(new_dir))
      return make_error(Errc::invalid_argument, "--from-backup {}: that is the new deployment's own directory",
                        o.source);
    std::string cfg_path = old_dir + "/config/pg1.yaml";
    auto cfg = config::load_agent_config(cfg_path);
    if (!cfg)
      return make_error(
          cfg.error().code,
          "--from-backup {}: not a repository URL (file:///..., s3://...) nor a `tandem up` directory: {}", o.source,
          cfg.error().message);
    if (!cfg->backup.enabled())
      return make_error(Errc::invalid_argument, "--from-backup {}: {} has no backup: section (no repository)", o.source,
                        cfg_path);
    rc = backup::repo_config_from(cfg->backup);
    if (!o.key_file.empty()) rc.key_file = o.key_file;
    if (!o.credentials_file.empty()) rc.credentials_file = o.credentials_file;
  }
  if (normalized_url(rc.store_url) == normalized_url(new_store_url))
    return make_error(Errc::invalid_argument,
                      "--from-backup: the source repository {} is the new deployment's own repository; a restored "
                      "deployment archives into a separate one (see --backup-store)",
                      rc.store_url);
  std::string to = o.to.empty() && o.to_time.empty() && o.to_lsn.empty() ? "latest" : o.to;
  auto target = backup::parse_target(to, o.to_time, o.to_lsn);
  if (!target) return target.error();

  auto repo = backup::open_repo(rc);
  if (!repo) return make_error(repo.error().code, "--from-backup {}: {}", o.source, repo.error().message);
  auto entries = backup::list_backup_entries(**repo);
  if (!entries) return make_error(entries.error().code, "--from-backup {}: {}", o.source, entries.error().message);
  bool any_complete = false;
  std::string problems;
  for (const auto& e : *entries) {
    any_complete = any_complete || e.complete;
    if (!e.complete) problems += fmt::format("; {}: {}", e.id, e.problem);
  }
  if (entries->empty())
    return make_error(Errc::not_found,
                      "--from-backup {}: the repository {} holds no backup; take one first (tandem backup create)",
                      o.source, rc.store_url);
  if (!any_complete)
    return make_error(Errc::not_found, "--from-backup {}: no backup in {} can be read (wrong --key, or damaged){}",
                      o.source, rc.store_url, problems);
  auto plan = backup::plan_restore(**repo, *target, o.backup_id);
  if (!plan) return make_error(plan.error().code, "--from-backup {}: {}", o.source, plan.error().message);

  c.source.store = rc.store_url;
  c.source.credentials_file = rc.credentials_file;
  c.source.retired_key_files = rc.retired_key_files;
  c.source.backup_id = o.backup_id;
  c.source.to_time = o.to_time;
  c.source.to_lsn = o.to_lsn;
  c.key_file = rc.key_file;
  c.target = target->describe();
  c.plan = plan->summary();
  return c;
}

Status install_backup_source(deploy::Layout& layout, const CheckedSource& c) {
  std::error_code ec;
  fs::create_directories(layout.dir + "/secrets", ec);
  if (ec) return make_error(Errc::io, "cannot create {}/secrets: {}", layout.dir, ec.message());
  ::chmod((layout.dir + "/secrets").c_str(), 0711);
  if (auto s = copy_secret(c.key_file, layout.from_backup_key_path()); !s) return s;
  layout.from_backup = c.source;
  layout.from_backup.retired_key_files.clear();
  for (size_t i = 0; i < c.source.retired_key_files.size(); ++i) {
    std::string to = layout.secret_path(fmt::format("source-backup-retired-{}.key", i + 1));
    if (auto s = copy_secret(c.source.retired_key_files[i], to); !s) return s;
    layout.from_backup.retired_key_files.push_back(to);
  }
  return {};
}

}  // namespace tandem::cli
