#pragma once
// The cluster state as stored under /tandem/<cluster>/ in the DCS, as plain values.
// A ClusterSnapshot is immutable once loaded: the HA decision reads one snapshot per cycle.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "base/lsn.hpp"
#include "base/result.hpp"

namespace tandem::dcs {

enum class SyncMode { off, on, strict };
const char* to_string(SyncMode m);
std::optional<SyncMode> parse_sync_mode(std::string_view s);

struct Tags {
  bool nofailover = false;  // never promoted automatically
  bool nosync = false;      // never chosen as synchronous standby
  std::map<std::string, std::string> other;
  bool operator==(const Tags&) const = default;
};

// members/<name>: written by each agent every cycle, bound to that agent's lease.
struct Member {
  std::string name;
  std::string role;   // "leader", "replica", "uninitialized", "stopped"
  std::string state;  // "running", "streaming", "starting", "stopped", "crashed", "cloning", "rewinding", "fenced"
  uint32_t timeline = 0;
  Lsn wal_position;      // leader: current write position; replica: last received or replayed
  Lsn replay_position;   // replica: last replayed
  std::string api_url;   // http://host:port of the agent's REST API
  std::string conn_url;  // postgres://host:port/postgres (no credentials)
  std::string host;
  int pg_port = 0;
  Tags tags;
  bool pending_restart = false;
  int64_t updated_ms = 0;  // unix millis of the write
  bool operator==(const Member&) const = default;
};

// leader: holds the member name; bound to the leader's lease.
struct Leader {
  std::string name;
  int64_t lease_id = 0;
  int64_t mod_revision = 0;
  bool operator==(const Leader&) const = default;
};

// sync: which member is the synchronous standby of which leader. Only the leader
// writes it. A member named here has every acknowledged commit of that leader.
struct SyncState {
  std::string leader;
  std::optional<std::string> sync_standby;
  int64_t mod_revision = 0;
  bool operator==(const SyncState&) const = default;
};

// switchover: a pending planned switchover (or a manual failover when leader is empty).
struct Switchover {
  std::string leader;           // expected current leader; empty for a manual failover
  std::string candidate;        // empty: the agents pick the healthiest
  int64_t scheduled_at_ms = 0;  // 0: now
  int64_t mod_revision = 0;
  bool operator==(const Switchover&) const = default;
};

// config: dynamic settings, shared by all agents, edited with `tandem ctl edit-config`.
struct DynamicConfig {
  int ttl = 4;                                // seconds a leader lease lives without renewal
  int loop_wait = 1;                          // seconds between HA cycles when nothing wakes us
  int retry_timeout = 2;                      // seconds a DCS or PostgreSQL call may take in total
  int64_t maximum_lag_on_failover = 1048576;  // bytes
  SyncMode synchronous_mode = SyncMode::on;
  bool paused = false;             // maintenance mode: no HA actions
  int primary_start_timeout = 10;  // seconds to restart a crashed leader in place before giving up the lease
  std::map<std::string, std::string> parameters;  // PostgreSQL parameters for every member
  int64_t mod_revision = 0;
  bool operator==(const DynamicConfig&) const = default;
};

// Validates a DynamicConfig; the message names the key and the problem.
Status validate(const DynamicConfig& c);

// history: every leader change.
struct HistoryEntry {
  int64_t time_ms = 0;
  std::string from;  // previous leader (may be empty)
  std::string to;    // new leader
  std::string reason;
  uint32_t timeline = 0;
  Lsn lsn;
  bool operator==(const HistoryEntry&) const = default;
};

struct ClusterSnapshot {
  std::optional<std::string> initialize;  // system identifier once bootstrapped
  std::optional<Leader> leader;
  std::map<std::string, Member> members;
  std::optional<SyncState> sync;
  std::optional<Switchover> switchover;
  std::optional<DynamicConfig> config;  // nullopt until the first agent writes it
  std::vector<HistoryEntry> history;
  int64_t revision = 0;  // store revision the snapshot was read at

  const Member* member(const std::string& name) const {
    auto it = members.find(name);
    return it == members.end() ? nullptr : &it->second;
  }
  const Member* leader_member() const { return leader ? member(leader->name) : nullptr; }
};

// JSON (de)serialisation of the stored values. Parsing errors name the key.
nlohmann::json to_json(const Member& m);
nlohmann::json to_json(const SyncState& s);
nlohmann::json to_json(const Switchover& s);
nlohmann::json to_json(const DynamicConfig& c);
nlohmann::json to_json(const HistoryEntry& h);
nlohmann::json to_json(const ClusterSnapshot& s);
Result<Member> member_from_json(const std::string& text);
Result<SyncState> sync_from_json(const std::string& text);
Result<Switchover> switchover_from_json(const std::string& text);
Result<DynamicConfig> config_from_json(const std::string& text);
Result<DynamicConfig> config_from_json(const nlohmann::json& j);
Result<std::vector<HistoryEntry>> history_from_json(const std::string& text);

}  // namespace tandem::dcs
