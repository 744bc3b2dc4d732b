// EtcdStore and EtcdClient against a real 3-member etcd cluster: leader and lease
// semantics, compare-and-swap writes, history, change notification, and failover when
// members die.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <mutex>
#include <set>
#include <thread>

#include "base/process.hpp"
#include "dcs/etcd/etcd_client.hpp"
#include "dcs/etcd/etcd_store.hpp"
#include "testkit/etcd_cluster.hpp"
#include "testkit/testkit.hpp"

namespace tandem {
namespace {

using namespace std::chrono_literals;
using dcs::etcd::EtcdClient;
using dcs::etcd::EtcdStore;
using testkit::EtcdCluster;
using Clock = std::chrono::steady_clock;

int64_t ms_since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

std::string cluster_name() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return std::string(info->test_suite_name()) + "-" + info->name();
}

dcs::EtcdOptions options(const std::vector<std::string>& endpoints, const std::string& cluster) {
  dcs::EtcdOptions o;
  o.endpoints = endpoints;
  o.cluster = cluster;
  o.call_timeout = 1000ms;
  return o;
}

dcs::Member member(const std::string& name) {
  dcs::Member m;
  m.name = name;
  m.role = "replica";
  m.state = "streaming";
  m.timeline = 3;
  m.wal_position = Lsn(0x3000060);
  m.api_url = "http://127.0.0.1:8008";
  m.host = "127.0.0.1";
  m.pg_port = 5432;
  m.updated_ms = 1700000000000;
  return m;
}

// One etcd cluster shared by the tests that never kill members; each test uses its own
// cluster name, so its keys do not meet another test's.
class EtcdStoreTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { etcd_ = new EtcdCluster(3); }
  static void TearDownTestSuite() {
    delete etcd_;
    etcd_ = nullptr;
  }
  std::unique_ptr<EtcdStore> make_store() {
    return std::make_unique<EtcdStore>(options(etcd_->endpoints(), cluster_name()));
  }
  static EtcdCluster* etcd_;
};

EtcdCluster* EtcdStoreTest::etcd_ = nullptr;

TEST_F(EtcdStoreTest, LeaderAcquireRefreshRelease) {
  auto a = make_store();
  auto b = make_store();
  auto la = a->grant_lease(10);
  auto lb = b->grant_lease(10);
  ASSERT_TRUE(la.ok()) << la.error().to_string();
  ASSERT_TRUE(lb.ok()) << lb.error().to_string();
  EXPECT_EQ(la->ttl_seconds, 10);

  auto got = a->try_acquire_leader("a", la->id);
  ASSERT_TRUE(got.ok()) << got.error().to_string();
  EXPECT_TRUE(*got);
  got = b->try_acquire_leader("b", lb->id);
  ASSERT_TRUE(got.ok());
  EXPECT_FALSE(*got) << "a second acquirer must not get the leader key";

  auto snap = b->load();
  ASSERT_TRUE(snap.ok()) << snap.error().to_string();
  ASSERT_TRUE(snap->leader);
  EXPECT_EQ(snap->leader->name, "a");
  EXPECT_EQ(snap->leader->lease_id, la->id);
  EXPECT_GT(snap->leader->mod_revision, 0);
  EXPECT_GE(snap->revision, snap->leader->mod_revision);

  EXPECT_FALSE(*b->refresh_leader("b", lb->id));
  auto la2 = a->grant_lease(10);
  ASSERT_TRUE(la2.ok());
  EXPECT_TRUE(*a->refresh_leader("a", la2->id));
  snap = a->load();
  ASSERT_TRUE(snap.ok() && snap->leader);
  EXPECT_EQ(snap->leader->lease_id, la2->id);

  EXPECT_FALSE(*b->release_leader("b"));
  EXPECT_TRUE(a->load()->leader.has_value());
  EXPECT_TRUE(*a->release_leader("a"));
  EXPECT_FALSE(a->load()->leader.has_value());
  EXPECT_FALSE(*a->release_leader("a"));
  EXPECT_TRUE(*b->try_acquire_leader("b", lb->id));
  EXPECT_EQ(a->load()->leader->name, "b");
}

TEST_F(EtcdStoreTest, LeaseExpiryRemovesLeaderAndMember) {
  auto s = make_store();
  auto lease = s->grant_lease(2);
  ASSERT_TRUE(lease.ok()) << lease.error().to_string();
  ASSERT_TRUE(*s->try_acquire_leader("m1", lease->id));
  ASSERT_TRUE(s->put_member(member("m1"), lease->id).ok());
  auto snap = s->load();
  ASSERT_TRUE(snap.ok());
  ASSERT_TRUE(snap->leader);
  ASSERT_EQ(snap->members.size(), 1u);
  EXPECT_EQ(snap->members.at("m1"), member("m1"));

  auto start = Clock::now();
  bool gone = testkit::wait_until(
      [&] {
        auto s2 = s->load();
        return s2.ok() && !s2->leader && s2->members.empty();
      },
      8s, 100ms);
  EXPECT_TRUE(gone) << "keys bound to an expired lease must disappear";
  EXPECT_GE(ms_since(start), 1000) << "the lease expired far earlier than its TTL";
  auto ttl = s->keepalive(lease->id);
  ASSERT_TRUE(ttl.ok()) << ttl.error().to_string();
  EXPECT_EQ(*ttl, 0) << "keepalive of an expired lease reports TTL 0";
  EXPECT_EQ(s->kv().lease_time_to_live(lease->id)->ttl, -1);
  EXPECT_TRUE(s->revoke_lease(lease->id).ok()) << "revoking an expired lease is not an error";
}

TEST_F(EtcdStoreTest, KeepaliveKeepsLease) {
  auto s = make_store();
  auto lease = s->grant_lease(2);
  ASSERT_TRUE(lease.ok());
  ASSERT_TRUE(*s->try_acquire_leader("m1", lease->id));
  auto start = Clock::now();
  while (ms_since(start) < 5000) {
    auto ttl = s->keepalive(lease->id);
    ASSERT_TRUE(ttl.ok()) << ttl.error().to_string();
    EXPECT_EQ(*ttl, 2);
    std::this_thread::sleep_for(500ms);  // the renewal period under test
  }
  auto snap = s->load();
  ASSERT_TRUE(snap.ok());
  ASSERT_TRUE(snap->leader) << "a lease renewed every 0.5 s must outlive its 2 s TTL";
  EXPECT_EQ(snap->leader->name, "m1");
  ASSERT_TRUE(s->revoke_lease(lease->id).ok());
  EXPECT_FALSE(s->load()->leader.has_value()) << "revoking the lease deletes its keys at once";
}

TEST_F(EtcdStoreTest, WriteSyncOnlyWhileLeader) {
  auto s = make_store();
  dcs::SyncState sync{"a", std::string("b"), 0};
  auto r = s->write_sync(sync);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_FALSE(*r) << "no leader key: the write must be refused";
  auto lease = s->grant_lease(10);
  ASSERT_TRUE(lease.ok());
  ASSERT_TRUE(*s->try_acquire_leader("a", lease->id));
  EXPECT_TRUE(*s->write_sync(sync));
  auto snap = s->load();
  ASSERT_TRUE(snap.ok() && snap->sync);
  EXPECT_EQ(snap->sync->leader, "a");
  EXPECT_EQ(snap->sync->sync_standby, std::optional<std::string>("b"));
  EXPECT_GT(snap->sync->mod_revision, 0);
  EXPECT_FALSE(*s->write_sync(dcs::SyncState{"b", std::nullopt, 0})) << "b is not the leader";
  EXPECT_EQ(s->load()->sync->leader, "a");
}

TEST_F(EtcdStoreTest, ConfigCompareAndSwap) {
  auto s = make_store();
  dcs::DynamicConfig c;
  c.ttl = 10;
  c.parameters["max_connections"] = "200";
  EXPECT_FALSE(s->load()->config.has_value());
  EXPECT_TRUE(*s->write_config(c, 0));
  dcs::DynamicConfig other = c;
  other.loop_wait = 3;
  EXPECT_FALSE(*s->write_config(other, 0)) << "0 means create: the key exists now";
  auto snap = s->load();
  ASSERT_TRUE(snap.ok() && snap->config);
  int64_t rev = snap->config->mod_revision;
  EXPECT_GT(rev, 0);
  dcs::DynamicConfig expect = c;
  expect.mod_revision = rev;
  EXPECT_EQ(*snap->config, expect);

  other.paused = true;
  EXPECT_TRUE(*s->write_config(other, rev));
  dcs::DynamicConfig stale = c;
  stale.loop_wait = 2;
  EXPECT_FALSE(*s->write_config(stale, rev)) << "a write based on an old revision must lose";
  snap = s->load();
  EXPECT_TRUE(snap->config->paused);
  EXPECT_EQ(snap->config->loop_wait, 3);

  dcs::DynamicConfig bad = c;
  bad.ttl = 1;
  auto r = s->write_config(bad, snap->config->mod_revision);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::invalid_argument);
}

TEST_F(EtcdStoreTest, ClaimMemberRejectsDuplicate) {
  auto a = make_store();
  auto b = make_store();
  auto la = a->grant_lease(10);
  auto lb = b->grant_lease(10);
  ASSERT_TRUE(la.ok() && lb.ok());
  EXPECT_TRUE(*a->claim_member(member("pg1"), la->id));
  EXPECT_FALSE(*b->claim_member(member("pg1"), lb->id)) << "the name is in use by another agent";
  EXPECT_TRUE(*b->claim_member(member("pg2"), lb->id));
  EXPECT_EQ(a->load()->members.size(), 2u);
  ASSERT_TRUE(a->revoke_lease(la->id).ok());
  EXPECT_EQ(a->load()->members.count("pg1"), 0u);
  EXPECT_TRUE(*b->claim_member(member("pg1"), lb->id)) << "free again once the owner's lease is gone";
  ASSERT_TRUE(b->delete_member("pg2").ok());
  EXPECT_EQ(b->load()->members.count("pg2"), 0u);
}

TEST_F(EtcdStoreTest, InitializeAndSwitchover) {
  auto s = make_store();
  EXPECT_TRUE(*s->try_initialize("a"));
  EXPECT_FALSE(*s->try_initialize("b"));
  EXPECT_FALSE(*s->set_initialize("b", "7301234567890"));
  EXPECT_TRUE(*s->set_initialize("a", "7301234567890"));
  EXPECT_EQ(s->load()->initialize, std::optional<std::string>("7301234567890"));
  ASSERT_TRUE(s->cancel_initialize("a").ok());
  EXPECT_TRUE(s->load()->initialize.has_value()) << "cancel with a stale expected value must not delete";
  ASSERT_TRUE(s->cancel_initialize("7301234567890").ok());
  EXPECT_FALSE(s->load()->initialize.has_value());

  dcs::Switchover sw{"a", "b", 0, 0};
  EXPECT_TRUE(*s->set_switchover(sw));
  EXPECT_FALSE(*s->set_switchover(dcs::Switchover{"a", "c", 0, 0}));
  auto snap = s->load();
  ASSERT_TRUE(snap->switchover);
  EXPECT_EQ(snap->switchover->candidate, "b");
  EXPECT_GT(snap->switchover->mod_revision, 0);
  ASSERT_TRUE(s->clear_switchover().ok());
  EXPECT_FALSE(s->load()->switchover.has_value());
}

TEST_F(EtcdStoreTest, HistoryAppendKeepsLastHundred) {
  auto s = make_store();
  for (int i = 0; i < 105; ++i) {
    dcs::HistoryEntry e{1000 + i,   fmt::format("m{}", i),        fmt::format("m{}", i + 1),
                        "failover", static_cast<uint32_t>(i + 1), Lsn(uint64_t(i) << 24)};
    auto st = s->append_history(e);
    ASSERT_TRUE(st.ok()) << st.error().to_string();
  }
  auto snap = s->load();
  ASSERT_TRUE(snap.ok());
  ASSERT_EQ(snap->history.size(), EtcdStore::kMaxHistory);
  EXPECT_EQ(snap->history.front().time_ms, 1005);
  EXPECT_EQ(snap->history.back().time_ms, 1104);
  EXPECT_EQ(snap->history.back().to, "m105");
  EXPECT_EQ(snap->history.back().lsn, Lsn(uint64_t(104) << 24));
}

TEST_F(EtcdStoreTest, ConcurrentHistoryAppendsAreNotLost) {
  auto a = make_store();
  auto b = make_store();
  auto writer = [](EtcdStore* s, int base) {
    for (int i = 0; i < 15; ++i) {
      auto st = s->append_history(dcs::HistoryEntry{base + i, "x", "y", "test", 1, Lsn()});
      if (!st.ok()) return st.error().to_string();
    }
    return std::string();
  };
  auto fa = std::async(std::launch::async, writer, a.get(), 0);
  auto fb = std::async(std::launch::async, writer, b.get(), 100);
  EXPECT_EQ(fa.get(), "");
  EXPECT_EQ(fb.get(), "");
  auto snap = a->load();
  ASSERT_TRUE(snap.ok());
  std::set<int64_t> seen;
  for (const auto& h : snap->history) seen.insert(h.time_ms);
  EXPECT_EQ(seen.size(), 30u);
}

TEST_F(EtcdStoreTest, MalformedValuesAreSkipped) {
  auto s = make_store();
  auto& raw = s->kv();
  const auto& k = s->keys();
  ASSERT_TRUE(raw.put(k.member("broken"), "{not json", 0).ok());
  ASSERT_TRUE(raw.put(k.member("noname"), R"({"role":"replica"})", 0).ok());
  ASSERT_TRUE(raw.put(k.config(), R"({"ttl":"ten"})", 0).ok());
  ASSERT_TRUE(raw.put(k.history(), R"({"not":"an array"})", 0).ok());
  ASSERT_TRUE(raw.put(k.sync(), "[1,2", 0).ok());
  ASSERT_TRUE(raw.put(k.switchover(), "42", 0).ok());
  ASSERT_TRUE(raw.put(k.prefix + "unknown/key", "whatever", 0).ok());
  ASSERT_TRUE(s->put_member(member("good"), 0).ok());
  auto snap = s->load();
  ASSERT_TRUE(snap.ok()) << snap.error().to_string();
  EXPECT_EQ(snap->members.size(), 1u);
  EXPECT_EQ(snap->members.count("good"), 1u);
  EXPECT_FALSE(snap->config.has_value());
  EXPECT_TRUE(snap->history.empty());
  EXPECT_FALSE(snap->sync.has_value());
  // A broken history is replaced by a fresh one on the next append.
  ASSERT_TRUE(s->append_history(dcs::HistoryEntry{1, "", "good", "bootstrap", 1, Lsn()}).ok());
  EXPECT_EQ(s->load()->history.size(), 1u);
}

TEST_F(EtcdStoreTest, WaitForChangeWakesOnRemotePut) {
  auto waiter = make_store();
  auto writer = make_store();
  auto snap = waiter->load();
  ASSERT_TRUE(snap.ok());
  // Start the watch and check the quiet case first. Member records are rewritten by every
  // agent every cycle and must not wake anyone (see ClusterStore::wait_for_change).
  ASSERT_TRUE(writer->put_member(member("chatty"), 0).ok());
  auto start = Clock::now();
  auto quiet = waiter->wait_for_change(snap->revision, 300ms);
  ASSERT_TRUE(quiet.ok());
  EXPECT_EQ(*quiet, snap->revision) << "only a member record changed: the revision must come back unchanged";
  EXPECT_GE(ms_since(start), 290);

  std::atomic<int64_t> put_rev{0};
  std::atomic<int64_t> put_done_ns{0};
  std::thread t([&] {
    std::this_thread::sleep_for(200ms);  // let the waiter block first
    auto r = writer->kv().put(writer->keys().initialize(), "7301234567890", 0);
    if (r.ok()) put_rev = *r;
    put_done_ns = Clock::now().time_since_epoch().count();
  });
  start = Clock::now();
  auto changed = waiter->wait_for_change(snap->revision, 5000ms);
  auto woke_ns = Clock::now().time_since_epoch().count();
  t.join();
  ASSERT_TRUE(changed.ok());
  ASSERT_GT(put_rev.load(), 0);
  EXPECT_EQ(*changed, put_rev.load());
  EXPECT_LT((woke_ns - put_done_ns.load()) / 1000000, 300) << "the waiter must wake promptly after the put";
  EXPECT_LT(ms_since(start), 2000);

  // Already newer: returns at once.
  start = Clock::now();
  EXPECT_EQ(*waiter->wait_for_change(snap->revision, 5000ms), put_rev.load());
  EXPECT_LT(ms_since(start), 100);
  // Up to date: waits the full timeout.
  start = Clock::now();
  EXPECT_EQ(*waiter->wait_for_change(put_rev.load(), 400ms), put_rev.load());
  EXPECT_GE(ms_since(start), 390);
}

TEST_F(EtcdStoreTest, WakeInterruptsWait) {
  auto s = make_store();
  auto snap = s->load();
  ASSERT_TRUE(snap.ok());
  std::thread t([&] {
    std::this_thread::sleep_for(200ms);  // let the waiter block first
    s->wake();
  });
  auto start = Clock::now();
  auto r = s->wait_for_change(snap->revision, 10s);
  t.join();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, snap->revision);
  EXPECT_LT(ms_since(start), 2000);
  // A wake() with nobody waiting is not lost: the next wait returns at once.
  s->wake();
  start = Clock::now();
  EXPECT_EQ(*s->wait_for_change(snap->revision, 10s), snap->revision);
  EXPECT_LT(ms_since(start), 100);
}

TEST_F(EtcdStoreTest, LeaseExpiryWakesWaiter) {
  auto s = make_store();
  auto lease = s->grant_lease(2);
  ASSERT_TRUE(lease.ok());
  ASSERT_TRUE(*s->try_acquire_leader("m1", lease->id));
  auto snap = s->load();
  ASSERT_TRUE(snap.ok() && snap->leader);
  auto r = s->wait_for_change(snap->revision, 10s);
  ASSERT_TRUE(r.ok());
  EXPECT_GT(*r, snap->revision);
  EXPECT_FALSE(s->load()->leader.has_value());
}

// Watches must report compaction so that the caller reloads, then go on.
TEST_F(EtcdStoreTest, WatchReportsCompaction) {
  auto s = make_store();
  auto& c = *s->etcd_client();
  const std::string prefix = s->keys().prefix + "w/";
  auto first = c.put(prefix + "a", "1", 0);
  ASSERT_TRUE(first.ok());
  int64_t last = 0;
  for (int i = 0; i < 5; ++i) last = *c.put(prefix + "a", std::to_string(i), 0);
  SpawnOptions o;
  o.argv = {"/usr/bin/etcdctl", "--endpoints=" + etcd_->endpoint(0), "compact", std::to_string(last)};
  o.env["ETCDCTL_API"] = "3";
  auto run = tandem::run(o, 10s);
  ASSERT_TRUE(run.ok() && run->status.ok()) << (run.ok() ? run->output : run.error().to_string());

  std::mutex mu;
  std::vector<dcs::etcd::WatchUpdate> updates;
  auto w = c.watch_prefix(
      prefix, *first,
      [&](const dcs::etcd::WatchUpdate& u) {
        std::lock_guard lock(mu);
        updates.push_back(u);
      },
      false);
  auto compacted = [&] {
    std::lock_guard lock(mu);
    for (const auto& u : updates) {
      if (u.compact_revision > 0) return true;
    }
    return false;
  };
  ASSERT_TRUE(testkit::wait_until(compacted, 5s));
  auto next = c.put(prefix + "b", "after", 0);
  ASSERT_TRUE(next.ok());
  auto saw_next = [&] {
    std::lock_guard lock(mu);
    for (const auto& u : updates) {
      for (const auto& e : u.events) {
        if (e.kv.key == prefix + "b" && e.kv.mod_revision == *next) return true;
      }
    }
    return false;
  };
  EXPECT_TRUE(testkit::wait_until(saw_next, 5s)) << "the watch must go on after reporting compaction";
  w->stop();
}

// Each failover test gets its own cluster: they kill members.
class EtcdFailoverTest : public ::testing::Test {
 protected:
  EtcdCluster etcd_{3};

  int index_of(const std::string& endpoint) const {
    auto eps = etcd_.endpoints();
    for (size_t i = 0; i < eps.size(); ++i) {
      if (eps[i] == endpoint) return static_cast<int>(i);
    }
    return -1;
  }
};

TEST_F(EtcdFailoverTest, SurvivesLossOfTheMemberInUse) {
  // If the member killed below is the raft leader, calls wait for an election (1-2 s, more
  // on a busy machine): give the failover budget room for it.
  dcs::EtcdOptions generous = options(etcd_.endpoints(), "fo");
  generous.retry_timeout = 8000ms;
  EtcdStore s(generous);
  auto lease = s.grant_lease(30);
  ASSERT_TRUE(lease.ok()) << lease.error().to_string();
  ASSERT_TRUE(*s.try_acquire_leader("a", lease->id));
  const std::string used = s.etcd_client()->current_endpoint();
  const int idx = index_of(used);
  ASSERT_GE(idx, 0);
  etcd_.kill(idx);

  auto start = Clock::now();
  auto snap = s.load();
  ASSERT_TRUE(snap.ok()) << snap.error().to_string();
  ASSERT_TRUE(snap->leader);
  EXPECT_EQ(snap->leader->name, "a");
  EXPECT_NE(s.etcd_client()->current_endpoint(), used) << "the client must have moved to a live member";
  auto ttl = s.keepalive(lease->id);
  ASSERT_TRUE(ttl.ok()) << ttl.error().to_string();
  EXPECT_GT(*ttl, 0);
  EXPECT_TRUE(*s.refresh_leader("a", lease->id));
  EXPECT_TRUE(s.put_member(member("a"), lease->id).ok());
  EXPECT_TRUE(*s.write_config(dcs::DynamicConfig{}, 0));
  EXPECT_LT(ms_since(start), 10000);

  // Kill another one that is still running (not necessarily the one in use): no quorum.
  // Everything must fail within the failover budget, naming the endpoints.
  dcs::EtcdOptions o = options(etcd_.endpoints(), "fo");
  o.call_timeout = 500ms;
  o.retry_timeout = 1500ms;
  EtcdStore quick(o);
  ASSERT_TRUE(quick.load().ok());
  const int second = (idx + 1) % 3;
  etcd_.kill(second);
  auto expect_down = [](const Error& e, int64_t elapsed_ms) {
    EXPECT_TRUE(e.code == Errc::unavailable || e.code == Errc::timeout) << e.to_string();
    EXPECT_NE(e.message.find("127.0.0.1:"), std::string::npos) << "the error must name the endpoints: " << e.message;
    EXPECT_LT(elapsed_ms, 1500 + 700) << "the failover budget was not respected: " << e.to_string();
  };
  start = Clock::now();
  auto down_load = quick.load();
  ASSERT_FALSE(down_load.ok()) << "two of three members are down: no quorum";
  expect_down(down_load.error(), ms_since(start));
  start = Clock::now();
  auto down_put = quick.put_member(member("b"), 0);
  ASSERT_FALSE(down_put.ok());
  expect_down(down_put.error(), ms_since(start));

  etcd_.restart(second);
  snap = quick.load();
  ASSERT_TRUE(snap.ok()) << snap.error().to_string();
  EXPECT_EQ(snap->leader->name, "a");
  EXPECT_TRUE(quick.put_member(member("b"), 0).ok());
  etcd_.restart(idx);
  EXPECT_TRUE(etcd_.wait_healthy());
}

TEST_F(EtcdFailoverTest, WatchResumesAfterEndpointDies) {
  // The watcher starts on member 0 (first endpoint); the writer never uses member 0.
  EtcdClient watcher(options(etcd_.endpoints(), "unused"));
  dcs::EtcdOptions writer_options = options({etcd_.endpoint(1), etcd_.endpoint(2)}, "unused");
  writer_options.retry_timeout = 8000ms;  // killing member 0 may cost an election
  EtcdClient writer(writer_options);
  const std::string prefix = "/watchtest/";
  std::mutex mu;
  std::vector<dcs::etcd::KeyValue> seen;
  auto w = watcher.watch_prefix(
      prefix, 0,
      [&](const dcs::etcd::WatchUpdate& u) {
        std::lock_guard lock(mu);
        for (const auto& e : u.events) seen.push_back(e.kv);
      },
      false);
  ASSERT_TRUE(testkit::wait_until([&] { return w->connected(); }, 5s));
  auto count = [&] {
    std::lock_guard lock(mu);
    return seen.size();
  };
  ASSERT_TRUE(writer.put(prefix + "k1", "v", 0).ok());
  ASSERT_TRUE(testkit::wait_until([&] { return count() == 1; }, 5s));

  etcd_.kill(0);
  std::vector<int64_t> revs;
  for (int i = 2; i <= 5; ++i) {
    auto r = writer.put(prefix + "k" + std::to_string(i), "v", 0);
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    revs.push_back(*r);
  }
  EXPECT_TRUE(testkit::wait_until([&] { return count() >= 5; }, 10s)) << "the watch did not resume on another member";
  EXPECT_TRUE(w->connected());
  std::lock_guard lock(mu);
  ASSERT_EQ(seen.size(), 5u) << "events were lost or repeated";
  for (size_t i = 0; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i].key, prefix + "k" + std::to_string(i + 1));
    if (i > 0) {
      EXPECT_GT(seen[i].mod_revision, seen[i - 1].mod_revision);
    }
  }
  EXPECT_EQ(seen.back().mod_revision, revs.back());
}

TEST_F(EtcdFailoverTest, StoreWaitSurvivesEndpointDeath) {
  EtcdStore waiter(options(etcd_.endpoints(), "wf"));
  dcs::EtcdOptions writer_options = options(etcd_.endpoints(), "wf");
  writer_options.retry_timeout = 8000ms;  // the killed member may be the raft leader
  EtcdStore writer(writer_options);
  auto snap = waiter.load();
  ASSERT_TRUE(snap.ok());
  // Starts the background watch on the endpoint the client uses now, then kill that one.
  EXPECT_EQ(*waiter.wait_for_change(snap->revision, 200ms), snap->revision);
  etcd_.kill(index_of(waiter.etcd_client()->current_endpoint()));
  auto r = writer.set_switchover(dcs::Switchover{"a", "b", 0, 0});
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  ASSERT_TRUE(*r);
  auto start = Clock::now();
  auto changed = waiter.wait_for_change(snap->revision, 10s);
  ASSERT_TRUE(changed.ok());
  EXPECT_GT(*changed, snap->revision) << "the watch must reconnect to a live member and see the write";
  EXPECT_LT(ms_since(start), 5000);
}

}  // namespace
}  // namespace tandem
