#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "pg/postmaster.hpp"

namespace tandem::pg {
namespace {

// Titles as /proc/PID/cmdline shows them (PostgreSQL pads with spaces before the NULs),
// all started at tick 100 unless said otherwise; the writers were seen gone at tick 200.
constexpr uint64_t kWritersGone = 200;
const ChildProcess kCheckpointer{"postgres: pg1: checkpointer ", 100};
const ChildProcess kArchiver{"postgres: pg1: archiver last was 000000010000000000000003", 100};
const ChildProcess kWalSender{"postgres: pg1: walsender replicator 127.0.0.1(58404) streaming 0/B0077B0", 100};

ChildProcess titled(const std::string& title) {
  return ChildProcess{title, 100};
}

bool only(const std::vector<ChildProcess>& children) {
  return only_shutdown_processes(children, "pg1", "replicator", kWritersGone);
}

TEST(ShutdownProcesses, WhatRemainsAfterTheLastBackendLeft) {
  EXPECT_TRUE(only({}));
  EXPECT_TRUE(only({kCheckpointer}));
  EXPECT_TRUE(only({kCheckpointer, kArchiver, kWalSender, titled("postgres: pg1: logger ")}));
  EXPECT_TRUE(only({kCheckpointer, titled("postgres: pg1: archiver"),
                    titled("postgres: pg1: archiver failed on 00000002.history")}));
  EXPECT_TRUE(only({titled("postgres: pg1: walsender replicator [local] stopping")}));
  // Without a cluster_name the titles have no "pg1: ".
  EXPECT_TRUE(only_shutdown_processes(
      {titled("postgres: checkpointer "), titled("postgres: walsender replicator 10.0.0.2(5432) streaming 0/1")}, "",
      "replicator", kWritersGone));
}

TEST(ShutdownProcesses, ForksAfterTheShutdownBeganOnlyRefuseConnections) {
  // Untitled children started after the writers were gone are dead-end forks...
  EXPECT_TRUE(only({kCheckpointer, ChildProcess{"/usr/lib/postgresql/15/bin/postgres -D /data", kWritersGone + 1}}));
  EXPECT_TRUE(only({kCheckpointer, ChildProcess{"", kWritersGone + 5}}));
  // ... earlier ones may be backends still starting up.
  EXPECT_FALSE(only({kCheckpointer, ChildProcess{"/usr/lib/postgresql/15/bin/postgres -D /data", kWritersGone}}));
  EXPECT_FALSE(only({kCheckpointer, ChildProcess{"", 100}}));
  // A titled client backend counts whenever it started.
  EXPECT_FALSE(only({kCheckpointer, ChildProcess{"postgres: pg1: admin postgres [local] idle", kWritersGone + 9}}));
}

TEST(ShutdownProcesses, AnyProcessThatMayServeAClientCounts) {
  // A server still taking connections always has its background and WAL writers.
  EXPECT_FALSE(only({kCheckpointer, titled("postgres: pg1: background writer "), kWalSender}));
  EXPECT_FALSE(only({kCheckpointer, titled("postgres: pg1: walwriter ")}));
  // Client backends, whatever their state.
  EXPECT_FALSE(only({kCheckpointer, titled("postgres: pg1: admin postgres 127.0.0.1(40000) idle")}));
  EXPECT_FALSE(only({kCheckpointer, titled("postgres: pg1: app shop [local] INSERT waiting")}));
  // A client role named "walsender", a logical WAL sender (it names a database), another user's.
  EXPECT_FALSE(only({kCheckpointer, titled("postgres: pg1: walsender postgres [local] idle")}));
  EXPECT_FALSE(only({kCheckpointer, titled("postgres: pg1: walsender replicator shop 127.0.0.1(40001) idle")}));
  EXPECT_FALSE(only({kCheckpointer, titled("postgres: pg1: walsender other 127.0.0.1(40001) streaming 0/1")}));
  // Background workers and autovacuum.
  EXPECT_FALSE(only({kCheckpointer, titled("postgres: pg1: logical replication launcher ")}));
  EXPECT_FALSE(only({kCheckpointer, titled("postgres: pg1: autovacuum worker shop")}));
  EXPECT_FALSE(only({kCheckpointer, titled("postgres: pg1: ")}));
  // Another cluster_name prefix is not ours to interpret.
  EXPECT_FALSE(only({titled("postgres: pg2: checkpointer ")}));
}

}  // namespace
}  // namespace tandem::pg
