#include "backup/retention.hpp"

#include <gtest/gtest.h>

#include <algorithm>

namespace tandem::backup {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::system_clock;

std::string seg(uint32_t tli, uint32_t log, uint32_t n) {
  return SegmentName{tli, log, n}.to_string();
}

const Clock::time_point kNow = Clock::from_time_t(1795871100);  // 2026-11-28T13:05:00Z
constexpr auto kDay = 24h;

// A complete backup `days_ago` days old whose WAL starts at segment `seg` on timeline `tli`.
RetentionBackup full(const std::string& id, double days_ago, uint32_t start_seg, uint32_t tli = 1) {
  auto start =
      kNow - std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double, std::ratio<86400>>(days_ago));
  return {id, true, start, seg(tli, 0, start_seg)};
}
RetentionBackup partial(const std::string& id, double days_ago) {
  auto r = full(id, days_ago, 1);
  r.complete = false;
  r.start_wal.clear();
  return r;
}

config::RetentionConfig policy(int count, std::chrono::seconds max_age, std::chrono::seconds window) {
  config::RetentionConfig p;
  p.count = count;
  p.max_age = max_age;
  p.pitr_window = window;
  return p;
}

std::vector<std::string> sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

struct Case {
  const char* name;
  std::vector<RetentionBackup> backups;
  config::RetentionConfig policy;
  std::vector<std::string> deleted;  // backup ids
  std::string wal_floor;
};

TEST(Retention, BackupTable) {
  const std::vector<Case> cases = {
      {"count only keeps the newest N",
       {full("a", 4, 10), full("b", 3, 20), full("c", 2, 30), full("d", 1, 40)},
       policy(2, 0s, 0s),
       {"a", "b"},
       seg(1, 0, 30)},
      {"count 0 and no age limit keeps all",
       {full("a", 400, 10), full("b", 3, 20)},
       policy(0, 0s, 0s),
       {},
       seg(1, 0, 10)},
      {"age limit with count as a floor",
       {full("a", 40, 10), full("b", 35, 20), full("c", 31, 30), full("d", 1, 40)},
       policy(2, 30 * kDay, 0s),
       {"a", "b"},
       seg(1, 0, 30)},
      {"young backups survive beyond the count",
       {full("a", 5, 10), full("b", 4, 20), full("c", 3, 30), full("d", 1, 40)},
       policy(1, 30 * kDay, 0s),
       {},
       seg(1, 0, 10)},
      {"the newest complete backup is kept even when too old",
       {full("a", 90, 10), full("b", 60, 20)},
       policy(0, 30 * kDay, 0s),
       {"a"},
       seg(1, 0, 20)},
      {"pitr window keeps its base backup",
       {full("a", 10, 10), full("b", 8, 20), full("c", 6, 30), full("d", 1, 40)},
       policy(1, 0s, 7 * kDay),
       {"a", "c"},
       seg(1, 0, 20)},
      {"pitr window younger than every backup keeps the oldest",
       {full("a", 3, 10), full("b", 2, 20), full("c", 1, 30)},
       policy(1, 0s, 7 * kDay),
       {"b"},
       seg(1, 0, 10)},
      {"incomplete backups go after a day, not before",
       {partial("x", 2), partial("y", 0.5), full("a", 3, 10)},
       policy(7, 30 * kDay, 7 * kDay),
       {"x"},
       seg(1, 0, 10)},
      {"only incomplete backups: no WAL floor",
       {partial("x", 2), partial("y", 0.1)},
       policy(7, 30 * kDay, 7 * kDay),
       {"x"},
       ""},
  };
  for (const auto& c : cases) {
    auto plan = plan_retention(c.backups, {}, kNow, c.policy);
    EXPECT_EQ(sorted(plan.delete_backups()), sorted(c.deleted)) << c.name;
    EXPECT_EQ(plan.wal_floor, c.wal_floor) << c.name;
    EXPECT_EQ(plan.backups.size(), c.backups.size()) << c.name;
    for (const auto& d : plan.backups) EXPECT_FALSE(d.reason.empty()) << c.name << " " << d.id;
  }
}

TEST(Retention, DecisionsComeNewestFirstWithReasons) {
  auto plan = plan_retention({full("a", 4, 10), full("b", 3, 20), full("c", 2, 30)}, {}, kNow, policy(2, 0s, 0s));
  ASSERT_EQ(plan.backups.size(), 3u);
  EXPECT_EQ(plan.backups[0].id, "c");
  EXPECT_EQ(plan.backups[0].reason, "the newest complete backup");
  EXPECT_EQ(plan.backups[2].id, "a");
  EXPECT_FALSE(plan.backups[2].keep);
  EXPECT_EQ(plan.backups[2].reason, "not one of the newest 2");
}

TEST(Retention, WalBeforeTheOldestKeptBackupGoesHistoryStays) {
  std::vector<std::string> wal = {
      "00000001.history",  // never a real name (timeline 1 has none), still kept
      "00000002.history", seg(1, 0, 8),
      seg(1, 0, 9),       seg(1, 0, 9) + ".00000028.backup",
      seg(1, 0, 10),      seg(1, 0, 11) + ".partial",
      seg(2, 0, 11),      seg(2, 0, 12),
      seg(2, 0, 30),      "garbage-name",
  };
  // Kept: b (start 11 on timeline 2) and c; a (start 5) is beyond the count.
  auto plan = plan_retention({full("a", 5, 5), full("b", 2, 11, 2), full("c", 1, 30, 2)}, wal, kNow, policy(2, 0s, 0s));
  EXPECT_EQ(plan.delete_backups(), std::vector<std::string>{"a"});
  EXPECT_EQ(plan.wal_floor, seg(2, 0, 11));
  std::vector<std::string> expect = {seg(1, 0, 8), seg(1, 0, 9), seg(1, 0, 9) + ".00000028.backup", seg(1, 0, 10)};
  EXPECT_EQ(plan.delete_wal, sorted(expect));
}

TEST(Retention, WalAcrossLogBoundaryComparesSegmentNumbers) {
  // 16 MiB segments: 256 per log; segment (log 1, seg 0) comes after (log 0, seg 255).
  std::vector<std::string> wal = {seg(1, 0, 0xFF), seg(1, 1, 0), seg(1, 1, 1)};
  RetentionBackup b{"b", true, kNow - 1h, seg(1, 1, 0)};
  auto plan = plan_retention({b}, wal, kNow, policy(1, 0s, 0s));
  EXPECT_EQ(plan.delete_wal, std::vector<std::string>{seg(1, 0, 0xFF)});
}

TEST(Retention, NoCompleteBackupDeletesNoWal) {
  std::vector<std::string> wal = {seg(1, 0, 1)};
  auto plan = plan_retention({partial("x", 3)}, wal, kNow, policy(1, 1s, 0s));
  EXPECT_TRUE(plan.delete_wal.empty());
  EXPECT_TRUE(plan.wal_floor.empty());
}

TEST(Retention, UnreadableStartSegmentDeletesNoWal) {
  RetentionBackup b{"b", true, kNow - 1h, "not-a-segment"};
  auto plan = plan_retention({b}, {seg(1, 0, 1)}, kNow, policy(1, 0s, 0s));
  EXPECT_TRUE(plan.delete_wal.empty());
  EXPECT_TRUE(plan.delete_backups().empty());
}

}  // namespace
}  // namespace tandem::backup
