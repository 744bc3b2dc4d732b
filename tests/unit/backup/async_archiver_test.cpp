// The wal-push spool (entries, markers, the archiver lock) and AsyncArchiver against the
// file store and a fake pg_wal: ready files are pushed ahead of archive_command and then
// acknowledged from the spool; an entry acknowledges only the same content in the same
// store; a file the archiver is pushing is waited for, not pushed twice; a failed push
// leaves nothing that could acknowledge the file.
#include "backup/async_archiver.hpp"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <thread>

#include <gtest/gtest.h>

#include "archiver_fixture.hpp"
#include "storage/keyring.hpp"
#include "test_files.hpp"

namespace tandem::backup {
namespace {

namespace fs = std::filesystem;
using test_files::read_file;
using test_files::wal_bytes;
using test_files::write_file;
using namespace std::chrono_literals;

// Polls `pred` until it holds or `timeout` passes.
bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 20s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return pred();
}

class AsyncArchiverTest : public test_files::ArchiverFixture {
 protected:
  // What PostgreSQL does after archive_command succeeded.
  void mark_done(const std::string& name) { fs::rename(status(name, ".ready"), status(name, ".done")); }

  ArchiverOptions options() const {
    ArchiverOptions o = base_options();
    o.workers = 2;
    return o;
  }
  PushOptions push_options() const {
    PushOptions p;
    p.spool_dir = spool();
    p.archiver_wait = 20s;
    return p;
  }
  bool has_entry(const std::string& name) { return fs::exists(dir_ / "spool" / name); }
};

TEST_F(AsyncArchiverTest, SpoolEntryMatchesOnlyTheSameContentAndStore) {
  const std::string name = "000000010000000000000001";
  auto p = ready(name, 1);
  auto mac = SpoolMac::create(repo_->keyring().active());
  ASSERT_TRUE(mac.ok());
  (*mac)->update(read_file(p));
  auto fp = (*mac)->finish();
  ASSERT_TRUE(fp.ok());
  ASSERT_TRUE(write_spool_entry(spool(), name, *fp, "file:///a").ok());
  EXPECT_TRUE(spool_entry_matches(spool(), name, *fp, "file:///a"));
  EXPECT_FALSE(spool_entry_matches(spool(), name, *fp, "file:///b"));
  EXPECT_FALSE(spool_entry_matches(spool(), "000000010000000000000002", *fp, "file:///a"));
  // The file's MAC under the entry's nonce is the entry's; other bytes or another key are not.
  auto nonce = spool_entry_nonce(spool(), name, "file:///a");
  ASSERT_TRUE(nonce.has_value());
  EXPECT_FALSE(spool_entry_nonce(spool(), name, "file:///b").has_value());
  auto again = file_fingerprint(p.string(), repo_->keyring().active(), *nonce);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *fp);
  write_file(p, wal_bytes(256 * 1024, 2));
  auto changed = file_fingerprint(p.string(), repo_->keyring().active(), *nonce);
  ASSERT_TRUE(changed.ok());
  EXPECT_NE(*changed, *fp);
  auto other_key = storage::Kek::generate();
  ASSERT_TRUE(other_key.ok());
  write_file(p, read_file(dir_ / "pg" / "pg_wal" / name));
  auto keyed = file_fingerprint(p.string(), *other_key, *nonce);
  ASSERT_TRUE(keyed.ok());
  EXPECT_NE(*keyed, *fp);
  // A fresh MAC of the same bytes has its own nonce, hence another fingerprint.
  auto fresh = SpoolMac::create(repo_->keyring().active());
  ASSERT_TRUE(fresh.ok());
  (*fresh)->update(read_file(p));
  auto fp2 = (*fresh)->finish();
  ASSERT_TRUE(fp2.ok());
  EXPECT_NE(fp2->substr(0, 24), fp->substr(0, 24));
  // A damaged entry never matches.
  write_file(dir_ / "spool" / name, "v2 " + *fp + " file:///a\nextra");
  EXPECT_FALSE(spool_entry_matches(spool(), name, *fp, "file:///a"));
  EXPECT_FALSE(spool_entry_nonce(spool(), name, "file:///a").has_value());
  remove_spool_entry(spool(), name);
  EXPECT_FALSE(has_entry(name));
}

TEST_F(AsyncArchiverTest, TheLockAdmitsOneArchiverAndMarkersCountOnlyWhileItIsHeld) {
  EXPECT_FALSE(spool_archiver_running(spool()));
  set_spool_marker(spool(), "000000010000000000000001");
  // A marker without a live archiver (crashed) is not waited for.
  EXPECT_TRUE(wait_for_spool_marker(spool(), "000000010000000000000001", 10s));
  {
    SpoolLock lock;
    ASSERT_TRUE(lock.acquire(spool()).ok());
    EXPECT_TRUE(spool_archiver_running(spool()));
    SpoolLock second;
    auto s = second.acquire(spool());
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.error().code, Errc::conflict);
    EXPECT_FALSE(wait_for_spool_marker(spool(), "000000010000000000000001", 30ms));
    clear_spool_marker(spool(), "000000010000000000000001");
    EXPECT_TRUE(wait_for_spool_marker(spool(), "000000010000000000000001", 10s));
  }
  EXPECT_FALSE(spool_archiver_running(spool()));
}

TEST_F(AsyncArchiverTest, PushesReadyFilesAheadAndArchiveCommandAcknowledgesThem) {
  std::vector<std::string> names;
  for (int i = 1; i <= 5; ++i) {
    names.push_back(fmt::format("0000000100000000000000{:02X}", i));
    ready(names.back(), 100 + i);
  }
  ready("00000002.history", 7, 100);
  AsyncArchiver archiver(options());
  ASSERT_TRUE(archiver.start().ok());
  // Inactive (not the leader): nothing is pushed.
  EXPECT_FALSE(eventually([&] { return archived(names[0]); }, 300ms));
  archiver.set_active(true);
  ASSERT_TRUE(eventually([&] {
    for (const auto& n : names)
      if (!has_entry(n)) return false;
    return has_entry("00000002.history");
  }));
  EXPECT_EQ(archiver.stats().stored, 6u);

  // PostgreSQL asks for each in turn: acknowledged from the spool, nothing pushed again.
  for (const auto& n : names) {
    auto r = push_wal_file(*repo_, wal(n).string(), push_options());
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    EXPECT_EQ(r->outcome, PushOutcome::from_spool) << n;
    mark_done(n);
  }
  // Entries of files PostgreSQL marked done are dropped, and not pushed again.
  ASSERT_TRUE(eventually([&] { return !has_entry(names.back()); }));
  EXPECT_EQ(archiver.stats().stored, 6u);
  EXPECT_EQ(archiver.stats().identical, 0u);
  // What is stored is what PostgreSQL wrote.
  auto dest = dir_ / "fetched";
  ASSERT_TRUE(fetch_wal_file(*repo_, names[2], dest.string()).ok());
  EXPECT_EQ(read_file(dest), read_file(wal(names[2])));
  archiver.stop();
  EXPECT_FALSE(spool_archiver_running(spool()));
}

TEST_F(AsyncArchiverTest, AStaleEntryNeverAcknowledgesDifferentContentOrAnotherStore) {
  const std::string name = "000000010000000000000010";
  auto p = ready(name, 1);
  {
    AsyncArchiver archiver(options());
    ASSERT_TRUE(archiver.start().ok());
    archiver.set_active(true);
    ASSERT_TRUE(eventually([&] { return has_entry(name); }));
  }
  // As after pg_rewind: the same name now holds other bytes. Not acknowledged; the store
  // keeps the first copy and the push is refused as a conflict.
  write_file(p, wal_bytes(256 * 1024, 2));
  auto r = push_wal_file(*repo_, p.string(), push_options());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::conflict) << r.error().message;

  // An entry naming another store does not count: the file is pushed to this one.
  const std::string other = "000000010000000000000011";
  auto q = ready(other, 3);
  auto mac = SpoolMac::create(repo_->keyring().active());
  ASSERT_TRUE(mac.ok());
  (*mac)->update(read_file(q));
  auto fp = (*mac)->finish();
  ASSERT_TRUE(fp.ok());
  ASSERT_TRUE(write_spool_entry(spool(), other, *fp, "file:///elsewhere").ok());
  auto pushed = push_wal_file(*repo_, q.string(), push_options());
  ASSERT_TRUE(pushed.ok()) << pushed.error().to_string();
  EXPECT_EQ(pushed->outcome, PushOutcome::stored);
  EXPECT_TRUE(archived(other));
}

TEST_F(AsyncArchiverTest, ArchiveCommandWaitsForAFileTheArchiverIsPushing) {
  const std::string name = "000000010000000000000020";
  auto p = ready(name, 4);
  SpoolLock lock;  // stands in for a running archiver
  ASSERT_TRUE(lock.acquire(spool()).ok());
  set_spool_marker(spool(), name);
  Result<PushResult> r = make_error(Errc::internal, "not run");
  std::thread pg([&] { r = push_wal_file(*repo_, p.string(), push_options()); });
  // The "archiver" stores the file, records it, then clears its marker.
  auto pushed = push_wal_path(repo_->store(), repo_->keyring(), p.string());
  ASSERT_TRUE(pushed.ok()) << pushed.error().to_string();
  ASSERT_TRUE(write_spool_entry(spool(), name, pushed->fingerprint, rc_.store_url).ok());
  clear_spool_marker(spool(), name);
  pg.join();
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->outcome, PushOutcome::from_spool);
}

TEST_F(AsyncArchiverTest, AFailedPushLeavesNoEntryAndIsRetried) {
  const std::string name = "000000010000000000000030";
  auto p = ready(name, 5);
  // A file where the store's wal/ directory belongs: every put fails.
  fs::create_directories(dir_ / "store");
  write_file(dir_ / "store" / "wal", "not a directory");
  AsyncArchiver archiver(options());
  ASSERT_TRUE(archiver.start().ok());
  archiver.set_active(true);
  ASSERT_TRUE(eventually([&] { return archiver.stats().failed >= 2; }));
  EXPECT_FALSE(has_entry(name));
  EXPECT_FALSE(spool_marker_exists(spool(), name));
  // archive_command reports the failure itself.
  auto r = push_wal_file(*repo_, p.string(), push_options());
  EXPECT_FALSE(r.ok());
  // Once the store works again, the archiver catches up.
  fs::remove(dir_ / "store" / "wal");
  ASSERT_TRUE(eventually([&] { return has_entry(name); }));
  auto ack = push_wal_file(*repo_, p.string(), push_options());
  ASSERT_TRUE(ack.ok()) << ack.error().to_string();
  EXPECT_EQ(ack->outcome, PushOutcome::from_spool);
}

TEST_F(AsyncArchiverTest, AConflictingArchivedCopyIsRefusedAndAnIdenticalOneRecorded) {
  const std::string same = "000000010000000000000040";
  const std::string differs = "000000010000000000000041";
  auto p1 = ready(same, 6);
  auto p2 = ready(differs, 7);
  ASSERT_TRUE(push_wal_file(*repo_, p1.string()).ok());
  ASSERT_TRUE(push_wal_bytes(repo_->store(), repo_->keyring(), differs, wal_bytes(256 * 1024, 8)).ok());
  AsyncArchiver archiver(options());
  ASSERT_TRUE(archiver.start().ok());
  archiver.set_active(true);
  ASSERT_TRUE(eventually([&] { return has_entry(same) && archiver.stats().failed >= 1; }));
  EXPECT_EQ(archiver.stats().identical, 1u);
  EXPECT_FALSE(has_entry(differs));
  auto r = push_wal_file(*repo_, p2.string(), push_options());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::conflict);
}

TEST_F(AsyncArchiverTest, ComparingStreamsDetectsShorterLongerAndDamagedCopies) {
  const std::string name = "000000010000000000000050";
  std::string data = wal_bytes(3 * 1024 * 1024 + 17, 9);  // several 1 MiB blocks
  ASSERT_TRUE(push_wal_bytes(repo_->store(), repo_->keyring(), name, data).ok());
  auto same = push_wal_bytes(repo_->store(), repo_->keyring(), name, data);
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(*same, PushOutcome::already_archived);
  for (const std::string& local : {data.substr(0, data.size() - 1), data + "x", std::string()}) {
    auto r = push_wal_bytes(repo_->store(), repo_->keyring(), name, local);
    ASSERT_FALSE(r.ok()) << local.size();
    EXPECT_EQ(r.error().code, Errc::conflict) << local.size();
  }
  std::string flipped = data;
  flipped[2 * 1024 * 1024 + 5] ^= 1;
  auto c = push_wal_bytes(repo_->store(), repo_->keyring(), name, flipped);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, Errc::conflict);
  // A damaged archived copy is never taken as identical nor overwritten.
  auto obj = dir_ / "store" / "wal" / name;
  std::string sealed = read_file(obj);
  sealed[sealed.size() / 2] ^= 0x20;
  write_file(obj, sealed);
  auto d = push_wal_bytes(repo_->store(), repo_->keyring(), name, data);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.error().message.find("cannot be opened"), std::string::npos) << d.error().message;
  EXPECT_EQ(read_file(obj), sealed);
}

}  // namespace
}  // namespace tandem::backup
