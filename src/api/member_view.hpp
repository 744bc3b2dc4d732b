#pragma once
// MemberView: what the REST API knows about this member, as one immutable snapshot the
// agent builds at the end of every HA cycle. ViewPublisher hands the latest snapshot from
// the agent's thread to the API threads.
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "base/lsn.hpp"
#include "dcs/cluster.hpp"

namespace tandem::api {

// WAL archiving as this member's PostgreSQL reports it (pg_stat_archiver).
struct ArchiveView {
  int64_t archived_count = 0;
  int64_t failed_count = 0;
  int64_t last_archived_unix = 0;  // 0 = never
  int64_t last_failed_unix = 0;    // 0 = never
  std::string last_archived_wal;
  std::optional<int64_t> lag_segments;  // primary: complete segments not yet archived
  int ready_files = -1;                 // files waiting for archive_command; -1 unknown
};

struct MemberView {
  std::string member;                  // this member's name
  std::string cluster;                 // the cluster (scope) name
  std::string role = "uninitialized";  // "leader", "replica", "uninitialized", "stopped"
  std::string pg_state = "stopped";    // "running", "streaming", "starting", "stopped", "crashed", "fenced", ...
  // This member holds the leader key with a live lease AND its PostgreSQL runs as a
  // writable primary. The only input to /primary and friends.
  bool holds_leader_lease = false;
  bool pg_running = false;
  bool in_recovery = false;
  bool streaming = false;            // the WAL receiver streams from the leader
  std::optional<int64_t> lag_bytes;  // bytes behind the leader; unknown when nullopt
  uint32_t timeline = 0;
  Lsn wal_position;              // leader: current write position; replica: last received
  Lsn replay_position;           // replica: last replayed
  bool is_sync_standby = false;  // named as synchronous standby in the DCS sync key
  dcs::SyncMode sync_mode = dcs::SyncMode::off;
  bool paused = false;
  std::optional<int64_t> lease_age_ms;        // since this member last renewed the leader lease
  std::optional<int64_t> lease_remaining_ms;  // until the leader lease expires, as of published_ms
  bool pending_restart = false;
  int64_t pg_start_time_ms = 0;     // unix ms PostgreSQL started; 0 when not running
  int64_t agent_start_time_ms = 0;  // unix ms the agent started
  std::string server_version;       // e.g. "15.5"
  std::string system_identifier;
  std::string api_url;
  std::string conn_url;  // no credentials
  dcs::Tags tags;
  bool dcs_reachable = true;           // the last DCS call of the cycle succeeded
  uint64_t ha_cycles = 0;              // HA cycles run since the agent started
  std::string last_decision;           // the sentence the last cycle logged
  std::string version;                 // tandem version
  int64_t published_ms = 0;            // unix ms the agent built this view
  dcs::ClusterSnapshot snapshot;       // the cluster state the last cycle loaded
  std::optional<ArchiveView> archive;  // set when WAL archiving is configured and PostgreSQL runs
};

// True when the member's tags ask load balancers to skip it ("noloadbalance": true).
bool no_load_balance(const dcs::Tags& tags);

// Thread-safe holder of the latest MemberView. The agent's thread publishes; API threads
// read. A reader keeps its snapshot alive for as long as it needs it.
class ViewPublisher {
 public:
  void publish(MemberView view) {
    auto next = std::make_shared<const MemberView>(std::move(view));
    std::lock_guard lock(mu_);
    current_.swap(next);
  }
  // nullptr until the first publish().
  std::shared_ptr<const MemberView> current() const {
    std::lock_guard lock(mu_);
    return current_;
  }

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const MemberView> current_;
};

}  // namespace tandem::api
