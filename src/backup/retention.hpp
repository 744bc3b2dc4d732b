#pragma once
// Retention: which base backups and which archived WAL files may be deleted. A pure
// function of (backups, WAL file names, now, policy) -> plan, so every rule is
// table-tested without a store; `tandem backup expire` and the agent's schedule apply the
// plan.
//
// Rules (config::RetentionConfig):
//  - max_age > 0: a complete backup older than max_age is deleted unless it is one of the
//    newest `count` (count is a floor). max_age == 0: only the newest `count` are kept
//    (count 0 with max_age 0 keeps everything).
//  - The newest complete backup is always kept.
//  - Point-in-time restore over the last pitr_window needs a base backup taken at or
//    before now - pitr_window: the newest such backup is kept (or, when every backup is
//    younger, the oldest one).
//  - An incomplete backup (no tandem.json) is deleted once its id is older than a day.
//  - WAL: every segment (and .partial / .backup file) before the start segment of the
//    oldest kept complete backup is deleted. Segment numbers grow along every timeline
//    path, so no kept backup's recovery, on any later timeline, needs such a segment.
//    History files are always kept. Without any complete backup no WAL is deleted.
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "backup/repo.hpp"
#include "config/agent_config.hpp"

namespace tandem::backup {

struct RetentionBackup {
  std::string id;
  bool complete = false;
  std::chrono::system_clock::time_point start_time;  // for incomplete ones: from the id
  std::string start_wal;                             // complete backups only
};

struct RetentionDecision {
  std::string id;
  bool keep = false;
  std::string reason;  // one sentence: why it is kept or deleted
};

struct RetentionPlan {
  std::vector<RetentionDecision> backups;  // one per input backup, newest first
  std::vector<std::string> delete_wal;     // WAL file names (without "wal/"), sorted
  std::string wal_floor;                   // first segment kept; empty when no WAL is deleted
  std::vector<std::string> delete_backups() const;
};

RetentionPlan plan_retention(const std::vector<RetentionBackup>& backups, const std::vector<std::string>& wal_files,
                             std::chrono::system_clock::time_point now, const config::RetentionConfig& policy,
                             uint64_t wal_segment_size = kDefaultWalSegmentSize);

}  // namespace tandem::backup
