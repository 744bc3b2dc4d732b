#include "pg/files.hpp"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>

#include "pg/pidfile.hpp"

namespace tandem::pg {
namespace {

class FilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/tandem-pg-unit-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

unsigned mode_of(const std::string& path) {
  struct stat sb {};
  EXPECT_EQ(stat(path.c_str(), &sb), 0) << path;
  return sb.st_mode & 07777;
}

TEST_F(FilesTest, WritesAtomicallyWithModeAndOnlyWhenChanged) {
  std::string p = dir_ + "/f.conf";
  auto w = write_file_if_changed(p, "a = 1\n", 0600, "");
  ASSERT_TRUE(w.ok());
  EXPECT_TRUE(*w);
  EXPECT_EQ(mode_of(p), 0600u);
  EXPECT_EQ(*read_file(p), "a = 1\n");
  w = write_file_if_changed(p, "a = 1\n", 0600, "");
  ASSERT_TRUE(w.ok());
  EXPECT_FALSE(*w);
  w = write_file_if_changed(p, "a = 1\n", 0640, "");  // a mode change is a change
  ASSERT_TRUE(w.ok());
  EXPECT_TRUE(*w);
  EXPECT_EQ(mode_of(p), 0640u);
  w = write_file_if_changed(p, "a = 2\n", 0640, "");
  ASSERT_TRUE(w.ok());
  EXPECT_TRUE(*w);
  EXPECT_EQ(*read_file(p), "a = 2\n");
  EXPECT_FALSE(std::filesystem::exists(p + ".tandem-tmp"));
}

TEST_F(FilesTest, ChownsToTheGivenUser) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  std::string p = dir_ + "/owned";
  ASSERT_TRUE(write_file_atomic(p, "x", 0600, "postgres").ok());
  struct stat sb {};
  ASSERT_EQ(stat(p.c_str(), &sb), 0);
  EXPECT_NE(sb.st_uid, 0u);
  EXPECT_FALSE(write_file_atomic(p, "x", 0600, "no-such-user-here").ok());
}

TEST_F(FilesTest, ReadReportsMissingFiles) {
  auto r = read_file(dir_ + "/missing");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::not_found);
  auto removed = remove_file(dir_ + "/missing");
  ASSERT_TRUE(removed.ok());
  EXPECT_FALSE(*removed);
}

TEST_F(FilesTest, EnsureDirSetsModeOnTheLeaf) {
  std::string p = dir_ + "/a/b";
  ASSERT_TRUE(ensure_dir(p, 0700, "").ok());
  EXPECT_EQ(mode_of(p), 0700u);
  ASSERT_TRUE(write_file_atomic(dir_ + "/file", "", 0600, "").ok());
  EXPECT_FALSE(ensure_dir(dir_ + "/file", 0700, "").ok());
}

TEST(Tail, KeepsTheLastLines) {
  EXPECT_EQ(tail_lines("a\nb\nc\n", 2), "b\nc");
  EXPECT_EQ(tail_lines("a\nb\nc", 5), "a\nb\nc");
  EXPECT_EQ(tail_lines("a\nb\nc\n\n", 1), "c");
  EXPECT_EQ(tail_lines("", 3), "");
  EXPECT_EQ(tail_lines("abc", 0), "");
}

TEST(PidFile, ParsesPostmasterPid) {
  auto pf =
      parse_pidfile("4242\n/var/lib/pg/data\n1700000000\n5433\n/run/pg\n127.0.0.1\n  1234567     98304\nready   \n");
  ASSERT_TRUE(pf.ok()) << pf.error().to_string();
  EXPECT_EQ(pf->pid, 4242);
  EXPECT_EQ(pf->data_dir, "/var/lib/pg/data");
  EXPECT_EQ(pf->start_time, 1700000000);
  EXPECT_EQ(pf->port, 5433);
  EXPECT_EQ(pf->socket_dir, "/run/pg");
  EXPECT_EQ(pf->listen_addr, "127.0.0.1");
  EXPECT_EQ(pf->status, "ready");
  // A postmaster that just created the file has written only the first lines.
  pf = parse_pidfile("77\n/d\n");
  ASSERT_TRUE(pf.ok());
  EXPECT_EQ(pf->pid, 77);
  EXPECT_EQ(pf->port, 0);
  EXPECT_FALSE(parse_pidfile("").ok());
  EXPECT_FALSE(parse_pidfile("abc\n").ok());
  EXPECT_FALSE(parse_pidfile("-5\n").ok());
}

TEST_F(FilesTest, StalePidFilesAreRemovedLiveOnesKept) {
  // A pid that belongs to no process.
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) _exit(0);
  ASSERT_EQ(waitpid(child, nullptr, 0), child);
  ASSERT_TRUE(write_file_atomic(dir_ + "/postmaster.pid", std::to_string(child) + "\n" + dir_ + "\n", 0600, "").ok());
  EXPECT_FALSE(pid_running(child));
  EXPECT_FALSE(live_postmaster(dir_).has_value());
  auto removed = remove_stale_pidfile(dir_);
  ASSERT_TRUE(removed.ok());
  EXPECT_TRUE(*removed);
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/postmaster.pid"));

  // A live pid that is not a postgres process (pid reuse) is stale too.
  ASSERT_TRUE(write_file_atomic(dir_ + "/postmaster.pid", std::to_string(getpid()) + "\n", 0600, "").ok());
  EXPECT_TRUE(pid_running(getpid()));
  EXPECT_FALSE(is_postgres_process(getpid()));
  removed = remove_stale_pidfile(dir_);
  ASSERT_TRUE(removed.ok());
  EXPECT_TRUE(*removed);

  removed = remove_stale_pidfile(dir_);
  ASSERT_TRUE(removed.ok());
  EXPECT_FALSE(*removed);
}

TEST(PidFile, ZombiesAreNotRunning) {
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) _exit(0);
  // Not reaped yet: a zombie once it exits.
  bool gone = false;
  for (int i = 0; i < 500 && !gone; ++i) {
    gone = !pid_running(child);
    if (!gone) usleep(10000);
  }
  EXPECT_TRUE(gone);
  EXPECT_EQ(waitpid(child, nullptr, 0), child);
}

}  // namespace
}  // namespace tandem::pg
