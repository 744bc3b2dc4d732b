#pragma once
// Recovery planning for restore / PITR, as pure functions of what the archive holds:
// timeline history files, the timeline path a restore follows, the WAL chain from a
// backup's start to the target (gaps named before anything is applied), the choice of
// base backup for a target, and the recovery settings PostgreSQL gets. No I/O here.
#include <chrono>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "backup/manifest.hpp"
#include "backup/repo.hpp"
#include "base/lsn.hpp"
#include "base/result.hpp"

namespace tandem::backup {

// One line of a timeline history file: `parent` ended at `switchpoint`.
struct HistoryEntry {
  uint32_t parent = 0;
  Lsn switchpoint;
};
// Parses "<tli>\t<X/Y>\t<reason>" lines (comments and blank lines skipped).
Result<std::vector<HistoryEntry>> parse_history(std::string_view text, const std::string& what);

// A stretch of WAL on one timeline: [begin, end); end = nullopt for the newest timeline.
struct TimelineSpan {
  uint32_t tli = 0;
  Lsn begin;
  std::optional<Lsn> end;
};
// The path from timeline 1 (or the oldest ancestor) to `target`, oldest first, from the
// target's history (empty history: the target alone, from LSN 0).
std::vector<TimelineSpan> timeline_path(uint32_t target, const std::vector<HistoryEntry>& history);
// The span holding `lsn`; nullptr when the path does not reach it.
const TimelineSpan* span_for_lsn(const std::vector<TimelineSpan>& path, Lsn lsn);
// The file PostgreSQL reads for segment number `segno`: the newest timeline on the path
// that began at or before that segment.
std::string segment_on_path(const std::vector<TimelineSpan>& path, uint64_t segno, uint64_t segment_size);

// What the archive offers along a path, from one starting LSN.
struct WalChain {
  std::string first;      // segment holding the start LSN
  std::string last;       // last segment of the unbroken run from `first` ("" when `first` is missing)
  Lsn end;                // end of `last`: WAL up to here can be replayed
  std::string missing;    // first missing segment when archived segments follow it on the path (a gap)
  std::string after_gap;  // the first archived segment after the gap
  size_t segments = 0;    // length of the unbroken run
};
WalChain walk_wal_chain(const std::vector<TimelineSpan>& path, Lsn start, const std::set<std::string>& archived,
                        uint64_t segment_size);

// The newest timeline the archive knows (history files and segment names); 1 when empty.
uint32_t newest_timeline(const std::set<std::string>& archived);

enum class TargetKind { latest, time, lsn };
struct RecoveryTarget {
  TargetKind kind = TargetKind::latest;
  std::chrono::system_clock::time_point time;  // kind == time
  Lsn lsn;                                     // kind == lsn
  std::string describe() const;
};
// "latest", an ISO-8601 / PostgreSQL timestamp ("2026-11-28T13:05:00Z",
// "2026-11-28 13:05:00.123+00") or an LSN ("0/3000060").
Result<RecoveryTarget> parse_target(const std::string& to, const std::string& to_time, const std::string& to_lsn);

// Picks the newest complete backup that ends before the target and lies on the path (or
// checks the one named). Errors say the restorable range.
Result<BackupManifest> choose_backup(const std::vector<BackupManifest>& backups, const RecoveryTarget& target,
                                     const std::vector<TimelineSpan>& path, const std::string& wanted_id);

// The settings a restore writes (postgresql.auto.conf) besides recovery.signal.
std::vector<std::pair<std::string, std::string>> recovery_settings(const RecoveryTarget& target,
                                                                   const std::string& restore_command);

// PostgreSQL's text form of a UTC time with microseconds: "2026-11-28 13:05:00.123456+00".
std::string pg_timestamp(std::chrono::system_clock::time_point t);

// Copies the key(s) and credentials file restore_command needs into `dir` (recreated,
// mode 0700), owned by `user` with mode 0600: the replaying PostgreSQL runs as that user
// and the originals may be root's. Returns `rc` pointing at the copies.
Result<RepoConfig> copy_repo_secrets(const RepoConfig& rc, const std::string& dir, const std::string& user);

// restore_command running this binary's `wal-fetch` against `rc` (missing = exit 1,
// anything else aborts recovery), with %f %p for PostgreSQL.
std::string wal_fetch_command(const RepoConfig& rc);

}  // namespace tandem::backup
