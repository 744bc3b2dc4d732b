#include "pg/managed_config.hpp"

#include <gtest/gtest.h>

#include "pg/admin.hpp"
#include "pg/hba.hpp"

namespace tandem::pg {
namespace {

Settings settings() {
  Settings s;
  s.name = "node-2";
  s.data_dir = "/d";
  s.run_dir = "/run/node-2";
  s.listen_host = "127.0.0.1";
  s.port = 5433;
  return s;
}

bool contains(const std::string& text, const std::string& needle) {
  return text.find(needle) != std::string::npos;
}

TEST(TandemConf, PrimaryHasNoUpstreamAndKeepsSyncNames) {
  ManagedConfig cfg;
  cfg.synchronous_standby_names = render_sync_standby_names({"node-1"});
  cfg.parameters = {{"max_connections", "200"}, {"wal_keep_size", "1GB"}};
  auto conf = render_tandem_conf(settings(), cfg);
  ASSERT_TRUE(conf.ok()) << conf.error().to_string();
  EXPECT_TRUE(contains(*conf, "listen_addresses = '127.0.0.1'\n"));
  EXPECT_TRUE(contains(*conf, "port = '5433'\n"));
  EXPECT_TRUE(contains(*conf, "unix_socket_directories = '/run/node-2'\n"));
  EXPECT_TRUE(contains(*conf, "wal_level = 'replica'\n"));
  EXPECT_TRUE(contains(*conf, "hot_standby = 'on'\n"));
  EXPECT_TRUE(contains(*conf, "wal_log_hints = 'on'\n"));
  EXPECT_TRUE(contains(*conf, "hot_standby_feedback = 'on'\n"));
  EXPECT_TRUE(contains(*conf, "max_wal_senders = '10'\n"));
  EXPECT_TRUE(contains(*conf, "max_replication_slots = '10'\n"));
  EXPECT_TRUE(contains(*conf, "password_encryption = 'scram-sha-256'\n"));
  EXPECT_TRUE(contains(*conf, "primary_conninfo = ''\n"));
  EXPECT_TRUE(contains(*conf, "primary_slot_name = ''\n"));
  EXPECT_TRUE(contains(*conf, "recovery_target_timeline = 'latest'\n"));
  EXPECT_TRUE(contains(*conf, "synchronous_standby_names = 'FIRST 1 (\"node-1\")'\n"));
  EXPECT_TRUE(contains(*conf, "max_connections = '200'\n"));
  // The caller's value replaces our default, once.
  EXPECT_TRUE(contains(*conf, "wal_keep_size = '1GB'\n"));
  EXPECT_FALSE(contains(*conf, "256MB"));
}

TEST(TandemConf, StandbyStreamsFromItsUpstreamWithoutSyncNames) {
  ManagedConfig cfg;
  cfg.role = Role::standby;
  cfg.upstream = Upstream{"10.0.0.1", 5432, "replicator", "/etc/tandem/pgpass", "node_2", 4};
  cfg.synchronous_standby_names = "FIRST 1 (x)";  // meaningless on a standby: not written
  auto conf = render_tandem_conf(settings(), cfg);
  ASSERT_TRUE(conf.ok()) << conf.error().to_string();
  EXPECT_TRUE(contains(*conf,
                       "primary_conninfo = 'host=''10.0.0.1'' port=''5432'' user=''replicator'' "
                       "passfile=''/etc/tandem/pgpass'' application_name=''node-2'' connect_timeout=''4'' "
                       "gssencmode=''disable'''\n"))
      << *conf;
  EXPECT_TRUE(contains(*conf, "primary_slot_name = 'node_2'\n"));
  EXPECT_TRUE(contains(*conf, "synchronous_standby_names = ''\n"));
}

TEST(TandemConf, StandbyWithoutUpstreamWaits) {
  ManagedConfig cfg;
  cfg.role = Role::standby;
  auto conf = render_tandem_conf(settings(), cfg);
  ASSERT_TRUE(conf.ok());
  EXPECT_TRUE(contains(*conf, "primary_conninfo = ''\n"));
}

TEST(TandemConf, RejectsManagedAndMalformedParameters) {
  for (const char* key : {"port", "PRIMARY_CONNINFO", "synchronous_standby_names", "hba_file", "include"}) {
    ManagedConfig cfg;
    cfg.parameters = {{key, "x"}};
    auto conf = render_tandem_conf(settings(), cfg);
    ASSERT_FALSE(conf.ok()) << key;
    EXPECT_EQ(conf.error().code, Errc::invalid_argument);
    EXPECT_TRUE(contains(conf.error().message, key)) << conf.error().message;
  }
  ManagedConfig bad_name;
  bad_name.parameters = {{"work_mem = 1; x", "1"}};
  EXPECT_FALSE(render_tandem_conf(settings(), bad_name).ok());
  ManagedConfig newline;
  newline.parameters = {{"work_mem", "1MB\nport = 1"}};
  EXPECT_FALSE(render_tandem_conf(settings(), newline).ok());
  ManagedConfig minimal;
  minimal.parameters = {{"wal_level", "minimal"}};
  EXPECT_FALSE(render_tandem_conf(settings(), minimal).ok());
  ManagedConfig primary_with_upstream;
  primary_with_upstream.upstream = Upstream{};
  EXPECT_FALSE(render_tandem_conf(settings(), primary_with_upstream).ok());
}

TEST(TandemConf, QuotesValues) {
  EXPECT_EQ(quote_conf_value("simple"), "'simple'");
  EXPECT_EQ(quote_conf_value("it's"), "'it''s'");
  EXPECT_EQ(quote_conf_value("a\\b"), "'a\\\\b'");
  ManagedConfig cfg;
  cfg.parameters = {{"application_name", "o'brien"}};
  auto conf = render_tandem_conf(settings(), cfg);
  ASSERT_TRUE(conf.ok());
  EXPECT_TRUE(contains(*conf, "application_name = 'o''brien'\n"));
}

TEST(SyncNames, RendersPriorityAndQuorum) {
  EXPECT_EQ(render_sync_standby_names({}), "");
  EXPECT_EQ(render_sync_standby_names({"a"}, 0), "");
  EXPECT_EQ(render_sync_standby_names({"a", "b"}), R"(FIRST 1 ("a", "b"))");
  EXPECT_EQ(render_sync_standby_names({"a", "b"}, 5, true), R"(ANY 2 ("a", "b"))");
  EXPECT_EQ(render_sync_standby_names({"we\"ird"}), R"(FIRST 1 ("we""ird"))");
}

TEST(ConfFiles, IncludeLineIsAddedOnce) {
  std::string conf = "max_connections = 100\n";
  std::string once = with_include_line(conf);
  EXPECT_TRUE(contains(once, "\ninclude_if_exists = 'tandem.conf'\n"));
  EXPECT_EQ(with_include_line(once), once);
  EXPECT_TRUE(contains(with_include_line("port = 1"), "port = 1\n"));
}

TEST(ConfFiles, AutoConfLosesOnlyManagedKeys) {
  std::string auto_conf =
      "# Do not edit this file manually!\n"
      "primary_conninfo = 'host=old'\n"
      "  Synchronous_Standby_Names='x'\n"
      "work_mem = '64MB'\n"
      "port=1\n";
  EXPECT_EQ(without_managed_keys(auto_conf), "# Do not edit this file manually!\nwork_mem = '64MB'\n");
}

TEST(Hba, SocketPeerWithMapAndScramOverTcp) {
  HbaSpec spec{"postgres", "postgres", {"10.1.0.0/16", "fd00::/64"}};
  auto hba = render_pg_hba(spec);
  ASSERT_TRUE(hba.ok()) << hba.error().to_string();
  EXPECT_TRUE(contains(*hba, "local   all          \"postgres\"                      peer map=tandem\n")) << *hba;
  EXPECT_TRUE(contains(*hba, "local   replication  \"postgres\"                      peer map=tandem\n"));
  EXPECT_TRUE(contains(*hba, "host    all          all          127.0.0.1/32       scram-sha-256\n"));
  EXPECT_TRUE(contains(*hba, "host    replication  all          127.0.0.1/32       scram-sha-256\n"));
  EXPECT_TRUE(contains(*hba, "host    all          all          ::1/128            scram-sha-256\n"));
  EXPECT_TRUE(contains(*hba, "host    replication  all          10.1.0.0/16        scram-sha-256\n"));
  EXPECT_TRUE(contains(*hba, "host    all          all          fd00::/64          scram-sha-256\n"));
  EXPECT_FALSE(contains(*hba, "trust"));
  EXPECT_FALSE(contains(*hba, " md5"));
  // The map line comes before the generic peer line, which would otherwise match first.
  EXPECT_LT(hba->find("peer map=tandem"), hba->find("all          all                           peer"));

  auto ident = render_pg_ident(HbaSpec{"dbadmin", "postgres", {}});
  ASSERT_TRUE(ident.ok());
  EXPECT_TRUE(contains(*ident, "tandem   root             \"dbadmin\"\n")) << *ident;
  EXPECT_TRUE(contains(*ident, "tandem   postgres         \"dbadmin\"\n"));
}

TEST(Hba, RejectsBadNamesAndNetworks) {
  EXPECT_FALSE(render_pg_hba(HbaSpec{"post gres", "postgres", {}}).ok());
  EXPECT_FALSE(render_pg_hba(HbaSpec{"postgres", "postgres", {"10.0.0.0"}}).ok());
  EXPECT_FALSE(render_pg_hba(HbaSpec{"postgres", "postgres", {"10.0.0.0/33"}}).ok());
  EXPECT_FALSE(render_pg_hba(HbaSpec{"postgres", "postgres", {"all"}}).ok());
  EXPECT_FALSE(render_pg_ident(HbaSpec{"a\"b", "postgres", {}}).ok());
  EXPECT_TRUE(valid_cidr("0.0.0.0/0"));
  EXPECT_TRUE(valid_cidr("::/0"));
  EXPECT_FALSE(valid_cidr("::/129"));
  EXPECT_FALSE(valid_cidr("1.2.3.4/"));
  EXPECT_TRUE(valid_role_name("replicator"));
  EXPECT_FALSE(valid_role_name("1abc"));
  EXPECT_FALSE(valid_role_name(std::string(64, 'a')));
}

TEST(Slots, NamesDeriveFromMembers) {
  EXPECT_EQ(slot_name_for("Node-2.dc1"), "node_2_dc1");
  EXPECT_EQ(slot_name_for(std::string(80, 'a')).size(), 63u);
  EXPECT_TRUE(valid_slot_name("node_2"));
  EXPECT_FALSE(valid_slot_name("node-2"));
  EXPECT_FALSE(valid_slot_name(""));
}

}  // namespace
}  // namespace tandem::pg
