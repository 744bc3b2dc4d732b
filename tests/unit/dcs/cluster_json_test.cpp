// JSON round trips and validation of the stored cluster-state values (dcs/cluster.hpp).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "dcs/cluster.hpp"

namespace tandem::dcs {
namespace {

using nlohmann::json;

Member full_member() {
  Member m;
  m.name = "pg-1";
  m.role = "leader";
  m.state = "running";
  m.timeline = 7;
  m.wal_position = Lsn(0x16B374D848);
  m.replay_position = Lsn(0x16B374D000);
  m.api_url = "http://10.0.0.1:8008";
  m.conn_url = "postgres://10.0.0.1:5432/postgres";
  m.host = "10.0.0.1";
  m.pg_port = 5432;
  m.tags.nofailover = true;
  m.tags.nosync = true;
  m.tags.other = {{"zone", "a"}, {"rack", "r7"}};
  m.pending_restart = true;
  m.updated_ms = 1700000123456;
  return m;
}

TEST(ClusterJson, MemberRoundTrip) {
  Member m = full_member();
  auto back = member_from_json(to_json(m).dump());
  ASSERT_TRUE(back.ok()) << back.error().to_string();
  EXPECT_EQ(*back, m);
  EXPECT_EQ(to_json(m)["wal_position"], "16/B374D848");
}

TEST(ClusterJson, MemberDefaultsForMissingFields) {
  auto m = member_from_json(R"({"name":"x"})");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->name, "x");
  EXPECT_EQ(m->timeline, 0u);
  EXPECT_EQ(m->wal_position, Lsn());
  EXPECT_FALSE(m->tags.nofailover);
}

TEST(ClusterJson, MemberErrorsAreValuesNotExceptions) {
  for (const char* bad : {"", "{", "[]", "42", R"({"role":"replica"})", R"({"name":7})",
                          R"({"name":"x","timeline":"seven"})", R"({"name":"x","tags":{"nofailover":"yes"}})"}) {
    Result<Member> r = Member{};
    EXPECT_NO_THROW(r = member_from_json(bad)) << bad;
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_EQ(r.error().code, Errc::protocol) << bad;
      EXPECT_NE(r.error().message.find("member"), std::string::npos) << r.error().message;
    }
  }
}

TEST(ClusterJson, SyncRoundTrip) {
  SyncState s{"pg-1", std::string("pg-2"), 0};
  auto back = sync_from_json(to_json(s).dump());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, s);
  SyncState none{"pg-1", std::nullopt, 0};
  auto back2 = sync_from_json(to_json(none).dump());
  ASSERT_TRUE(back2.ok());
  EXPECT_EQ(*back2, none);
  EXPECT_FALSE(sync_from_json("[1,").ok());
}

TEST(ClusterJson, SwitchoverRoundTrip) {
  Switchover s{"pg-1", "pg-3", 1700000000000, 0};
  auto back = switchover_from_json(to_json(s).dump());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, s);
  EXPECT_FALSE(switchover_from_json(R"({"leader":1})").ok());
  EXPECT_FALSE(switchover_from_json("42").ok());
  EXPECT_FALSE(sync_from_json("\"a\"").ok());
}

TEST(ClusterJson, ConfigRoundTrip) {
  DynamicConfig c;
  c.ttl = 30;
  c.loop_wait = 10;
  c.retry_timeout = 10;
  c.maximum_lag_on_failover = 1 << 20;
  c.synchronous_mode = SyncMode::strict;
  c.paused = true;
  c.primary_start_timeout = 0;
  c.parameters = {{"max_connections", "300"}, {"work_mem", "64MB"}};
  auto back = config_from_json(to_json(c).dump());
  ASSERT_TRUE(back.ok()) << back.error().to_string();
  EXPECT_EQ(*back, c);
}

TEST(ClusterJson, ConfigAcceptsBooleanSyncModeAndNumericParameters) {
  auto c = config_from_json(std::string(R"({"synchronous_mode":false,"parameters":{"max_connections":100}})"));
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_EQ(c->synchronous_mode, SyncMode::off);
  EXPECT_EQ(c->parameters.at("max_connections"), "100");
  EXPECT_EQ(config_from_json(std::string(R"({"synchronous_mode":true})"))->synchronous_mode, SyncMode::on);
}

TEST(ClusterJson, ConfigErrorsNameTheKey) {
  struct Case {
    const char* text;
    const char* key;
  };
  for (const auto& [text, key] : std::vector<Case>{{R"({"ttl":"ten"})", "ttl"},
                                                   {R"({"bogus":1})", "bogus"},
                                                   {R"({"synchronous_mode":"maybe"})", "synchronous_mode"},
                                                   {R"({"parameters":[1]})", "parameters"},
                                                   {R"({"ttl":1})", "ttl"},
                                                   {R"({"ttl":4,"loop_wait":3,"retry_timeout":2})", "ttl"},
                                                   {R"({"parameters":{"bad name":"1"}})", "parameters"},
                                                   {R"([1,2])", "config"},
                                                   {R"({"ttl":)", "config"}}) {
    auto r = config_from_json(std::string(text));
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_NE(r.error().message.find(key), std::string::npos) << text << " -> " << r.error().message;
  }
}

TEST(ClusterJson, ValidateDefaultsAndLimits) {
  DynamicConfig c;
  EXPECT_TRUE(validate(c).ok());
  c.ttl = 2;
  c.loop_wait = 1;
  c.retry_timeout = 1;
  EXPECT_TRUE(validate(c).ok());
  c.retry_timeout = 2;
  EXPECT_FALSE(validate(c).ok());
  c = DynamicConfig{};
  c.maximum_lag_on_failover = -1;
  EXPECT_EQ(validate(c).error().code, Errc::invalid_argument);
  c = DynamicConfig{};
  c.parameters["x"] = "a\nb";
  EXPECT_FALSE(validate(c).ok());
}

TEST(ClusterJson, HistoryRoundTrip) {
  std::vector<HistoryEntry> h{{1, "", "pg-1", "bootstrap", 1, Lsn(0)},
                              {2, "pg-1", "pg-2", "failover: pg-1 lost its lease", 2, Lsn(0x3000060)}};
  json arr = json::array();
  for (const auto& e : h) arr.push_back(to_json(e));
  auto back = history_from_json(arr.dump());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, h);
  EXPECT_TRUE(history_from_json("[]")->empty());
  EXPECT_FALSE(history_from_json(R"({"a":1})").ok());
  EXPECT_FALSE(history_from_json(R"([{"time_ms":"x"}])").ok());
  EXPECT_FALSE(history_from_json("[1]").ok());
}

TEST(ClusterJson, SnapshotJsonShowsLeaderAndMembers) {
  ClusterSnapshot s;
  s.leader = Leader{"pg-1", 42, 7};
  s.members["pg-1"] = full_member();
  s.revision = 9;
  json j = to_json(s);
  EXPECT_EQ(j["leader"], "pg-1");
  EXPECT_EQ(j["members"].size(), 1u);
  EXPECT_EQ(j["revision"], 9);
  EXPECT_TRUE(j["config"].is_null());
  EXPECT_EQ(s.leader_member()->name, "pg-1");
  EXPECT_EQ(s.member("nobody"), nullptr);
}

TEST(ClusterJson, SyncModeNames) {
  for (auto m : {SyncMode::off, SyncMode::on, SyncMode::strict}) EXPECT_EQ(parse_sync_mode(to_string(m)), m);
  EXPECT_FALSE(parse_sync_mode("sometimes").has_value());
}

}  // namespace
}  // namespace tandem::dcs
