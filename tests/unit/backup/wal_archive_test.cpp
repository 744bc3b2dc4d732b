// WAL archive: push/fetch rules (identical re-push, conflicting re-push, missing vs
// damaged) and read-ahead with a spool, against the file store.
#include "backup/wal_archive.hpp"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include <gtest/gtest.h>
#include "test_files.hpp"

namespace tandem::backup {
namespace {

namespace fs = std::filesystem;
using test_files::read_file;
using test_files::wal_bytes;
using test_files::write_file;

class WalArchiveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / fmt::format("tandem-wal-test-{}-{}", ::getpid(), counter_++);
    fs::create_directories(dir_ / "store");
    fs::create_directories(dir_ / "pg_wal" / "archive_status");
    RepoConfig rc;
    rc.store_url = "file://" + (dir_ / "store").string();
    rc.key_file = (dir_ / "backup.key").string();
    rc.create_key = true;
    auto r = open_repo(rc);
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    repo_ = std::move(*r);
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path segment(const std::string& name, uint32_t seed, bool ready = false) {
    auto p = dir_ / "pg_wal" / name;
    write_file(p, wal_bytes(64 * 1024, seed));
    if (ready) write_file(dir_ / "pg_wal" / "archive_status" / (name + ".ready"), "");
    return p;
  }

  static inline int counter_ = 0;
  fs::path dir_;
  std::unique_ptr<Repo> repo_;
};

TEST_F(WalArchiveTest, PushThenFetchGivesTheSameBytes) {
  auto p = segment("000000010000000000000001", 1);
  auto r = push_wal_file(*repo_, p.string());
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->outcome, PushOutcome::stored);
  auto dest = dir_ / "restored";
  ASSERT_TRUE(fetch_wal_file(*repo_, "000000010000000000000001", dest.string()).ok());
  EXPECT_EQ(read_file(dest), read_file(p));
  EXPECT_FALSE(fs::exists(dest.string() + ".tandem-tmp"));
  auto names = list_archived_wal(repo_->store());
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, std::set<std::string>{"000000010000000000000001"});
}

TEST_F(WalArchiveTest, IdenticalRepushSucceedsConflictingRepushIsRefused) {
  auto p = segment("000000010000000000000002", 2);
  ASSERT_TRUE(push_wal_file(*repo_, p.string()).ok());
  auto again = push_wal_file(*repo_, p.string());
  ASSERT_TRUE(again.ok()) << again.error().to_string();
  EXPECT_EQ(again->outcome, PushOutcome::already_archived);

  segment("000000010000000000000002", 99);
  auto conflict = push_wal_file(*repo_, p.string());
  ASSERT_FALSE(conflict.ok());
  EXPECT_EQ(conflict.error().code, Errc::conflict);
  EXPECT_NE(conflict.error().message.find("000000010000000000000002"), std::string::npos);
  EXPECT_NE(conflict.error().message.find(repo_->url()), std::string::npos) << conflict.error().message;
}

TEST_F(WalArchiveTest, HistoryAndBackupFilesAreArchivedOtherNamesRefused) {
  auto h = dir_ / "pg_wal" / "00000002.history";
  write_file(h, "1\t0/3000000\tno recovery target specified\n");
  ASSERT_TRUE(push_wal_file(*repo_, h.string()).ok());
  auto dest = dir_ / "h";
  ASSERT_TRUE(fetch_wal_file(*repo_, "00000002.history", dest.string()).ok());
  EXPECT_EQ(read_file(dest), read_file(h));

  auto bogus = dir_ / "pg_wal" / "postgresql.conf";
  write_file(bogus, "x");
  auto r = push_wal_file(*repo_, bogus.string());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::invalid_argument);
  EXPECT_FALSE(fetch_wal_file(*repo_, "../../etc/passwd", (dir_ / "x").string()).ok());
}

TEST_F(WalArchiveTest, MissingIsNotFoundDamagedIsNot) {
  auto dest = dir_ / "pg_wal" / "RECOVERYXLOG";
  auto missing = fetch_wal_file(*repo_, "000000010000000000000007", dest.string());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, Errc::not_found);

  auto p = segment("000000010000000000000003", 3);
  ASSERT_TRUE(push_wal_file(*repo_, p.string()).ok());
  auto obj = dir_ / "store" / "wal" / "000000010000000000000003";
  std::string sealed = read_file(obj);
  write_file(obj, sealed.substr(0, sealed.size() - 100));  // truncated
  auto truncated = fetch_wal_file(*repo_, "000000010000000000000003", dest.string());
  ASSERT_FALSE(truncated.ok());
  EXPECT_NE(truncated.error().code, Errc::not_found);
  EXPECT_NE(truncated.error().message.find("000000010000000000000003"), std::string::npos);
  EXPECT_FALSE(fs::exists(dest)) << "nothing may be written for a damaged object";

  sealed[sealed.size() / 2] ^= 0x01;  // one flipped bit
  write_file(obj, sealed);
  auto flipped = fetch_wal_file(*repo_, "000000010000000000000003", dest.string());
  ASSERT_FALSE(flipped.ok());
  EXPECT_NE(flipped.error().code, Errc::not_found);
  EXPECT_FALSE(fs::exists(dest));

  // A damaged stored copy is never overwritten by a push either.
  auto repush = push_wal_file(*repo_, p.string());
  ASSERT_FALSE(repush.ok());
  EXPECT_NE(repush.error().message.find("cannot be opened"), std::string::npos) << repush.error().message;
}

TEST_F(WalArchiveTest, ReadAheadPushesReadySegmentsAndTheSpoolShortCutsTheirPush) {
  std::vector<fs::path> segs;
  for (int i = 1; i <= 6; ++i) segs.push_back(segment(fmt::format("0000000100000000000000{:02X}", i), 10 + i, true));
  PushOptions opts;
  opts.parallel = 4;
  opts.spool_dir = (dir_ / "spool").string();
  auto first = push_wal_file(*repo_, segs[0].string(), opts);
  ASSERT_TRUE(first.ok()) << first.error().to_string();
  EXPECT_EQ(first->outcome, PushOutcome::stored);
  EXPECT_EQ(first->read_ahead, 3);
  auto names = list_archived_wal(repo_->store());
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(names->size(), 4u);
  // PostgreSQL marks segment 1 done; then asks for 2, which read-ahead stored.
  fs::rename(dir_ / "pg_wal/archive_status/000000010000000000000001.ready",
             dir_ / "pg_wal/archive_status/000000010000000000000001.done");
  auto second = push_wal_file(*repo_, segs[1].string(), opts);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->outcome, PushOutcome::from_spool);
  EXPECT_FALSE(fs::exists(dir_ / "spool" / "000000010000000000000002"));

  // A spool entry whose hash no longer matches the file is not trusted.
  write_file(segs[2], wal_bytes(64 * 1024, 777));
  auto third = push_wal_file(*repo_, segs[2].string(), opts);
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(third.error().code, Errc::conflict);

  // Every archived copy matches its file (except the one we changed after archiving).
  for (int i : {0, 1, 3}) {
    auto dest = dir_ / "check";
    ASSERT_TRUE(fetch_wal_file(*repo_, segs[i].filename().string(), dest.string()).ok());
    EXPECT_EQ(read_file(dest), read_file(segs[i])) << i;
  }
}

}  // namespace
}  // namespace tandem::backup
