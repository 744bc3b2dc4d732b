// `tandem restore`: restore / point-in-time recovery into a new data directory.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <memory>

#include "backup/restore.hpp"
#include "base/process.hpp"
#include "cli/commands.hpp"
#include "cli/repo_options.hpp"

namespace tandem::cli {

namespace {

namespace fs = std::filesystem;

struct RestoreArgs {
  RepoOptions repo;
  std::string to;
  std::string to_time;
  std::string to_lsn;
  std::string backup_id;
  std::string data_dir;
  std::string run_as = "postgres";
  std::string bin_dir = "/usr/lib/postgresql/15/bin";
  bool start = false;
  bool plan_only = false;
};

int run_restore(const RestoreArgs& a) {
  auto fail = [](const std::string& m) {
    std::cerr << "tandem restore: " << m << "\n";
    return 1;
  };
  auto target = backup::parse_target(a.to, a.to_time, a.to_lsn);
  if (!target) return fail(target.error().message);
  auto rc = resolve_repo_config(a.repo);
  if (!rc) return fail(rc.error().message);
  auto repo = backup::open_repo(*rc);
  if (!repo) return fail(repo.error().message);
  if (a.plan_only) {
    auto plan = backup::plan_restore(**repo, *target, a.backup_id);
    if (!plan) return fail(plan.error().message);
    std::cout << "restore to " << target->describe() << ": " << plan->summary() << "\n";
    return 0;
  }
  if (a.data_dir.empty()) return fail("--data-dir NEW is required");
  std::string data_dir = fs::absolute(a.data_dir).lexically_normal().string();
  while (data_dir.size() > 1 && data_dir.back() == '/') data_dir.pop_back();

  backup::RestoreOptions o;
  o.target = *target;
  o.backup_id = a.backup_id;
  o.data_dir = data_dir;
  o.run_as = a.run_as;
  o.bin_dir = a.bin_dir;
  o.start = a.start;
  o.progress = [](const std::string& line) { std::cout << line << std::endl; };
  std::string secrets = data_dir + ".restore-secrets";
  backup::RepoConfig fetch_rc = *rc;
  if (a.start) {
    auto priv = backup::copy_repo_secrets(*rc, secrets, a.run_as);
    if (!priv) return fail(priv.error().message);
    fetch_rc = *priv;
  }
  o.restore_command = backup::wal_fetch_command(fetch_rc);
  auto r = backup::restore(**repo, o);
  std::error_code ec;
  if (a.start) fs::remove_all(secrets, ec);
  if (!r) return fail(r.error().message);
  if (r->replayed) {
    std::cout << fmt::format("restored {} to {} in {}\n", r->plan.backup.id, target->describe(), data_dir);
  } else {
    std::cout << fmt::format(
        "restored {} into {}; start PostgreSQL on it (as {}) to replay WAL to {} and promote. The key file must be "
        "readable by {}.\n",
        r->plan.backup.id, data_dir, a.run_as, target->describe(), a.run_as);
  }
  return 0;
}

}  // namespace

void add_restore(CLI::App& app, std::vector<std::pair<CLI::App*, Runner>>& runners) {
  auto args = std::make_shared<RestoreArgs>();
  auto* cmd = app.add_subcommand("restore", "Restore a base backup plus archived WAL into a NEW data directory");
  add_repo_options(cmd, args->repo);
  cmd->add_option("--from-dir", args->repo.dir, "Restore from the repository of this `tandem up` directory");
  cmd->add_option("--to", args->to, "'latest': replay all archived WAL");
  cmd->add_option("--to-time", args->to_time, "Point in time, e.g. 2026-11-28T13:05:00Z or '2026-11-28 13:05:00+00'");
  cmd->add_option("--to-lsn", args->to_lsn, "WAL position, e.g. 0/3000060");
  cmd->add_option("--backup", args->backup_id, "Use this backup (default: the newest that ends before the target)");
  cmd->add_option("--data-dir", args->data_dir, "The new data directory (must not exist or be empty)");
  cmd->add_option("--run-as", args->run_as, "User PostgreSQL runs as (default postgres)");
  cmd->add_option("--bin-dir", args->bin_dir, "PostgreSQL binaries");
  cmd->add_flag("--start", args->start,
                "Replay now: run PostgreSQL until it reached the target and promoted, then stop");
  cmd->add_flag("--plan", args->plan_only, "Only check and print what a restore would use");
  runners.emplace_back(cmd, [args] { return run_restore(*args); });
}

}  // namespace tandem::cli
