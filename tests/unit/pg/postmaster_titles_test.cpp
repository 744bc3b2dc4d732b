#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "pg/postmaster.hpp"

namespace tandem::pg {
namespace {

// Titles as /proc/PID/cmdline shows them (PostgreSQL pads with spaces before the NULs).
const std::string kCheckpointer = "postgres: pg1: checkpointer ";
const std::string kArchiver = "postgres: pg1: archiver last was 000000010000000000000003";
const std::string kWalSender = "postgres: pg1: walsender replicator 127.0.0.1(58404) streaming 0/B0077B0";
const std::string kFork = "/usr/lib/postgresql/15/bin/postgres -D /data";  // not titled yet

bool only(const std::vector<std::string>& titles) {
  return only_shutdown_processes(titles, "pg1", "replicator");
}

TEST(ShutdownProcesses, WhatRemainsAfterTheLastBackendLeft) {
  EXPECT_TRUE(only({}));
  EXPECT_TRUE(only({kCheckpointer}));
  EXPECT_TRUE(only({kCheckpointer, kArchiver, kWalSender, "postgres: pg1: logger "}));
  EXPECT_TRUE(only({kCheckpointer, "postgres: pg1: archiver", "postgres: pg1: archiver failed on 00000002.history"}));
  EXPECT_TRUE(only({"postgres: pg1: walsender replicator [local] stopping"}));
  // Forks that have not read a startup packet only refuse connections now.
  EXPECT_TRUE(only({kCheckpointer, kFork, kFork, ""}));
  // Without a cluster_name the titles have no "pg1: ".
  EXPECT_TRUE(only_shutdown_processes(
      {"postgres: checkpointer ", "postgres: walsender replicator 10.0.0.2(5432) streaming 0/1"}, "", "replicator"));
}

TEST(ShutdownProcesses, NotWhileTheServerMayStillTakeConnections) {
  // The background and WAL writers run until the shutdown has begun; until then even
  // an untitled fork may become a backend.
  EXPECT_FALSE(only({kCheckpointer, "postgres: pg1: background writer ", kWalSender}));
  EXPECT_FALSE(only({kCheckpointer, "postgres: pg1: walwriter "}));
  EXPECT_FALSE(only({kCheckpointer, "postgres: pg1: walwriter ", kFork}));
}

TEST(ShutdownProcesses, AnyProcessThatMayServeAClientCounts) {
  // Client backends, whatever their state.
  EXPECT_FALSE(only({kCheckpointer, "postgres: pg1: admin postgres 127.0.0.1(40000) idle"}));
  EXPECT_FALSE(only({kCheckpointer, "postgres: pg1: app shop [local] INSERT waiting"}));
  EXPECT_FALSE(only({kCheckpointer, "postgres: pg1: app shop 127.0.0.1(40002) authentication"}));
  // A client role named "walsender", a logical WAL sender (it names a database), another user's.
  EXPECT_FALSE(only({kCheckpointer, "postgres: pg1: walsender postgres [local] idle"}));
  EXPECT_FALSE(only({kCheckpointer, "postgres: pg1: walsender replicator shop 127.0.0.1(40001) idle"}));
  EXPECT_FALSE(only({kCheckpointer, "postgres: pg1: walsender other 127.0.0.1(40001) streaming 0/1"}));
  // Background workers and autovacuum.
  EXPECT_FALSE(only({kCheckpointer, "postgres: pg1: logical replication launcher "}));
  EXPECT_FALSE(only({kCheckpointer, "postgres: pg1: autovacuum worker shop"}));
  EXPECT_FALSE(only({kCheckpointer, "postgres: pg1: "}));
  // Another cluster_name prefix is not ours to interpret.
  EXPECT_FALSE(only({"postgres: pg2: checkpointer "}));
}

}  // namespace
}  // namespace tandem::pg
