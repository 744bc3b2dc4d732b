// Table tests of the health endpoints (every endpoint x member state), lag limits,
// tag filters and the status/cluster/history/config documents.
#include "api/health.hpp"

#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "views.hpp"

namespace tandem::api {
namespace {

using nlohmann::json;
using namespace testing;  // NOLINT: fixtures from views.hpp

constexpr int64_t kNow = 1'700'000'000'500;

Request get(const std::string& path, std::map<std::string, std::string> query = {}) {
  Request r;
  r.method = "GET";
  r.path = path;
  r.query = std::move(query);
  return r;
}

int status_of(const MemberView& v, const std::string& path, std::map<std::string, std::string> query = {}) {
  return handle_get(v, get(path, std::move(query)), kNow).status;
}

struct Row {
  const char* name;
  MemberView view;
  // Expected status for each endpoint, in the order of kEndpoints.
  std::vector<int> expected;
};

const std::vector<std::string> kEndpoints = {"/primary", "/master",       "/leader", "/read-write", "/",
                                             "/replica", "/read-only",    "/health", "/sync",       "/synchronous",
                                             "/async",   "/asynchronous", "/status", "/readiness"};

std::vector<Row> table() {
  auto sync_off = sync_replica();
  sync_off.sync_mode = dcs::SyncMode::off;
  auto noloadbalance = streaming_replica();
  noloadbalance.tags.other["noloadbalance"] = "true";
  auto crashed_leader = leader_without_lease();
  crashed_leader.pg_running = false;
  crashed_leader.pg_state = "crashed";
  auto fenced = leader_without_lease();
  fenced.pg_state = "fenced";
  fenced.role = "replica";
  //                                  pri  mas  lea  rw   /    rep  ro   hea  syn  synch asy  async sta  rdy
  return {
      {"leader with lease",
       leader_with_lease(),
       {200, 200, 200, 200, 200, 503, 200, 200, 503, 503, 503, 503, 200, 200}},
      {"leader without lease",
       leader_without_lease(),
       {503, 503, 503, 503, 503, 503, 503, 200, 503, 503, 503, 503, 200, 503}},
      {"crashed leader", crashed_leader, {503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 200, 503}},
      {"fenced old leader", fenced, {503, 503, 503, 503, 503, 503, 503, 200, 503, 503, 503, 503, 200, 503}},
      {"streaming async replica",
       streaming_replica(),
       {503, 503, 503, 503, 503, 200, 200, 200, 503, 503, 200, 200, 200, 200}},
      {"sync standby", sync_replica(), {503, 503, 503, 503, 503, 200, 200, 200, 200, 200, 503, 503, 200, 200}},
      {"sync standby, sync mode off", sync_off, {503, 503, 503, 503, 503, 200, 200, 200, 503, 503, 200, 200, 200, 200}},
      {"lagging replica without ?lag",
       streaming_replica("n3", 50 << 20),
       {503, 503, 503, 503, 503, 200, 200, 200, 503, 503, 200, 200, 200, 200}},
      {"replica not streaming",
       detached_replica(),
       {503, 503, 503, 503, 503, 503, 503, 200, 503, 503, 503, 503, 200, 503}},
      {"noloadbalance replica", noloadbalance, {503, 503, 503, 503, 503, 503, 503, 200, 503, 503, 503, 503, 200, 200}},
      {"stopped member", stopped_member(), {503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 200, 503}},
  };
}

TEST(HealthTable, EveryEndpointForEveryMemberState) {
  for (const auto& row : table()) {
    ASSERT_EQ(row.expected.size(), kEndpoints.size()) << row.name;
    for (size_t i = 0; i < kEndpoints.size(); ++i) {
      auto r = handle_get(row.view, get(kEndpoints[i]), kNow);
      EXPECT_EQ(r.status, row.expected[i]) << row.name << " GET " << kEndpoints[i];
      EXPECT_EQ(r.content_type, "application/json");
      auto body = json::parse(r.body);
      EXPECT_EQ(body.at("role"), row.view.role) << row.name << " " << kEndpoints[i];
      EXPECT_EQ(body.at("state"), row.view.pg_state) << row.name << " " << kEndpoints[i];
    }
  }
}

TEST(HealthTable, TrailingSlashIsTheSameEndpoint) {
  EXPECT_EQ(status_of(leader_with_lease(), "/primary/"), 200);
  EXPECT_EQ(status_of(streaming_replica(), "/replica/"), 200);
}

TEST(HealthLag, ReplicaLagLimits) {
  auto v = streaming_replica("n3", 50 << 20);  // 50 MiB behind
  EXPECT_EQ(status_of(v, "/replica", {{"lag", "10MB"}}), 503);
  EXPECT_EQ(status_of(v, "/replica", {{"lag", "100MB"}}), 200);
  EXPECT_EQ(status_of(v, "/replica", {{"lag", "1GB"}}), 200);
  EXPECT_EQ(status_of(v, "/replica", {{"lag", std::to_string(50 << 20)}}), 200);  // equal is not "exceeds"
  EXPECT_EQ(status_of(v, "/replica", {{"lag", std::to_string((50 << 20) - 1)}}), 503);
  EXPECT_EQ(status_of(v, "/read-only", {{"lag", "10MB"}}), 503);
  EXPECT_EQ(status_of(v, "/async", {{"lag", "10MB"}}), 503);
  EXPECT_EQ(status_of(v, "/async", {{"lag", "64MB"}}), 200);
}

TEST(HealthLag, LeaderIsNeverLagging) {
  EXPECT_EQ(status_of(leader_with_lease(), "/read-only", {{"lag", "0"}}), 200);
  EXPECT_EQ(status_of(leader_with_lease(), "/primary", {{"lag", "0"}}), 200);
}

TEST(HealthLag, LagFromSnapshotWhenAgentGaveNone) {
  auto v = streaming_replica("n3", 0);
  v.lag_bytes.reset();
  v.wal_position = Lsn(0x5000000 - 8192);  // leader n1 is at 0x5000000 in the snapshot
  EXPECT_EQ(effective_lag(v), 8192);
  EXPECT_EQ(status_of(v, "/replica", {{"lag", "4096"}}), 503);
  EXPECT_EQ(status_of(v, "/replica", {{"lag", "8kB"}}), 200);
}

TEST(HealthLag, UnknownLagFailsALagBound) {
  auto v = streaming_replica("n3", 0);
  v.lag_bytes.reset();
  v.snapshot.leader.reset();  // no leader: lag cannot be known
  EXPECT_FALSE(effective_lag(v).has_value());
  EXPECT_EQ(status_of(v, "/replica"), 200);
  EXPECT_EQ(status_of(v, "/replica", {{"lag", "1GB"}}), 503);
}

TEST(HealthLag, BadLagIsABadRequest) {
  auto r = handle_get(streaming_replica(), get("/replica", {{"lag", "ten megabytes"}}), kNow);
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(json::parse(r.body).at("error").get<std::string>().find("lag"), std::string::npos);
  EXPECT_EQ(status_of(streaming_replica(), "/replica", {{"lag", "-1"}}), 400);
  EXPECT_EQ(status_of(streaming_replica(), "/replica", {{"lag", "10XB"}}), 400);
}

TEST(ByteSize, Units) {
  EXPECT_EQ(parse_byte_size("0"), 0);
  EXPECT_EQ(parse_byte_size("1048576"), 1048576);
  EXPECT_EQ(parse_byte_size("512B"), 512);
  EXPECT_EQ(parse_byte_size("16kB"), 16 * 1024);
  EXPECT_EQ(parse_byte_size("16KB"), 16 * 1024);
  EXPECT_EQ(parse_byte_size("10MB"), 10LL << 20);
  EXPECT_EQ(parse_byte_size("10MiB"), 10LL << 20);
  EXPECT_EQ(parse_byte_size("10M"), 10LL << 20);
  EXPECT_EQ(parse_byte_size("1GB"), 1LL << 30);
  EXPECT_EQ(parse_byte_size("2TB"), 2LL << 40);
  EXPECT_EQ(parse_byte_size(" 3 MB "), 3LL << 20);
  EXPECT_FALSE(parse_byte_size(""));
  EXPECT_FALSE(parse_byte_size("MB"));
  EXPECT_FALSE(parse_byte_size("1.5GB"));
  EXPECT_FALSE(parse_byte_size("-5"));
  EXPECT_FALSE(parse_byte_size("5Bytes"));
  EXPECT_FALSE(parse_byte_size("99999999999TB"));  // overflow
}

TEST(HealthTags, QueryTagFilters) {
  auto v = streaming_replica();
  v.tags.other["zone"] = "a";
  v.tags.nofailover = true;
  EXPECT_EQ(status_of(v, "/replica", {{"tag_zone", "a"}}), 200);
  EXPECT_EQ(status_of(v, "/replica", {{"tag_zone", "b"}}), 503);
  EXPECT_EQ(status_of(v, "/replica", {{"tag_nofailover", "true"}}), 200);
  EXPECT_EQ(status_of(v, "/replica", {{"tag_nofailover", "false"}}), 503);
  EXPECT_EQ(status_of(v, "/replica", {{"tag_rack", "r1"}}), 503);  // tag absent
  EXPECT_EQ(status_of(v, "/status", {{"tag_zone", "b"}}), 200);    // status is not a health check
}

TEST(HealthLiveness, FailsWhenTheHaLoopStalls) {
  auto v = leader_with_lease();  // default ttl 4 s, loop_wait 1 s -> limit 8 s
  EXPECT_EQ(handle_get(v, get("/liveness"), v.published_ms + 1000).status, 200);
  EXPECT_EQ(handle_get(v, get("/liveness"), v.published_ms + 8000).status, 200);
  auto stalled = handle_get(v, get("/liveness"), v.published_ms + 8001);
  EXPECT_EQ(stalled.status, 503);
  EXPECT_EQ(json::parse(stalled.body).at("last_cycle_age_ms"), 8001);
}

TEST(HealthStatus, MemberStatusDocument) {
  auto v = sync_replica();
  v.pg_start_time_ms = 1'700'000'000'000;
  v.pending_restart = true;
  auto j = json::parse(handle_get(v, get("/status"), kNow).body);
  EXPECT_EQ(j.at("member"), "n2");
  EXPECT_EQ(j.at("cluster"), "pg-main");
  EXPECT_EQ(j.at("role"), "replica");
  EXPECT_EQ(j.at("replication_state"), "streaming");
  EXPECT_EQ(j.at("sync_standby"), true);
  EXPECT_EQ(j.at("sync_mode"), "on");
  EXPECT_EQ(j.at("pending_restart"), true);
  EXPECT_EQ(j.at("leader"), "n1");
  EXPECT_EQ(j.at("cluster_unlocked"), false);
  EXPECT_EQ(j.at("lag"), 0);
  EXPECT_EQ(j.at("timeline"), 3);
  EXPECT_EQ(j.at("postmaster_start_time"), "2023-11-14T22:13:20.000Z");
  EXPECT_EQ(j.at("tandem").at("scope"), "pg-main");
}

TEST(HealthCluster, ClusterDocument) {
  auto v = leader_with_lease();
  v.paused = true;
  v.snapshot.switchover = dcs::Switchover{"n1", "n2", 1'700'000'600'000, 130};
  auto r = handle_get(v, get("/cluster"), kNow);
  ASSERT_EQ(r.status, 200);
  auto j = json::parse(r.body);
  EXPECT_EQ(j.at("scope"), "pg-main");
  EXPECT_EQ(j.at("leader"), "n1");
  EXPECT_EQ(j.at("sync_standby"), "n2");
  EXPECT_EQ(j.at("pause"), true);
  EXPECT_EQ(j.at("scheduled_switchover").at("candidate"), "n2");
  EXPECT_EQ(j.at("scheduled_switchover").at("scheduled_at"), "2023-11-14T22:23:20.000Z");
  ASSERT_EQ(j.at("members").size(), 3u);
  std::map<std::string, json> by_name;
  for (const auto& m : j.at("members")) by_name[m.at("name")] = m;
  EXPECT_EQ(by_name["n1"].at("lag"), 0);
  EXPECT_EQ(by_name["n2"].at("lag"), 0);
  EXPECT_EQ(by_name["n3"].at("lag"), 4096);
  EXPECT_EQ(by_name["n3"].at("role"), "replica");
  EXPECT_EQ(by_name["n3"].at("state"), "streaming");
  EXPECT_EQ(by_name["n3"].at("port"), 5432);
  EXPECT_EQ(by_name["n3"].at("host"), "127.0.0.1");
  EXPECT_EQ(by_name["n3"].at("api_url"), "http://127.0.0.1:8008");
  EXPECT_TRUE(by_name["n3"].at("tags").is_object());

  v.snapshot.leader.reset();
  auto leaderless = json::parse(handle_get(v, get("/cluster"), kNow).body);
  EXPECT_TRUE(leaderless.at("leader").is_null());
  for (const auto& m : leaderless.at("members")) EXPECT_TRUE(m.at("lag").is_null());
}

TEST(HealthCluster, HistoryAndConfig) {
  auto v = streaming_replica();
  auto h = handle_get(v, get("/history"), kNow);
  ASSERT_EQ(h.status, 200);
  auto arr = json::parse(h.body);
  ASSERT_TRUE(arr.is_array());
  ASSERT_EQ(arr.size(), 1u);
  EXPECT_EQ(arr[0].at("to"), "n1");
  EXPECT_EQ(arr[0].at("timeline"), 3);

  auto c = handle_get(v, get("/config"), kNow);
  ASSERT_EQ(c.status, 200);
  EXPECT_EQ(json::parse(c.body).at("ttl"), 4);
  v.snapshot.config.reset();
  auto none = handle_get(v, get("/config"), kNow);
  EXPECT_EQ(none.status, 503);
  EXPECT_TRUE(json::parse(none.body).contains("error"));
}

TEST(HealthRouting, UnknownPathIs404) {
  auto r = handle_get(leader_with_lease(), get("/nope"), kNow);
  EXPECT_EQ(r.status, 404);
  EXPECT_TRUE(json::parse(r.body).contains("error"));
  EXPECT_TRUE(is_get_path("/metrics"));
  EXPECT_TRUE(is_get_path("/replica/"));
  EXPECT_FALSE(is_get_path("/switchover"));
}

}  // namespace
}  // namespace tandem::api
