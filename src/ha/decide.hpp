#pragma once
// The HA decision: a pure function of (cluster snapshot, local state, config, now) to one
// action and the reason for it. No I/O, no clocks, no sleeps: the agent observes, calls
// decide(), executes the action, and logs the reason as one line per cycle.
#include <optional>
#include <string>
#include <vector>

#include "base/clock.hpp"
#include "base/lsn.hpp"
#include "dcs/cluster.hpp"

namespace tandem::ha {

enum class PgRun { stopped, starting, running, crashed };

// One row of pg_stat_replication as the leader sees it.
struct ReplicaPeer {
  std::string name;        // application_name (the member name)
  bool streaming = false;  // state = 'streaming'
  bool sync = false;       // sync_state = 'sync'
  Lsn flush;               // flush_lsn
  Lsn replay;              // replay_lsn
};

// What this member knows about itself, gathered by the agent before each decision.
struct LocalState {
  std::string name;
  dcs::Tags tags;
  bool data_initialized = false;  // a complete data directory exists
  bool was_primary = false;       // the data directory last ran as a primary: rewind before following another
  PgRun pg = PgRun::stopped;
  bool in_recovery = false;  // running as a standby
  bool streaming = false;    // its WAL receiver streams from `following`
  std::string following;     // member our primary_conninfo points at ("" when none)
  uint32_t timeline = 0;
  Lsn wal_position;                              // primary: write position; standby: max(received, replayed)
  std::optional<TimePoint> pg_down_since;        // when a crash was noticed (cleared once it runs again)
  std::optional<TimePoint> not_streaming_since;  // standby with a leader but no WAL stream
  std::optional<TimePoint> lease_deadline;       // conservative local expiry of our lease; nullopt: no lease
  bool dcs_ok = true;                            // the last snapshot load succeeded
  Lsn last_leader_position;  // the leader's WAL position as last published (survives the leader key)
  std::string last_leader;   // name of the last leader we saw
  // Synchronous replication as the running primary sees it.
  std::string synchronous_standby_names;  // current setting ("" = asynchronous)
  Lsn sync_requested_at;                  // our write position when we last set synchronous_standby_names
  std::vector<ReplicaPeer> replicas;
  // Operator requests received through the REST API.
  bool restart_requested = false;
  bool reinit_requested = false;
  bool reinit_from_backup = false;  // with reinit_requested: rebuild from the repository, not the leader
  // Configuration: a new cluster is created by restoring a backup instead of initdb.
  bool bootstrap_from_backup = false;
  // Rebuilt from a backup: replaying archived WAL until it streams from `following`.
  bool archive_catchup = false;
};

enum class Action {
  none,              // nothing to do (the reason says why)
  bootstrap,         // win `initialize`, initdb, start as primary, take the leader key
  clone,             // copy the data directory from the leader (pg_basebackup)
  start_replica,     // start PostgreSQL read-only, following `target` (may be empty)
  start_primary,     // start PostgreSQL as primary (we hold the leader key)
  restart,           // restart PostgreSQL in its current role
  follow,            // point the running standby at `target`
  rewind,            // stop, pg_rewind from `target`, start following it (re-clone on failure)
  reinitialize,      // wipe the data directory and clone from `target`
  acquire_leader,    // race for the leader key; on success promote (or keep running as primary)
  promote,           // we hold the leader key but are still a standby
  keep_leader,       // we are the leader: refresh the key, apply `sync`
  demote,            // running as primary without the leader key: stop fast, follow `target`
  fence,             // our lease is about to expire: stop accepting writes immediately
  release_leader,    // give up the leader key (PostgreSQL cannot run as primary)
  switchover,        // planned: stop fast, hand the leader key over to `target`
  clear_switchover,  // drop a switchover request that cannot be carried out
  // Win `initialize`, restore the configured backup, promote at its target, take the leader key.
  bootstrap_from_backup,
  // Wipe the data directory, restore the latest backup and read archived WAL, then stream from `target`.
  reinitialize_from_backup,
};
const char* to_string(Action a);

// How the leader changes synchronous replication this cycle, if at all. The order of the
// two writes matters: a standby becomes promotable (sync key) only after PostgreSQL waits
// for it and it has caught up; it stops being promotable before PostgreSQL stops waiting.
struct SyncPlan {
  enum class Step {
    none,
    set_standby_names,  // set synchronous_standby_names = standby_names (PostgreSQL first)
    record_standby,     // write the sync key naming `standby` (after it is sync and caught up)
    unrecord_standby,   // write the sync key with no standby (before PostgreSQL stops waiting)
  };
  Step step = Step::none;
  std::string standby_names;           // for set_standby_names
  std::optional<std::string> standby;  // for record_standby
};

struct Decision {
  Action action = Action::none;
  std::string target;  // member to follow / clone from / hand over to
  SyncPlan sync;
  std::string reason;  // one human sentence
};

// Seconds before the lease deadline at which a primary stops taking writes; the stop
// (SIGQUIT, immediate shutdown) must finish within this margin. See docs/architecture.md.
Millis fence_margin(const dcs::DynamicConfig& cfg);

// True when a running primary must stop accepting writes now because its lease may expire.
bool must_fence(const LocalState& local, const dcs::DynamicConfig& cfg, TimePoint now);

// Seconds a switchover may wait for the candidate to catch up before it is abandoned.
inline constexpr int kSwitchoverTimeoutSeconds = 60;
// A standby that does not stream from the leader for this long is rewound / re-cloned.
inline constexpr int kNotStreamingRepairSeconds = 15;
// ... or, for a standby rebuilt from a backup that still replays archived WAL, this long.
inline constexpr int kArchiveCatchupRepairSeconds = 600;

Decision decide(const dcs::ClusterSnapshot& cluster, const LocalState& local, const dcs::DynamicConfig& cfg,
                TimePoint now, int64_t now_unix_ms);

}  // namespace tandem::ha
