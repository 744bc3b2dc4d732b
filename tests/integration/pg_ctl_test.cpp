// Real PostgreSQL 15 members driven through tandem::pg: bootstrap, clone, synchronous
// replication, promotion, rewind, stop modes, and the parent-death guarantee.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>

#include "pg/admin.hpp"
#include "pg/files.hpp"
#include "pg/pidfile.hpp"
#include "pg/setup.hpp"
#include "pg/status.hpp"
#include "pg/tools.hpp"
#include "testkit/pg_member.hpp"
#include "testkit/testkit.hpp"

namespace tandem {
namespace {

using namespace std::chrono_literals;
using testkit::PgMember;
using testkit::PgPasswords;

#define ASSERT_OK(expr)                                              \
  do {                                                               \
    auto&& _r = (expr);                                              \
    ASSERT_TRUE(_r.ok()) << #expr << ": " << _r.error().to_string(); \
  } while (0)

class PgCtlTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_OK(pw_.write_passfile(dir_.sub("pgpass"))); }

  // The rows of `sql` on a member, or nullopt when the query fails.
  static std::optional<std::vector<pg::Row>> rows(PgMember& m, const std::string& sql) {
    auto c = m.local();
    if (!c) return std::nullopt;
    auto r = c->exec(sql);
    if (!r) return std::nullopt;
    return r->rows;
  }
  static std::optional<pg::MemberStatus> status(PgMember& m) {
    auto c = m.local();
    if (!c) return std::nullopt;
    auto st = pg::query_status(*c);
    if (!st) return std::nullopt;
    return *st;
  }
  static bool has_row(PgMember& m, int id) {
    auto r = rows(m, "SELECT who FROM t WHERE id = " + std::to_string(id));
    return r && r->size() == 1;
  }

  testkit::TempDir dir_{"tandem-pg"};
  PgPasswords pw_;
};

TEST_F(PgCtlTest, BootstrapCloneSyncPromoteRewind) {
  PgMember m1(dir_.path(), "m1", pw_);
  ASSERT_OK(m1.bootstrap_primary());

  // A fresh primary on timeline 1.
  auto st1 = status(m1);
  ASSERT_TRUE(st1);
  EXPECT_FALSE(st1->in_recovery);
  EXPECT_EQ(st1->timeline, 1u);
  EXPECT_GT(st1->write_lsn.value_or(Lsn()).value(), 0u);
  EXPECT_NE(st1->system_identifier, 0u);
  EXPECT_FALSE(st1->pending_restart);
  auto v = rows(m1,
                "SELECT current_setting('data_checksums'), current_setting('wal_log_hints'), "
                "current_setting('server_encoding'), current_setting('lc_collate')");
  ASSERT_TRUE(v);
  EXPECT_EQ((*v)[0], (pg::Row{"on", "on", "UTF8", "C"}));

  // The roles log in over TCP with the passfile; a wrong password is refused.
  {
    auto rep = m1.tcp_connect(pw_.replication);
    ASSERT_OK(rep);
    auto admin = m1.tcp_connect(pw_.admin);
    ASSERT_OK(admin);
    auto attrs =
        admin->exec("SELECT rolcreatedb, rolcreaterole, rolsuper FROM pg_roles WHERE rolname = $1", {pw_.admin});
    ASSERT_OK(attrs);
    EXPECT_EQ(attrs->rows.at(0), (pg::Row{"t", "t", "f"}));
    PgPasswords wrong = pw_;
    wrong.replication_password = "not-the-password";
    ASSERT_OK(wrong.write_passfile(dir_.sub("wrong-pgpass")));
    auto p = m1.tcp(pw_.replication);
    p.passfile = wrong.passfile;
    auto bad = pg::Connection::open(p);
    ASSERT_FALSE(bad.ok());
    EXPECT_EQ(bad.error().code, Errc::permission_denied) << bad.error().to_string();
    EXPECT_EQ(bad.error().message.find("not-the-password"), std::string::npos);
    // Passwords never reach the server log.
    auto log = pg::read_file(m1.settings().log_file);
    ASSERT_OK(log);
    for (const auto& secret : {pw_.superuser_password, pw_.replication_password, pw_.admin_password}) {
      EXPECT_EQ(log->find(secret), std::string::npos);
    }
  }

  // Errors carry the SQLSTATE.
  {
    auto c = m1.local();
    ASSERT_OK(c);
    auto r = c->exec("SELEC 1");
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, Errc::invalid_argument);
    EXPECT_EQ(c->last_sqlstate(), "42601");
    EXPECT_NE(r.error().message.find("SQLSTATE 42601"), std::string::npos);
    auto slow = c->exec("SELECT pg_sleep(5)", {}, 1s);
    ASSERT_FALSE(slow.ok());
    EXPECT_EQ(slow.error().code, Errc::timeout);
  }
  {
    auto c = m1.local();
    ASSERT_OK(c);
    ASSERT_OK(c->exec("SET statement_timeout = 200"));
    auto r = c->exec("SELECT pg_sleep(3)");
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, Errc::timeout);
    EXPECT_EQ(c->last_sqlstate(), "57014");
  }

  // Slots are created once.
  {
    auto c = m1.local();
    ASSERT_OK(c);
    auto created = pg::create_physical_slot(*c, "m2");
    ASSERT_OK(created);
    EXPECT_TRUE(*created);
    created = pg::create_physical_slot(*c, "m2");
    ASSERT_OK(created);
    EXPECT_FALSE(*created);
    ASSERT_OK(c->exec("CREATE TABLE t (id int PRIMARY KEY, who text)"));
    ASSERT_OK(c->exec("INSERT INTO t VALUES ($1, $2)", {"1", "before clone"}));
  }

  // m2: a streaming replica of m1, using slot m2.
  PgMember m2(dir_.path(), "m2", pw_);
  ASSERT_OK(m2.clone_from(m1, "m2"));
  EXPECT_TRUE(has_row(m2, 1));
  {
    auto c = m1.local();
    ASSERT_OK(c);
    ASSERT_OK(c->exec("INSERT INTO t VALUES (2, 'streamed')"));
  }
  ASSERT_TRUE(testkit::wait_until([&] { return has_row(m2, 2); }, 20s)) << "row 2 never reached m2";
  ASSERT_TRUE(testkit::wait_until(
      [&] {
        auto s = status(m2);
        return s && s->streaming();
      },
      20s));
  auto st2 = status(m2);
  ASSERT_TRUE(st2);
  EXPECT_TRUE(st2->in_recovery);
  EXPECT_EQ(st2->timeline, 1u);
  EXPECT_EQ(st2->system_identifier, st1->system_identifier);
  EXPECT_EQ(st2->wal_receiver->sender_port, m1.port());
  EXPECT_EQ(st2->wal_receiver->slot_name, "m2");
  EXPECT_TRUE(st2->receive_lsn.has_value());
  EXPECT_TRUE(st2->replay_lsn.has_value());
  EXPECT_FALSE(st2->write_lsn.has_value());
  {
    auto c = m2.local();
    ASSERT_OK(c);
    auto w = c->exec("INSERT INTO t VALUES (3, 'on a standby')");
    ASSERT_FALSE(w.ok());
    EXPECT_EQ(c->last_sqlstate(), "25006");
  }
  {
    auto c = m1.local();
    ASSERT_OK(c);
    auto slots = pg::list_slots(*c);
    ASSERT_OK(slots);
    ASSERT_EQ(slots->size(), 1u);
    EXPECT_EQ(slots->at(0).name, "m2");
    EXPECT_TRUE(slots->at(0).active);
    EXPECT_TRUE(slots->at(0).restart_lsn.has_value());
    auto dropped = pg::drop_slot(*c, "m2");  // in use by m2's walreceiver
    ASSERT_FALSE(dropped.ok());
    EXPECT_EQ(dropped.error().code, Errc::conflict);
  }
  auto peer = [&](PgMember& primary, const std::string& name) -> std::optional<pg::ReplicationPeer> {
    auto s = status(primary);
    if (!s || !s->peer(name)) return std::nullopt;
    return *s->peer(name);
  };
  ASSERT_TRUE(testkit::wait_until(
      [&] {
        auto p = peer(m1, "m2");
        return p && p->state == "streaming";
      },
      10s));
  EXPECT_EQ(peer(m1, "m2")->sync_state, "async");

  // Synchronous replication through tandem.conf + reload.
  auto change = pg::set_synchronous_standby_names(m1.postmaster(), m1.config(), pg::render_sync_standby_names({"m2"}));
  ASSERT_OK(change);
  EXPECT_TRUE(change->conf_changed);
  EXPECT_FALSE(change->standby_signal_changed);
  {
    auto c = m1.local();
    ASSERT_OK(c);
    ASSERT_OK(pg::wait_for_setting(*c, "synchronous_standby_names", "FIRST 1 (\"m2\")", 10s));
  }
  ASSERT_TRUE(testkit::wait_until(
      [&] {
        auto p = peer(m1, "m2");
        return p && p->sync_state == "sync";
      },
      10s));
  EXPECT_EQ(status(m1)->synchronous_standby_names, "FIRST 1 (\"m2\")");
  {
    auto c = m1.local();
    ASSERT_OK(c);
    ASSERT_OK(c->exec("INSERT INTO t VALUES (4, 'synchronous')"));
  }
  EXPECT_TRUE(has_row(m2, 4) || testkit::wait_until([&] { return has_row(m2, 4); }, 5s));
  // Applying the same config again changes nothing.
  change = m1.postmaster().apply_config(m1.config());
  ASSERT_OK(change);
  EXPECT_FALSE(change->any());

  // Failover: m2 becomes primary on timeline 2; m1 keeps running alone (async) and diverges.
  ASSERT_OK(pg::set_synchronous_standby_names(m1.postmaster(), m1.config(), ""));
  {
    auto c = m1.local();
    ASSERT_OK(c);
    ASSERT_OK(pg::wait_for_setting(*c, "synchronous_standby_names", "", 10s));
  }
  EXPECT_EQ(m1.postmaster().promote().error().code, Errc::conflict);  // m1 is no standby
  ASSERT_OK(m2.postmaster().promote());
  ASSERT_TRUE(testkit::wait_until(
      [&] {
        auto s = status(m2);
        return s && !s->in_recovery;
      },
      30s));
  m2.config() = pg::ManagedConfig{};
  change = m2.postmaster().apply_config(m2.config());
  ASSERT_OK(change);
  EXPECT_TRUE(change->conf_changed);             // primary_conninfo and slot cleared
  EXPECT_FALSE(change->standby_signal_changed);  // PostgreSQL removed standby.signal itself
  auto promoted = status(m2);
  ASSERT_TRUE(promoted);
  EXPECT_EQ(promoted->timeline, 2u);
  EXPECT_EQ(promoted->system_identifier, st1->system_identifier);
  {
    auto c = m2.local();
    ASSERT_OK(c);
    ASSERT_OK(c->exec("INSERT INTO t VALUES (5, 'new primary')"));
    ASSERT_OK(pg::create_physical_slot(*c, "m1"));
  }
  {
    auto c = m1.local();
    ASSERT_OK(c);
    ASSERT_OK(c->exec("INSERT INTO t VALUES (100, 'only on the old primary')"));
  }

  // Rewind the old primary onto the new timeline.
  auto busy = pg::rewind(m1.settings(), m2.tcp(pw_.replication));
  ASSERT_FALSE(busy.ok());
  EXPECT_EQ(busy.error().code, Errc::conflict);
  // The old primary crashes (immediate stop): pg_rewind must first finish its crash recovery.
  ASSERT_OK(m1.postmaster().stop(pg::StopMode::immediate, 30s));
  EXPECT_FALSE(m1.postmaster().running());
  auto cd = pg::read_controldata(m1.settings());
  ASSERT_OK(cd);
  EXPECT_EQ(cd->state, pg::ClusterState::in_production);
  EXPECT_FALSE(cd->clean_shutdown());
  EXPECT_EQ(cd->timeline, 1u);
  EXPECT_EQ(cd->system_identifier, st1->system_identifier);
  // No CHECKPOINT on the new primary here: rewind() runs it first (as the replication
  // role), or pg_rewind could read the old timeline from its pg_control.
  auto rw = pg::rewind(m1.settings(), m2.tcp(pw_.replication));
  ASSERT_OK(rw);
  EXPECT_TRUE(rw->rewound) << rw->output;
  ASSERT_OK(m1.configure_and_start(m1.standby_of(m2, "m1")));
  ASSERT_TRUE(testkit::wait_until(
      [&] {
        auto s = status(m1);
        return s && s->in_recovery && s->streaming() && s->timeline == 2;
      },
      30s));
  EXPECT_EQ(status(m1)->wal_receiver->sender_port, m2.port());
  EXPECT_FALSE(has_row(m1, 100)) << "the rewind must undo the old primary's own writes";
  EXPECT_TRUE(has_row(m1, 5));
  {
    auto c = m2.local();
    ASSERT_OK(c);
    ASSERT_OK(c->exec("INSERT INTO t VALUES (6, 'after rewind')"));
  }
  ASSERT_TRUE(testkit::wait_until([&] { return has_row(m1, 6); }, 20s));
  ASSERT_TRUE(testkit::wait_until(
      [&] {
        auto p = peer(m2, "m1");
        return p && p->state == "streaming";
      },
      10s));

  // Stop modes leave the states pg_controldata reports.
  ASSERT_OK(m1.postmaster().stop(pg::StopMode::smart, 30s));
  cd = pg::read_controldata(m1.settings());
  ASSERT_OK(cd);
  EXPECT_EQ(cd->state, pg::ClusterState::shut_down_in_recovery);
  EXPECT_EQ(cd->timeline, 2u);
  ASSERT_OK(m2.postmaster().stop(pg::StopMode::immediate, 30s));
  cd = pg::read_controldata(m2.settings());
  ASSERT_OK(cd);
  EXPECT_EQ(cd->state, pg::ClusterState::in_production);
  EXPECT_FALSE(cd->clean_shutdown());
  EXPECT_FALSE(pg::live_postmaster(m2.settings().data_dir).has_value());
  ASSERT_OK(m2.start());  // crash recovery
  EXPECT_TRUE(has_row(m2, 6));
  ASSERT_OK(m2.postmaster().stop(pg::StopMode::fast, 30s));
  cd = pg::read_controldata(m2.settings());
  ASSERT_OK(cd);
  EXPECT_EQ(cd->state, pg::ClusterState::shut_down);
}

TEST_F(PgCtlTest, StartRefusesALivePostmasterAndStopEscalates) {
  PgMember m(dir_.path(), "solo", pw_);
  ASSERT_OK(m.bootstrap_primary());
  pid_t first = m.postmaster().pid();
  EXPECT_EQ(m.postmaster().start().error().code, Errc::conflict);  // already running

  // Another supervisor (say, a restarted agent) must not start a second server...
  pg::Postmaster other(m.settings());
  auto second = other.start();
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code, Errc::conflict);
  EXPECT_EQ(pg::live_postmaster(m.settings().data_dir), first);

  // ...but can stop the one it found and take over.
  ASSERT_OK(pg::stop_orphan_postmaster(m.settings(), pg::StopMode::immediate, 10s));
  EXPECT_TRUE(testkit::wait_until([&] { return !m.postmaster().running(); }, 5s));
  // The server inherits no descriptor of the agent but stdin/stdout/stderr.
  std::string marker = dir_.sub("agent-private-file");
  int leaky = open(marker.c_str(), O_CREAT | O_WRONLY, 0600);  // deliberately without O_CLOEXEC
  ASSERT_GE(leaky, 0);
  ASSERT_OK(other.start());
  close(leaky);
  ASSERT_OK(other.wait_ready(30s));
  for (const auto& fd : std::filesystem::directory_iterator("/proc/" + std::to_string(other.pid()) + "/fd")) {
    std::error_code ec;
    EXPECT_NE(std::filesystem::read_symlink(fd.path(), ec).string(), marker) << fd.path();
  }

  // A client that never leaves stalls a smart shutdown; stop() escalates after the timeout.
  auto client = pg::Connection::open(pg::local_superuser(m.settings()));
  ASSERT_OK(client);
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_OK(other.stop(pg::StopMode::smart, 500ms));
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(took, 500ms);
  EXPECT_LT(took, 10s);
  EXPECT_FALSE(other.running());
  EXPECT_FALSE(client->exec("SELECT 1").ok());

  // A stale postmaster.pid (dead pid) is removed at start.
  pid_t dead = fork();
  ASSERT_GE(dead, 0);
  if (dead == 0) _exit(0);
  ASSERT_EQ(waitpid(dead, nullptr, 0), dead);
  ASSERT_OK(pg::write_file_atomic(m.settings().data_file("postmaster.pid"),
                                  std::to_string(dead) + "\n" + m.settings().data_dir + "\n", 0600, "postgres"));
  ASSERT_OK(other.start());
  ASSERT_OK(other.wait_ready(30s));
  ASSERT_OK(other.stop(pg::StopMode::fast, 30s));

  // A server that cannot start reports its log.
  m.config().parameters["shared_buffers"] = "not-a-size";
  ASSERT_OK(pg::write_managed_config(m.settings(), m.config()));
  ASSERT_OK(other.start());
  auto ready = other.wait_ready(30s);
  ASSERT_FALSE(ready.ok());
  EXPECT_EQ(ready.error().code, Errc::io);
  EXPECT_NE(ready.error().message.find("shared_buffers"), std::string::npos) << ready.error().message;
}

// The agent dies by SIGKILL: its PostgreSQL gets SIGQUIT from the kernel and stops
// taking writes at once.
TEST_F(PgCtlTest, AgentDeathStopsPostgres) {
  PgMember m(dir_.path(), "orphan", pw_);
  ASSERT_OK(m.bootstrap_primary());
  ASSERT_OK(m.postmaster().stop(pg::StopMode::fast, 30s));

  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t agent = fork();
  ASSERT_GE(agent, 0);
  if (agent == 0) {
    // The stand-in agent: start PostgreSQL from this (its only, long-lived) thread, report
    // the pid, and wait to be killed.
    close(fds[0]);
    pg::Postmaster pm(m.settings());
    pid_t pid = pm.start().ok() ? pm.pid() : -1;
    (void)!write(fds[1], &pid, sizeof pid);
    while (true) pause();
  }
  close(fds[1]);
  pid_t pm_pid = 0;
  ASSERT_EQ(read(fds[0], &pm_pid, sizeof pm_pid), static_cast<ssize_t>(sizeof pm_pid));
  close(fds[0]);
  struct Cleanup {
    const pg::Settings& s;
    pid_t agent;
    ~Cleanup() {
      kill(agent, SIGKILL);
      waitpid(agent, nullptr, 0);
      (void)pg::stop_orphan_postmaster(s, pg::StopMode::immediate, std::chrono::seconds(10));
    }
  } cleanup{m.settings(), agent};
  ASSERT_GT(pm_pid, 0);
  ASSERT_TRUE(testkit::wait_until([&] { return pg::ping(m.settings()); }, 30s));

  // Writes over TCP work while the agent lives.
  auto writer = m.tcp_connect(pw_.superuser);
  ASSERT_OK(writer);
  ASSERT_OK(writer->exec("CREATE TABLE w (id int)"));
  ASSERT_OK(writer->exec("INSERT INTO w VALUES (1)"));

  ASSERT_EQ(kill(agent, SIGKILL), 0);
  ASSERT_EQ(waitpid(agent, nullptr, 0), agent);
  auto killed_at = std::chrono::steady_clock::now();
  bool refused = testkit::wait_until(
      [&] {
        if (pg::pid_running(pm_pid)) return false;
        auto c = m.tcp_connect(pw_.superuser);
        return !c.ok() || !c->exec("INSERT INTO w VALUES (2)").ok();
      },
      2s, 10ms);
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - killed_at);
  EXPECT_TRUE(refused) << "postmaster " << pm_pid << " still running or accepting writes " << took.count()
                       << " ms after the agent died";
  EXPECT_LT(took, 2s);
  EXPECT_FALSE(writer->exec("INSERT INTO w VALUES (3)").ok());
  EXPECT_NE(pg::tail_file(m.settings().log_file, 40).find("immediate shutdown request"), std::string::npos);
}

}  // namespace
}  // namespace tandem
