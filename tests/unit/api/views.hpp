#pragma once
// MemberView fixtures shared by the api unit tests.
#include "api/member_view.hpp"

namespace tandem::api::testing {

inline dcs::Member stored_member(const std::string& name, const std::string& role, uint64_t wal) {
  dcs::Member m;
  m.name = name;
  m.role = role;
  m.state = role == "leader" ? "running" : "streaming";
  m.timeline = 3;
  m.wal_position = Lsn(wal);
  m.api_url = "http://127.0.0.1:8008";
  m.host = "127.0.0.1";
  m.pg_port = 5432;
  return m;
}

// A three-member cluster: n1 leader at WAL 0x5000000, n2 sync standby, n3 async replica.
inline dcs::ClusterSnapshot three_members() {
  dcs::ClusterSnapshot s;
  s.initialize = "7300000000000000001";
  s.leader = dcs::Leader{"n1", 42, 100};
  s.members["n1"] = stored_member("n1", "leader", 0x5000000);
  s.members["n2"] = stored_member("n2", "replica", 0x5000000);
  s.members["n3"] = stored_member("n3", "replica", 0x5000000 - 4096);
  s.sync = dcs::SyncState{"n1", std::string("n2"), 101};
  s.config = dcs::DynamicConfig{};
  s.history.push_back(dcs::HistoryEntry{1700000000000, "n0", "n1", "failover: n0 lease expired", 3, Lsn(0x4000000)});
  s.revision = 120;
  return s;
}

inline MemberView base_view(const std::string& name) {
  MemberView v;
  v.member = name;
  v.cluster = "pg-main";
  v.timeline = 3;
  v.sync_mode = dcs::SyncMode::on;
  v.published_ms = 1'700'000'000'000;
  v.ha_cycles = 17;
  v.version = "0.1.0";
  v.server_version = "15.5";
  v.snapshot = three_members();
  return v;
}

inline MemberView leader_with_lease() {
  auto v = base_view("n1");
  v.role = "leader";
  v.pg_state = "running";
  v.holds_leader_lease = true;
  v.pg_running = true;
  v.wal_position = Lsn(0x5000000);
  v.lease_age_ms = 400;
  v.lease_remaining_ms = 3600;
  return v;
}

// Still believes it leads, but its lease is gone (e.g. the DCS is unreachable).
inline MemberView leader_without_lease() {
  auto v = leader_with_lease();
  v.holds_leader_lease = false;
  v.dcs_reachable = false;
  v.lease_age_ms.reset();
  v.lease_remaining_ms.reset();
  return v;
}

inline MemberView streaming_replica(const std::string& name = "n3", int64_t lag = 0) {
  auto v = base_view(name);
  v.role = "replica";
  v.pg_state = "streaming";
  v.pg_running = true;
  v.in_recovery = true;
  v.streaming = true;
  v.lag_bytes = lag;
  v.wal_position = Lsn(0x5000000 - static_cast<uint64_t>(lag));
  v.replay_position = v.wal_position;
  return v;
}

inline MemberView sync_replica() {
  auto v = streaming_replica("n2", 0);
  v.is_sync_standby = true;
  return v;
}

// In recovery but not streaming (e.g. the leader is unreachable, or restoring from archive).
inline MemberView detached_replica() {
  auto v = streaming_replica("n3", 0);
  v.streaming = false;
  v.lag_bytes.reset();
  return v;
}

inline MemberView stopped_member() {
  auto v = base_view("n3");
  v.role = "stopped";
  v.pg_state = "stopped";
  return v;
}

}  // namespace tandem::api::testing
