// The `bootstrap_from_backup:` section: a new cluster restores another deployment's backup.
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
backup: {store: "file:///new/backups", key_file: /new/secrets/backup.key}
)";

Result<AgentConfig> parse_with(const std::string& section) {
  return parse_agent_config(kBase + section);
}

TEST(RestoreSourceConfig, AbsentMeansInitdb) {
  auto c = parse_agent_config(kBase);
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_FALSE(c->bootstrap_from_backup.enabled());
}

TEST(RestoreSourceConfig, ParsesEveryKey) {
  auto c = parse_with(R"(
bootstrap_from_backup:
  store: "file:///old/backups"
  key_file: /new/secrets/source-backup.key
  retired_key_files: [/new/secrets/source-backup-retired-1.key]
  credentials_file: /new/secrets/s3.ini
  backup_id: "20261128T120000Z"
  to_time: "2026-11-28 13:05:00.5+00"
)");
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  const auto& s = c->bootstrap_from_backup;
  EXPECT_TRUE(s.enabled());
  EXPECT_EQ(s.store, "file:///old/backups");
  EXPECT_EQ(s.key_file, "/new/secrets/source-backup.key");
  EXPECT_EQ(s.retired_key_files, std::vector<std::string>{"/new/secrets/source-backup-retired-1.key"});
  EXPECT_EQ(s.credentials_file, "/new/secrets/s3.ini");
  EXPECT_EQ(s.backup_id, "20261128T120000Z");
  EXPECT_EQ(s.to_time, "2026-11-28 13:05:00.5+00");
  EXPECT_TRUE(s.to_lsn.empty());
}

TEST(RestoreSourceConfig, ErrorsNameTheKey) {
  struct Case {
    const char* yaml;
    const char* error_part;
  };
  for (const Case& c : {
           Case{"bootstrap_from_backup: {key_file: /k}", "bootstrap_from_backup.store: required"},
           Case{"bootstrap_from_backup: {store: /old, key_file: /k}", "expected file:///"},
           Case{"bootstrap_from_backup: {store: \"file:///old\"}", "bootstrap_from_backup.key_file: required"},
           Case{"bootstrap_from_backup: {store: \"file:///old\", key_file: rel.key}", "absolute path"},
           Case{"bootstrap_from_backup: {store: \"file:///old\", key_file: /k, to: latest}",
                "bootstrap_from_backup.to: unknown key"},
           Case{"bootstrap_from_backup: {store: \"file:///old\", key_file: /k, to_time: x, to_lsn: 0/1}", "not both"},
           Case{"bootstrap_from_backup: {store: \"file:///new/backups\", key_file: /k}",
                "must differ from backup.store"},
       }) {
    auto r = parse_with(c.yaml);
    ASSERT_FALSE(r.ok()) << c.yaml;
    EXPECT_NE(r.error().message.find(c.error_part), std::string::npos) << c.yaml << " -> " << r.error().message;
  }
}

}  // namespace
}  // namespace tandem::config
