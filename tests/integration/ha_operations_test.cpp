// Planned operations and DCS failures against real etcd and PostgreSQL: switchover there
// and back, losing one or two of three etcd members, and the follower going away in
// synchronous mode on and strict.
#include <future>
#include <thread>

#include <gtest/gtest.h>

#include "testkit/deployment.hpp"

namespace tandem::testkit {
namespace {

using namespace std::chrono_literals;

TEST(HaOperations, SwitchoverThereAndBack) {
  Deployment d;
  std::string first = d.wait_leader(30s);
  ASSERT_FALSE(first.empty());
  std::string second = d.other(first);
  ASSERT_TRUE(d.wait_streaming(second, 30s));
  ASSERT_TRUE(d.exec(first, "CREATE TABLE s(x int)").ok());
  ASSERT_TRUE(d.exec(first, "INSERT INTO s VALUES (1)").ok());

  auto r = d.tandem({"ctl", "switchover", "--candidate", second});
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->status.ok()) << r->output;
  EXPECT_EQ(d.wait_leader(10s), second);
  ASSERT_TRUE(d.accepts_write(second));
  ASSERT_TRUE(d.exec(second, "INSERT INTO s VALUES (2)").ok());
  ASSERT_TRUE(d.wait_streaming(first, 60s));

  r = d.tandem({"ctl", "switchover", "--candidate", first});
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->status.ok()) << r->output;
  EXPECT_EQ(d.wait_leader(10s), first);
  auto rows = d.exec(first, "SELECT count(*) FROM s");
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ(*rows->rows[0][0], "2");
  ASSERT_TRUE(d.wait_streaming(second, 60s));
  auto snap = d.snapshot();
  ASSERT_TRUE(snap.ok());
  ASSERT_GE(snap->history.size(), 3u);
  EXPECT_EQ(snap->history[1].reason, "switchover");
  EXPECT_EQ(snap->history[2].reason, "switchover");
  EXPECT_FALSE(snap->switchover.has_value());
}

TEST(HaOperations, SwitchoverToAnUnknownMemberIsRefused) {
  Deployment d;
  ASSERT_FALSE(d.wait_leader(30s).empty());
  auto r = d.tandem({"ctl", "switchover", "--candidate", "nobody"});
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->status.ok());
  EXPECT_NE(r->output.find("nobody is not a member"), std::string::npos) << r->output;
}

TEST(HaOperations, OneEtcdMemberKilledChangesNothing) {
  Deployment d;
  std::string leader = d.wait_leader(30s);
  ASSERT_FALSE(leader.empty());
  ASSERT_TRUE(d.wait_streaming(d.other(leader), 30s));
  for (int i = 1; i <= 3; ++i) {
    d.kill9(d.etcd_pid(i));
    // Across more than a ttl, and an etcd leader election, the leader keeps writing.
    auto until = std::chrono::steady_clock::now() + 8s;
    while (std::chrono::steady_clock::now() < until) {
      ASSERT_TRUE(d.accepts_write(leader)) << "writes failed with etcd member e" << i << " down";
      std::this_thread::sleep_for(200ms);
    }
    EXPECT_EQ(d.wait_leader(2s), leader);
    ASSERT_TRUE(d.up()) << "could not bring etcd member e" << i << " back";
  }
  auto snap = d.snapshot();
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ(snap->history.size(), 1u);
}

TEST(HaOperations, LosingEtcdQuorumFencesTheLeaderAndNobodyIsPromoted) {
  Deployment d;
  std::string leader = d.wait_leader(30s);
  ASSERT_FALSE(leader.empty());
  std::string follower = d.other(leader);
  ASSERT_TRUE(d.wait_streaming(follower, 30s));
  auto killed_at = std::chrono::steady_clock::now();
  d.kill9(d.etcd_pid(1));
  d.kill9(d.etcd_pid(2));
  // The leader stops taking writes within the ttl (4 s) of its last renewal. The last
  // renewal can come after the kill: the surviving etcd member, if it was etcd's leader,
  // renews leases on its own until it notices the lost quorum (one election timeout,
  // 1 s), and etcd's new leader later restarts every lease's ttl. Hence ttl + 1 s, plus
  // the 500 ms this probe may take.
  ASSERT_TRUE(wait_until([&] { return !d.accepts_write(leader, 500); }, 7s));
  auto fenced_after = std::chrono::steady_clock::now() - killed_at;
  EXPECT_LT(fenced_after, 4s + 1s + 500ms);
  // Nobody else is writable while etcd has no quorum.
  auto until = std::chrono::steady_clock::now() + 8s;
  while (std::chrono::steady_clock::now() < until) {
    EXPECT_FALSE(d.accepts_write(follower, 500));
    EXPECT_FALSE(d.accepts_write(leader, 500));
    std::this_thread::sleep_for(500ms);
  }
  // Quorum returns: a leader is elected again and takes writes.
  ASSERT_TRUE(d.up());
  std::string again = d.wait_leader(60s);
  ASSERT_FALSE(again.empty());
  EXPECT_TRUE(wait_until([&] { return d.accepts_write(again); }, 30s));
  EXPECT_TRUE(d.wait_streaming(d.other(again), 90s));
}

TEST(HaOperations, FollowerStoppedInModeOnLeaderKeepsWriting) {
  Deployment d(DeploymentOptions{"on", 4});
  std::string leader = d.wait_leader(30s);
  ASSERT_FALSE(leader.empty());
  std::string follower = d.other(leader);
  ASSERT_TRUE(d.wait_streaming(follower, 30s));
  ASSERT_TRUE(d.wait_sync_standby(follower, 20s));
  d.kill9(d.agent_pid(follower));  // its PostgreSQL goes down with it
  // Within a few loops the leader drops synchronous replication and writes continue.
  auto write = std::async(std::launch::async, [&] { return d.accepts_write(leader, 0); });
  ASSERT_EQ(write.wait_for(15s), std::future_status::ready) << "writes stayed blocked";
  EXPECT_TRUE(write.get());
  auto s = d.snapshot();
  ASSERT_TRUE(s.ok());
  EXPECT_FALSE(s->sync->sync_standby.has_value());
  // The follower comes back and becomes the synchronous standby again.
  ASSERT_TRUE(d.up());
  EXPECT_TRUE(d.wait_sync_standby(follower, 60s));
}

TEST(HaOperations, FollowerStoppedInStrictModeBlocksWritesUntilItReturns) {
  Deployment d(DeploymentOptions{"strict", 4});
  std::string leader = d.wait_leader(30s);
  ASSERT_FALSE(leader.empty());
  std::string follower = d.other(leader);
  ASSERT_TRUE(d.wait_streaming(follower, 30s));
  ASSERT_TRUE(d.wait_sync_standby(follower, 20s));
  ASSERT_TRUE(d.accepts_write(leader, 0));
  d.kill9(d.agent_pid(follower));
  ASSERT_TRUE(wait_until([&] { return d.postmaster_pid(follower) == 0; }, 5s));
  auto write = std::async(std::launch::async, [&] { return d.accepts_write(leader, 0); });
  EXPECT_EQ(write.wait_for(10s), std::future_status::timeout) << "a write committed without the synchronous standby";
  ASSERT_TRUE(d.up());
  ASSERT_EQ(write.wait_for(60s), std::future_status::ready) << "the write stayed blocked after the follower returned";
  EXPECT_TRUE(write.get());
}

}  // namespace
}  // namespace tandem::testkit
