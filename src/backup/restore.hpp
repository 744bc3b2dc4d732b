#pragma once
// Restore / point-in-time recovery into a NEW data directory.
//
// plan_restore() decides from the repository alone, changing nothing: the newest
// timeline and its path (history files), the base backup for the target, and the WAL
// chain from that backup's start; a missing segment, a target outside the restorable
// range, or a backup that cannot become consistent is reported here, before anything is
// written. restore() then verifies the backup's objects (verify_backup), extracts it
// (restore_base), writes the recovery settings (restore_command = wal-fetch,
// recovery_target_*, recovery_target_action = promote, recovery.signal) and, with
// `start`, runs PostgreSQL as `run_as` on a private socket until it reached the target
// and promoted, then shuts it down cleanly.
//
// Blocking; runs on the caller's thread (the CLI's main thread, which also spawns
// PostgreSQL).
#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "backup/manifest.hpp"
#include "backup/recovery.hpp"
#include "backup/repo.hpp"
#include "base/result.hpp"

namespace tandem::backup {

struct RestorePlan {
  BackupManifest backup;
  uint32_t target_timeline = 1;
  std::vector<TimelineSpan> path;
  WalChain chain;  // from the backup's start segment
  std::string summary() const;
};

Result<RestorePlan> plan_restore(Repo& repo, const RecoveryTarget& target, const std::string& backup_id = "");

struct RestoreOptions {
  RecoveryTarget target;
  std::string backup_id;  // empty: the newest backup that ends before the target
  std::string data_dir;   // must not exist, or be empty
  std::string run_as = "postgres";
  std::string bin_dir = "/usr/lib/postgresql/15/bin";
  std::string restore_command;  // wal-fetch with %f %p, reading the same repository
  bool start = false;           // replay now (private socket), promote, shut down
  std::chrono::seconds start_timeout{1800};
  std::function<void(const std::string&)> progress;  // one line per step
};

struct RestoreResult {
  RestorePlan plan;
  bool replayed = false;  // start: PostgreSQL reached the target, promoted and stopped
  std::string log_file;   // start: PostgreSQL's log of the replay
};

Result<RestoreResult> restore(Repo& repo, const RestoreOptions& options);

// The lines restore() adds to postgresql.auto.conf, between these markers, so they can be
// found and removed again.
inline constexpr const char* kRecoveryBlockBegin = "# tandem restore: begin";
inline constexpr const char* kRecoveryBlockEnd = "# tandem restore: end";
// `conf` with the block replaced by `settings` (no block when empty).
std::string with_recovery_block(const std::string& conf,
                                const std::vector<std::pair<std::string, std::string>>& settings);

}  // namespace tandem::backup
