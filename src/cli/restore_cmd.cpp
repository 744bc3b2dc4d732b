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

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string self_binary_path() {
  std::error_code ec;
  std::string self = fs::read_symlink("/proc/self/exe", ec).string();
  if (ec) return "tandem";
  if (self.ends_with(" (deleted)")) self.resize(self.size() - 10);
  return self;
}

// Copies the files restore_command needs into a directory only `user` can read (the
// replaying PostgreSQL runs as that user; the originals may be root's).
Result<backup::RepoConfig> private_copy(const backup::RepoConfig& rc, const std::string& dir, const std::string& user) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return make_error(Errc::io, "cannot create {}: {}", dir, ec.message());
  ::chmod(dir.c_str(), 0700);
  backup::RepoConfig out = rc;
  int n = 0;
  auto copy = [&](const std::string& from) -> Result<std::string> {
    std::string to = fmt::format("{}/{}-{}", dir, n++, fs::path(from).filename().string());
    fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
    if (ec) return make_error(Errc::io, "cannot copy {}: {}", from, ec.message());
    ::chmod(to.c_str(), 0600);
    return to;
  };
  auto k = copy(rc.key_file);
  if (!k) return k.error();
  out.key_file = *k;
  out.retired_key_files.clear();
  for (const auto& f : rc.retired_key_files) {
    auto r = copy(f);
    if (!r) return r.error();
    out.retired_key_files.push_back(*r);
  }
  if (!rc.credentials_file.empty()) {
    auto c = copy(rc.credentials_file);
    if (!c) return c.error();
    out.credentials_file = *c;
  }
  if (auto s = chown_recursive(dir, user); !s) return s.error();
  return out;
}

std::string fetch_command(const backup::RepoConfig& rc) {
  std::string cmd = fmt::format("{} wal-fetch --store {} --key-file {}", shell_quote(self_binary_path()),
                                shell_quote(rc.store_url), shell_quote(rc.key_file));
  for (const auto& f : rc.retired_key_files) cmd += " --retired-key-file " + shell_quote(f);
  if (!rc.credentials_file.empty()) cmd += " --credentials-file " + shell_quote(rc.credentials_file);
  return cmd + " %f %p";
}

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
    auto priv = private_copy(*rc, secrets, a.run_as);
    if (!priv) return fail(priv.error().message);
    fetch_rc = *priv;
  }
  o.restore_command = fetch_command(fetch_rc);
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
