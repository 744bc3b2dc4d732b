#include "pg/conninfo.hpp"

#include <gtest/gtest.h>

#include "pg/conn.hpp"
#include "pg/passfile.hpp"

namespace tandem::pg {
namespace {

TEST(Conninfo, QuotesEveryValue) {
  EXPECT_EQ(quote_conninfo_value("plain"), "'plain'");
  EXPECT_EQ(quote_conninfo_value("a b"), "'a b'");
  EXPECT_EQ(quote_conninfo_value("it's"), R"('it\'s')");
  EXPECT_EQ(quote_conninfo_value(R"(c:\dir)"), R"('c:\\dir')");
  EXPECT_EQ(quote_conninfo_value(""), "''");
}

TEST(Conninfo, RendersInLibpqOrderAndSkipsEmptyValues) {
  ConnParams p;
  p.host = "10.0.0.7";
  p.port = 5433;
  p.user = "replicator";
  p.dbname = "";
  p.passfile = "/var/lib/tandem/pgpass";
  p.application_name = "node-2";
  p.connect_timeout_s = 3;
  EXPECT_EQ(render_conninfo(p),
            "host='10.0.0.7' port='5433' user='replicator' passfile='/var/lib/tandem/pgpass' "
            "application_name='node-2' connect_timeout='3' gssencmode='disable'");
}

TEST(Conninfo, StatementTimeoutTravelsAsAnOption) {
  ConnParams p;
  p.host = "/run/pg";
  p.user = "postgres";
  p.statement_timeout_ms = 1500;
  p.replication = true;
  EXPECT_EQ(render_conninfo(p),
            "host='/run/pg' port='5432' user='postgres' dbname='postgres' connect_timeout='5' "
            "options='-c statement_timeout=1500' replication='true' gssencmode='disable'");
}

TEST(Conninfo, LocalSuperuserUsesTheSocketDirectory) {
  Settings s;
  s.run_dir = "/tmp/x/run";
  s.port = 6543;
  s.superuser = "tandem_su";
  auto p = local_superuser(s, 2000);
  EXPECT_EQ(p.host, "/tmp/x/run");
  EXPECT_EQ(p.port, 6543);
  EXPECT_EQ(p.user, "tandem_su");
  EXPECT_TRUE(p.passfile.empty());
  EXPECT_EQ(p.statement_timeout_ms, 2000);
  EXPECT_EQ(s.socket_path(), "/tmp/x/run/.s.PGSQL.6543");
}

TEST(Passfile, EscapesSeparatorsAndBackslashes) {
  std::vector<PassEntry> entries;
  entries.push_back({"*", "*", "*", "replicator", Secret("pa:ss\\word")});
  entries.push_back({"10.0.0.1", "5432", "replication", "us:er", Secret("x")});
  EXPECT_EQ(render_pgpass(entries),
            "*:*:*:replicator:pa\\:ss\\\\word\n"
            "10.0.0.1:5432:replication:us\\:er:x\n");
}

TEST(Passfile, RejectsEntriesLibpqCannotRead) {
  std::vector<PassEntry> no_user{{"*", "*", "*", "", Secret("x")}};
  EXPECT_EQ(write_passfile("/nonexistent/pgpass", no_user, "").error().code, Errc::invalid_argument);
  std::vector<PassEntry> newline{{"*", "*", "*", "u", Secret("a\nb")}};
  auto st = write_passfile("/nonexistent/pgpass", newline, "");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, Errc::invalid_argument);
  EXPECT_EQ(st.error().message.find("a\nb"), std::string::npos) << "the error must not quote the password";
}

TEST(Sqlstate, MapsToErrorCodes) {
  EXPECT_EQ(errc_for_sqlstate("28P01"), Errc::permission_denied);
  EXPECT_EQ(errc_for_sqlstate("42501"), Errc::permission_denied);
  EXPECT_EQ(errc_for_sqlstate("57014"), Errc::timeout);
  EXPECT_EQ(errc_for_sqlstate("57P03"), Errc::unavailable);
  EXPECT_EQ(errc_for_sqlstate("08006"), Errc::unavailable);
  EXPECT_EQ(errc_for_sqlstate("55006"), Errc::conflict);
  EXPECT_EQ(errc_for_sqlstate("25006"), Errc::conflict);
  EXPECT_EQ(errc_for_sqlstate("42P01"), Errc::not_found);
  EXPECT_EQ(errc_for_sqlstate("42601"), Errc::invalid_argument);
  EXPECT_EQ(errc_for_sqlstate("XX000"), Errc::internal);
  EXPECT_EQ(errc_for_sqlstate(""), Errc::internal);
}

}  // namespace
}  // namespace tandem::pg
