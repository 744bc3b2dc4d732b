#pragma once
// A fixture for the WAL archiver's unit tests: a temporary directory with a data
// directory's pg_wal (PGDATA = DIR/pg), a spool (DIR/spool) and a file:// repository
// (DIR/store) with a fresh key.
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "backup/async_archiver.hpp"
#include "backup/repo.hpp"
#include "test_files.hpp"

namespace tandem::backup::test_files {

class ArchiverFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / fmt::format("tandem-archiver-test-{}-{}", ::getpid(), counter_++);
    std::filesystem::create_directories(dir_ / "pg" / "pg_wal" / "archive_status");
    std::filesystem::create_directories(dir_ / "spool");
    rc_.store_url = "file://" + (dir_ / "store").string();
    rc_.key_file = (dir_ / "backup.key").string();
    rc_.create_key = true;
    auto r = open_repo(rc_);
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    repo_ = std::move(*r);
    rc_.create_key = false;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string spool() const { return (dir_ / "spool").string(); }
  std::filesystem::path wal(const std::string& name) const { return dir_ / "pg" / "pg_wal" / name; }
  std::filesystem::path status(const std::string& name, const char* suffix) const {
    return dir_ / "pg" / "pg_wal" / "archive_status" / (name + suffix);
  }
  // A WAL file PostgreSQL finished and marked ready.
  std::filesystem::path ready(const std::string& name, uint32_t seed, size_t size = 256 * 1024) {
    write_file(wal(name), wal_bytes(size, seed));
    write_file(status(name, ".ready"), "");
    return wal(name);
  }
  // Whether the repository holds the archived file.
  bool archived(const std::string& name) const { return std::filesystem::exists(dir_ / "store" / "wal" / name); }
  // Options for an archiver of this directory, with short rescan and retry intervals.
  ArchiverOptions base_options() const {
    ArchiverOptions o;
    o.data_dir = (dir_ / "pg").string();
    o.spool_dir = spool();
    o.repo = rc_;
    o.rescan = std::chrono::milliseconds(50);
    o.retry_delay = std::chrono::milliseconds(100);
    return o;
  }

  static inline int counter_ = 0;
  std::filesystem::path dir_;
  RepoConfig rc_;
  std::unique_ptr<Repo> repo_;
};

}  // namespace tandem::backup::test_files
