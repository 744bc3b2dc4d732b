// WAL archive settings in tandem.conf and the archiver lag computed from pg_stat_archiver.
#include <gtest/gtest.h>

#include "pg/archiver.hpp"
#include "pg/managed_config.hpp"

namespace tandem::pg {
namespace {

Settings settings() {
  Settings s;
  s.name = "m1";
  s.data_dir = "/d";
  s.run_dir = "/run/m1";
  s.listen_host = "127.0.0.1";
  s.port = 5433;
  return s;
}

bool contains(const std::string& text, const std::string& needle) {
  return text.find(needle) != std::string::npos;
}

TEST(ArchiveSettings, OffWithoutACommand) {
  auto conf = render_tandem_conf(settings(), ManagedConfig{});
  ASSERT_TRUE(conf.ok());
  EXPECT_TRUE(contains(*conf, "archive_mode = 'off'\n"));
  EXPECT_TRUE(contains(*conf, "archive_command = ''\n"));
  EXPECT_TRUE(contains(*conf, "restore_command = ''\n"));
}

TEST(ArchiveSettings, PrimaryArchivesStandbyAlsoRestores) {
  ManagedConfig cfg;
  cfg.archive_command = "'/bin/tandem' wal-push --config '/c/pg1.yaml' %p";
  cfg.restore_command = "'/bin/tandem' wal-fetch --config '/c/pg1.yaml' --standby %f %p";
  auto primary = render_tandem_conf(settings(), cfg);
  ASSERT_TRUE(primary.ok());
  EXPECT_TRUE(contains(*primary, "archive_mode = 'on'\n"));
  EXPECT_TRUE(contains(*primary, "archive_command = '''/bin/tandem'' wal-push --config ''/c/pg1.yaml'' %p'\n"));
  EXPECT_TRUE(contains(*primary, "restore_command = ''\n"));
  cfg.role = Role::standby;
  auto standby = render_tandem_conf(settings(), cfg);
  ASSERT_TRUE(standby.ok());
  EXPECT_TRUE(contains(*standby, "archive_mode = 'on'\n"));
  EXPECT_TRUE(contains(*standby, "restore_command = '''/bin/tandem'' wal-fetch"));
}

TEST(ArchiveSettings, ArchiveModuleReplacesTheCommandWhichBecomesItsFallback) {
  ManagedConfig cfg;
  cfg.archive_command = "'/bin/tandem' wal-push --config '/c/pg1.yaml' %p";
  cfg.archive_library = "/bin/tandem_archive.so";
  cfg.archive_socket = "/run/m1/wal-archiver.sock";
  cfg.archive_fallback_command = cfg.archive_command;
  auto conf = render_tandem_conf(settings(), cfg);
  ASSERT_TRUE(conf.ok());
  EXPECT_TRUE(contains(*conf, "archive_mode = 'on'\n"));
  EXPECT_TRUE(contains(*conf, "archive_command = ''\n"));  // PostgreSQL 16 refuses both
  EXPECT_TRUE(contains(*conf, "archive_library = '/bin/tandem_archive.so'\n"));
  EXPECT_TRUE(contains(*conf, "tandem_archive.socket = '/run/m1/wal-archiver.sock'\n"));
  EXPECT_TRUE(
      contains(*conf, "tandem_archive.fallback_command = '''/bin/tandem'' wal-push --config ''/c/pg1.yaml'' %p'\n"));
  // Without the module: the command, an empty library, no module settings.
  cfg.archive_library.clear();
  conf = render_tandem_conf(settings(), cfg);
  ASSERT_TRUE(conf.ok());
  EXPECT_TRUE(contains(*conf, "archive_command = '''/bin/tandem''"));
  EXPECT_TRUE(contains(*conf, "archive_library = ''\n"));
  EXPECT_FALSE(contains(*conf, "tandem_archive."));
}

TEST(ArchiveSettings, AreManaged) {
  for (const char* k : {"archive_mode", "archive_command", "restore_command", "archive_library",
                        "tandem_archive.socket", "tandem_archive.fallback_command", "TANDEM_ARCHIVE.TIMEOUT"}) {
    ManagedConfig cfg;
    cfg.parameters = {{k, "x"}};
    EXPECT_FALSE(render_tandem_conf(settings(), cfg).ok()) << k;
    EXPECT_EQ(without_managed_keys(std::string(k) + " = 'x'\nwork_mem = '1MB'\n"), "work_mem = '1MB'\n");
  }
}

TEST(ArchiverStatus, LagInSegments) {
  ArchiverStatus st;
  st.current_wal = "000000010000000100000002";
  st.last_archived_wal = "0000000100000000000000FE";
  EXPECT_EQ(st.lag_segments(), 3);  // FF, 1/00, 1/01 are complete and not archived
  st.last_archived_wal = "000000010000000100000001";
  EXPECT_EQ(st.lag_segments(), 0);
  st.last_archived_wal = "00000001000000010000000A";  // archive ahead (just switched): no lag
  EXPECT_EQ(st.lag_segments(), 0);
  st.last_archived_wal = "00000002.history";
  EXPECT_FALSE(st.lag_segments().has_value());
  st.last_archived_wal = "000000000000000100000001";
  EXPECT_FALSE(st.lag_segments().has_value());  // another timeline
  st.current_wal = "";
  EXPECT_FALSE(st.lag_segments().has_value());  // a standby
}

}  // namespace
}  // namespace tandem::pg
