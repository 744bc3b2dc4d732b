#pragma once
// ArchiverStatus: how far WAL archiving (archive_command) is behind, from
// pg_stat_archiver, the current WAL file and the .ready files waiting in
// pg_wal/archive_status. Read by the agent each HA cycle when archiving is configured.
#include <cstdint>
#include <optional>
#include <string>

#include "base/result.hpp"
#include "pg/conn.hpp"

namespace tandem::pg {

struct ArchiverStatus {
  int64_t archived_count = 0;
  int64_t failed_count = 0;
  std::string last_archived_wal;  // empty before the first success
  std::string last_failed_wal;
  int64_t last_archived_unix = 0;  // 0 = never
  int64_t last_failed_unix = 0;
  std::string current_wal;  // primary: the WAL file being written; empty on a standby
  int ready_files = -1;     // files waiting for archive_command; -1 when unknown

  // Primary: complete segments written but not yet archived, from the names of the
  // current and the last archived segment (same timeline); nullopt when not computable.
  std::optional<int64_t> lag_segments(uint64_t segment_size = 16u << 20) const;
};

// Reads pg_stat_archiver (needs pg_monitor or superuser) and, when `data_dir` is not
// empty, counts pg_wal/archive_status/*.ready there.
Result<ArchiverStatus> query_archiver(Connection& conn, const std::string& data_dir);

}  // namespace tandem::pg
