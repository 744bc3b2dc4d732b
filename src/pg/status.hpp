#pragma once
// MemberStatus: what a running member says about itself, read in one round trip
// (one multi-statement simple query). The HA agent reads it every cycle.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/lsn.hpp"
#include "base/result.hpp"
#include "pg/conn.hpp"

namespace tandem::pg {

// One row of pg_stat_replication: a standby (or pg_basebackup) streaming from us.
struct ReplicationPeer {
  std::string application_name;
  std::string client_addr;
  std::string state;       // "streaming", "catchup", "backup", "startup", "stopping"
  std::string sync_state;  // "async", "potential", "sync", "quorum"
  Lsn sent_lsn, write_lsn, flush_lsn, replay_lsn;
};

// pg_stat_wal_receiver on a standby.
struct WalReceiver {
  std::string status;  // "streaming", "starting", "waiting", "stopping", ...
  std::string sender_host;
  int sender_port = 0;
  uint32_t received_tli = 0;
  Lsn flushed_lsn;
  Lsn latest_end_lsn;
  std::string slot_name;
};

struct MemberStatus {
  bool in_recovery = false;
  uint64_t system_identifier = 0;
  // Primary: the timeline of the current WAL insert position. Standby: the timeline
  // being received (walreceiver), else that of the last restartpoint (pg_control).
  uint32_t timeline = 0;
  std::optional<Lsn> write_lsn;    // primary: pg_current_wal_lsn()
  std::optional<Lsn> flush_lsn;    // primary: pg_current_wal_flush_lsn()
  std::optional<Lsn> receive_lsn;  // standby: pg_last_wal_receive_lsn()
  std::optional<Lsn> replay_lsn;   // standby: pg_last_wal_replay_lsn()
  bool replay_paused = false;
  std::optional<WalReceiver> wal_receiver;  // standby with a running walreceiver
  std::string synchronous_standby_names;
  std::vector<ReplicationPeer> replication;  // ordered by application_name
  bool pending_restart = false;              // a changed setting needs a restart
  int64_t postmaster_start_unix = 0;

  // The furthest WAL position this member has: write (primary) or max(receive, replay).
  Lsn wal_position() const;
  bool streaming() const { return wal_receiver && wal_receiver->status == "streaming"; }
  const ReplicationPeer* peer(const std::string& application_name) const;
};

// Reads the status of the member behind `conn` (needs superuser or pg_monitor).
Result<MemberStatus> query_status(Connection& conn);

}  // namespace tandem::pg
