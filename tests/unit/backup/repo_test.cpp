// Repository: opening, sealed round trips against the file store, and the WAL file names.
#include "backup/repo.hpp"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

namespace tandem::backup {
namespace {

namespace fs = std::filesystem;

class RepoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / fmt::format("tandem-repo-test-{}-{}", ::getpid(), counter_++);
    fs::create_directories(dir_ / "store");
    cfg_.store_url = "file://" + (dir_ / "store").string();
    cfg_.key_file = (dir_ / "backup.key").string();
    cfg_.create_key = true;
  }
  void TearDown() override { fs::remove_all(dir_); }

  static inline int counter_ = 0;
  fs::path dir_;
  RepoConfig cfg_;
};

TEST_F(RepoTest, SealedRoundTripAndNothingInTheClear) {
  auto repo = open_repo(cfg_);
  ASSERT_TRUE(repo.ok()) << repo.error().to_string();
  struct stat st {};
  ASSERT_EQ(::stat(cfg_.key_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  std::string plain(100000, 'x');
  plain += "needle-in-plaintext";
  ASSERT_TRUE((*repo)->put_sealed(wal_key("000000010000000000000001"), plain).ok());
  auto back = (*repo)->get_unsealed("wal/000000010000000000000001");
  ASSERT_TRUE(back.ok()) << back.error().to_string();
  EXPECT_EQ(*back, plain);

  std::ifstream f(dir_ / "store" / "wal" / "000000010000000000000001", std::ios::binary);
  std::string raw((std::istreambuf_iterator<char>(f)), {});
  EXPECT_LT(raw.size(), plain.size());
  EXPECT_EQ(raw.find("needle-in-plaintext"), std::string::npos);

  auto other = (*repo)->open_store();
  ASSERT_TRUE(other.ok());
  auto listed = (*other)->list("wal/");
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
}

TEST_F(RepoTest, MissingIsNotFoundButWrongKeyIsNot) {
  auto repo = open_repo(cfg_);
  ASSERT_TRUE(repo.ok());
  auto missing = (*repo)->get_unsealed("wal/000000010000000000000009");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, Errc::not_found);
  ASSERT_TRUE((*repo)->put_sealed("wal/000000010000000000000002", "data").ok());

  RepoConfig other = cfg_;
  other.key_file = (dir_ / "other.key").string();
  auto repo2 = open_repo(other);
  ASSERT_TRUE(repo2.ok());
  auto wrong = (*repo2)->get_unsealed("wal/000000010000000000000002");
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.error().code, Errc::not_found);
  EXPECT_NE(wrong.error().message.find("000000010000000000000002"), std::string::npos) << wrong.error().message;

  // The old key as a retired key opens it again.
  other.retired_key_files = {cfg_.key_file};
  auto repo3 = open_repo(other);
  ASSERT_TRUE(repo3.ok()) << repo3.error().to_string();
  auto ok = (*repo3)->get_unsealed("wal/000000010000000000000002");
  ASSERT_TRUE(ok.ok()) << ok.error().to_string();
  EXPECT_EQ(*ok, "data");
}

TEST_F(RepoTest, KeyFileMustExistUnlessCreating) {
  cfg_.create_key = false;
  auto repo = open_repo(cfg_);
  ASSERT_FALSE(repo.ok());
  EXPECT_NE(repo.error().message.find("backup key"), std::string::npos);
  cfg_.store_url.clear();
  EXPECT_FALSE(open_repo(cfg_).ok());
}

TEST_F(RepoTest, TamperedObjectIsNamed) {
  auto repo = open_repo(cfg_);
  ASSERT_TRUE(repo.ok());
  ASSERT_TRUE((*repo)->put_sealed("wal/000000010000000000000003", std::string(5000, 'a')).ok());
  auto path = dir_ / "store" / "wal" / "000000010000000000000003";
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  // Flip the byte's bits (writing a fixed value would leave it unchanged 1 time in 256).
  f.seekg(100);
  const char old = static_cast<char>(f.get());
  f.seekp(100);
  f.put(static_cast<char>(~old));
  f.close();
  auto r = (*repo)->get_unsealed("wal/000000010000000000000003");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().code, Errc::not_found);
  EXPECT_NE(r.error().message.find("000000010000000000000003"), std::string::npos) << r.error().message;
}

TEST(RepoConfigFrom, CopiesTheBackupSection) {
  config::BackupConfig b;
  b.store = "s3://b/p";
  b.key_file = "/k";
  b.retired_key_files = {"/r"};
  b.credentials_file = "/c";
  auto rc = repo_config_from(b);
  EXPECT_EQ(rc.store_url, "s3://b/p");
  EXPECT_EQ(rc.key_file, "/k");
  EXPECT_EQ(rc.retired_key_files, std::vector<std::string>{"/r"});
  EXPECT_EQ(rc.credentials_file, "/c");
  EXPECT_FALSE(rc.create_key);
}

TEST(Names, Keys) {
  EXPECT_EQ(wal_key("00000002.history"), "wal/00000002.history");
  EXPECT_EQ(backup_prefix("20260101T000000Z"), "backups/20260101T000000Z/");
  EXPECT_EQ(backup_object_key("20260101T000000Z", "base.tar"), "backups/20260101T000000Z/base.tar");
  EXPECT_EQ(backup_manifest_key("X"), "backups/X/tandem.json");
}

TEST(Names, Segments) {
  auto s = parse_segment_name("0000000200000001000000FF");
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->timeline, 2u);
  EXPECT_EQ(s->log, 1u);
  EXPECT_EQ(s->seg, 0xFFu);
  EXPECT_EQ(next_segment(*s).to_string(), "000000020000000200000000");
  EXPECT_EQ(segment_number(*s), 0x1FFu);
  EXPECT_EQ(segment_from_number(2, 0x1FF).to_string(), "0000000200000001000000FF");
  EXPECT_EQ(segment_for_lsn(1, 0x1'0300'0028).to_string(), "000000010000000100000003");
  // 64 MiB segments: 64 per log.
  EXPECT_EQ(next_segment(SegmentName{1, 0, 63}, 64u << 20).to_string(), "000000010000000100000000");
  for (const char* bad : {"", "00000001000000000000001", "0000000100000000000000010", "00000001000000000000000g",
                          "00000001000000000000000a", "000000000000000000000001", "../00000001000000000000"})
    EXPECT_FALSE(parse_segment_name(bad).has_value()) << bad;
}

TEST(Names, Classify) {
  EXPECT_EQ(classify_wal_file("000000010000000000000001"), WalFileKind::segment);
  EXPECT_EQ(classify_wal_file("00000003.history"), WalFileKind::history);
  EXPECT_EQ(classify_wal_file("000000010000000000000002.00000028.backup"), WalFileKind::backup_label);
  EXPECT_EQ(classify_wal_file("000000010000000000000005.partial"), WalFileKind::partial);
  EXPECT_EQ(parse_history_name("0000000A.history"), 10u);
  EXPECT_EQ(history_name(10), "0000000A.history");
  for (const char* bad : {"00000000.history", "0000000a.history", "x.history", "000000010000000000000002.backup",
                          "000000010000000000000002.0000002.backup", "RECOVERYHISTORY", "../x", "a/b"})
    EXPECT_FALSE(classify_wal_file(bad).has_value()) << bad;
}

}  // namespace
}  // namespace tandem::backup
