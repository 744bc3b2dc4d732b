// Restore and point-in-time recovery on a real deployment (`tandem up`, file store):
// a base backup (`tandem backup create`), commits before and after a moment T, a failover
// to timeline 2, then `tandem restore --start` into new data directories: PITR to T gives
// exactly the first commit, restore to latest gives identical tables across the timeline
// switch; a WAL gap, an out-of-range target, a wrong key and a tampered segment are all
// refused with the segment or the range named, and nothing is left at the target path.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "base/process.hpp"
#include "pg/pidfile.hpp"
#include "testkit/deployment.hpp"
#include "testkit/testkit.hpp"

namespace tandem {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr const char* kChecksum = "SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY id), '')) FROM items t";

std::string scalar(testkit::Deployment& d, const std::string& member, const std::string& sql) {
  auto r = d.exec(member, sql, 30000);
  if (!r || r->rows.empty() || r->rows[0].empty()) return "";
  return r->rows[0][0].value_or("");
}

// One statement as the postgres superuser (psql over the member's socket): the admin
// role may not switch WAL files.
std::string su_scalar(testkit::Deployment& d, const std::string& member, const std::string& sql) {
  SpawnOptions o;
  o.argv = {"/usr/lib/postgresql/15/bin/psql",
            "-X",
            "-At",
            "-h",
            d.dir() + "/members/" + member + "/run",
            "-p",
            std::to_string(d.pg_port(member)),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-c",
            sql};
  o.run_as_user = "postgres";
  o.cwd = "/tmp";
  auto r = run(o, std::chrono::seconds(60));
  EXPECT_TRUE(r && r->status.ok()) << sql << ": " << (r ? r->output : r.error().message);
  std::string out = r ? r->output : "";
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

std::string switch_and_wait_archived(testkit::Deployment& d, const std::string& member) {
  std::string seg = scalar(d, member, "SELECT pg_walfile_name(pg_current_wal_lsn())");
  EXPECT_FALSE(su_scalar(d, member, "SELECT pg_switch_wal()").empty());
  EXPECT_TRUE(testkit::wait_until(
      [&] {
        std::string last = scalar(d, member, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver");
        return last.size() == 24 && last >= seg;
      },
      60s, 100ms))
      << seg;
  return seg;
}

// A restored data directory started on a private socket, queried with psql as postgres.
class RestoredServer {
 public:
  explicit RestoredServer(const std::string& data_dir) : data_dir_(data_dir), sock_(data_dir + ".sock") {
    fs::create_directories(sock_);
    ::chmod(sock_.c_str(), 0700);
    EXPECT_TRUE(chown_recursive(sock_, "postgres"));
    port_ = testkit::free_port();
    SpawnOptions o;
    o.argv = {"/usr/lib/postgresql/15/bin/postgres",
              "-D",
              data_dir,
              "-c",
              "listen_addresses=",
              "-c",
              "port=" + std::to_string(port_),
              "-c",
              "unix_socket_directories=" + sock_,
              "-c",
              "archive_mode=off",
              "-c",
              "synchronous_standby_names="};
    o.run_as_user = "postgres";
    o.output_file = data_dir + ".run.log";
    o.cwd = "/tmp";
    auto pid = spawn(o);
    EXPECT_TRUE(pid);
    pid_ = pid ? *pid : -1;
    EXPECT_TRUE(testkit::wait_until(
        [&] {
          auto pf = pg::read_pidfile(data_dir_);
          return pf && pf->status == "ready";
        },
        60s, 100ms));
  }
  ~RestoredServer() {
    if (pid_ > 0) {
      ::kill(pid_, SIGINT);
      if (!wait_for(pid_, 60s)) ::kill(pid_, SIGKILL);
    }
    std::error_code ec;
    fs::remove_all(sock_, ec);
  }
  std::string query(const std::string& sql) {
    SpawnOptions o;
    o.argv = {"/usr/lib/postgresql/15/bin/psql",
              "-X",
              "-At",
              "-h",
              sock_,
              "-p",
              std::to_string(port_),
              "-U",
              "postgres",
              "-d",
              "postgres",
              "-c",
              sql};
    o.run_as_user = "postgres";
    o.cwd = "/tmp";
    auto r = run(o, 60s);
    EXPECT_TRUE(r && r->status.ok()) << sql << ": " << (r ? r->output : r.error().message);
    std::string out = r ? r->output : "";
    while (!out.empty() && out.back() == '\n') out.pop_back();
    return out;
  }

 private:
  std::string data_dir_, sock_;
  int port_ = 0;
  pid_t pid_ = -1;
};

TEST(BackupRestore, PitrLatestAcrossFailoverAndRefusals) {
  testkit::Deployment d;
  std::string leader = d.wait_leader(60s);
  ASSERT_FALSE(leader.empty());
  std::string follower = d.other(leader);
  ASSERT_TRUE(d.exec(leader, "CREATE TABLE items(id int PRIMARY KEY, v text)"));
  ASSERT_TRUE(d.exec(leader, "INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 5000) g"));
  auto made = d.tandem({"backup", "create", "--compression", "client"}, 300s);
  ASSERT_TRUE(made);
  ASSERT_TRUE(made->status.ok()) << made->output;

  // Commit A, then the moment T, then commit B: each at least 1 s apart.
  ASSERT_TRUE(d.exec(leader, "INSERT INTO items VALUES (100001, 'commit A')"));
  std::this_thread::sleep_for(1100ms);
  std::string t =
      scalar(d, leader, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'");
  ASSERT_FALSE(t.empty());
  std::this_thread::sleep_for(1100ms);
  ASSERT_TRUE(d.exec(leader, "INSERT INTO items VALUES (100002, 'commit B')"));
  std::string seg_b = switch_and_wait_archived(d, leader);

  // Failover to timeline 2, then commit C there.
  ASSERT_TRUE(d.wait_sync_standby(follower, 30s));
  d.kill9(d.agent_pid(leader));
  d.kill9(d.postmaster_pid(leader));
  ASSERT_EQ(d.wait_leader(60s, leader), follower);
  ASSERT_TRUE(testkit::wait_until([&] { return d.accepts_write(follower); }, 30s));
  ASSERT_TRUE(d.exec(follower, "INSERT INTO items VALUES (100003, 'commit C on timeline 2')"));
  ASSERT_TRUE(d.exec(follower, "UPDATE items SET v = 'changed' WHERE id <= 10"));
  switch_and_wait_archived(d, follower);
  std::string live_sum = scalar(d, follower, kChecksum);
  ASSERT_EQ(live_sum.size(), 32u);

  testkit::TempDir work("tandem-restore");

  // PITR to T: exactly commit A.
  std::string pitr = work.sub("pitr");
  auto r1 = d.tandem({"restore", "--to-time", t, "--data-dir", pitr, "--start"}, 600s);
  ASSERT_TRUE(r1);
  ASSERT_TRUE(r1->status.ok()) << r1->output;
  {
    RestoredServer s(pitr);
    EXPECT_EQ(s.query("SELECT count(*) FROM items WHERE id > 100000"), "1");
    EXPECT_EQ(s.query("SELECT v FROM items WHERE id > 100000"), "commit A");
    EXPECT_EQ(s.query("SELECT count(*) FROM items"), "5001");
    EXPECT_EQ(s.query("SELECT pg_is_in_recovery()"), "f");
  }

  // Latest: identical data, across the timeline switch.
  std::string latest = work.sub("latest");
  auto r2 = d.tandem({"restore", "--to", "latest", "--data-dir", latest, "--start"}, 600s);
  ASSERT_TRUE(r2);
  ASSERT_TRUE(r2->status.ok()) << r2->output;
  {
    RestoredServer s(latest);
    EXPECT_EQ(s.query(kChecksum), live_sum);
    EXPECT_EQ(s.query("SELECT v FROM items WHERE id = 100003"), "commit C on timeline 2");
  }

  // Out of range: before the first backup, and beyond the archived WAL.
  auto early = d.tandem({"restore", "--to-time", "2001-01-01T00:00:00Z", "--data-dir", work.sub("early")});
  ASSERT_TRUE(early);
  EXPECT_EQ(early->status.code, 1);
  EXPECT_NE(early->output.find("restorable range"), std::string::npos) << early->output;
  auto beyond = d.tandem({"restore", "--to-lsn", "FF/0", "--data-dir", work.sub("beyond")});
  ASSERT_TRUE(beyond);
  EXPECT_EQ(beyond->status.code, 1);
  EXPECT_NE(beyond->output.find("restorable range"), std::string::npos) << beyond->output;
  EXPECT_FALSE(fs::exists(work.sub("early")));
  EXPECT_FALSE(fs::exists(work.sub("beyond")));

  // A WAL gap is named before anything is applied.
  std::string wal_dir = d.dir() + "/backups/wal/";
  std::string aside = work.sub("aside");
  fs::copy_file(wal_dir + seg_b, aside);
  fs::remove(wal_dir + seg_b);
  auto gap = d.tandem({"restore", "--to", "latest", "--data-dir", work.sub("gap"), "--start"});
  ASSERT_TRUE(gap);
  EXPECT_EQ(gap->status.code, 1);
  EXPECT_NE(gap->output.find("gap"), std::string::npos) << gap->output;
  EXPECT_NE(gap->output.find(seg_b), std::string::npos) << gap->output;
  EXPECT_FALSE(fs::exists(work.sub("gap")));

  // A tampered segment stops recovery (loudly, naming it) instead of ending it early.
  std::string sealed;
  {
    std::ifstream in(aside, std::ios::binary);
    sealed.assign((std::istreambuf_iterator<char>(in)), {});
  }
  sealed[sealed.size() / 3] ^= 0x20;
  {
    std::ofstream out(wal_dir + seg_b, std::ios::binary);
    out << sealed;
  }
  auto tampered = d.tandem({"restore", "--to", "latest", "--data-dir", work.sub("tampered"), "--start"}, 600s);
  ASSERT_TRUE(tampered);
  EXPECT_EQ(tampered->status.code, 1) << tampered->output;
  EXPECT_NE(tampered->output.find(seg_b), std::string::npos) << tampered->output;
  EXPECT_NE(tampered->output.find("nothing was promoted"), std::string::npos) << tampered->output;
  fs::copy_file(aside, wal_dir + seg_b, fs::copy_options::overwrite_existing);

  // A wrong key fails closed.
  std::string other_key = work.sub("other.key");
  {
    std::ofstream out(other_key);
    out << std::string(64, 'b') << "\n";
  }
  ::chmod(other_key.c_str(), 0600);
  auto wrong = d.tandem({"restore", "--key-file", other_key, "--to", "latest", "--data-dir", work.sub("wrong")});
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status.code, 1);
  EXPECT_NE(wrong->output.find("key"), std::string::npos) << wrong->output;
  EXPECT_FALSE(fs::exists(work.sub("wrong")) && !fs::is_empty(work.sub("wrong")));
}

}  // namespace
}  // namespace tandem
