// HA core against real etcd and PostgreSQL, through `tandem up`: bootstrap, replication,
// crash failover without losing acknowledged commits, fencing of an agent-less primary,
// rejoin with pg_rewind, restart in place.
#include <atomic>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "testkit/deployment.hpp"

namespace tandem::testkit {
namespace {

using namespace std::chrono_literals;

// Inserts increasing ids through libpq's multi-host routing (whoever is primary), one
// transaction each, and remembers every id whose COMMIT was acknowledged.
class Writer {
 public:
  explicit Writer(Deployment& d) : d_(d) {
    thread_ = std::thread([this] { loop(); });
  }
  ~Writer() { stop(); }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  std::set<int> acked() {
    std::lock_guard l(mu_);
    return acked_;
  }
  size_t count() {
    std::lock_guard l(mu_);
    return acked_.size();
  }

 private:
  void loop() {
    int next = 1;
    while (!stop_) {
      for (const auto& m : d_.members()) {
        auto c = d_.connect(m, 0);
        if (!c) continue;
        auto ro = c->exec("SELECT pg_is_in_recovery()");
        if (!ro || ro->rows.empty() || ro->rows[0][0] != "f") continue;
        while (!stop_) {
          auto r = c->exec("INSERT INTO acked(id) VALUES ($1)", {std::to_string(next)});
          if (!r) {
            ++next;  // it may have committed without the acknowledgement reaching us
            break;
          }
          {
            std::lock_guard l(mu_);
            acked_.insert(next);
          }
          ++next;
          std::this_thread::sleep_for(5ms);
        }
      }
      std::this_thread::sleep_for(50ms);
    }
  }
  Deployment& d_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::set<int> acked_;
  std::thread thread_;
};

std::set<int> ids_on(Deployment& d, const std::string& member) {
  std::set<int> out;
  auto r = d.exec(member, "SELECT id FROM acked");
  if (r) {
    for (const auto& row : r->rows) out.insert(std::stoi(*row[0]));
  }
  return out;
}

TEST(HaFailover, BootstrapReplicatesARowToTheFollower) {
  Deployment d;
  std::string leader = d.wait_leader(30s);
  ASSERT_FALSE(leader.empty());
  std::string follower = d.other(leader);
  // The leader turns synchronous replication on once the follower streams and has caught up.
  ASSERT_TRUE(d.wait_sync_standby(follower, 30s));
  ASSERT_TRUE(d.exec(leader, "CREATE TABLE t(x text)").ok());
  ASSERT_TRUE(d.exec(leader, "INSERT INTO t VALUES ('hello')").ok());
  // Synchronous mode on: the leader waits for the follower to flush each commit.
  auto state = d.exec(leader, "SELECT sync_state FROM pg_stat_replication WHERE application_name = '" + follower + "'");
  ASSERT_TRUE(state.ok());
  ASSERT_EQ(state->rows.size(), 1u);
  EXPECT_EQ(*state->rows[0][0], "sync");
  std::optional<std::string> seen;
  ASSERT_TRUE(wait_until(
      [&] {
        auto r = d.exec(follower, "SELECT x FROM t");
        if (r && r->rows.size() == 1) seen = r->rows[0][0];
        return seen.has_value();
      },
      10s));
  EXPECT_EQ(seen.value_or(""), "hello");
  auto ro = d.exec(follower, "SELECT pg_is_in_recovery()");
  ASSERT_TRUE(ro.ok());
  EXPECT_EQ(*ro->rows[0][0], "t");
  auto snap = d.snapshot();
  ASSERT_TRUE(snap.ok());
  ASSERT_FALSE(snap->history.empty());
  EXPECT_EQ(snap->history.front().reason, "bootstrap");
  // The deployment file has the documented keys.
  auto list = d.tandem({"ctl", "list", "--json"});
  ASSERT_TRUE(list.ok());
  EXPECT_NE(list->output.find("\"leader\": \"" + leader + "\""), std::string::npos) << list->output;
}

TEST(HaFailover, LeaderCrashPromotesSyncStandbyWithoutLosingAcknowledgedCommits) {
  Deployment d;
  std::string leader = d.wait_leader(30s);
  ASSERT_FALSE(leader.empty());
  std::string follower = d.other(leader);
  ASSERT_TRUE(d.wait_sync_standby(follower, 30s));
  ASSERT_TRUE(d.exec(leader, "CREATE TABLE acked(id int primary key)").ok());
  Writer w(d);
  ASSERT_TRUE(wait_until([&] { return w.count() > 50; }, 20s));
  pid_t agent = d.agent_pid(leader), pm = d.postmaster_pid(leader);
  ASSERT_GT(agent, 0);
  ASSERT_GT(pm, 0);
  d.kill9(agent);
  d.kill9(pm);
  size_t before = w.count();
  EXPECT_EQ(d.wait_leader(30s, leader), follower);
  ASSERT_TRUE(wait_until([&] { return w.count() > before + 20; }, 30s)) << "no writes on the new leader";
  w.stop();
  auto acked = w.acked();
  auto present = ids_on(d, follower);
  std::vector<int> lost;
  for (int id : acked) {
    if (!present.count(id)) lost.push_back(id);
  }
  EXPECT_TRUE(lost.empty()) << lost.size() << " acknowledged commits lost, first " << lost.front();
  auto snap = d.snapshot();
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ(snap->history.back().reason, "failover");
  EXPECT_EQ(snap->history.back().to, follower);

  // The old leader comes back (tandem up starts what is missing) and rejoins via pg_rewind.
  ASSERT_TRUE(d.up());
  EXPECT_TRUE(d.wait_streaming(leader, 60s));
  EXPECT_EQ(d.wait_leader(5s), follower);
  std::ifstream log(d.dir() + "/logs/" + leader + ".log");
  std::string text((std::istreambuf_iterator<char>(log)), {});
  EXPECT_NE(text.find("rewinding my former primary data"), std::string::npos);
  // Everything the new leader has, the rejoined member has too.
  ASSERT_TRUE(d.exec(follower, "INSERT INTO acked VALUES (1000000)").ok());
  EXPECT_TRUE(wait_until([&] { return ids_on(d, leader).count(1000000) == 1; }, 10s));
}

TEST(HaFailover, KilledAgentLeavesNoWritablePostgres) {
  Deployment d;
  std::string leader = d.wait_leader(30s);
  ASSERT_FALSE(leader.empty());
  ASSERT_TRUE(d.wait_sync_standby(d.other(leader), 30s));
  pid_t pm = d.postmaster_pid(leader);
  ASSERT_GT(pm, 0);
  ASSERT_TRUE(d.accepts_write(leader));
  // Only the agent dies; its postmaster gets SIGQUIT from the kernel (parent-death signal).
  d.kill9(d.agent_pid(leader));
  EXPECT_TRUE(wait_until([&] { return !d.accepts_write(leader, 500); }, 2s)) << "old primary still writable";
  EXPECT_EQ(d.wait_leader(30s, leader), d.other(leader));
  EXPECT_FALSE(d.accepts_write(leader));
}

TEST(HaFailover, PostgresCrashOnTheLeaderIsRestartedInPlace) {
  Deployment d;
  std::string leader = d.wait_leader(30s);
  ASSERT_FALSE(leader.empty());
  ASSERT_TRUE(d.wait_streaming(d.other(leader), 30s));
  pid_t pm = d.postmaster_pid(leader);
  d.kill9(pm);
  ASSERT_TRUE(wait_until(
      [&] { return d.postmaster_pid(leader) != 0 && d.postmaster_pid(leader) != pm && d.accepts_write(leader); }, 30s));
  EXPECT_EQ(d.wait_leader(5s), leader);
  auto snap = d.snapshot();
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ(snap->history.size(), 1u) << "a leader change happened";
}

}  // namespace
}  // namespace tandem::testkit
