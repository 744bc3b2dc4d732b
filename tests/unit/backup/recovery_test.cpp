// Recovery planning: history files, timeline paths, WAL chains with gaps, backup choice,
// targets and the settings written for PostgreSQL.
#include "backup/recovery.hpp"

#include <gtest/gtest.h>

#include "backup/restore.hpp"

namespace tandem::backup {
namespace {

using namespace std::chrono_literals;
constexpr uint64_t kSeg = 16u << 20;

Lsn lsn(const char* s) {
  return *Lsn::parse(s);
}

BackupManifest backup(const std::string& id, uint32_t tli, const char* start, const char* stop,
                      const std::string& stop_time) {
  BackupManifest m;
  m.id = id;
  m.timeline = tli;
  m.start_lsn = lsn(start);
  m.stop_lsn = lsn(stop);
  m.stop_time = stop_time;
  return m;
}

TEST(History, ParsesAndRejects) {
  auto h =
      parse_history("1\t0/5000060\tno recovery target specified\n\n2\t0/9000000\tafter failover\n", "00000003.history");
  ASSERT_TRUE(h.ok()) << h.error().to_string();
  ASSERT_EQ(h->size(), 2u);
  EXPECT_EQ((*h)[0].parent, 1u);
  EXPECT_EQ((*h)[0].switchpoint, lsn("0/5000060"));
  EXPECT_EQ((*h)[1].parent, 2u);
  auto bad = parse_history("x\t0/1\tr\n", "00000002.history");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("00000002.history"), std::string::npos);
  EXPECT_FALSE(parse_history("2\t0/9\tr\n1\t0/5\tr\n", "h").ok());
}

TEST(TimelinePath, SegmentsFollowTheNewestTimelineThatBegan) {
  auto path = timeline_path(2, {{1, lsn("0/5000060")}});
  ASSERT_EQ(path.size(), 2u);
  EXPECT_EQ(path[0].tli, 1u);
  EXPECT_EQ(*path[0].end, lsn("0/5000060"));
  EXPECT_EQ(path[1].begin, lsn("0/5000060"));
  EXPECT_EQ(segment_on_path(path, 4, kSeg), "000000010000000000000004");
  // The switch segment is read from the new timeline.
  EXPECT_EQ(segment_on_path(path, 5, kSeg), "000000020000000000000005");
  EXPECT_EQ(segment_on_path(path, 6, kSeg), "000000020000000000000006");
  EXPECT_EQ(span_for_lsn(path, lsn("0/4000000"))->tli, 1u);
  EXPECT_EQ(span_for_lsn(path, lsn("0/6000000"))->tli, 2u);
  EXPECT_EQ(newest_timeline({"000000010000000000000001", "00000003.history"}), 3u);
  EXPECT_EQ(newest_timeline({}), 1u);
}

TEST(WalChain, UnbrokenAcrossASwitch) {
  auto path = timeline_path(2, {{1, lsn("0/5000060")}});
  std::set<std::string> archived = {"000000010000000000000003", "000000010000000000000004",
                                    "000000010000000000000005",  // the old timeline's copy: not used
                                    "000000020000000000000005", "000000020000000000000006", "00000002.history"};
  auto c = walk_wal_chain(path, lsn("0/3000028"), archived, kSeg);
  EXPECT_EQ(c.first, "000000010000000000000003");
  EXPECT_EQ(c.last, "000000020000000000000006");
  EXPECT_EQ(c.segments, 4u);
  EXPECT_EQ(c.end, lsn("0/7000000"));
  EXPECT_EQ(c.missing, "");
}

TEST(WalChain, NamesTheGap) {
  auto path = timeline_path(1, {});
  std::set<std::string> archived = {"000000010000000000000003", "000000010000000000000005", "000000010000000000000006"};
  auto c = walk_wal_chain(path, lsn("0/3000028"), archived, kSeg);
  EXPECT_EQ(c.last, "000000010000000000000003");
  EXPECT_EQ(c.missing, "000000010000000000000004");
  EXPECT_EQ(c.after_gap, "000000010000000000000005");
  auto none = walk_wal_chain(path, lsn("0/2000000"), archived, kSeg);
  EXPECT_EQ(none.last, "");
  EXPECT_EQ(none.first, "000000010000000000000002");
}

TEST(Targets, Parse) {
  auto latest = parse_target("latest", "", "");
  ASSERT_TRUE(latest.ok());
  EXPECT_EQ(latest->kind, TargetKind::latest);
  auto l = parse_target("", "", "0/3000060");
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->lsn, lsn("0/3000060"));
  auto t1 = parse_target("", "2026-11-28T13:05:00Z", "");
  auto t2 = parse_target("", "2026-11-28 15:05:00.000000+02", "");
  auto t3 = parse_target("", "2026-11-28 13:05:00.25+00:00", "");
  ASSERT_TRUE(t1.ok() && t2.ok() && t3.ok());
  EXPECT_EQ(t1->time, t2->time);
  EXPECT_EQ(t3->time - t1->time, 250ms);
  EXPECT_EQ(pg_timestamp(t3->time), "2026-11-28 13:05:00.250000+00");
  for (auto [a, b, c] : {std::tuple{"", "", ""},
                         {"latest", "", "0/1"},
                         {"newest", "", ""},
                         {"", "2026-11-28 13:05:00", ""},
                         {"", "yesterday", ""},
                         {"", "", "3000060"}})
    EXPECT_FALSE(parse_target(a, b, c).ok()) << a << "|" << b << "|" << c;
}

TEST(ChooseBackup, NewestThatEndsBeforeTheTarget) {
  auto path = timeline_path(2, {{1, lsn("0/9000000")}});
  std::vector<BackupManifest> bs = {backup("A", 1, "0/2000028", "0/2000100", "2026-11-28T10:00:00Z"),
                                    backup("B", 1, "0/6000028", "0/6000100", "2026-11-28T11:00:00Z"),
                                    backup("C", 2, "0/A000028", "0/A000100", "2026-11-28T12:00:00Z")};
  RecoveryTarget latest;
  EXPECT_EQ(choose_backup(bs, latest, path, "")->id, "C");
  RecoveryTarget t = *parse_target("", "2026-11-28T11:30:00Z", "");
  EXPECT_EQ(choose_backup(bs, t, path, "")->id, "B");
  RecoveryTarget l = *parse_target("", "", "0/6000100");
  EXPECT_EQ(choose_backup(bs, l, path, "")->id, "B");
  EXPECT_EQ(choose_backup(bs, l, path, "A")->id, "A");
  auto late = choose_backup(bs, l, path, "C");
  ASSERT_FALSE(late.ok());
  EXPECT_NE(late.error().message.find("after the target"), std::string::npos);
  RecoveryTarget early = *parse_target("", "2026-11-28T09:00:00Z", "");
  auto refused = choose_backup(bs, early, path, "");
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("restorable range"), std::string::npos) << refused.error().message;
  EXPECT_NE(refused.error().message.find("2026-11-28T10:00:00Z"), std::string::npos);
  // A backup from a timeline that is not on the path is never chosen.
  auto other = timeline_path(3, {{1, lsn("0/4000000")}});
  EXPECT_EQ(choose_backup(bs, latest, other, "")->id, "A");
  EXPECT_FALSE(choose_backup({}, latest, path, "").ok());
}

TEST(RecoverySettings, ForEachTarget) {
  auto s = recovery_settings(*parse_target("", "", "0/3000060"), "tandem wal-fetch %f %p");
  std::map<std::string, std::string> m(s.begin(), s.end());
  EXPECT_EQ(m["restore_command"], "tandem wal-fetch %f %p");
  EXPECT_EQ(m["recovery_target_lsn"], "0/3000060");
  EXPECT_EQ(m["recovery_target_action"], "promote");
  auto latest = recovery_settings(*parse_target("latest", "", ""), "x");
  for (const auto& [k, v] : latest) EXPECT_EQ(k.find("recovery_target_lsn"), std::string::npos);
}

TEST(RecoveryBlock, ReplacesItself) {
  std::string conf = "# Do not edit\nwork_mem = '4MB'\n";
  std::string with = with_recovery_block(conf, {{"restore_command", "a 'b'"}, {"recovery_target_lsn", "0/1"}});
  EXPECT_NE(with.find("restore_command = 'a ''b'''"), std::string::npos) << with;
  std::string again = with_recovery_block(with, {{"archive_mode", "off"}});
  EXPECT_EQ(again.find("restore_command"), std::string::npos);
  EXPECT_NE(again.find("archive_mode = 'off'"), std::string::npos);
  EXPECT_NE(again.find("work_mem"), std::string::npos);
  EXPECT_EQ(with_recovery_block(again, {}), conf);
}

}  // namespace
}  // namespace tandem::backup
