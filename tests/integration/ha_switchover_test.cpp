// Switchover under a steady stream of writes against real etcd and PostgreSQL: every
// acknowledged commit survives, whichever way the old leader hands over the key.
//
// In synchronous mode `on` the leader releases the key as soon as its shutdown checkpoint
// starts (every commit waited for the candidate); with synchronous replication off it waits
// until the candidate has received the shutdown checkpoint. Both are checked here, and that
// the old leader rejoins as a streaming standby afterwards (with pg_rewind when the
// candidate promoted before the old leader's last WAL record).
#include <atomic>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "testkit/deployment.hpp"

namespace tandem::testkit {
namespace {

using namespace std::chrono_literals;

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Writers that insert ids on whichever member accepts them, each attempt on a new
// connection (as a client that reconnects after its server went away would), and record
// the ids whose INSERT was acknowledged.
class Writers {
 public:
  Writers(const Deployment& d, int threads) : d_(d) {
    for (int t = 0; t < threads; ++t) {
      threads_.emplace_back([this, t, threads] { run(t, threads); });
    }
  }
  ~Writers() { stop(); }

  void stop() {
    stop_ = true;
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  std::set<long> acked() {
    std::lock_guard lock(m_);
    return acked_;
  }
  size_t acked_on(const std::string& member) {
    std::lock_guard lock(m_);
    return per_member_[member];
  }

 private:
  void run(int t, int threads) {
    long id = t;
    while (!stop_) {
      id += threads;
      for (const auto& m : d_.members()) {
        if (d_.exec(m, "INSERT INTO sw_writes VALUES (" + std::to_string(id) + ")", 2000).ok()) {
          std::lock_guard lock(m_);
          acked_.insert(id);
          ++per_member_[m];
          break;
        }
      }
      std::this_thread::sleep_for(5ms);
    }
  }

  const Deployment& d_;
  std::atomic<bool> stop_{false};
  std::mutex m_;
  std::set<long> acked_;
  std::map<std::string, size_t> per_member_;
  std::vector<std::thread> threads_;
};

class SwitchoverUnderWrites : public ::testing::TestWithParam<const char*> {};

TEST_P(SwitchoverUnderWrites, KeepsEveryAcknowledgedCommitAndTheOldLeaderRejoins) {
  const std::string mode = GetParam();
  Deployment d(DeploymentOptions{.sync_mode = mode});
  const std::string first = d.wait_leader(60s);
  ASSERT_FALSE(first.empty());
  const std::string second = d.other(first);
  ASSERT_TRUE(d.wait_streaming(second, 60s));
  if (mode == "on") {
    ASSERT_TRUE(d.wait_sync_standby(second, 60s));
  }
  ASSERT_TRUE(d.exec(first, "CREATE TABLE sw_writes (id bigint PRIMARY KEY)").ok());

  Writers writers(d, 3);
  // Writes flow on the old leader before the switchover starts.
  auto until = std::chrono::steady_clock::now() + 60s;
  while (writers.acked_on(first) < 20 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(20ms);
  ASSERT_GE(writers.acked_on(first), 20u);

  auto r = d.tandem({"ctl", "switchover", "--candidate", second});
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->status.ok()) << r->output;
  EXPECT_EQ(d.wait_leader(30s), second);
  // ... and go on on the new one.
  until = std::chrono::steady_clock::now() + 60s;
  while (writers.acked_on(second) < 20 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(20ms);
  writers.stop();
  ASSERT_GE(writers.acked_on(second), 20u);

  auto rows = d.exec(second, "SELECT id FROM sw_writes", 10000);
  ASSERT_TRUE(rows.ok()) << rows.error().message;
  std::set<long> present;
  for (const auto& row : rows->rows) present.insert(std::stol(row[0].value_or("-1")));
  std::vector<long> lost;
  for (long id : writers.acked()) {
    if (!present.contains(id)) lost.push_back(id);
  }
  EXPECT_TRUE(lost.empty()) << lost.size() << " acknowledged commits missing on the new leader, first id "
                            << (lost.empty() ? 0 : lost.front());

  // The hand-over the old leader chose, from its log.
  const std::string log = read_text(d.dir() + "/logs/" + first + ".log");
  if (mode == "on") {
    EXPECT_NE(log.find("shutting down with no client backend left"), std::string::npos) << log;
  } else {
    EXPECT_EQ(log.find("shutting down with no client backend left"), std::string::npos);
  }
  // The old leader follows the new one again, with every row.
  ASSERT_TRUE(d.wait_streaming(first, 120s));
  until = std::chrono::steady_clock::now() + 60s;
  size_t on_first = 0;
  while (std::chrono::steady_clock::now() < until) {
    auto c = d.exec(first, "SELECT count(*) FROM sw_writes");
    if (c.ok() && (on_first = std::stoul(c->rows[0][0].value_or("0"))) == present.size()) break;
    std::this_thread::sleep_for(200ms);
  }
  EXPECT_EQ(on_first, present.size());
}

INSTANTIATE_TEST_SUITE_P(Modes, SwitchoverUnderWrites, ::testing::Values("on", "off"),
                         [](const auto& info) { return std::string("sync_") + info.param; });

}  // namespace
}  // namespace tandem::testkit
