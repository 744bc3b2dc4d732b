// The pure routing decisions: snapshot -> read-write / read-only target, and the
// /primary probe fallback, table-tested.
#include <gtest/gtest.h>

#include "portal/service/route_decision.hpp"

namespace tandem::portal::service {
namespace {

constexpr int64_t kNow = 1'700'000'000'000;

dcs::Member member(const std::string& name, const std::string& role, const std::string& state, int port,
                   uint64_t wal = 0, uint64_t replay = 0) {
  dcs::Member m;
  m.name = name;
  m.role = role;
  m.state = state;
  m.host = "127.0.0.1";
  m.pg_port = port;
  m.api_url = "http://127.0.0.1:" + std::to_string(port + 1000);
  m.wal_position = Lsn(wal);
  m.replay_position = Lsn(replay);
  return m;
}

// pg1 leads and runs as primary; pg2 and pg3 stream.
dcs::ClusterSnapshot healthy() {
  dcs::ClusterSnapshot s;
  s.initialize = "7300000000000000000";
  s.leader = dcs::Leader{"pg1", 42, 10};
  s.members["pg1"] = member("pg1", "leader", "running", 5441, 10'000'000);
  s.members["pg2"] = member("pg2", "replica", "streaming", 5442, 10'000'000, 9'990'000);
  s.members["pg3"] = member("pg3", "replica", "streaming", 5443, 10'000'000, 9'000'000);
  return s;
}

struct WriteCase {
  const char* name;
  std::function<void(dcs::ClusterSnapshot&)> change;
  RouteKind kind;
  std::string member;  // expected target when kind == route
  std::string reason;  // fragment of the reason
};

class WriteRoute : public ::testing::TestWithParam<WriteCase> {};

TEST_P(WriteRoute, Decides) {
  auto s = healthy();
  GetParam().change(s);
  auto c = choose_write_route(s, BackendPolicy{}, kNow);
  EXPECT_EQ(c.kind, GetParam().kind) << c.reason;
  if (GetParam().kind == RouteKind::route) {
    ASSERT_TRUE(c.endpoint);
    EXPECT_EQ(c.endpoint->member, GetParam().member);
    EXPECT_EQ(c.endpoint->port, s.members[GetParam().member].pg_port);
    EXPECT_FALSE(c.endpoint->tls);
  } else {
    EXPECT_FALSE(c.endpoint);
  }
  EXPECT_NE(c.reason.find(GetParam().reason), std::string::npos) << c.reason;
}

INSTANTIATE_TEST_SUITE_P(
    Table, WriteRoute,
    ::testing::Values(WriteCase{"healthy_leader", [](auto&) {}, RouteKind::route, "pg1", "pg1 holds the leader key"},
                      WriteCase{"empty_cluster", [](auto& s) { s = dcs::ClusterSnapshot{}; }, RouteKind::none, "",
                                "not bootstrapped"},
                      WriteCase{"lease_expired", [](auto& s) { s.leader.reset(); }, RouteKind::hold, "", "an election"},
                      WriteCase{"leader_record_missing", [](auto& s) { s.members.erase("pg1"); }, RouteKind::hold, "",
                                "pg1 holds the leader key but has not published"},
                      WriteCase{"new_leader_promoting",
                                [](auto& s) {
                                  s.leader = dcs::Leader{"pg2", 43, 11};
                                  s.members["pg2"].state = "promoting";
                                },
                                RouteKind::hold, "", "pg2 holds the leader key but is not a running primary yet"},
                      WriteCase{"new_leader_still_replica_record",
                                [](auto& s) {
                                  s.leader = dcs::Leader{"pg2", 43, 11};
                                },
                                RouteKind::hold, "", "role replica, state streaming"},
                      WriteCase{"new_leader_ready",
                                [](auto& s) {
                                  s.leader = dcs::Leader{"pg2", 43, 11};
                                  s.members["pg2"].role = "leader";
                                  s.members["pg2"].state = "running";
                                },
                                RouteKind::route, "pg2", "pg2 holds"},
                      WriteCase{"old_leader_still_says_leader_but_lost_key",
                                [](auto& s) {
                                  // pg1's stale record says leader; the key names pg2, which is not ready:
                                  // nobody is eligible, never pg1.
                                  s.leader = dcs::Leader{"pg2", 43, 11};
                                },
                                RouteKind::hold, "", "pg2"},
                      WriteCase{"primary_without_key_role", [](auto& s) { s.members["pg1"].role = "primary"; },
                                RouteKind::hold, "", "role primary"},
                      WriteCase{"leader_crashed", [](auto& s) { s.members["pg1"].state = "crashed"; }, RouteKind::hold,
                                "", "state crashed"},
                      WriteCase{"switchover_due",
                                [](auto& s) {
                                  s.switchover = dcs::Switchover{"pg1", "pg2", 0, 12};
                                },
                                RouteKind::hold, "", "a switchover from pg1 to pg2 is in progress"},
                      WriteCase{"switchover_scheduled_later",
                                [](auto& s) {
                                  s.switchover = dcs::Switchover{"pg1", "pg2", kNow + 60'000, 12};
                                },
                                RouteKind::route, "pg1", "pg1 holds"},
                      WriteCase{"manual_failover",
                                [](auto& s) {
                                  s.switchover = dcs::Switchover{"", "pg3", 0, 12};
                                },
                                RouteKind::hold, "", "a switchover to pg3"},
                      WriteCase{"no_address", [](auto& s) { s.members["pg1"].pg_port = 0; }, RouteKind::hold, "",
                                "has not published where PostgreSQL listens"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(WriteRoute, SwitchoverKeepsSessionsOnlyWhileTheOldLeaderRuns) {
  auto s = healthy();
  s.switchover = dcs::Switchover{"pg1", "pg2", 0, 12};
  auto c = choose_write_route(s, BackendPolicy{}, kNow);
  EXPECT_EQ(c.kind, RouteKind::hold);
  EXPECT_TRUE(c.keep_sessions);
  s.members["pg1"].state = "stopped";
  EXPECT_FALSE(choose_write_route(s, BackendPolicy{}, kNow).keep_sessions);
  s = healthy();
  s.leader.reset();  // a crash: the lease expired
  EXPECT_FALSE(choose_write_route(s, BackendPolicy{}, kNow).keep_sessions);
  EXPECT_FALSE(choose_write_route(healthy(), BackendPolicy{}, kNow).keep_sessions);
}

TEST(WriteRoute, BackendTlsPolicyIsCarried) {
  auto c = choose_write_route(healthy(), BackendPolicy{BackendTls::on}, kNow);
  ASSERT_TRUE(c.endpoint);
  EXPECT_TRUE(c.endpoint->tls);
  EXPECT_EQ(c.endpoint->host, "127.0.0.1");
}

TEST(WriteRoute, NeverTwoTargetsAcrossALeaderChange) {
  // Walk through a switchover's snapshots; at every step at most one member is routable,
  // and the new leader only once it reports itself a running leader.
  auto s = healthy();
  std::vector<std::pair<std::string, RouteKind>> seen;
  auto step = [&] {
    auto c = choose_write_route(s, BackendPolicy{}, kNow);
    seen.emplace_back(c.endpoint ? c.endpoint->member : "", c.kind);
  };
  step();
  s.switchover = dcs::Switchover{"pg1", "pg2", 0, 12};
  step();
  s.members["pg1"].state = "stopped";
  step();
  s.leader.reset();
  step();
  s.leader = dcs::Leader{"pg2", 50, 13};
  s.members["pg2"].state = "promoting";
  step();
  s.switchover.reset();
  step();
  s.members["pg2"].role = "leader";
  s.members["pg2"].state = "running";
  step();
  const std::vector<std::pair<std::string, RouteKind>> expected{
      {"pg1", RouteKind::route}, {"", RouteKind::hold}, {"", RouteKind::hold},    {"", RouteKind::hold},
      {"", RouteKind::hold},     {"", RouteKind::hold}, {"pg2", RouteKind::route}};
  EXPECT_EQ(seen, expected);
}

TEST(ReadRoute, PicksTheLeastLaggingFollowerWithinTheLimit) {
  auto c = choose_read_route(healthy(), BackendPolicy{}, 1024 * 1024, kNow);
  ASSERT_EQ(c.kind, RouteKind::route);
  EXPECT_EQ(c.endpoint->member, "pg2");
  EXPECT_NE(c.reason.find("10000 bytes"), std::string::npos) << c.reason;
}

TEST(ReadRoute, TiesGoToTheLowerName) {
  auto s = healthy();
  s.members["pg3"].replay_position = s.members["pg2"].replay_position;
  EXPECT_EQ(choose_read_route(s, BackendPolicy{}, 1 << 20, kNow).endpoint->member, "pg2");
}

TEST(ReadRoute, LaggingFollowersFallBackToTheLeader) {
  auto c = choose_read_route(healthy(), BackendPolicy{}, 1000, kNow);
  ASSERT_EQ(c.kind, RouteKind::route);
  EXPECT_EQ(c.endpoint->member, "pg1");
  EXPECT_NE(c.reason.find("no follower streams within 1000 bytes"), std::string::npos) << c.reason;
}

TEST(ReadRoute, SkipsNonStreamingAndNoLoadBalance) {
  auto s = healthy();
  s.members["pg2"].state = "starting";
  s.members["pg3"].tags.other["noloadbalance"] = "true";
  EXPECT_EQ(choose_read_route(s, BackendPolicy{}, 1 << 30, kNow).endpoint->member, "pg1");
  s.members["pg3"].tags.other.clear();
  EXPECT_EQ(choose_read_route(s, BackendPolicy{}, 1 << 30, kNow).endpoint->member, "pg3");
}

TEST(ReadRoute, DuringAnElectionFollowersStillServeWhenLagIsKnown) {
  auto s = healthy();
  s.leader.reset();  // no leader key: lag against a leader cannot be judged
  auto c = choose_read_route(s, BackendPolicy{}, 1 << 30, kNow);
  EXPECT_EQ(c.kind, RouteKind::hold) << c.reason;
  s = healthy();
  s.switchover = dcs::Switchover{"pg1", "pg2", 0, 1};  // the leader record still exists
  c = choose_read_route(s, BackendPolicy{}, 1 << 20, kNow);
  ASSERT_EQ(c.kind, RouteKind::route);
  EXPECT_EQ(c.endpoint->member, "pg2");
}

TEST(ReadableMembers, StreamingFollowersAndAReadyLeader) {
  auto s = healthy();
  EXPECT_EQ(readable_members(s, kNow), (std::set<std::string>{"pg1", "pg2", "pg3"}));
  s.members["pg3"].state = "crashed";
  s.switchover = dcs::Switchover{"pg1", "pg2", 0, 1};
  EXPECT_EQ(readable_members(s, kNow), (std::set<std::string>{"pg2"}));
}

ProbeAnswer answer(const std::string& name, bool answered, int status) {
  return ProbeAnswer{StaticMember{name, "http://127.0.0.1:1", "127.0.0.1", name == "pg1" ? 5441 : 5442}, answered,
                     status};
}

TEST(ProbeFallback, RoutesOnlyWhenExactlyOneSaysPrimary) {
  auto one = choose_from_probes({answer("pg1", true, 503), answer("pg2", true, 200)}, BackendPolicy{});
  ASSERT_EQ(one.kind, RouteKind::route);
  EXPECT_EQ(one.endpoint->member, "pg2");
  EXPECT_EQ(one.endpoint->port, 5442);

  auto two = choose_from_probes({answer("pg1", true, 200), answer("pg2", true, 200)}, BackendPolicy{});
  EXPECT_EQ(two.kind, RouteKind::hold);
  EXPECT_NE(two.reason.find("2 members claim"), std::string::npos) << two.reason;

  auto none = choose_from_probes({answer("pg1", false, 0), answer("pg2", true, 503)}, BackendPolicy{});
  EXPECT_EQ(none.kind, RouteKind::hold);
  EXPECT_NE(none.reason.find("none of the 2 members asked (1 answered)"), std::string::npos) << none.reason;

  EXPECT_TRUE(none.keep_sessions);  // a missed answer is no proof the leader changed
  EXPECT_FALSE(one.keep_sessions);
  // A 200 from a member that did not answer cannot count.
  auto stale = choose_from_probes({answer("pg1", false, 200)}, BackendPolicy{});
  EXPECT_EQ(stale.kind, RouteKind::hold);
}

TEST(ProbeTargets, SnapshotMembersFirstThenConfiguredOnes) {
  std::vector<StaticMember> configured{{"pg1", "http://10.0.0.1:8008", "10.0.0.1", 5432},
                                       {"pg9", "http://10.0.0.9:8008", "10.0.0.9", 5432}};
  auto targets = probe_targets(healthy(), configured);
  ASSERT_EQ(targets.size(), 4u);
  EXPECT_EQ(targets[0].name, "pg1");
  EXPECT_EQ(targets[0].api_url, "http://127.0.0.1:6441");  // the snapshot's value wins
  EXPECT_EQ(targets[3].name, "pg9");
  EXPECT_EQ(probe_targets(std::nullopt, configured).size(), 2u);
}

}  // namespace
}  // namespace tandem::portal::service
