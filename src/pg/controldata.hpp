#pragma once
// ControlData: the fields of pg_controldata's output the agent decides on (pure parsing;
// the tool itself runs in tools.hpp). Works on a stopped data directory, which is when
// the agent needs it: before a rewind, a clone decision or a restart.
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "base/lsn.hpp"
#include "base/result.hpp"

namespace tandem::pg {

enum class ClusterState {
  starting_up,
  shut_down,
  shut_down_in_recovery,
  shutting_down,
  in_crash_recovery,
  in_archive_recovery,
  in_production,
  unknown,
};
const char* to_string(ClusterState s);
ClusterState parse_cluster_state(const std::string& text);

struct ControlData {
  ClusterState state = ClusterState::unknown;
  std::string state_text;  // as printed, e.g. "shut down in recovery"
  uint64_t system_identifier = 0;
  Lsn checkpoint_lsn;          // Latest checkpoint location
  Lsn redo_lsn;                // Latest checkpoint's REDO location
  std::string redo_wal_file;   // Latest checkpoint's REDO WAL file
  uint32_t timeline = 0;       // Latest checkpoint's TimeLineID
  uint32_t prev_timeline = 0;  // Latest checkpoint's PrevTimeLineID
  Lsn min_recovery_end_lsn;    // Minimum recovery ending location
  uint32_t min_recovery_end_timeline = 0;
  int checksum_version = 0;  // 0: checksums off
  bool wal_log_hints = false;
  std::map<std::string, std::string> fields;  // every "key: value" line

  // A clean shutdown: no crash recovery needed before a rewind or a restart.
  bool clean_shutdown() const {
    return state == ClusterState::shut_down || state == ClusterState::shut_down_in_recovery;
  }
  // Whether pg_rewind can work on this data directory.
  bool rewindable() const { return checksum_version != 0 || wal_log_hints; }
};

// Parses pg_controldata output produced with LC_ALL=C. invalid_argument (naming the
// field) when a required field is missing or malformed.
Result<ControlData> parse_controldata(const std::string& text);

// The cluster state and latest checkpoint read straight from <data>/global/pg_control,
// cheap enough to poll every few milliseconds while the server shuts down (running
// pg_controldata costs a process each time). Knows PostgreSQL 15's layout
// (pg_control version 1300); the file's CRC-32C is checked, so a torn or foreign file
// is an error, never a wrong answer.
struct ControlFileState {
  ClusterState state = ClusterState::unknown;
  Lsn checkpoint_lsn;  // Latest checkpoint location
};
// `bytes`: the start of pg_control (at least 292 bytes). invalid_argument when too short,
// of another version or when the CRC does not match.
Result<ControlFileState> parse_control_file(std::string_view bytes);
Result<ControlFileState> read_control_file(const std::string& data_dir);

}  // namespace tandem::pg
