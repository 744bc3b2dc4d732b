// The agent's restore actions (HA thread only, except reinitialize_from_backup(), which
// runs on an API thread and only checks and sets a flag):
//  - bootstrap from a backup: the member that wins `initialize` of a NEW cluster restores
//    another deployment's backup (bootstrap_from_backup: section, read only) and replays
//    WAL to the target, instead of initdb; do_bootstrap() does the rest;
//  - reinitialize from a backup: a replica is rebuilt from this cluster's repository
//    (latest backup + archived WAL) instead of pg_basebackup from the leader, then
//    streams from the leader through its slot.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include <spdlog/spdlog.h>

#include "backup/base_backup.hpp"
#include "backup/restore.hpp"
#include "base/process.hpp"
#include "ha/agent.hpp"
#include "pg/files.hpp"
#include "pg/setup.hpp"
#include "pg/tools.hpp"

namespace tandem::ha {

namespace fs = std::filesystem;

namespace {

backup::RepoConfig source_repo_config(const config::RestoreSourceConfig& src) {
  backup::RepoConfig rc;
  rc.store_url = src.store;
  rc.key_file = src.key_file;
  rc.retired_key_files = src.retired_key_files;
  rc.credentials_file = src.credentials_file;
  return rc;
}

// The replay ran with archive_mode = off, so the timeline history files it wrote when it
// promoted were never queued for archiving. Queue them now: the new repository needs the
// history of the timeline it continues on.
Status queue_history_files(const std::string& data_dir, const std::string& user) {
  std::string wal = data_dir + "/pg_wal";
  std::error_code ec;
  int queued = 0;
  for (auto it = fs::directory_iterator(wal, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (!name.ends_with(".history")) continue;
    std::string status = wal + "/archive_status/" + name;
    if (fs::exists(status + ".done") || fs::exists(status + ".ready")) continue;
    if (auto s = pg::write_file_atomic(status + ".ready", "", 0600, user); !s) return s;
    ++queued;
  }
  if (ec) return make_error(Errc::io, "cannot list {}: {}", wal, ec.message());
  if (queued > 0) spdlog::info("queued {} timeline history file(s) for the new WAL archive", queued);
  return {};
}

}  // namespace

Status Agent::restore_for_bootstrap() {
  const auto& src = cfg_.bootstrap_from_backup;
  auto target =
      backup::parse_target(src.to_time.empty() && src.to_lsn.empty() ? "latest" : "", src.to_time, src.to_lsn);
  if (!target) return make_error(Errc::invalid_argument, "bootstrap_from_backup: {}", target.error().message);
  if (cfg_.backup.enabled() && cfg_.backup.store == src.store)
    return make_error(Errc::invalid_argument,
                      "bootstrap_from_backup.store is this cluster's own repository; refusing to archive into it");
  backup::RepoConfig rc = source_repo_config(src);
  auto repo = backup::open_repo(rc);
  if (!repo) return make_error(repo.error().code, "source repository {}: {}", src.store, repo.error().message);

  std::string keys_dir = cfg_.run_dir + "/restore-source";
  auto fetch_rc = backup::copy_repo_secrets(rc, keys_dir, cfg_.run_as);
  if (!fetch_rc) return fetch_rc.error();
  backup::RestoreOptions o;
  o.target = *target;
  o.backup_id = src.backup_id;
  o.data_dir = cfg_.data_dir;
  o.run_as = cfg_.run_as;
  o.bin_dir = cfg_.bin_dir;
  o.start = true;
  o.restore_command = backup::wal_fetch_command(*fetch_rc);
  o.progress = [](const std::string& line) { spdlog::info("restore: {}", line); };
  spdlog::info("bootstrapping from a backup in {} (target {})", src.store, target->describe());
  auto r = backup::restore(**repo, o);
  std::error_code ec;
  fs::remove_all(keys_dir, ec);
  if (!r) return make_error(r.error().code, "restore from {}: {}", src.store, r.error().message);
  if (auto s = queue_history_files(cfg_.data_dir, cfg_.run_as); !s) return s;
  spdlog::info("restored backup {} from {} to {} (no initdb); the new cluster archives into {}", r->plan.backup.id,
               src.store, target->describe(), cfg_.backup.enabled() ? cfg_.backup.store : "nothing");
  return {};
}

Result<std::string> Agent::reinitialize_from_backup() {
  if (!cfg_.backup.enabled())
    return make_error(Errc::invalid_argument, "{} has no backup repository (no backup: section in {})", cfg_.name,
                      cfg_.source_path.empty() ? "its configuration" : cfg_.source_path);
  auto snap = store_->load();
  if (snap && snap->leader && snap->leader->name == cfg_.name) {
    return make_error(Errc::conflict, "{} is the leader; switch over before reinitializing it", cfg_.name);
  }
  auto repo = backup::open_repo(backup::repo_config_from(cfg_.backup));
  if (!repo) return repo.error();
  auto backups = backup::list_backups(**repo);
  if (!backups) return backups.error();
  if (backups->empty())
    return make_error(Errc::not_found,
                      "the repository {} has no complete backup to reinitialize {} from; take one with `tandem "
                      "backup create` first",
                      (*repo)->url(), cfg_.name);
  reinit_from_backup_ = true;
  reinit_requested_ = true;
  store_->wake();
  return fmt::format(
      "reinitialize {} from the latest backup ({}) plus archived WAL requested; it streams from the "
      "leader afterwards",
      cfg_.name, backups->back().id);
}

Status Agent::do_reinit_from_backup(const dcs::Member& leader) {
  auto repo = backup::open_repo(backup::repo_config_from(cfg_.backup));
  if (!repo) return repo.error();
  // Decide and check everything before the current data is touched.
  auto plan = backup::plan_restore(**repo, backup::RecoveryTarget{});
  if (!plan) return make_error(plan.error().code, "cannot reinitialize from a backup: {}", plan.error().message);
  phase_ = "restoring from backup";
  publish(store_->load(), LocalState{});
  auto fail = [&](Status s) {
    phase_.clear();
    return s;
  };
  spdlog::info("reinitializing from backup: {}", plan->summary());
  if (auto s = backup::verify_backup(**repo, plan->backup.id); !s) return fail(s);
  (void)stop_pg(pg::StopMode::immediate);
  if (auto s = pg::empty_data_dir(settings_); !s) return fail(s);
  auto started = SteadyClock::now();
  if (auto s = backup::restore_base(**repo, plan->backup.id, cfg_.data_dir, cfg_.run_as); !s) {
    (void)pg::empty_data_dir(settings_);
    return fail(s);
  }
  set_was_primary(false);
  archive_catchup_ = true;  // restore_command until it streams (see managed())
  phase_.clear();
  spdlog::info(
      "restored base backup {} in {} ms (not pg_basebackup); replaying archived WAL, then streaming from {} through "
      "its slot",
      plan->backup.id, std::chrono::duration_cast<Millis>(SteadyClock::now() - started).count(), leader.name);
  return do_start(pg::Role::standby, &leader);
}

void Agent::finish_archive_catchup(const dcs::ClusterSnapshot& snap) {
  if (!archive_catchup_ || !pg_status_) return;
  if (pg_status_->in_recovery && !pg_status_->streaming()) return;
  archive_catchup_ = false;
  if (!pg_status_->in_recovery) return;  // promoted meanwhile: a primary has no restore_command
  const dcs::Member* upstream = following_.empty() ? nullptr : snap.member(following_);
  auto change = pm_.apply_config(managed(pg::Role::standby, upstream));
  if (!change) {
    spdlog::error("dropping restore_command after the catch-up failed: {}", change.error().message);
    return;
  }
  spdlog::info("caught up from the archive and streaming from {}; restore_command is no longer needed", following_);
}

}  // namespace tandem::ha
