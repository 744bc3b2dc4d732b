#include "backup/restore.hpp"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "backup/base_backup.hpp"
#include "backup/wal_archive.hpp"
#include "base/process.hpp"
#include "pg/files.hpp"
#include "pg/managed_config.hpp"
#include "pg/pidfile.hpp"

namespace tandem::backup {

namespace fs = std::filesystem;

namespace {

std::string tail_of(const std::string& path, size_t lines) {
  std::ifstream in(path);
  std::vector<std::string> all;
  std::string l;
  while (std::getline(in, l)) all.push_back(l);
  std::string out;
  for (size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i) out += "\n  " + all[i];
  return out;
}

Status check_empty_target(const std::string& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) return {};
  if (!fs::is_directory(dir, ec)) return make_error(Errc::conflict, "{} exists and is not a directory", dir);
  if (!fs::is_empty(dir, ec))
    return make_error(Errc::conflict, "{} is not empty: restore only into a new data directory", dir);
  return {};
}

// Runs PostgreSQL on a private socket until recovery ended with a promotion, then stops it.
Status replay(const RestoreOptions& o, const std::string& log_file) {
  std::string sock = o.data_dir + ".restore-socket";
  std::error_code ec;
  fs::create_directories(sock, ec);
  if (ec) return make_error(Errc::io, "cannot create {}: {}", sock, ec.message());
  ::chmod(sock.c_str(), 0700);
  if (auto s = chown_recursive(sock, o.run_as); !s) return s;
  SpawnOptions so;
  so.argv = {o.bin_dir + "/postgres",
             "-D",
             o.data_dir,
             "-c",
             "listen_addresses=",
             "-c",
             "port=5432",
             "-c",
             "unix_socket_directories=" + sock,
             "-c",
             "archive_mode=off",
             "-c",
             "synchronous_standby_names=",
             "-c",
             "hot_standby=off",
             "-c",
             "logging_collector=off"};
  so.run_as_user = o.run_as;
  so.output_file = log_file;
  so.cwd = o.data_dir;
  so.parent_death_signal = SIGQUIT;
  auto pid = spawn(so);
  if (!pid) return pid.error();
  auto deadline = std::chrono::steady_clock::now() + o.start_timeout;
  std::string signal_file = o.data_dir + "/recovery.signal";
  bool promoted = false;
  while (std::chrono::steady_clock::now() < deadline) {
    if (auto exit = try_reap(*pid)) {
      fs::remove_all(sock, ec);
      return make_error(Errc::io,
                        "PostgreSQL stopped during recovery ({}); nothing was promoted. The end of its log ({}):{}",
                        exit->describe(), log_file, tail_of(log_file, 12));
    }
    auto pf = pg::read_pidfile(o.data_dir);
    if (!fs::exists(signal_file, ec) && pf && pf->status == "ready") {
      promoted = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ::kill(*pid, SIGINT);  // fast shutdown: a clean checkpoint, no further WAL needed
  auto exit = wait_for(*pid, std::chrono::seconds(120));
  if (!exit) {
    ::kill(*pid, SIGQUIT);
    (void)wait_for(*pid, std::chrono::seconds(10));
  }
  fs::remove_all(sock, ec);
  if (!promoted)
    return make_error(Errc::timeout, "recovery did not finish within {} s; see {}:{}", o.start_timeout.count(),
                      log_file, tail_of(log_file, 12));
  if (!exit || !exit->ok())
    return make_error(Errc::io, "PostgreSQL did not shut down cleanly after the restore ({}); see {}",
                      exit ? exit->describe() : "killed", log_file);
  return {};
}

}  // namespace

std::string RestorePlan::summary() const {
  std::string tls;
  for (const auto& s : path) tls += (tls.empty() ? "" : " -> ") + std::to_string(s.tli);
  return fmt::format(
      "backup {} (timeline {}, LSN {} .. {}, ended {}); WAL {} .. {} ({} segments, up to LSN {}); "
      "timeline path {}",
      backup.id, backup.timeline, backup.start_lsn.to_string(), backup.stop_lsn.to_string(), backup.stop_time,
      chain.first, chain.last, chain.segments, chain.end.to_string(), tls);
}

Result<RestorePlan> plan_restore(Repo& repo, const RecoveryTarget& target, const std::string& backup_id) {
  auto archived = list_archived_wal(repo.store());
  if (!archived) return archived.error();
  RestorePlan plan;
  plan.target_timeline = newest_timeline(*archived);
  std::vector<HistoryEntry> history;
  if (plan.target_timeline > 1) {
    std::string hname = history_name(plan.target_timeline);
    auto text = repo.get_unsealed(wal_key(hname));
    if (!text)
      return make_error(text.error().code, "timeline {} has WAL in {} but its history file {} cannot be read: {}",
                        plan.target_timeline, repo.url(), hname, text.error().message);
    auto h = parse_history(*text, hname);
    if (!h) return h.error();
    history = std::move(*h);
  }
  plan.path = timeline_path(plan.target_timeline, history);
  auto backups = list_backups(repo);
  if (!backups) return backups.error();
  auto chosen = choose_backup(*backups, target, plan.path, backup_id);
  if (!chosen) return chosen.error();
  plan.backup = std::move(*chosen);
  uint64_t seg_size = plan.backup.wal_segment_size ? plan.backup.wal_segment_size : kDefaultWalSegmentSize;
  plan.chain = walk_wal_chain(plan.path, plan.backup.start_lsn, *archived, seg_size);
  const WalChain& c = plan.chain;
  if (c.last.empty())
    return make_error(Errc::not_found, "WAL segment {} (where backup {} starts) is not in the archive {}", c.first,
                      plan.backup.id, repo.url());
  if (c.end < plan.backup.stop_lsn)
    return make_error(Errc::not_found,
                      "WAL gap: segment {} is missing from {}; backup {} needs WAL up to {} (LSN {}) to be "
                      "consistent",
                      c.missing.empty() ? segment_on_path(plan.path, c.end.value() / seg_size, seg_size) : c.missing,
                      repo.url(), plan.backup.id, plan.backup.stop_wal, plan.backup.stop_lsn.to_string());
  std::string range =
      fmt::format("the restorable range is {} (end of backup {}, LSN {}) to LSN {} (end of {})", plan.backup.stop_time,
                  plan.backup.id, plan.backup.stop_lsn.to_string(), c.end.to_string(), c.last);
  if (target.kind == TargetKind::lsn && target.lsn > c.end)
    return make_error(Errc::invalid_argument, "target {} is beyond the archived WAL: {}", target.describe(), range);
  if (target.kind == TargetKind::time && target.time > std::chrono::system_clock::now())
    return make_error(Errc::invalid_argument, "target {} is in the future: {}", target.describe(), range);
  bool gap_matters = target.kind != TargetKind::lsn || target.lsn >= c.end;
  if (!c.missing.empty() && gap_matters)
    return make_error(Errc::not_found,
                      "WAL gap: segment {} is missing from {} although {} was archived after it; replay would stop "
                      "at LSN {} (end of {}). Restore to an earlier target (--to-lsn) or find the segment",
                      c.missing, repo.url(), c.after_gap, c.end.to_string(), c.last);
  return plan;
}

std::string with_recovery_block(const std::string& conf,
                                const std::vector<std::pair<std::string, std::string>>& settings) {
  std::istringstream in(conf);
  std::string line, out;
  bool inside = false;
  while (std::getline(in, line)) {
    if (line == kRecoveryBlockBegin) inside = true;
    if (!inside) out += line + "\n";
    if (line == kRecoveryBlockEnd) inside = false;
  }
  if (settings.empty()) return out;
  out += std::string(kRecoveryBlockBegin) + "\n";
  for (const auto& [k, v] : settings) out += k + " = " + pg::quote_conf_value(v) + "\n";
  out += std::string(kRecoveryBlockEnd) + "\n";
  return out;
}

Result<RestoreResult> restore(Repo& repo, const RestoreOptions& o) {
  auto say = [&](const std::string& s) {
    if (o.progress) o.progress(s);
  };
  if (o.data_dir.empty() || o.data_dir.front() != '/')
    return make_error(Errc::invalid_argument, "the new data directory must be an absolute path, got '{}'", o.data_dir);
  if (auto s = check_empty_target(o.data_dir); !s) return s.error();
  auto plan = plan_restore(repo, o.target, o.backup_id);
  if (!plan) return plan.error();
  RestoreResult result;
  result.plan = std::move(*plan);
  say("plan: " + result.plan.summary());

  say(fmt::format("verifying backup {} ...", result.plan.backup.id));
  if (auto s = verify_backup(repo, result.plan.backup.id); !s) return s.error();
  say(fmt::format("extracting backup {} into {} ...", result.plan.backup.id, o.data_dir));
  if (auto s = restore_base(repo, result.plan.backup.id, o.data_dir, o.run_as); !s) return s.error();

  auto settings = recovery_settings(o.target, o.restore_command);
  settings.emplace_back("archive_mode", "off");  // a restored copy must not archive into the source's repository
  std::string auto_conf_path = o.data_dir + "/postgresql.auto.conf";
  auto auto_conf = pg::read_file(auto_conf_path);
  std::string base_conf = auto_conf ? *auto_conf : std::string();
  if (auto s = pg::write_file_atomic(auto_conf_path, with_recovery_block(base_conf, settings), 0600, o.run_as); !s)
    return s.error();
  std::error_code ec;
  fs::remove(o.data_dir + "/standby.signal", ec);
  if (auto s = pg::write_file_atomic(o.data_dir + "/recovery.signal", "", 0600, o.run_as); !s) return s.error();
  say(fmt::format("recovery settings written: target {}, then promote", o.target.describe()));

  if (o.start) {
    result.log_file = o.data_dir + ".restore.log";
    say(fmt::format("replaying WAL (PostgreSQL log: {}) ...", result.log_file));
    if (auto s = replay(o, result.log_file); !s) return s.error();
    // Keep only archive_mode = off: the targets are spent, and a later standby.signal
    // must not stop at them.
    auto conf = pg::read_file(auto_conf_path);
    if (!conf) return conf.error();
    if (auto s = pg::write_file_atomic(auto_conf_path, with_recovery_block(*conf, {{"archive_mode", "off"}}), 0600,
                                       o.run_as);
        !s)
      return s.error();
    result.replayed = true;
    say("recovery finished: promoted and shut down cleanly");
  }
  return result;
}

}  // namespace tandem::backup
