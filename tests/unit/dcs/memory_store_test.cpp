// The cluster store over MemoryKv (the in-memory etcd imitation): the same store code as
// production, with a fake clock for lease expiry.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "dcs/etcd/etcd_store.hpp"
#include "dcs/memory/memory_kv.hpp"

namespace tandem::dcs::memory {
namespace {

using namespace std::chrono_literals;
using etcd::TxnCompare;
using etcd::TxnOp;

class MemoryStoreTest : public ::testing::Test {
 protected:
  std::atomic<int64_t> now_ms_{1000000};
  std::shared_ptr<MemoryKv> kv_ =
      std::make_shared<MemoryKv>([this] { return TimePoint(std::chrono::milliseconds(now_ms_.load())); });
  std::unique_ptr<ClusterStore> a_ = make_memory_store(kv_, "c");
  std::unique_ptr<ClusterStore> b_ = make_memory_store(kv_, "c");

  void advance(std::chrono::milliseconds d) { now_ms_ += d.count(); }
};

Member member(const std::string& name) {
  Member m;
  m.name = name;
  m.role = "replica";
  m.wal_position = Lsn(0x1000);
  return m;
}

TEST_F(MemoryStoreTest, LeaderLifecycle) {
  auto la = a_->grant_lease(4);
  auto lb = b_->grant_lease(4);
  ASSERT_TRUE(la.ok() && lb.ok());
  EXPECT_NE(la->id, lb->id);
  EXPECT_TRUE(*a_->try_acquire_leader("a", la->id));
  EXPECT_FALSE(*b_->try_acquire_leader("b", lb->id));
  EXPECT_TRUE(*a_->try_acquire_leader("a", la->id)) << "a retry of an applied acquire reports success";
  auto snap = b_->load();
  ASSERT_TRUE(snap.ok());
  ASSERT_TRUE(snap->leader);
  EXPECT_EQ(snap->leader->name, "a");
  EXPECT_EQ(snap->leader->lease_id, la->id);
  EXPECT_FALSE(*b_->refresh_leader("b", lb->id));
  EXPECT_FALSE(*b_->release_leader("b"));
  EXPECT_TRUE(*a_->release_leader("a"));
  EXPECT_TRUE(*b_->try_acquire_leader("b", lb->id));
}

TEST_F(MemoryStoreTest, LeaseExpiryByClock) {
  auto lease = a_->grant_lease(4);
  ASSERT_TRUE(lease.ok());
  ASSERT_TRUE(*a_->try_acquire_leader("a", lease->id));
  ASSERT_TRUE(a_->put_member(member("a"), lease->id).ok());
  advance(3s);
  EXPECT_EQ(*a_->keepalive(lease->id), 4);
  advance(3s);
  auto snap = a_->load();
  ASSERT_TRUE(snap->leader) << "renewed 3 s ago with TTL 4: still alive";
  EXPECT_EQ(snap->members.size(), 1u);
  advance(1100ms);
  snap = a_->load();
  EXPECT_FALSE(snap->leader);
  EXPECT_TRUE(snap->members.empty());
  EXPECT_EQ(*a_->keepalive(lease->id), 0);
  EXPECT_TRUE(a_->revoke_lease(lease->id).ok());
  EXPECT_TRUE(*b_->try_acquire_leader("b", b_->grant_lease(4)->id));
}

TEST_F(MemoryStoreTest, PutBoundToMissingLeaseFails) {
  auto r = a_->put_member(member("a"), 12345);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::not_found);
  EXPECT_TRUE(a_->load()->members.empty());
}

TEST_F(MemoryStoreTest, SyncConfigInitializeSwitchover) {
  EXPECT_FALSE(*a_->write_sync(SyncState{"a", std::nullopt, 0}));
  auto lease = a_->grant_lease(4);
  ASSERT_TRUE(*a_->try_acquire_leader("a", lease->id));
  EXPECT_TRUE(*a_->write_sync(SyncState{"a", std::string("b"), 0}));
  EXPECT_FALSE(*b_->write_sync(SyncState{"b", std::nullopt, 0}));

  DynamicConfig c;
  c.ttl = 10;
  EXPECT_TRUE(*a_->write_config(c, 0));
  EXPECT_TRUE(*b_->write_config(c, 0)) << "the stored value is already this one: reported as an applied retry";
  DynamicConfig other = c;
  other.paused = true;
  EXPECT_FALSE(*b_->write_config(other, 0)) << "0 means create, and the key exists";
  int64_t rev = a_->load()->config->mod_revision;
  c.loop_wait = 2;
  EXPECT_TRUE(*a_->write_config(c, rev));
  c.loop_wait = 3;
  EXPECT_FALSE(*b_->write_config(c, rev));
  EXPECT_EQ(b_->load()->config->loop_wait, 2);

  EXPECT_TRUE(*a_->try_initialize("a"));
  EXPECT_FALSE(*b_->try_initialize("b"));
  EXPECT_TRUE(*a_->set_initialize("a", "42"));
  EXPECT_EQ(b_->load()->initialize, std::optional<std::string>("42"));

  EXPECT_TRUE(*a_->set_switchover(Switchover{"a", "b", 0, 0}));
  EXPECT_FALSE(*b_->set_switchover(Switchover{"a", "c", 0, 0}));
  ASSERT_TRUE(b_->clear_switchover().ok());
  EXPECT_FALSE(a_->load()->switchover);
}

TEST_F(MemoryStoreTest, ClaimMemberAndHistory) {
  auto la = a_->grant_lease(4);
  auto lb = b_->grant_lease(4);
  EXPECT_TRUE(*a_->claim_member(member("pg1"), la->id));
  EXPECT_FALSE(*b_->claim_member(member("pg1"), lb->id));
  for (int i = 0; i < 120; ++i) ASSERT_TRUE(a_->append_history(HistoryEntry{i, "x", "y", "r", 1, Lsn()}).ok());
  auto h = b_->load()->history;
  ASSERT_EQ(h.size(), etcd::EtcdStore::kMaxHistory);
  EXPECT_EQ(h.front().time_ms, 20);
  EXPECT_EQ(h.back().time_ms, 119);
}

TEST_F(MemoryStoreTest, WaitForChangeSeesOtherStoresWrites) {
  auto snap = a_->load();
  ASSERT_TRUE(snap.ok());
  ASSERT_TRUE(b_->put_member(member("b"), 0).ok());
  EXPECT_EQ(*a_->wait_for_change(snap->revision, 50ms), snap->revision) << "member records do not wake waiters";
  std::thread t([&] { (void)b_->set_switchover(Switchover{"a", "b", 0, 0}); });
  auto r = a_->wait_for_change(snap->revision, 10s);
  t.join();
  ASSERT_TRUE(r.ok());
  EXPECT_GT(*r, snap->revision);
  EXPECT_EQ(*r, kv_->revision());
}

TEST_F(MemoryStoreTest, UnavailableFailsEveryCall) {
  kv_->set_available(false);
  auto r = a_->load();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::unavailable);
  EXPECT_FALSE(a_->grant_lease(4).ok());
  EXPECT_FALSE(a_->try_acquire_leader("a", 1).ok());
  kv_->set_available(true);
  EXPECT_TRUE(a_->load().ok());
}

TEST(MemoryKv, TransactionSemanticsMatchEtcd) {
  MemoryKv kv;
  EXPECT_EQ(kv.revision(), 1);
  auto t = kv.txn({TxnCompare::value_equals("k", "")}, {TxnOp::put("k", "v")}, {TxnOp::get("k")});
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(t->succeeded) << "a value compare on a missing key is false, even against \"\"";
  EXPECT_EQ(kv.revision(), 1) << "a read-only transaction does not advance the revision";
  t = kv.txn({TxnCompare::absent("k"), TxnCompare::version("k", TxnCompare::Op::equal, 0)}, {TxnOp::put("k", "v")}, {});
  ASSERT_TRUE(t.ok() && t->succeeded);
  EXPECT_EQ(t->revision, 2);
  ASSERT_TRUE(kv.put("k", "w", 0).ok());
  auto g = kv.get("k");
  ASSERT_EQ(g->kvs.size(), 1u);
  EXPECT_EQ(g->kvs[0].create_revision, 2);
  EXPECT_EQ(g->kvs[0].mod_revision, 3);
  EXPECT_EQ(g->kvs[0].version, 2);
  EXPECT_TRUE(kv.txn({TxnCompare::mod_revision("k", TxnCompare::Op::greater, 2)}, {}, {})->succeeded);
  EXPECT_TRUE(kv.txn({TxnCompare::value_equals("k", "w")}, {}, {})->succeeded);
  auto d = kv.del_prefix("k");
  EXPECT_EQ(d->deleted, 1);
  EXPECT_EQ(kv.del("k")->deleted, 0);
  EXPECT_EQ(kv.revision(), 4);
}

TEST(MemoryKv, WatchReplaysFromAPastRevisionAndReportsCompaction) {
  MemoryKv kv;
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(kv.put("/p/k" + std::to_string(i), "v", 0).ok());
  ASSERT_TRUE(kv.put("/other", "v", 0).ok());
  std::mutex mu;
  std::condition_variable cv;
  std::vector<etcd::WatchUpdate> seen;
  auto w = kv.watch("/p/", 4, [&](const etcd::WatchUpdate& u) {
    std::lock_guard lock(mu);
    seen.push_back(u);
    cv.notify_all();
  });
  std::unique_lock lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, 5s, [&] { return seen.size() == 3; }));
  EXPECT_EQ(seen[0].events.at(0).kv.key, "/p/k2");  // revision 4 is the third put
  EXPECT_EQ(seen[2].events.at(0).kv.key, "/p/k4");
  lock.unlock();
  w->stop();

  for (size_t i = 0; i < MemoryKv::kEventHistory; ++i) ASSERT_TRUE(kv.put("/q", "v", 0).ok());
  seen.clear();
  auto w2 = kv.watch("/p/", 2, [&](const etcd::WatchUpdate& u) {
    std::lock_guard l(mu);
    seen.push_back(u);
    cv.notify_all();
  });
  lock.lock();
  ASSERT_TRUE(cv.wait_for(lock, 5s, [&] { return !seen.empty(); }));
  EXPECT_GT(seen[0].compact_revision, 2);
}

}  // namespace
}  // namespace tandem::dcs::memory
