#include "backup/manifest.hpp"

#include <gtest/gtest.h>

namespace tandem::backup {
namespace {

using namespace std::chrono_literals;

BackupManifest sample() {
  BackupManifest m;
  m.id = "20261128T130500Z-2";
  m.cluster = "demo";
  m.system_identifier = "7311234567890123456";
  m.pg_version = 150005;
  m.timeline = 3;
  m.start_lsn = Lsn(0x1'02000028ull);
  m.stop_lsn = Lsn(0x1'02000138ull);
  m.start_wal = "000000030000000100000020";
  m.stop_wal = "000000030000000100000020";
  m.start_time = "2026-11-28T13:05:00Z";
  m.stop_time = "2026-11-28T13:06:10Z";
  m.bytes = 1'600'000'000;
  m.stored_bytes = 210'000'000;
  m.objects = {{"backups/20261128T130500Z-2/base.tar", 1'599'000'000, 209'000'000, std::string(64, 'a')},
               {"backups/20261128T130500Z-2/backup_manifest", 1'000'000, 1'000'000, std::string(64, 'b')}};
  m.objects[0].compression = "zstd";
  m.tablespaces = {{16400, "/srv/ts1", "backups/20261128T130500Z-2/ts-16400.tar"}};
  m.key_id = "0011223344556677";
  m.label = "nightly 'it''s'";
  return m;
}

TEST(Manifest, JsonRoundTripKeepsEveryField) {
  BackupManifest m = sample();
  auto back = manifest_from_json(manifest_to_json(m), "test");
  ASSERT_TRUE(back.ok()) << back.error().to_string();
  EXPECT_EQ(*back, m);
}

TEST(Manifest, JsonUsesContractFieldNames) {
  std::string j = manifest_to_json(sample());
  for (const char* f : {"\"id\"", "\"cluster\"", "\"system_identifier\"", "\"pg_version\"", "\"timeline\"",
                        "\"start_lsn\": \"1/2000028\"", "\"stop_lsn\"", "\"start_wal\"", "\"stop_wal\"",
                        "\"start_time\"", "\"stop_time\"", "\"bytes\"", "\"stored_bytes\"", "\"objects\"",
                        "\"plaintext_bytes\"", "\"sha256\"", "\"key_id\"", "\"label\""}) {
    EXPECT_NE(j.find(f), std::string::npos) << f;
  }
}

TEST(Manifest, ErrorsNameTheField) {
  std::string j = manifest_to_json(sample());
  auto bad_lsn = j;
  bad_lsn.replace(bad_lsn.find("1/2000028"), 9, "nonsense!");
  auto r = manifest_from_json(bad_lsn, "'x'");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("start_lsn"), std::string::npos) << r.error().message;

  auto no_sha = j;
  no_sha.replace(no_sha.find(std::string(64, 'a')), 64, "abc");
  r = manifest_from_json(no_sha, "'x'");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("sha256"), std::string::npos) << r.error().message;

  auto bad_comp = j;
  bad_comp.replace(bad_comp.find("\"zstd\""), 6, "\"lz4\"");
  r = manifest_from_json(bad_comp, "'x'");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("compression"), std::string::npos) << r.error().message;

  r = manifest_from_json("[1,2]", "'x'");
  ASSERT_FALSE(r.ok());
  r = manifest_from_json("{\"format\": 2}", "'x'");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("format"), std::string::npos);
  r = manifest_from_json("{\"format\": 1, \"id\": 5}", "'x'");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("'id'"), std::string::npos) << r.error().message;
}

TEST(Manifest, BackupIdsAreUtcStartTimesWithCollisionSuffix) {
  auto t = std::chrono::system_clock::from_time_t(1795871100);  // 2026-11-28T13:05:00Z
  EXPECT_EQ(make_backup_id(t, {}), "20261128T130500Z");
  EXPECT_EQ(make_backup_id(t, {"20261128T130500Z"}), "20261128T130500Z-2");
  EXPECT_EQ(make_backup_id(t, {"20261128T130500Z", "20261128T130500Z-2"}), "20261128T130500Z-3");
  EXPECT_EQ(backup_id_time("20261128T130500Z"), t);
  EXPECT_EQ(backup_id_time("20261128T130500Z-3"), t);
  EXPECT_FALSE(backup_id_time("20261128T130500"));
  EXPECT_FALSE(backup_id_time("20261128T130500Z-"));
  EXPECT_FALSE(backup_id_time("20261328T130500Z"));
  EXPECT_FALSE(backup_id_time("../etc"));
}

TEST(Manifest, UtcTimesRoundTrip) {
  auto t = std::chrono::system_clock::from_time_t(1795871100);
  EXPECT_EQ(format_utc(t), "2026-11-28T13:05:00Z");
  EXPECT_EQ(parse_utc("2026-11-28T13:05:00Z"), t);
  EXPECT_FALSE(parse_utc("2026-11-28 13:05:00"));
}

TEST(Manifest, HumanBytes) {
  EXPECT_EQ(human_bytes(17), "17 B");
  EXPECT_EQ(human_bytes(12 * 1024), "12 KiB");
  EXPECT_EQ(human_bytes(1536ull << 20), "1.5 GiB");
}

}  // namespace
}  // namespace tandem::backup
