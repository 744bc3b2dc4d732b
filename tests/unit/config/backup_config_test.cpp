// The `backup:` section of the agent's YAML and the duration syntax it uses.
#include <gtest/gtest.h>

#include "config/agent_config.hpp"

namespace tandem::config {
namespace {

const char* kBase = R"(
cluster: demo
name: m1
etcd: {endpoints: [http://127.0.0.1:2379]}
data_dir: /tmp/x/m1
api: {listen: 127.0.0.1:8008}
postgresql: {listen: 127.0.0.1:5433}
)";

Result<AgentConfig> parse_with(const std::string& backup) {
  return parse_agent_config(kBase + backup);
}

TEST(BackupConfig, AbsentMeansDisabled) {
  auto c = parse_agent_config(kBase);
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_FALSE(c->backup.enabled());
}

TEST(BackupConfig, ParsesEveryKey) {
  auto c = parse_with(R"(
backup:
  store: s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1
  key_file: /abs/secrets/backup.key
  retired_key_files: [/abs/secrets/old1.key, /abs/secrets/old2.key]
  credentials_file: /abs/secrets/s3.ini
  archive: false
  schedule: 12h
  retention: {count: 3, max_age: 14d, pitr_window: 2d}
)");
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  const auto& b = c->backup;
  EXPECT_TRUE(b.enabled());
  EXPECT_EQ(b.store, "s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1");
  EXPECT_EQ(b.key_file, "/abs/secrets/backup.key");
  ASSERT_EQ(b.retired_key_files.size(), 2u);
  EXPECT_EQ(b.retired_key_files[1], "/abs/secrets/old2.key");
  EXPECT_EQ(b.credentials_file, "/abs/secrets/s3.ini");
  EXPECT_FALSE(b.archive);
  EXPECT_EQ(b.schedule, std::chrono::hours(12));
  EXPECT_EQ(b.retention.count, 3);
  EXPECT_EQ(b.retention.max_age, std::chrono::hours(14 * 24));
  EXPECT_EQ(b.retention.pitr_window, std::chrono::hours(48));
}

TEST(BackupConfig, DefaultsForOptionalKeys) {
  auto c = parse_with("backup: {store: 'file:///var/backups', key_file: /k}\n");
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_TRUE(c->backup.archive);
  EXPECT_EQ(c->backup.schedule, std::chrono::hours(24));
  EXPECT_EQ(c->backup.retention.count, 7);
  EXPECT_EQ(c->backup.retention.max_age, std::chrono::hours(30 * 24));
  EXPECT_EQ(c->backup.retention.pitr_window, std::chrono::hours(7 * 24));
}

TEST(BackupConfig, ScheduleOffDisables) {
  for (const char* off : {"off", "0"}) {
    auto c = parse_with(fmt::format("backup: {{store: 'file:///b', key_file: /k, schedule: {}}}\n", off));
    ASSERT_TRUE(c.ok()) << c.error().to_string();
    EXPECT_EQ(c->backup.schedule.count(), 0) << off;
  }
}

struct BadBackup {
  std::string yaml, expect;
};

class BackupConfigErrors : public ::testing::TestWithParam<BadBackup> {};

TEST_P(BackupConfigErrors, NameTheKey) {
  auto c = parse_with(GetParam().yaml);
  ASSERT_FALSE(c.ok()) << GetParam().yaml;
  EXPECT_NE(c.error().message.find(GetParam().expect), std::string::npos) << c.error().message;
}

INSTANTIATE_TEST_SUITE_P(
    Table, BackupConfigErrors,
    ::testing::Values(
        BadBackup{"backup: {key_file: /k}\n", "backup.store: required"},
        BadBackup{"backup: {store: 'file:///b'}\n", "backup.key_file: required"},
        BadBackup{"backup: {store: 'ftp://x', key_file: /k}\n", "backup.store: expected"},
        BadBackup{"backup: {store: 'file:///b', key_file: rel/k}\n", "backup.key_file: must be an absolute path"},
        BadBackup{"backup: {store: 'file:///b', key_file: /k, schedule: daily}\n",
                  "backup.schedule: expected a duration"},
        BadBackup{"backup: {store: 'file:///b', key_file: /k, archive: maybe}\n",
                  "backup.archive: expected true or false"},
        BadBackup{"backup: {store: 'file:///b', key_file: /k, retention: {count: 0}}\n",
                  "backup.retention.count: 0 is out of range"},
        BadBackup{"backup: {store: 'file:///b', key_file: /k, retention: {max_age: 3y}}\n",
                  "backup.retention.max_age: expected a duration"},
        BadBackup{"backup: {store: 'file:///b', key_file: /k, retention: {keep: 1}}\n",
                  "backup.retention.keep: unknown key"},
        BadBackup{"backup: {store: 'file:///b', key_file: /k, retired_key_files: /x}\n",
                  "backup.retired_key_files: expected a list"},
        BadBackup{"backup: {store: 'file:///b', key_file: /k, bucket: x}\n", "backup.bucket: unknown key"}));

TEST(Duration, ParsesUnits) {
  EXPECT_EQ(*parse_duration("90s", "k"), std::chrono::seconds(90));
  EXPECT_EQ(*parse_duration("15m", "k"), std::chrono::minutes(15));
  EXPECT_EQ(*parse_duration("24h", "k"), std::chrono::hours(24));
  EXPECT_EQ(*parse_duration("7d", "k"), std::chrono::hours(168));
  EXPECT_EQ(*parse_duration("2w", "k"), std::chrono::hours(336));
  EXPECT_EQ(*parse_duration("3600", "k"), std::chrono::seconds(3600));
  for (const char* bad : {"", "h", "-5s", "5 s", "5x", "1.5h", "99999999999999999d"}) {
    auto d = parse_duration(bad, "x.y");
    ASSERT_FALSE(d.ok()) << bad;
    EXPECT_NE(d.error().message.find("x.y"), std::string::npos);
  }
}

}  // namespace
}  // namespace tandem::config
