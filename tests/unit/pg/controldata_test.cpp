#include "pg/controldata.hpp"

#include <boost/crc.hpp>

#include <cstring>

#include <gtest/gtest.h>

#include <string>

namespace tandem::pg {
namespace {

// Output of pg_controldata 15 (LC_ALL=C) for a freshly initialised, stopped cluster.
const std::string kShutDown = R"(
pg_control version number:            1300
Catalog version number:               202209061
Database system identifier:           7713155538534898655
Database cluster state:               shut down
pg_control last modified:             Sat Nov 28 09:42:49 2026
Latest checkpoint location:           0/1752990
Latest checkpoint's REDO location:    0/1752990
Latest checkpoint's REDO WAL file:    000000010000000000000001
Latest checkpoint's TimeLineID:       1
Latest checkpoint's PrevTimeLineID:   1
Latest checkpoint's full_page_writes: on
Latest checkpoint's NextXID:          0:724
Latest checkpoint's NextOID:          13573
Latest checkpoint's NextMultiXactId:  1
Latest checkpoint's NextMultiOffset:  0
Latest checkpoint's oldestXID:        716
Latest checkpoint's oldestXID's DB:   1
Latest checkpoint's oldestActiveXID:  0
Latest checkpoint's oldestMultiXid:   1
Latest checkpoint's oldestMulti's DB: 1
Latest checkpoint's oldestCommitTsXid:0
Latest checkpoint's newestCommitTsXid:0
Time of latest checkpoint:            Sat Nov 28 09:42:49 2026
Fake LSN counter for unlogged rels:   0/3E8
Minimum recovery ending location:     0/0
Min recovery ending loc's timeline:   0
Backup start location:                0/0
Backup end location:                  0/0
End-of-backup record required:        no
wal_level setting:                    replica
wal_log_hints setting:                off
max_connections setting:              100
max_worker_processes setting:         8
max_wal_senders setting:              10
max_prepared_xacts setting:           0
max_locks_per_xact setting:           64
track_commit_timestamp setting:       off
Maximum data alignment:               8
Database block size:                  8192
Blocks per segment of large relation: 131072
WAL block size:                       8192
Bytes per WAL segment:                16777216
Maximum length of identifiers:        64
Maximum columns in an index:          32
Maximum size of a TOAST chunk:        1996
Size of a large-object chunk:         2048
Date/time type storage:               64-bit integers
Float8 argument passing:              by value
Data page checksum version:           1
Mock authentication nonce:            98b4be522c594f8c459fc10ed0d04990ee10fda22d483bac57195e4931031410
)";

std::string replace(std::string text, const std::string& from, const std::string& to) {
  auto pos = text.find(from);
  EXPECT_NE(pos, std::string::npos) << from;
  if (pos != std::string::npos) text.replace(pos, from.size(), to);
  return text;
}

TEST(ControlData, ParsesAStoppedPrimary) {
  auto cd = parse_controldata(kShutDown);
  ASSERT_TRUE(cd.ok()) << cd.error().to_string();
  EXPECT_EQ(cd->state, ClusterState::shut_down);
  EXPECT_EQ(cd->state_text, "shut down");
  EXPECT_TRUE(cd->clean_shutdown());
  EXPECT_EQ(cd->system_identifier, 7713155538534898655ULL);
  EXPECT_EQ(cd->checkpoint_lsn.to_string(), "0/1752990");
  EXPECT_EQ(cd->redo_lsn.to_string(), "0/1752990");
  EXPECT_EQ(cd->redo_wal_file, "000000010000000000000001");
  EXPECT_EQ(cd->timeline, 1u);
  EXPECT_EQ(cd->prev_timeline, 1u);
  EXPECT_EQ(cd->min_recovery_end_lsn.value(), 0u);
  EXPECT_EQ(cd->checksum_version, 1);
  EXPECT_FALSE(cd->wal_log_hints);
  EXPECT_TRUE(cd->rewindable());
  // Values containing ':' keep everything after the first colon.
  EXPECT_EQ(cd->fields.at("Latest checkpoint's NextXID"), "0:724");
  EXPECT_EQ(cd->fields.at("Latest checkpoint's oldestCommitTsXid"), "0");
  EXPECT_EQ(cd->fields.at("Time of latest checkpoint"), "Sat Nov 28 09:42:49 2026");
}

TEST(ControlData, ParsesAStandbyOnALaterTimeline) {
  std::string text = replace(kShutDown, "Database cluster state:               shut down",
                             "Database cluster state:               in archive recovery");
  text = replace(text, "Latest checkpoint's TimeLineID:       1", "Latest checkpoint's TimeLineID:       12");
  text = replace(text, "Latest checkpoint's REDO location:    0/1752990",
                 "Latest checkpoint's REDO location:    1A/FF000028");
  text =
      replace(text, "Minimum recovery ending location:     0/0", "Minimum recovery ending location:     1A/FF0000A0");
  text = replace(text, "Min recovery ending loc's timeline:   0", "Min recovery ending loc's timeline:   12");
  auto cd = parse_controldata(text);
  ASSERT_TRUE(cd.ok()) << cd.error().to_string();
  EXPECT_EQ(cd->state, ClusterState::in_archive_recovery);
  EXPECT_FALSE(cd->clean_shutdown());
  EXPECT_EQ(cd->timeline, 12u);
  EXPECT_EQ(cd->redo_lsn, Lsn((uint64_t{0x1A} << 32) | 0xFF000028));
  EXPECT_EQ(cd->min_recovery_end_lsn.to_string(), "1A/FF0000A0");
  EXPECT_EQ(cd->min_recovery_end_timeline, 12u);
}

TEST(ControlData, KnowsEveryClusterState) {
  for (const char* s : {"starting up", "shut down", "shut down in recovery", "shutting down", "in crash recovery",
                        "in archive recovery", "in production"}) {
    EXPECT_NE(parse_cluster_state(s), ClusterState::unknown) << s;
    EXPECT_EQ(std::string(to_string(parse_cluster_state(s))), s);
  }
  EXPECT_EQ(parse_cluster_state("en production"), ClusterState::unknown);
  auto cd = parse_controldata(
      replace(kShutDown, "state:               shut down", "state:               shut down in recovery"));
  ASSERT_TRUE(cd.ok());
  EXPECT_EQ(cd->state, ClusterState::shut_down_in_recovery);
  EXPECT_TRUE(cd->clean_shutdown());
}

TEST(ControlData, NoChecksumsAndNoHintsIsNotRewindable) {
  std::string text =
      replace(kShutDown, "Data page checksum version:           1", "Data page checksum version:           0");
  auto cd = parse_controldata(text);
  ASSERT_TRUE(cd.ok());
  EXPECT_FALSE(cd->rewindable());
  cd = parse_controldata(
      replace(text, "wal_log_hints setting:                off", "wal_log_hints setting:                on"));
  ASSERT_TRUE(cd.ok());
  EXPECT_TRUE(cd->rewindable());
}

TEST(ControlData, NamesTheMissingOrBadField) {
  auto cd = parse_controldata(replace(kShutDown, "Latest checkpoint's TimeLineID:", "Latest checkpoint TLI:"));
  ASSERT_FALSE(cd.ok());
  EXPECT_EQ(cd.error().code, Errc::invalid_argument);
  EXPECT_NE(cd.error().message.find("Latest checkpoint's TimeLineID"), std::string::npos);

  cd = parse_controldata(replace(kShutDown, "REDO location:    0/1752990", "REDO location:    nonsense"));
  ASSERT_FALSE(cd.ok());
  EXPECT_NE(cd.error().message.find("REDO location"), std::string::npos);

  cd = parse_controldata(
      replace(kShutDown, "identifier:           7713155538534898655", "identifier:           77131555x"));
  ASSERT_FALSE(cd.ok());
  EXPECT_NE(cd.error().message.find("system identifier"), std::string::npos);

  EXPECT_FALSE(parse_controldata("").ok());
  EXPECT_FALSE(parse_controldata("pg_controldata: fatal: could not open file").ok());
}

}  // namespace
}  // namespace tandem::pg

namespace tandem::pg {
namespace {

// A pg_control image with the given version, state and checkpoint, and a valid CRC-32C.
std::string control_image(uint32_t version, int32_t state, uint64_t checkpoint) {
  std::string b(8192, '\0');
  const uint64_t sysid = 7713270887913720379ull;
  std::memcpy(b.data(), &sysid, 8);
  std::memcpy(b.data() + 8, &version, 4);
  std::memcpy(b.data() + 16, &state, 4);
  std::memcpy(b.data() + 32, &checkpoint, 8);
  boost::crc_optimal<32, 0x1EDC6F41, 0xFFFFFFFF, 0xFFFFFFFF, true, true> crc;
  crc.process_bytes(b.data(), 288);
  const uint32_t c = crc.checksum();
  std::memcpy(b.data() + 288, &c, 4);
  return b;
}

TEST(ControlFile, ReadsStateAndCheckpointOfAVersion15File) {
  auto r = parse_control_file(control_image(1300, 1, 0x6000028));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->state, ClusterState::shut_down);
  EXPECT_EQ(r->checkpoint_lsn.to_string(), "0/6000028");
  EXPECT_EQ(parse_control_file(control_image(1300, 6, 1)).value().state, ClusterState::in_production);
  EXPECT_EQ(parse_control_file(control_image(1300, 99, 1)).value().state, ClusterState::unknown);
}

TEST(ControlFile, Crc32cMatchesTheStandardCheckValue) {
  // The CRC PostgreSQL uses (CRC-32C, Castagnoli): crc32c("123456789") = 0xE3069283.
  boost::crc_optimal<32, 0x1EDC6F41, 0xFFFFFFFF, 0xFFFFFFFF, true, true> crc;
  crc.process_bytes("123456789", 9);
  EXPECT_EQ(crc.checksum(), 0xE3069283u);
}

TEST(ControlFile, RejectsShortForeignAndDamagedImages) {
  EXPECT_FALSE(parse_control_file(std::string(100, '\0')));
  auto other = parse_control_file(control_image(1700, 1, 1));
  ASSERT_FALSE(other);
  EXPECT_NE(other.error().message.find("1700"), std::string::npos);
  auto img = control_image(1300, 1, 0x6000028);
  img[33] ^= 1;  // a bit of the checkpoint LSN
  auto damaged = parse_control_file(img);
  ASSERT_FALSE(damaged);
  EXPECT_NE(damaged.error().message.find("CRC"), std::string::npos);
}

}  // namespace
}  // namespace tandem::pg
