// New deployments and replicas from backups, on real deployments (`tandem up`, file store):
//  - `tandem up --from-backup OLD_DIR`: a second deployment whose first member restores
//    the old deployment's backup (no initdb) and leads, the second member clones from it;
//    identical tables, its own repository and timeline, the old deployment untouched and
//    its repository given nothing by the new one; the printed connection info works;
//  - `--to-time` between two commits gives exactly the first;
//  - a missing backup, a wrong key, an out-of-range target or the same repository are
//    refused before anything is created or started;
//  - `tandem ctl reinit --from-backup FOLLOWER`: rebuilt from the latest backup plus
//    archived WAL (not pg_basebackup), streaming again with identical data; refused on the
//    leader and when the repository holds no backup.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "base/process.hpp"
#include "testkit/deployment.hpp"
#include "testkit/s3_server.hpp"
#include "testkit/testkit.hpp"

namespace tandem {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr const char* kPsql = "/usr/lib/postgresql/15/bin/psql";
constexpr const char* kChecksum = "SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY id), '')) FROM items t";

std::string scalar(testkit::Deployment& d, const std::string& member, const std::string& sql) {
  auto r = d.exec(member, sql, 30000);
  if (!r || r->rows.empty() || r->rows[0].empty()) return "";
  return r->rows[0][0].value_or("");
}

// One statement as the postgres superuser over the member's socket (pg_switch_wal).
std::string su_scalar(testkit::Deployment& d, const std::string& member, const std::string& sql) {
  SpawnOptions o;
  o.argv = {kPsql,
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
  auto r = run(o, 60s);
  EXPECT_TRUE(r && r->status.ok()) << sql << ": " << (r ? r->output : r.error().message);
  std::string out = r ? r->output : "";
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

// Ends the current WAL segment and waits until the archive has it; returns its name.
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

// Every file under `dir`, relative to it.
std::set<std::string> files_under(const std::string& dir) {
  std::set<std::string> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (it->is_regular_file()) out.insert(fs::relative(it->path(), dir).string());
  }
  return out;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Command lines of live processes that mention `dir` (etcd, agents, portals, PostgreSQL).
std::vector<std::string> processes_using(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = fs::directory_iterator("/proc", ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmd = read_text(it->path().string() + "/cmdline");
    std::replace(cmd.begin(), cmd.end(), '\0', ' ');
    if (cmd.find(dir + "/") != std::string::npos) out.push_back(name + ": " + cmd);
  }
  return out;
}

testkit::DeploymentOptions from_backup(const std::vector<std::string>& args) {
  testkit::DeploymentOptions o;
  o.up_args = args;
  return o;
}

// A deployment with an `items` table of 5000 rows and one base backup of it.
std::string seed_and_backup(testkit::Deployment& d) {
  std::string leader = d.wait_leader(60s);
  EXPECT_FALSE(leader.empty());
  EXPECT_TRUE(d.exec(leader, "CREATE TABLE items(id int PRIMARY KEY, v text)"));
  EXPECT_TRUE(d.exec(leader, "INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 5000) g"));
  auto made = d.tandem({"backup", "create"}, 300s);
  EXPECT_TRUE(made && made->status.ok()) << (made ? made->output : made.error().message);
  return leader;
}

// `tandem up` for a new directory outside any Deployment (for refusals).
Result<RunResult> up_new(const std::string& dir, const std::vector<std::string>& args) {
  SpawnOptions o;
  o.argv = {testkit::tandem_binary(),
            "up",
            "--dir",
            dir,
            "--base-port",
            std::to_string(testkit::free_port_range(40)),
            "--detach",
            "--timeout",
            "60"};
  o.argv.insert(o.argv.end(), args.begin(), args.end());
  o.cwd = "/tmp";
  return run(o, 120s);
}

TEST(BackupDeploy, UpFromBackupStartsAnIndependentDeploymentWithIdenticalData) {
  testkit::Deployment old;
  std::string old_leader = seed_and_backup(old);
  ASSERT_FALSE(old_leader.empty());
  // Commits after the backup come from the archived WAL.
  ASSERT_TRUE(old.exec(old_leader, "INSERT INTO items VALUES (100001, 'after the backup')"));
  ASSERT_TRUE(old.exec(old_leader, "UPDATE items SET v = 'changed' WHERE id <= 10"));
  switch_and_wait_archived(old, old_leader);
  std::string old_sum = scalar(old, old_leader, kChecksum);
  ASSERT_EQ(old_sum.size(), 32u);
  const std::string old_repo = old.dir() + "/backups";
  const auto old_objects = files_under(old_repo);
  std::string old_timeline = scalar(old, old_leader, "SELECT timeline_id FROM pg_control_checkpoint()");
  ASSERT_EQ(old_timeline, "1");

  testkit::Deployment d(from_backup({"--from-backup", old.dir()}));
  std::string leader = d.wait_leader(60s);
  ASSERT_FALSE(leader.empty());
  std::string follower = d.other(leader);
  ASSERT_TRUE(d.wait_streaming(follower, 120s));

  // The leader restored (and promoted onto a new timeline) instead of running initdb.
  std::string leader_log = read_text(d.dir() + "/logs/" + leader + ".log");
  EXPECT_NE(leader_log.find("restored backup"), std::string::npos);
  EXPECT_NE(leader_log.find("restored from a backup"), std::string::npos);
  EXPECT_EQ(scalar(d, leader, "SELECT timeline_id FROM pg_control_checkpoint()"), "2");
  std::string follower_log = read_text(d.dir() + "/logs/" + follower + ".log");
  EXPECT_NE(follower_log.find("cloning from " + leader), std::string::npos);

  // Identical data on both members; the new secrets work (admin over TCP, replication).
  EXPECT_EQ(scalar(d, leader, kChecksum), old_sum);
  EXPECT_EQ(scalar(d, leader, "SELECT v FROM items WHERE id = 100001"), "after the backup");
  ASSERT_TRUE(d.exec(leader, "INSERT INTO items VALUES (200001, 'new deployment')"));
  std::string new_sum = scalar(d, leader, kChecksum);
  EXPECT_TRUE(testkit::wait_until([&] { return scalar(d, follower, kChecksum) == new_sum; }, 60s, 200ms));
  EXPECT_EQ(scalar(d, follower, "SELECT count(*) FROM items WHERE id = 200001"), "1");

  // The printed connection info (portals, TLS, pgpass) reaches the new leader.
  auto info = nlohmann::json::parse(read_text(d.dir() + "/deployment.json"));
  EXPECT_EQ(info.at("restored_from").at("store").get<std::string>(), "file://" + old_repo);
  EXPECT_EQ(info.at("backups").at("store").get<std::string>(), "file://" + d.dir() + "/backups");
  SpawnOptions ps;
  ps.argv = {
      kPsql, "-X", "-At", info.at("connection_uri").get<std::string>(), "-c", "SELECT v FROM items WHERE id = 200001"};
  ps.env["PGPASSFILE"] = info.at("pgpass_file").get<std::string>();
  ps.cwd = "/tmp";
  auto via_portal = run(ps, 60s);
  ASSERT_TRUE(via_portal);
  EXPECT_TRUE(via_portal->status.ok()) << via_portal->output;
  EXPECT_NE(via_portal->output.find("new deployment"), std::string::npos) << via_portal->output;

  // Its own archive continues on timeline 2, starting with the history file.
  EXPECT_TRUE(testkit::wait_until([&] { return fs::exists(d.dir() + "/backups/wal/00000002.history"); }, 60s, 200ms));

  // The old deployment still runs, unchanged, and its repository got nothing from the new
  // one (timeline 2): whatever appeared there since is the old deployment's own WAL and
  // scheduled backups on timeline 1.
  EXPECT_TRUE(old.accepts_write(old_leader));
  EXPECT_EQ(scalar(old, old_leader, "SELECT count(*) FROM items WHERE id = 200001"), "0");
  auto listed = old.tandem({"backup", "list", "--json"});
  ASSERT_TRUE(listed && listed->status.ok()) << (listed ? listed->output : listed.error().message);
  std::set<std::string> timeline1_backups;
  auto backups = nlohmann::json::parse(listed->output, nullptr, false);
  ASSERT_TRUE(backups.is_array()) << listed->output;
  for (const auto& b : backups) {
    if (b.contains("manifest") && b["manifest"].at("timeline").get<int>() == 1)
      timeline1_backups.insert(b.at("id").get<std::string>());
  }
  for (const auto& f : files_under(old_repo)) {
    if (old_objects.count(f) || f.rfind("wal/00000001", 0) == 0) continue;
    const std::string id = f.rfind("backups/", 0) == 0 ? f.substr(8, f.find('/', 8) - 8) : "";
    const bool own_backup = !id.empty() && timeline1_backups.count(id) > 0;
    EXPECT_TRUE(own_backup) << "new object in the source repository: " << f;
  }
  EXPECT_FALSE(fs::exists(old_repo + "/wal/00000002.history"));
}

TEST(BackupDeploy, UpFromBackupToTimeBetweenTwoCommitsGivesExactlyTheFirst) {
  testkit::Deployment old;
  std::string old_leader = seed_and_backup(old);
  ASSERT_FALSE(old_leader.empty());
  ASSERT_TRUE(old.exec(old_leader, "INSERT INTO items VALUES (100001, 'commit A')"));
  std::this_thread::sleep_for(1100ms);  // commits at least a second apart from the moment T
  std::string t = scalar(old, old_leader,
                         "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'");
  ASSERT_FALSE(t.empty());
  std::this_thread::sleep_for(1100ms);
  ASSERT_TRUE(old.exec(old_leader, "INSERT INTO items VALUES (100002, 'commit B')"));
  switch_and_wait_archived(old, old_leader);

  // The source named by URL and key rather than by directory.
  testkit::Deployment d(from_backup({"--from-backup", "file://" + old.dir() + "/backups", "--key",
                                     old.dir() + "/secrets/backup.key", "--to-time", t}));
  std::string leader = d.wait_leader(60s);
  ASSERT_FALSE(leader.empty());
  EXPECT_EQ(scalar(d, leader, "SELECT string_agg(v, ',') FROM items WHERE id > 100000"), "commit A");
  EXPECT_EQ(scalar(d, leader, "SELECT count(*) FROM items"), "5001");
  ASSERT_TRUE(d.wait_streaming(d.other(leader), 120s));
  EXPECT_TRUE(testkit::wait_until([&] { return scalar(d, d.other(leader), "SELECT count(*) FROM items") == "5001"; },
                                  60s, 200ms));
  // The old deployment keeps commit B.
  EXPECT_EQ(scalar(old, old_leader, "SELECT count(*) FROM items WHERE id > 100000"), "2");
}

TEST(BackupDeploy, UpFromBackupOfAnS3RepositoryIntoAFileRepository) {
  testkit::S3Server s3({"tandem"});
  testkit::TempDir secrets("tandem-s3-creds");
  std::string creds = secrets.sub("s3.ini");
  {
    std::ofstream out(creds);
    out << "[default]\naws_access_key_id = " << testkit::S3Server::kAccessKey
        << "\naws_secret_access_key = " << testkit::S3Server::kSecretKey << "\n";
  }
  auto pg = lookup_user("postgres");
  ASSERT_TRUE(pg);
  ASSERT_EQ(::chmod(creds.c_str(), 0600), 0);
  ASSERT_EQ(::chown(creds.c_str(), pg->first, pg->second), 0);
  std::string url = "s3://tandem/old?endpoint=" + s3.endpoint() + "&region=us-east-1";
  testkit::Deployment old(from_backup({"--backup-store", url, "--backup-credentials-file", creds}));
  std::string old_leader = seed_and_backup(old);
  ASSERT_FALSE(old_leader.empty());
  ASSERT_TRUE(old.exec(old_leader, "INSERT INTO items VALUES (100001, 'after the backup')"));
  switch_and_wait_archived(old, old_leader);
  std::string old_sum = scalar(old, old_leader, kChecksum);

  // The old directory names the S3 repository, its key and credentials.
  testkit::Deployment d(from_backup({"--from-backup", old.dir()}));
  std::string leader = d.wait_leader(60s);
  ASSERT_FALSE(leader.empty());
  EXPECT_EQ(scalar(d, leader, kChecksum), old_sum);
  ASSERT_TRUE(d.wait_streaming(d.other(leader), 120s));
  auto info = nlohmann::json::parse(read_text(d.dir() + "/deployment.json"));
  EXPECT_EQ(info.at("restored_from").at("store").get<std::string>(), url);
  EXPECT_EQ(info.at("backups").at("store").get<std::string>(), "file://" + d.dir() + "/backups");
  EXPECT_TRUE(testkit::wait_until([&] { return fs::exists(d.dir() + "/backups/wal/00000002.history"); }, 60s, 200ms));
}

TEST(BackupDeploy, UpFromBackupRefusesBadSourcesBeforeCreatingAnything) {
  testkit::Deployment old;
  std::string old_leader = old.wait_leader(60s);
  ASSERT_FALSE(old_leader.empty());
  testkit::TempDir work("tandem-from-backup");
  auto refused = [&](const std::vector<std::string>& args, const std::string& expect) {
    std::string dir = work.sub("new");
    auto r = up_new(dir, args);
    ASSERT_TRUE(r);
    EXPECT_NE(r->status.code, 0) << r->output;
    EXPECT_NE(r->output.find(expect), std::string::npos) << r->output;
    EXPECT_NE(r->output.find("nothing was created"), std::string::npos) << r->output;
    EXPECT_FALSE(fs::exists(dir)) << "left behind: " << dir;
  };

  // No backup yet.
  refused({"--from-backup", old.dir()}, "holds no backup");
  auto made = old.tandem({"backup", "create"}, 300s);
  ASSERT_TRUE(made && made->status.ok()) << (made ? made->output : made.error().message);

  // A wrong key: no backup can be opened.
  std::string wrong_key = work.sub("wrong.key");
  {
    std::ofstream out(wrong_key);
    out << std::string(64, 'b') << "\n";
  }
  ::chmod(wrong_key.c_str(), 0600);
  refused({"--from-backup", "file://" + old.dir() + "/backups", "--key", wrong_key}, "wrong --key");
  // A URL without its key.
  refused({"--from-backup", "file://" + old.dir() + "/backups"}, "--key");
  // A backup that does not exist, and a target outside the restorable range.
  refused({"--from-backup", old.dir(), "--backup-id", "20000101T000000Z"}, "20000101T000000Z");
  refused({"--from-backup", old.dir(), "--to-lsn", "FF/0"}, "restorable range");
  refused({"--from-backup", old.dir(), "--to-time", "2001-01-01T00:00:00Z"}, "restorable range");
  // The new deployment archiving into the source repository.
  refused({"--from-backup", old.dir(), "--backup-store", "file://" + old.dir() + "/backups"}, "own repository");

  // The source is untouched and still serves.
  EXPECT_TRUE(old.accepts_write(old_leader));
}

TEST(BackupDeploy, UpFromBackupWhoseReplayFailsLeavesNothingRunning) {
  testkit::Deployment old;
  std::string old_leader = seed_and_backup(old);
  ASSERT_FALSE(old_leader.empty());
  ASSERT_TRUE(old.exec(old_leader, "INSERT INTO items VALUES (100001, 'after the backup')"));
  std::string seg = switch_and_wait_archived(old, old_leader);
  // A flipped byte in a segment the replay needs: the plan is fine, the replay is not.
  std::string path = old.dir() + "/backups/wal/" + seg;
  std::string sealed = read_text(path);
  ASSERT_GT(sealed.size(), 100u);
  sealed[sealed.size() / 2] ^= 0x20;
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << sealed;
  }
  // The first backup (the agent's scheduled one may follow, starting after the damage).
  auto listed = old.tandem({"backup", "list", "--json"});
  ASSERT_TRUE(listed && listed->status.ok());
  auto backups = nlohmann::json::parse(listed->output, nullptr, false);
  ASSERT_TRUE(backups.is_array() && !backups.empty()) << listed->output;
  std::string first = backups[0].at("id").get<std::string>();
  testkit::TempDir work("tandem-from-backup");
  std::string dir = work.sub("new");
  auto r = up_new(dir, {"--from-backup", old.dir(), "--backup-id", first});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status.code, 1) << r->output;
  EXPECT_NE(r->output.find("not ready"), std::string::npos) << r->output;
  std::string logs = read_text(dir + "/logs/pg1.log") + read_text(dir + "/logs/pg2.log");
  EXPECT_NE(logs.find(seg), std::string::npos) << "the damaged segment is named in the agents' logs";
  EXPECT_NE(logs.find("nothing was promoted"), std::string::npos);
  // Every process of the new deployment was stopped (even with --detach).
  EXPECT_EQ(processes_using(dir), std::vector<std::string>{});
  EXPECT_TRUE(old.accepts_write(old_leader));
}

TEST(BackupDeploy, CtlReinitFromBackupRebuildsTheFollowerWithoutPgBasebackup) {
  testkit::Deployment d;
  std::string leader = d.wait_leader(60s);
  ASSERT_FALSE(leader.empty());
  std::string follower = d.other(leader);
  ASSERT_TRUE(d.wait_streaming(follower, 120s));

  // No backup yet: a clear refusal, nothing happens.
  auto none = d.tandem({"ctl", "reinit", "--from-backup", follower});
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status.code, 3) << none->output;
  EXPECT_NE(none->output.find("no complete backup"), std::string::npos) << none->output;

  ASSERT_TRUE(d.exec(leader, "CREATE TABLE items(id int PRIMARY KEY, v text)"));
  ASSERT_TRUE(d.exec(leader, "INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 5000) g"));
  auto made = d.tandem({"backup", "create"}, 300s);
  ASSERT_TRUE(made && made->status.ok()) << (made ? made->output : made.error().message);
  ASSERT_TRUE(d.exec(leader, "INSERT INTO items VALUES (100001, 'after the backup')"));
  switch_and_wait_archived(d, leader);
  ASSERT_TRUE(d.exec(leader, "INSERT INTO items VALUES (100002, 'not archived yet')"));

  // Refused on the leader.
  auto on_leader = d.tandem({"ctl", "reinit", "--from-backup", leader});
  ASSERT_TRUE(on_leader);
  EXPECT_EQ(on_leader->status.code, 4) << on_leader->output;
  EXPECT_NE(on_leader->output.find("is the leader"), std::string::npos) << on_leader->output;

  const std::string log_path = d.dir() + "/logs/" + follower + ".log";
  const size_t log_before = read_text(log_path).size();
  auto r = d.tandem({"ctl", "reinit", "--from-backup", follower});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status.code, 0) << r->output;
  EXPECT_NE(r->output.find("from the latest backup"), std::string::npos) << r->output;

  // The agent restored the backup (no pg_basebackup), read the archive, and streams again.
  std::string log;
  ASSERT_TRUE(testkit::wait_until(
      [&] {
        log = read_text(log_path).substr(log_before);
        return log.find("restore_command is no longer needed") != std::string::npos;
      },
      180s, 200ms))
      << log;
  EXPECT_NE(log.find("restored base backup"), std::string::npos) << log;
  EXPECT_EQ(log.find("cloning from"), std::string::npos) << log;
  ASSERT_TRUE(d.wait_streaming(follower, 60s));
  EXPECT_EQ(scalar(d, leader, "SELECT active FROM pg_replication_slots WHERE slot_name = '" + follower + "'"), "t");

  // Identical data, including what was never archived (streamed from the leader).
  ASSERT_TRUE(d.exec(leader, "INSERT INTO items VALUES (100003, 'after the reinit')"));
  std::string sum = scalar(d, leader, kChecksum);
  EXPECT_TRUE(testkit::wait_until([&] { return scalar(d, follower, kChecksum) == sum; }, 60s, 200ms));
  EXPECT_EQ(scalar(d, follower, "SELECT count(*) FROM items WHERE id > 100000"), "3");
}

}  // namespace
}  // namespace tandem
