// Maintenance through `tandem ctl`: pause/resume, restart and reinit of a member, dynamic
// configuration; and `tandem up` in the foreground stopping everything on SIGTERM.
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "testkit/deployment.hpp"

namespace tandem::testkit {
namespace {

using namespace std::chrono_literals;

TEST(HaMaintenance, PausedAgentsTakeNoActionUntilResumed) {
  Deployment d;
  std::string leader = d.wait_leader(30s);
  ASSERT_FALSE(leader.empty());
  ASSERT_TRUE(d.wait_streaming(d.other(leader), 30s));
  auto r = d.tandem({"ctl", "pause"});
  ASSERT_TRUE(r.ok() && r->status.ok()) << (r ? r->output : r.error().message);
  ASSERT_TRUE(wait_until(
      [&] {
        auto s = d.snapshot();
        return s && s->config && s->config->paused;
      },
      5s));
  pid_t pm = d.postmaster_pid(leader);
  d.kill9(pm);
  // Paused: PostgreSQL is not restarted and the follower is not promoted.
  std::this_thread::sleep_for(6s);
  EXPECT_EQ(d.postmaster_pid(leader), 0);
  auto s = d.snapshot();
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE(s->leader.has_value());
  EXPECT_EQ(s->leader->name, leader);
  EXPECT_EQ(s->history.size(), 1u);
  auto list = d.tandem({"ctl", "list"});
  ASSERT_TRUE(list.ok());
  EXPECT_NE(list->output.find("PAUSED"), std::string::npos) << list->output;

  r = d.tandem({"ctl", "resume"});
  ASSERT_TRUE(r.ok() && r->status.ok());
  EXPECT_TRUE(wait_until([&] { return d.accepts_write(leader); }, 30s));
}

TEST(HaMaintenance, RestartAndReinitOfTheFollower) {
  Deployment d;
  std::string leader = d.wait_leader(30s);
  ASSERT_FALSE(leader.empty());
  std::string follower = d.other(leader);
  ASSERT_TRUE(d.wait_streaming(follower, 30s));
  pid_t before = d.postmaster_pid(follower);
  auto r = d.tandem({"ctl", "restart", follower});
  ASSERT_TRUE(r.ok() && r->status.ok()) << (r ? r->output : r.error().message);
  ASSERT_TRUE(wait_until(
      [&] {
        pid_t p = d.postmaster_pid(follower);
        return p != 0 && p != before;
      },
      30s));
  ASSERT_TRUE(d.wait_streaming(follower, 30s));

  ASSERT_TRUE(d.exec(leader, "CREATE TABLE r(x int)").ok());
  ASSERT_TRUE(d.exec(leader, "INSERT INTO r VALUES (42)").ok());
  // A file only the old copy has disappears with a re-clone.
  std::string marker = d.dir() + "/members/" + follower + "/data/reinit-marker";
  std::ofstream(marker) << "x";
  r = d.tandem({"ctl", "reinit", follower});
  ASSERT_TRUE(r.ok() && r->status.ok()) << (r ? r->output : r.error().message);
  ASSERT_TRUE(wait_until([&] { return !std::filesystem::exists(marker); }, 60s));
  ASSERT_TRUE(d.wait_streaming(follower, 60s));
  auto rows = d.exec(follower, "SELECT x FROM r");
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ(*rows->rows.at(0)[0], "42");
  // The leader refuses to reinitialize itself.
  r = d.tandem({"ctl", "reinit", leader});
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->status.ok());
  EXPECT_NE(r->output.find("is the leader"), std::string::npos) << r->output;
}

TEST(HaMaintenance, EditConfigValidatesAndApplies) {
  Deployment d;
  ASSERT_FALSE(d.wait_leader(30s).empty());
  auto bad = d.tandem({"ctl", "edit-config", "--set", "ttl=1"});
  ASSERT_TRUE(bad.ok());
  EXPECT_FALSE(bad->status.ok());
  EXPECT_NE(bad->output.find("ttl"), std::string::npos) << bad->output;
  auto unknown = d.tandem({"ctl", "edit-config", "--set", "tll=5"});
  ASSERT_TRUE(unknown.ok());
  EXPECT_NE(unknown->output.find("tll: unknown setting"), std::string::npos) << unknown->output;
  auto ok = d.tandem({"ctl", "edit-config", "--set", "ttl=6", "--set", "parameters.work_mem=8MB"});
  ASSERT_TRUE(ok.ok() && ok->status.ok()) << (ok ? ok->output : ok.error().message);
  auto s = d.snapshot();
  ASSERT_TRUE(s.ok() && s->config);
  EXPECT_EQ(s->config->ttl, 6);
  std::string leader = d.wait_leader(5s);
  EXPECT_TRUE(wait_until(
      [&] {
        auto r = d.exec(leader, "SHOW work_mem");
        return r && !r->rows.empty() && r->rows[0][0] == "8MB";
      },
      15s));
}

TEST(HaMaintenance, ForegroundUpStopsEverythingOnSigterm) {
  TempDir dir("tandem-fg");
  int base = free_port_range(40);  // portals use base+30..35
  SpawnOptions o;
  o.argv = {tandem_binary(), "up", "--dir", dir.path(), "--base-port", std::to_string(base)};
  o.output_file = dir.sub("up.out");
  o.cwd = "/tmp";
  auto pid = spawn(o);
  ASSERT_TRUE(pid.ok());
  ASSERT_TRUE(wait_until([&] { return std::filesystem::exists(dir.path() + "/deployment.json"); }, 150s));
  std::vector<pid_t> parts;
  for (const char* c : {"e1", "e2", "e3", "pg1", "pg2"}) {
    std::ifstream in(dir.path() + "/run/" + c + ".pid");
    pid_t p = 0;
    in >> p;
    parts.push_back(p);
  }
  for (const char* m : {"pg1", "pg2"}) {
    std::ifstream in(dir.path() + "/members/" + m + "/data/postmaster.pid");
    pid_t p = 0;
    in >> p;
    parts.push_back(p);
  }
  // Agents and portals start without GnuTLS's implicit initialisation (docs/operations.md).
  for (const char* c : {"pg1", "pg2", "portal1", "portal2"}) {
    std::ifstream pidfile(dir.path() + "/run/" + c + ".pid");
    pid_t p = 0;
    pidfile >> p;
    std::ifstream environ("/proc/" + std::to_string(p) + "/environ");
    std::string env((std::istreambuf_iterator<char>(environ)), std::istreambuf_iterator<char>());
    EXPECT_NE(env.find(std::string("GNUTLS_NO_IMPLICIT_INIT=1\0", 26)), std::string::npos) << c;
  }
  kill(*pid, SIGTERM);
  auto st = wait_for(*pid, 90s);
  ASSERT_TRUE(st.has_value()) << "tandem up did not stop";
  EXPECT_EQ(st->code, 0);
  for (pid_t p : parts) {
    EXPECT_GT(p, 0);
    // A process reparented to init at the very end may take a moment to be reaped.
    EXPECT_TRUE(wait_until([&] { return !process_alive(p); }, 5s)) << "pid " << p << " survived";
  }
}

}  // namespace
}  // namespace tandem::testkit
