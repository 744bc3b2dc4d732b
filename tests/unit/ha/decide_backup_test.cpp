// Table tests of ha::decide for the backup paths: bootstrapping a new cluster from a
// backup, and rebuilding a replica from the repository instead of the leader.
#include <gtest/gtest.h>

#include "ha/decide.hpp"

namespace tandem::ha {
namespace {

const TimePoint kNow = TimePoint() + std::chrono::hours(1);
const int64_t kNowMs = 1'700'000'000'000;

dcs::Member member(const std::string& name, const std::string& state) {
  dcs::Member m;
  m.name = name;
  m.state = state;
  m.role = "replica";
  m.wal_position = Lsn(100);
  m.timeline = 1;
  return m;
}

// A member "a" of a two-member cluster; "b" is the other one.
struct Fixture {
  dcs::ClusterSnapshot c;
  LocalState l;
  dcs::DynamicConfig cfg;

  Fixture() {
    l.name = "a";
    l.timeline = 1;
    l.wal_position = Lsn(100);
    l.lease_deadline = kNow + Seconds(4);
  }
  // An empty member of a cluster nobody has initialized yet.
  void uninitialized() {
    l.data_initialized = false;
    l.pg = PgRun::stopped;
  }
  // A running cluster: "b" leads, "a" streams from it.
  void running_replica() {
    c.initialize = "7300000000000000001";
    c.leader = dcs::Leader{"b", 1, 1};
    c.members["a"] = member("a", "streaming");
    c.members["b"] = member("b", "running");
    c.members["b"].role = "leader";
    l.data_initialized = true;
    l.pg = PgRun::running;
    l.in_recovery = true;
    l.streaming = true;
    l.following = "b";
  }
  Decision run() const { return decide(c, l, cfg, kNow, kNowMs); }
};

TEST(DecideBackup, NewClusterConfiguredFromBackupRestoresInsteadOfInitdb) {
  Fixture f;
  f.uninitialized();
  f.l.bootstrap_from_backup = true;
  auto d = f.run();
  EXPECT_EQ(d.action, Action::bootstrap_from_backup) << d.reason;
  EXPECT_NE(d.reason.find("from a backup"), std::string::npos) << d.reason;
}

TEST(DecideBackup, NewClusterWithoutBackupSourceRunsInitdb) {
  Fixture f;
  f.uninitialized();
  auto d = f.run();
  EXPECT_EQ(d.action, Action::bootstrap) << d.reason;
}

TEST(DecideBackup, SecondMemberOfARestoredClusterClonesFromTheLeader) {
  Fixture f;
  f.running_replica();
  f.uninitialized();
  f.l.bootstrap_from_backup = true;  // every member has the same configuration
  auto d = f.run();
  EXPECT_EQ(d.action, Action::clone) << d.reason;
  EXPECT_EQ(d.target, "b");
}

TEST(DecideBackup, WaitsWhileAnotherMemberIsStillRestoring) {
  Fixture f;
  f.uninitialized();
  f.l.bootstrap_from_backup = true;
  f.c.initialize = "b";  // won by "b" (its name until it took the leader key)
  f.c.members["b"] = member("b", "restoring from backup");
  auto d = f.run();
  EXPECT_EQ(d.action, Action::none) << d.reason;
}

TEST(DecideBackup, RestoredDataDirectoryIsNeverBootstrappedAgain) {
  Fixture f;
  f.l.bootstrap_from_backup = true;
  f.l.data_initialized = true;  // restored, the agent restarted before it took the key
  f.l.pg = PgRun::stopped;
  auto d = f.run();
  EXPECT_NE(d.action, Action::bootstrap_from_backup) << d.reason;
  EXPECT_NE(d.action, Action::bootstrap) << d.reason;
}

TEST(DecideBackup, ReinitFromBackupOnAReplicaRestoresThenFollowsTheLeader) {
  Fixture f;
  f.running_replica();
  f.l.reinit_requested = true;
  f.l.reinit_from_backup = true;
  auto d = f.run();
  EXPECT_EQ(d.action, Action::reinitialize_from_backup) << d.reason;
  EXPECT_EQ(d.target, "b");
  EXPECT_NE(d.reason.find("backup"), std::string::npos) << d.reason;
}

TEST(DecideBackup, PlainReinitStillClonesFromTheLeader) {
  Fixture f;
  f.running_replica();
  f.l.reinit_requested = true;
  auto d = f.run();
  EXPECT_EQ(d.action, Action::reinitialize) << d.reason;
  EXPECT_EQ(d.target, "b");
}

TEST(DecideBackup, ReinitFromBackupIsRefusedOnTheLeader) {
  Fixture f;
  f.running_replica();
  f.c.leader = dcs::Leader{"a", 1, 1};
  f.l.in_recovery = false;
  f.l.streaming = false;
  f.l.following.clear();
  f.l.reinit_requested = true;
  f.l.reinit_from_backup = true;
  auto d = f.run();
  EXPECT_EQ(d.action, Action::none) << d.reason;
  EXPECT_NE(d.reason.find("I am the leader"), std::string::npos) << d.reason;
}

TEST(DecideBackup, ReinitFromBackupWaitsForARunningLeaderToStreamFrom) {
  Fixture f;
  f.running_replica();
  f.c.members["b"].state = "crashed";
  f.l.reinit_requested = true;
  f.l.reinit_from_backup = true;
  auto d = f.run();
  EXPECT_EQ(d.action, Action::none) << d.reason;
  EXPECT_NE(d.reason.find("no running leader"), std::string::npos) << d.reason;
}

TEST(DecideBackup, StandbyReplayingTheArchiveAfterAReinitIsGivenTime) {
  Fixture f;
  f.running_replica();
  f.l.streaming = false;
  f.l.archive_catchup = true;
  f.l.not_streaming_since = kNow - Seconds(kNotStreamingRepairSeconds + 1);
  auto d = f.run();
  EXPECT_EQ(d.action, Action::none) << d.reason;
  f.l.not_streaming_since = kNow - Seconds(kArchiveCatchupRepairSeconds + 1);
  d = f.run();
  EXPECT_EQ(d.action, Action::rewind) << d.reason;  // stuck: repaired, but much later
  f.l.archive_catchup = false;
  f.l.not_streaming_since = kNow - Seconds(kNotStreamingRepairSeconds + 1);
  EXPECT_EQ(f.run().action, Action::rewind);
}

TEST(DecideBackup, ActionNames) {
  EXPECT_STREQ(to_string(Action::bootstrap_from_backup), "bootstrap_from_backup");
  EXPECT_STREQ(to_string(Action::reinitialize_from_backup), "reinitialize_from_backup");
}

}  // namespace
}  // namespace tandem::ha
