// Table tests of ha::decide: every branch, without any server.
#include "ha/decide.hpp"

#include <gtest/gtest.h>

namespace tandem::ha {
namespace {

using dcs::ClusterSnapshot;
using dcs::DynamicConfig;
using dcs::Member;
using dcs::SyncMode;

const TimePoint kNow = TimePoint() + std::chrono::hours(1);
const int64_t kNowMs = 1'700'000'000'000;

Member member(const std::string& name, const std::string& state, uint64_t lsn = 100, uint32_t tl = 1) {
  Member m;
  m.name = name;
  m.state = state;
  m.role = "replica";
  m.wal_position = Lsn(lsn);
  m.timeline = tl;
  return m;
}

struct Fixture {
  ClusterSnapshot c;
  LocalState l;
  DynamicConfig cfg;

  Fixture() {
    c.initialize = "7300000000000000001";
    l.name = "a";
    l.data_initialized = true;
    l.pg = PgRun::running;
    l.timeline = 1;
    l.wal_position = Lsn(100);
    l.lease_deadline = kNow + Seconds(4);
    c.members["a"] = member("a", "running");
    c.members["b"] = member("b", "streaming");
  }
  void lead(const std::string& who) { c.leader = dcs::Leader{who, 1, 1}; }
  void sync(const std::string& leader, std::optional<std::string> standby) {
    c.sync = dcs::SyncState{leader, standby, 1};
  }
  Decision run() const { return decide(c, l, cfg, kNow, kNowMs); }
};

TEST(Decide, FencesAPrimaryWhoseLeaseIsAboutToExpire) {
  Fixture f;
  f.lead("a");
  f.l.lease_deadline = kNow + Millis(300);
  auto d = f.run();
  EXPECT_EQ(d.action, Action::fence) << d.reason;
}

TEST(Decide, FencesAPrimaryWithoutAnyLease) {
  Fixture f;
  f.lead("a");
  f.l.lease_deadline.reset();
  EXPECT_EQ(f.run().action, Action::fence);
}

TEST(Decide, DoesNotFenceAStandby) {
  Fixture f;
  f.lead("b");
  f.l.in_recovery = true;
  f.l.following = "b";
  f.l.streaming = true;
  f.l.lease_deadline = kNow - Seconds(10);
  EXPECT_EQ(f.run().action, Action::none);
}

TEST(Decide, FenceMarginIsAFifthOfTtlWithinBounds) {
  DynamicConfig cfg;
  cfg.ttl = 4;
  EXPECT_EQ(fence_margin(cfg), Millis(800));
  cfg.ttl = 2;
  EXPECT_EQ(fence_margin(cfg), Millis(500));
  cfg.ttl = 30;
  EXPECT_EQ(fence_margin(cfg), Millis(2000));
}

TEST(Decide, DcsUnreachableKeepsStateWhileLeaseHolds) {
  Fixture f;
  f.l.dcs_ok = false;
  auto d = f.run();
  EXPECT_EQ(d.action, Action::none);
  EXPECT_NE(d.reason.find("DCS"), std::string::npos);
}

TEST(Decide, DcsUnreachableStartsStoppedPostgresReadOnly) {
  Fixture f;
  f.l.dcs_ok = false;
  f.l.pg = PgRun::stopped;
  f.l.last_leader = "a";
  auto d = f.run();
  EXPECT_EQ(d.action, Action::start_replica);
  EXPECT_EQ(d.target, "");
  f.l.last_leader = "b";
  EXPECT_EQ(f.run().target, "b");
}

TEST(Decide, PausedLeaderKeepsLockOnly) {
  Fixture f;
  f.cfg.paused = true;
  f.lead("a");
  EXPECT_EQ(f.run().action, Action::keep_leader);
  f.lead("b");
  EXPECT_EQ(f.run().action, Action::none);
}

TEST(Decide, PausedDoesNotFence) {
  Fixture f;
  f.cfg.paused = true;
  f.lead("a");
  f.l.lease_deadline = kNow;
  EXPECT_EQ(f.run().action, Action::keep_leader);
}

TEST(Decide, BootstrapsAnUninitializedCluster) {
  Fixture f;
  f.c.initialize.reset();
  f.l.data_initialized = false;
  f.l.pg = PgRun::stopped;
  EXPECT_EQ(f.run().action, Action::bootstrap);
}

TEST(Decide, ClonesFromARunningLeader) {
  Fixture f;
  f.l.data_initialized = false;
  f.l.pg = PgRun::stopped;
  f.lead("b");
  auto d = f.run();
  EXPECT_EQ(d.action, Action::clone);
  EXPECT_EQ(d.target, "b");
}

TEST(Decide, WaitsToCloneWithoutARunningLeader) {
  Fixture f;
  f.l.data_initialized = false;
  f.l.pg = PgRun::stopped;
  EXPECT_EQ(f.run().action, Action::none);
  f.lead("b");
  f.c.members["b"].state = "starting";
  EXPECT_EQ(f.run().action, Action::none);
}

TEST(Decide, ReinitializeRequested) {
  Fixture f;
  f.l.reinit_requested = true;
  f.lead("b");
  EXPECT_EQ(f.run().action, Action::reinitialize);
  f.lead("a");
  EXPECT_EQ(f.run().action, Action::none);  // the leader refuses
  f.c.leader.reset();
  EXPECT_EQ(f.run().action, Action::none);  // nothing to clone from
}

TEST(Decide, RestartRequested) {
  Fixture f;
  f.l.restart_requested = true;
  f.lead("b");
  f.l.in_recovery = true;
  auto d = f.run();
  EXPECT_EQ(d.action, Action::restart);
  EXPECT_EQ(d.target, "b");
}

TEST(Decide, StartingPostgresIsLeftAlone) {
  Fixture f;
  f.lead("a");
  f.l.pg = PgRun::starting;
  EXPECT_EQ(f.run().action, Action::none);
}

TEST(Decide, CrashedLeaderRestartsInPlace) {
  Fixture f;
  f.lead("a");
  f.l.pg = PgRun::crashed;
  f.l.was_primary = true;
  f.l.pg_down_since = kNow - Seconds(2);
  EXPECT_EQ(f.run().action, Action::start_primary);
}

TEST(Decide, CrashedLeaderGivesUpAfterPrimaryStartTimeout) {
  Fixture f;
  f.lead("a");
  f.l.pg = PgRun::crashed;
  f.l.was_primary = true;
  f.l.pg_down_since = kNow - Seconds(f.cfg.primary_start_timeout + 1);
  EXPECT_EQ(f.run().action, Action::release_leader);
}

TEST(Decide, LeaderWhoseDataIsAStandbyStartsReadOnlyThenPromotes) {
  Fixture f;
  f.lead("a");
  f.l.pg = PgRun::stopped;
  EXPECT_EQ(f.run().action, Action::start_replica);
}

TEST(Decide, StoppedFormerPrimaryRewindsBeforeFollowing) {
  Fixture f;
  f.lead("b");
  f.l.pg = PgRun::stopped;
  f.l.was_primary = true;
  auto d = f.run();
  EXPECT_EQ(d.action, Action::rewind);
  EXPECT_EQ(d.target, "b");
}

TEST(Decide, StoppedStandbyStartsFollowingLeader) {
  Fixture f;
  f.lead("b");
  f.l.pg = PgRun::stopped;
  auto d = f.run();
  EXPECT_EQ(d.action, Action::start_replica);
  EXPECT_EQ(d.target, "b");
}

TEST(Decide, StoppedWithoutLeaderStartsReadOnly) {
  Fixture f;
  f.l.pg = PgRun::stopped;
  auto d = f.run();
  EXPECT_EQ(d.action, Action::start_replica);
  EXPECT_EQ(d.target, "");
}

TEST(Decide, LeaderStillInRecoveryPromotes) {
  Fixture f;
  f.lead("a");
  f.l.in_recovery = true;
  EXPECT_EQ(f.run().action, Action::promote);
}

TEST(Decide, PrimaryWithoutTheKeyDemotes) {
  Fixture f;
  f.lead("b");
  auto d = f.run();
  EXPECT_EQ(d.action, Action::demote);
  EXPECT_EQ(d.target, "b");
}

TEST(Decide, RunningFormerPrimaryStandbyRewinds) {
  Fixture f;
  f.lead("b");
  f.l.in_recovery = true;
  f.l.was_primary = true;
  EXPECT_EQ(f.run().action, Action::rewind);
}

TEST(Decide, StandbyFollowsANewLeader) {
  Fixture f;
  f.lead("b");
  f.l.in_recovery = true;
  f.l.following = "c";
  auto d = f.run();
  EXPECT_EQ(d.action, Action::follow);
  EXPECT_EQ(d.target, "b");
}

TEST(Decide, StandbyNotStreamingForLongIsRepaired) {
  Fixture f;
  f.lead("b");
  f.l.in_recovery = true;
  f.l.following = "b";
  f.l.streaming = false;
  f.l.not_streaming_since = kNow - Seconds(kNotStreamingRepairSeconds + 1);
  EXPECT_EQ(f.run().action, Action::rewind);
  f.l.not_streaming_since = kNow - Seconds(1);
  EXPECT_EQ(f.run().action, Action::none);
}

// Failover eligibility.
TEST(Decide, SyncStandbyTakesTheKeyWhenThereIsNoLeader) {
  Fixture f;
  f.l.in_recovery = true;
  f.sync("b", "a");
  f.c.members.erase("b");
  EXPECT_EQ(f.run().action, Action::acquire_leader);
}

TEST(Decide, NonSyncStandbyMayNotTakeTheKey) {
  Fixture f;
  f.l.in_recovery = true;
  f.sync("b", std::nullopt);
  f.c.members.erase("b");
  auto d = f.run();
  EXPECT_EQ(d.action, Action::none);
  EXPECT_NE(d.reason.find("synchronous standby"), std::string::npos);
}

TEST(Decide, NoSyncKeyMeansNoAutomaticFailoverInSyncMode) {
  Fixture f;
  f.l.in_recovery = true;
  f.c.members.erase("b");
  EXPECT_EQ(f.run().action, Action::none);
  f.cfg.synchronous_mode = SyncMode::off;
  EXPECT_EQ(f.run().action, Action::acquire_leader);
}

TEST(Decide, NoFailoverTagBlocksPromotion) {
  Fixture f;
  f.l.in_recovery = true;
  f.l.tags.nofailover = true;
  f.sync("b", "a");
  f.c.members.erase("b");
  EXPECT_EQ(f.run().action, Action::none);
}

TEST(Decide, AsyncLagBeyondLimitBlocksPromotion) {
  Fixture f;
  f.cfg.synchronous_mode = SyncMode::off;
  f.l.in_recovery = true;
  f.c.members.erase("b");
  f.l.last_leader_position = Lsn(100 + f.cfg.maximum_lag_on_failover + 1);
  EXPECT_EQ(f.run().action, Action::none);
  f.l.last_leader_position = Lsn(100 + f.cfg.maximum_lag_on_failover);
  EXPECT_EQ(f.run().action, Action::acquire_leader);
}

TEST(Decide, DefersToAMemberFurtherAhead) {
  Fixture f;
  f.l.in_recovery = true;
  f.sync("b", "a");
  f.c.members["b"] = member("b", "running", 200);
  EXPECT_EQ(f.run().action, Action::none);
  f.c.members["b"] = member("b", "running", 100);  // equal, and b was the leader
  EXPECT_EQ(f.run().action, Action::none);
  f.sync("a", "b");  // equal, and I was the leader
  EXPECT_EQ(f.run().action, Action::acquire_leader);
}

TEST(Decide, PendingFailoverToAnotherCandidateBlocksMe) {
  Fixture f;
  f.l.in_recovery = true;
  f.sync("c", "a");
  f.c.members.erase("b");
  f.c.switchover = dcs::Switchover{"", "b", 0, 1};
  EXPECT_EQ(f.run().action, Action::none);
  f.c.switchover->candidate = "a";
  f.c.sync.reset();  // the operator named me: allowed even without a sync record
  EXPECT_EQ(f.run().action, Action::acquire_leader);
}

TEST(Decide, PrimaryWithoutLeaderKeepsRunningIfEligibleElseDemotes) {
  Fixture f;
  f.sync("a", "b");
  f.c.members.erase("b");
  EXPECT_EQ(f.run().action, Action::acquire_leader);
  f.sync("b", std::nullopt);
  EXPECT_EQ(f.run().action, Action::demote);
}

// Leader: synchronous replication management.
struct LeaderFixture : Fixture {
  LeaderFixture() {
    lead("a");
    c.members["a"].role = "leader";
  }
  void peer(const std::string& name, bool streaming, bool is_sync, uint64_t flush = 100) {
    l.replicas.push_back(ReplicaPeer{name, streaming, is_sync, Lsn(flush), Lsn(flush)});
  }
};

TEST(DecideSync, LeaderStartsWaitingForAStreamingFollower) {
  LeaderFixture f;
  f.peer("b", true, false);
  auto d = f.run();
  EXPECT_EQ(d.action, Action::keep_leader);
  EXPECT_EQ(d.sync.step, SyncPlan::Step::set_standby_names);
  EXPECT_EQ(d.sync.standby_names, "b");
}

TEST(DecideSync, LeaderRecordsTheStandbyOnlyWhenSyncAndCaughtUp) {
  LeaderFixture f;
  f.l.synchronous_standby_names = "b";
  f.l.sync_requested_at = Lsn(150);
  f.sync("a", std::nullopt);
  f.peer("b", true, true, 120);
  EXPECT_EQ(f.run().sync.step, SyncPlan::Step::none);
  f.l.replicas.clear();
  f.peer("b", true, true, 150);
  auto d = f.run();
  EXPECT_EQ(d.sync.step, SyncPlan::Step::record_standby);
  EXPECT_EQ(d.sync.standby, "b");
}

TEST(DecideSync, LeaderClaimsSyncKeyWhileWaiting) {
  LeaderFixture f;
  f.l.synchronous_standby_names = "b";
  f.l.sync_requested_at = Lsn(150);
  f.sync("z", "a");  // the previous leader's record
  f.peer("b", true, false, 100);
  EXPECT_EQ(f.run().sync.step, SyncPlan::Step::unrecord_standby);
}

TEST(DecideSync, RecordedStandbyGoneIsUnrecordedFirstThenAsync) {
  LeaderFixture f;
  f.l.synchronous_standby_names = "b";
  f.sync("a", "b");
  auto d = f.run();
  EXPECT_EQ(d.sync.step, SyncPlan::Step::unrecord_standby);
  f.sync("a", std::nullopt);
  d = f.run();
  EXPECT_EQ(d.sync.step, SyncPlan::Step::set_standby_names);
  EXPECT_EQ(d.sync.standby_names, "");
}

TEST(DecideSync, StrictKeepsWaitingForAGoneStandby) {
  LeaderFixture f;
  f.cfg.synchronous_mode = SyncMode::strict;
  f.l.synchronous_standby_names = "b";
  f.sync("a", "b");
  EXPECT_EQ(f.run().sync.step, SyncPlan::Step::none);
}

TEST(DecideSync, StrictWithoutAnyStandbyBlocksWrites) {
  LeaderFixture f;
  f.cfg.synchronous_mode = SyncMode::strict;
  f.sync("a", std::nullopt);
  auto d = f.run();
  EXPECT_EQ(d.sync.step, SyncPlan::Step::set_standby_names);
  EXPECT_EQ(d.sync.standby_names, "*");
}

TEST(DecideSync, RecordedStandbyHealthyKeepsSettingInPlace) {
  LeaderFixture f;
  f.l.synchronous_standby_names = "";
  f.sync("a", "b");
  f.peer("b", true, false);
  auto d = f.run();
  EXPECT_EQ(d.sync.step, SyncPlan::Step::set_standby_names);
  EXPECT_EQ(d.sync.standby_names, "b");
  f.l.synchronous_standby_names = "b";
  EXPECT_EQ(f.run().sync.step, SyncPlan::Step::none);
}

TEST(DecideSync, NoSyncTagIsNeverChosen) {
  LeaderFixture f;
  f.c.members["b"].tags.nosync = true;
  f.sync("a", std::nullopt);
  f.peer("b", true, false);
  EXPECT_EQ(f.run().sync.step, SyncPlan::Step::none);
}

TEST(DecideSync, ModeOffUnrecordsAndClearsStandbyNames) {
  LeaderFixture f;
  f.cfg.synchronous_mode = SyncMode::off;
  f.sync("a", "b");
  f.l.synchronous_standby_names = "b";
  EXPECT_EQ(f.run().sync.step, SyncPlan::Step::unrecord_standby);
  f.sync("a", std::nullopt);
  EXPECT_EQ(f.run().sync.step, SyncPlan::Step::set_standby_names);
  f.l.synchronous_standby_names = "";
  EXPECT_EQ(f.run().sync.step, SyncPlan::Step::none);
}

// Switchover.
TEST(DecideSwitchover, HandsOverToACaughtUpCandidate) {
  LeaderFixture f;
  f.c.switchover = dcs::Switchover{"a", "b", 0, 1};
  f.peer("b", true, true, 100);
  auto d = f.run();
  EXPECT_EQ(d.action, Action::switchover);
  EXPECT_EQ(d.target, "b");
}

TEST(DecideSwitchover, WaitsForALaggingCandidate) {
  LeaderFixture f;
  f.c.switchover = dcs::Switchover{"a", "b", 0, 1};
  f.l.wal_position = Lsn(100 + f.cfg.maximum_lag_on_failover + 10);
  f.peer("b", true, true, 100);
  auto d = f.run();
  EXPECT_EQ(d.action, Action::keep_leader);
  EXPECT_NE(d.reason.find("catch up"), std::string::npos);
}

TEST(DecideSwitchover, AbandonsWhenCandidateIsNotStreaming) {
  LeaderFixture f;
  f.c.switchover = dcs::Switchover{"a", "b", 0, 1};
  EXPECT_EQ(f.run().action, Action::clear_switchover);
}

TEST(DecideSwitchover, AbandonsAfterTimeout) {
  LeaderFixture f;
  f.c.switchover = dcs::Switchover{"a", "b", kNowMs - (kSwitchoverTimeoutSeconds + 1) * 1000, 1};
  f.l.wal_position = Lsn(100 + f.cfg.maximum_lag_on_failover + 10);
  f.peer("b", true, true, 100);
  EXPECT_EQ(f.run().action, Action::clear_switchover);
}

TEST(DecideSwitchover, PicksTheMostAdvancedCandidateWhenNoneNamed) {
  LeaderFixture f;
  f.c.members["c"] = member("c", "streaming");
  f.c.switchover = dcs::Switchover{"a", "", 0, 1};
  f.peer("b", true, false, 90);
  f.peer("c", true, true, 100);
  EXPECT_EQ(f.run().target, "c");
}

TEST(DecideSwitchover, ScheduledInTheFutureWaits) {
  LeaderFixture f;
  f.c.switchover = dcs::Switchover{"a", "b", kNowMs + 60'000, 1};
  f.peer("b", true, true, 100);
  EXPECT_EQ(f.run().action, Action::keep_leader);
}

TEST(DecideSwitchover, ForAnotherLeaderIsIgnored) {
  LeaderFixture f;
  f.c.switchover = dcs::Switchover{"z", "b", 0, 1};
  f.peer("b", true, true, 100);
  EXPECT_EQ(f.run().action, Action::keep_leader);
}

TEST(Decide, ActionsHaveNames) {
  for (int a = 0; a <= static_cast<int>(Action::clear_switchover); ++a) {
    EXPECT_STRNE(to_string(static_cast<Action>(a)), "?");
  }
}

}  // namespace
}  // namespace tandem::ha
