// Pure helpers of the etcd client and its behaviour when nothing answers.
#include <gtest/gtest.h>

#include <chrono>

#include "dcs/etcd/etcd_client.hpp"
#include "dcs/etcd/etcd_store.hpp"

namespace tandem::dcs::etcd {
namespace {

using namespace std::chrono_literals;

TEST(EtcdHelpers, PrefixEnd) {
  EXPECT_EQ(prefix_end("/tandem/c/"), "/tandem/c0");
  EXPECT_EQ(prefix_end("a"), "b");
  EXPECT_EQ(prefix_end(std::string("a\xff", 2)), "b");
  EXPECT_EQ(prefix_end(std::string("\xff\xff", 2)), std::string(1, '\0'));
  EXPECT_EQ(prefix_end(""), std::string(1, '\0'));
}

TEST(EtcdHelpers, EndpointTarget) {
  EXPECT_EQ(endpoint_target("http://127.0.0.1:2379"), "127.0.0.1:2379");
  EXPECT_EQ(endpoint_target("https://etcd.example:2379/"), "etcd.example:2379");
  EXPECT_EQ(endpoint_target("127.0.0.1:2379"), "127.0.0.1:2379");
  EXPECT_EQ(endpoint_target("http://127.0.0.1"), "");
  EXPECT_EQ(endpoint_target("http://:2379"), "");
  EXPECT_EQ(endpoint_target(""), "");
}

TEST(EtcdHelpers, ClusterKeys) {
  ClusterKeys k("prod");
  EXPECT_EQ(k.prefix, "/tandem/prod/");
  EXPECT_EQ(k.leader(), "/tandem/prod/leader");
  EXPECT_EQ(k.member("pg-1"), "/tandem/prod/members/pg-1");
  EXPECT_EQ(k.history(), "/tandem/prod/history");
  EXPECT_THROW(ClusterKeys(""), std::invalid_argument);
  EXPECT_THROW(ClusterKeys("a/b"), std::invalid_argument);
}

TEST(EtcdClientOptions, RejectsBadConfiguration) {
  EtcdOptions o;
  EXPECT_THROW(EtcdClient{o}, std::invalid_argument);
  o.endpoints = {"http://nohost"};
  EXPECT_THROW(EtcdClient{o}, std::invalid_argument);
  o.endpoints = {"127.0.0.1:1"};
  o.call_timeout = 0ms;
  EXPECT_THROW(EtcdClient{o}, std::invalid_argument);
}

// Nothing listens on these ports: every call fails fast with `unavailable`, names each
// endpoint, and keeps to the failover budget.
TEST(EtcdClientFailover, AllEndpointsDownIsUnavailableWithinBudget) {
  EtcdOptions o;
  o.endpoints = {"http://127.0.0.1:1", "127.0.0.1:2"};
  o.call_timeout = 200ms;
  o.retry_timeout = 600ms;
  EtcdClient c(o);
  auto start = std::chrono::steady_clock::now();
  auto r = c.get("/x");
  auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::unavailable) << r.error().to_string();
  EXPECT_NE(r.error().message.find("127.0.0.1:1"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("127.0.0.1:2"), std::string::npos) << r.error().message;
  EXPECT_LT(elapsed, 1500ms);
  EXPECT_GE(elapsed, 500ms) << "it must keep trying until the budget is spent";

  auto ka = c.lease_keepalive(1);
  ASSERT_FALSE(ka.ok());
  EXPECT_EQ(ka.error().code, Errc::unavailable);
}

TEST(EtcdClientFailover, WatchOnDeadEndpointsStopsCleanly) {
  EtcdOptions o;
  o.endpoints = {"127.0.0.1:1"};
  EtcdClient c(o);
  int calls = 0;
  auto w = c.watch_prefix(
      "/x/", 5, [&](const WatchUpdate&) { ++calls; }, false);
  std::this_thread::sleep_for(300ms);  // let it fail and retry a few times
  EXPECT_FALSE(w->connected());
  EXPECT_EQ(w->next_revision(), 5);
  w->stop();
  EXPECT_EQ(calls, 0);
}

TEST(EtcdStoreOffline, WaitForChangeTimesOutAndWakes) {
  EtcdOptions o;
  o.endpoints = {"127.0.0.1:1"};
  o.cluster = "c";
  EtcdStore s(o);
  auto start = std::chrono::steady_clock::now();
  auto r = s.wait_for_change(10, 200ms);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 10);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 190ms);
  s.wake();
  start = std::chrono::steady_clock::now();
  EXPECT_EQ(*s.wait_for_change(10, 5s), 10);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
  auto l = s.load();
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.error().code, Errc::unavailable);
}

}  // namespace
}  // namespace tandem::dcs::etcd
