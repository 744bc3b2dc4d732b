#pragma once
// The PostgreSQL command-line tools the agent runs on a stopped member: pg_basebackup
// (clone), pg_rewind (rejoin after a failover; psql for the CHECKPOINT before it) and
// pg_controldata (inspect). All run as
// Settings::run_as, take a timeout, and block: run them off the event loop. Passwords
// reach them only through the passfile named in the connection parameters.
//
// Both pg_basebackup and pg_rewind copy the source's configuration files: call
// write_managed_config() (or Postmaster::apply_config()) afterwards, before starting.
#include <chrono>
#include <string>

#include "base/result.hpp"
#include "pg/conninfo.hpp"
#include "pg/controldata.hpp"
#include "pg/settings.hpp"

namespace tandem::pg {

struct BasebackupResult {
  std::string output;  // pg_basebackup's progress and messages
  std::chrono::milliseconds elapsed{0};
};

// Clones `source` (host, port, replication user, passfile) into the empty data directory
// with `pg_basebackup -X stream -c fast`. On failure the partial copy is removed, the data
// directory is left empty, and the error quotes pg_basebackup's last lines.
// conflict when the data directory is not empty.
Result<BasebackupResult> basebackup(const Settings& s, const ConnParams& source,
                                    std::chrono::milliseconds timeout = std::chrono::minutes(30));

struct RewindResult {
  bool rewound = false;  // false: pg_rewind found the timelines had not diverged
  std::string output;
};

// Rewinds the stopped local data directory to `source` (a running primary; connect as
// a role with the grants create_roles() gives the replication role). It first runs a
// CHECKPOINT on the source (with psql): a freshly promoted primary has not yet written its
// new timeline to pg_control, and pg_rewind would wrongly say "no rewind required".
// An unclean target is first brought to a consistent state by pg_rewind itself.
// Errors: conflict (the local server runs), unavailable (cannot reach the source: retry),
// io (the rewind itself failed: re-clone with basebackup()).
Result<RewindResult> rewind(const Settings& s, const ConnParams& source,
                            std::chrono::milliseconds timeout = std::chrono::minutes(10));

// Runs pg_controldata on the data directory and parses it.
Result<ControlData> read_controldata(const Settings& s, std::chrono::milliseconds timeout = std::chrono::seconds(30));

// Removes everything inside the data directory, keeping the directory itself.
Status empty_data_dir(const Settings& s);

}  // namespace tandem::pg
