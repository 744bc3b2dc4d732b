// Base backups against a real PostgreSQL 15 whose WAL is archived (tandem wal-push) into
// a file:// store and an s3:// store (s3rver): backup, verify, restore + start gives the
// same data; tampered, truncated and missing objects are named; a wrong key fails closed
// and never leaves a data directory; nothing stored contains plaintext.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>

#include <gtest/gtest.h>

#include "backup/base_backup.hpp"
#include "backup/repo.hpp"
#include "base/process.hpp"
#include "pg/conninfo.hpp"
#include "pg/managed_config.hpp"
#include "pg/setup.hpp"
#include "storage/keyring.hpp"
#include "testkit/pg_member.hpp"
#include "testkit/s3_server.hpp"
#include "testkit/testkit.hpp"

namespace tandem {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr const char* kCanary = "tandem-canary-7f3e9a51c2";

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void write_file(const std::string& path, const std::string& data, mode_t mode = 0600) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << data;
  ::chmod(path.c_str(), mode);
}

std::map<std::string, std::string> table_checksums(pg::Connection& c) {
  std::map<std::string, std::string> out;
  for (const char* t : {"accounts", "notes"}) {
    auto r = c.exec(fmt::format("SELECT count(*) || ':' || md5(string_agg(x::text, '|' ORDER BY id)) FROM {} x", t));
    EXPECT_TRUE(r.ok()) << r.error().to_string();
    if (r.ok()) out[t] = r->rows[0][0].value_or("");
  }
  return out;
}

class BackupBaseTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testkit::TempDir("tandem-backup-it");
    s3_ = new testkit::S3Server({"tandem"});
    pw_ = new testkit::PgPasswords();
    ASSERT_TRUE(pw_->write_passfile(dir_->sub("pgpass")).ok());

    // Repository secrets, readable by the postgres user that runs archive_command.
    key_file_ = dir_->sub("backup.key");
    ASSERT_TRUE(storage::load_or_create_key_file(key_file_).ok());
    creds_file_ = dir_->sub("s3.credentials");
    write_file(creds_file_, "[default]\naws_access_key_id = S3RVER\naws_secret_access_key = S3RVER\n");
    fs::create_directories(dir_->sub("store"));
    for (const auto& p : {key_file_, creds_file_, dir_->sub("store")}) {
      ASSERT_TRUE(chown_recursive(p, "postgres").ok());
    }
    file_url_ = "file://" + dir_->sub("store");
    s3_url_ = "s3://tandem/cluster1?endpoint=" + s3_->endpoint() + "&region=us-east-1";

    pg_ = new testkit::PgMember(dir_->path(), "src", *pw_);
    ASSERT_TRUE(pg_->bootstrap_primary().ok());
    pg::ManagedConfig cfg = pg_->config();
    std::string bin = testkit::tandem_binary();
    cfg.archive_command = fmt::format(
        "{0} wal-push --store {1} --key-file {2} %p && {0} wal-push --store '{3}' --key-file {2} "
        "--credentials-file {4} %p",
        bin, file_url_, key_file_, s3_url_, creds_file_);
    ASSERT_TRUE(pg_->postmaster().stop(pg::StopMode::fast, 30s).ok());
    auto st = pg_->configure_and_start(cfg);
    ASSERT_TRUE(st.ok()) << st.error().to_string();

    auto c = pg_->local();
    ASSERT_TRUE(c.ok()) << c.error().to_string();
    auto r = c->exec_script(fmt::format(
        "CREATE TABLE accounts (id int PRIMARY KEY, balance bigint, filler text);"
        "INSERT INTO accounts SELECT g, g * 7, md5(g::text) || repeat('x', 80) FROM generate_series(1, 200000) g;"
        "CREATE TABLE notes (id int PRIMARY KEY, body text);"
        "INSERT INTO notes SELECT g, '{}-' || g FROM generate_series(1, 2000) g;"
        "CHECKPOINT",
        kCanary));
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    checksums_ = table_checksums(*c);
  }

  static void TearDownTestSuite() {
    delete pg_;
    delete pw_;
    delete s3_;
    delete dir_;
  }

  static backup::RepoConfig repo_config(bool s3) {
    backup::RepoConfig rc;
    rc.store_url = s3 ? s3_url_ : file_url_;
    rc.key_file = key_file_;
    if (s3) rc.credentials_file = creds_file_;
    return rc;
  }
  static std::unique_ptr<backup::Repo> open_repo(bool s3) {
    auto r = backup::open_repo(repo_config(s3));
    EXPECT_TRUE(r.ok()) << r.error().to_string();
    return r.ok() ? std::move(*r) : nullptr;
  }

  static backup::BackupManifest take_backup(backup::Repo& repo, const std::string& label) {
    backup::CreateOptions o;
    o.conn = pg::local_superuser(pg_->settings(), 0);
    o.cluster = "it";
    o.label = label;
    o.archive_timeout = 60s;
    auto m = backup::create_backup(repo, o);
    EXPECT_TRUE(m.ok()) << m.error().to_string();
    return m.ok() ? *m : backup::BackupManifest{};
  }

  // Restores `id` as a new member and starts it with recovery to the end of the backup.
  static std::unique_ptr<testkit::PgMember> restore_and_start(backup::Repo& repo, const std::string& id,
                                                              const std::string& name, bool s3) {
    auto m = std::make_unique<testkit::PgMember>(dir_->path(), name, *pw_);
    const auto& s = m->settings();
    fs::create_directories(fs::path(s.data_dir).parent_path());
    auto st = backup::restore_base(repo, id, s.data_dir, "postgres");
    EXPECT_TRUE(st.ok()) << st.error().to_string();
    if (!st) return nullptr;
    EXPECT_TRUE(pg::prepare_directories(s).ok());
    EXPECT_TRUE(pg::write_managed_config(s, pg::ManagedConfig{}).ok());
    std::string fetch =
        fmt::format("{} wal-fetch --store \"{}\" --key-file {}{} %f %p", testkit::tandem_binary(),
                    s3 ? s3_url_ : file_url_, key_file_, s3 ? " --credentials-file " + creds_file_ : "");
    std::ofstream(s.data_file("postgresql.auto.conf"), std::ios::app)
        << "restore_command = '" << fetch << "'\nrecovery_target = 'immediate'\nrecovery_target_action = 'promote'\n";
    std::ofstream(s.data_file("recovery.signal")).flush();
    EXPECT_TRUE(chown_recursive(s.data_dir, "postgres").ok());
    st = m->start();
    EXPECT_TRUE(st.ok()) << st.error().to_string() << "\n" << read_file(s.log_file);
    if (!st) return nullptr;
    bool promoted = testkit::wait_until(
        [&] {
          auto c = m->local();
          if (!c) return false;
          auto r = c->exec("SELECT pg_is_in_recovery()");
          return r && r->rows[0][0].value_or("t") == "f";
        },
        60s);
    EXPECT_TRUE(promoted) << read_file(s.log_file);
    return m;
  }

  static inline testkit::TempDir* dir_ = nullptr;
  static inline testkit::S3Server* s3_ = nullptr;
  static inline testkit::PgPasswords* pw_ = nullptr;
  static inline testkit::PgMember* pg_ = nullptr;
  static inline std::string key_file_, creds_file_, file_url_, s3_url_;
  static inline std::map<std::string, std::string> checksums_;
};

void expect_same_data(testkit::PgMember& restored, const std::map<std::string, std::string>& expected) {
  auto c = restored.local();
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_EQ(table_checksums(*c), expected);
}

TEST_F(BackupBaseTest, FileStoreBackupVerifiesAndRestoresIdenticalData) {
  auto repo = open_repo(false);
  ASSERT_TRUE(repo);
  auto m = take_backup(*repo, "file round trip");
  ASSERT_FALSE(m.id.empty());
  EXPECT_EQ(m.timeline, 1u);
  EXPECT_LT(m.start_lsn, m.stop_lsn);
  EXPECT_LE(m.start_wal, m.stop_wal);
  EXPECT_EQ(m.pg_version / 10000, 15);
  EXPECT_GT(m.bytes, 20u << 20);
  EXPECT_LT(m.stored_bytes, m.bytes);
  ASSERT_GE(m.objects.size(), 2u);
  EXPECT_EQ(m.objects.front().key, "backups/" + m.id + "/base.tar");

  auto list = backup::list_backups(*repo);
  ASSERT_TRUE(list.ok());
  ASSERT_FALSE(list->empty());
  EXPECT_EQ(list->back().id, m.id);
  auto read = backup::read_manifest(*repo, m.id);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(*read, m);

  auto st = backup::verify_backup(*repo, m.id);
  EXPECT_TRUE(st.ok()) << st.error().to_string();
  st = backup::verify_backup_wal(*repo, m);
  EXPECT_TRUE(st.ok()) << st.error().to_string();

  // Writes after the backup are not part of a restore to the backup's end.
  ASSERT_TRUE(pg_->local()->exec("INSERT INTO notes VALUES (999999, 'after the backup')").ok());
  auto restored = restore_and_start(*repo, m.id, "restored-file", false);
  ASSERT_TRUE(restored);
  expect_same_data(*restored, checksums_);
  ASSERT_TRUE(pg_->local()->exec("DELETE FROM notes WHERE id = 999999").ok());
}

TEST_F(BackupBaseTest, S3StoreBackupVerifiesAndRestoresIdenticalData) {
  auto repo = open_repo(true);
  ASSERT_TRUE(repo);
  auto m = take_backup(*repo, "s3 round trip");
  ASSERT_FALSE(m.id.empty());
  auto st = backup::verify_backup(*repo, m.id);
  EXPECT_TRUE(st.ok()) << st.error().to_string();
  st = backup::verify_backup_wal(*repo, m);
  EXPECT_TRUE(st.ok()) << st.error().to_string();
  auto restored = restore_and_start(*repo, m.id, "restored-s3", true);
  ASSERT_TRUE(restored);
  expect_same_data(*restored, checksums_);
}

// Each damage must be named by verify and must stop a restore before a data directory
// appears at the target.
TEST_F(BackupBaseTest, TamperedTruncatedAndMissingObjectsAreNamed) {
  auto repo = open_repo(false);
  ASSERT_TRUE(repo);
  auto m = take_backup(*repo, "damage");
  ASSERT_FALSE(m.id.empty());
  const std::string base_path = dir_->sub("store") + "/backups/" + m.id + "/base.tar";
  const std::string manifest_path = dir_->sub("store") + "/backups/" + m.id + "/backup_manifest";
  const std::string original = read_file(base_path);
  ASSERT_GT(original.size(), 4096u);

  auto expect_detected = [&](const std::string& what, const std::string& object, const std::string& word) {
    auto st = backup::verify_backup(*repo, m.id);
    ASSERT_FALSE(st.ok()) << what;
    EXPECT_NE(st.error().message.find(object), std::string::npos) << what << ": " << st.error().message;
    EXPECT_NE(st.error().message.find(word), std::string::npos) << what << ": " << st.error().message;
    std::string target = dir_->sub("damaged-" + what);
    auto r = backup::restore_base(*repo, m.id, target, "postgres");
    ASSERT_FALSE(r.ok()) << what;
    EXPECT_FALSE(fs::exists(target)) << what;
    for (const auto& e : fs::directory_iterator(dir_->path())) {
      EXPECT_EQ(e.path().filename().string().find(".damaged-"), std::string::npos) << "left behind: " << e.path();
    }
  };

  std::string flipped = original;
  flipped[original.size() / 2] ^= 0x01;
  write_file(base_path, flipped);
  expect_detected("flipped", "base.tar", "chunk");

  write_file(base_path, original.substr(0, original.size() / 2));
  expect_detected("truncated", "base.tar", "base.tar");

  write_file(base_path, original);
  const std::string manifest_bytes = read_file(manifest_path);
  fs::remove(manifest_path);
  expect_detected("deleted", "backup_manifest", "missing");

  write_file(manifest_path, manifest_bytes);
  auto st = backup::verify_backup(*repo, m.id);
  EXPECT_TRUE(st.ok()) << st.error().to_string();
}

TEST_F(BackupBaseTest, WrongKeyFailsClosed) {
  auto repo = open_repo(false);
  ASSERT_TRUE(repo);
  auto m = take_backup(*repo, "wrong key");
  ASSERT_FALSE(m.id.empty());
  std::string other_key = dir_->sub("other.key");
  ASSERT_TRUE(storage::load_or_create_key_file(other_key).ok());
  auto rc = repo_config(false);
  rc.key_file = other_key;
  auto wrong = backup::open_repo(rc);
  ASSERT_TRUE(wrong.ok());
  auto read = backup::read_manifest(**wrong, m.id);
  ASSERT_FALSE(read.ok());
  EXPECT_NE(read.error().message.find("tandem.json"), std::string::npos) << read.error().message;
  EXPECT_FALSE(backup::verify_backup(**wrong, m.id).ok());
  std::string target = dir_->sub("wrong-key");
  EXPECT_FALSE(backup::restore_base(**wrong, m.id, target, "postgres").ok());
  EXPECT_FALSE(fs::exists(target));
}

TEST_F(BackupBaseTest, IncompleteBackupsAreListedAsSuchAndDeletable) {
  auto repo = open_repo(false);
  ASSERT_TRUE(repo);
  const std::string id = "20200101T000000Z";
  ASSERT_TRUE(repo->put_sealed(backup::backup_object_key(id, "base.tar"), "partial").ok());
  auto entries = backup::list_backup_entries(*repo);
  ASSERT_TRUE(entries.ok());
  bool seen = false;
  for (const auto& e : *entries) {
    if (e.id != id) continue;
    seen = true;
    EXPECT_FALSE(e.complete);
    EXPECT_EQ(e.objects, 1u);
  }
  EXPECT_TRUE(seen);
  auto read = backup::read_manifest(*repo, id);
  ASSERT_FALSE(read.ok());
  EXPECT_NE(read.error().message.find("incomplete"), std::string::npos) << read.error().message;
  EXPECT_TRUE(backup::delete_backup(*repo, id).ok());
  EXPECT_EQ(backup::read_manifest(*repo, id).error().code, Errc::not_found);
}

// Runs last (alphabetically after the others would not be guaranteed; gtest runs in
// declaration order): scans everything both stores hold for plaintext.
TEST_F(BackupBaseTest, ZzNoStoredObjectContainsPlaintext) {
  {
    auto repo = open_repo(false);
    ASSERT_TRUE(repo);
    ASSERT_FALSE(take_backup(*repo, "scan").id.empty());
  }
  const std::string wal_long_header("\x10\xD1\x02\x00\x01\x00\x00\x00", 8);  // XLOG_PAGE_MAGIC, XLP_LONG_HEADER, tli 1
  int scanned = 0;
  for (const auto& root : {dir_->sub("store"), s3_->data_dir()}) {
    for (const auto& e : fs::recursive_directory_iterator(root)) {
      if (!e.is_regular_file()) continue;
      std::string p = e.path().string();
      if (root == s3_->data_dir() && p.find("._S3rver_object") == std::string::npos) continue;
      if (p.find("._S3rver_object.") != std::string::npos) continue;  // metadata / md5 side files
      std::string data = read_file(p);
      ++scanned;
      EXPECT_EQ(data.substr(0, 8), "TNDMSEAL") << p;
      EXPECT_EQ(data.find(kCanary), std::string::npos) << p;
      EXPECT_EQ(data.find("ustar"), std::string::npos) << p;
      EXPECT_EQ(data.find("START WAL LOCATION"), std::string::npos) << p;
      EXPECT_EQ(data.find("PostgreSQL-Backup-Manifest-Version"), std::string::npos) << p;
      EXPECT_EQ(data.find(wal_long_header), std::string::npos) << p;
    }
  }
  EXPECT_GT(scanned, 10);
}

}  // namespace
}  // namespace tandem
