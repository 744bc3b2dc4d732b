// The portals of a real `tandem up` deployment (etcd, agents, PostgreSQL 15, two portals):
// TLS as clients see it (psql/libpq with sslmode=verify-full, openssl s_client), routing to
// the leader and the read-only follower, query cancel, and what clients see when the
// leader crashes, during a switchover and when one portal dies.
#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "api/http_client.hpp"
#include "portal/pki/deployment_pki.hpp"
#include "testkit/deployment.hpp"
#include "testkit/testkit.hpp"

namespace tandem {
namespace {

using namespace std::chrono_literals;
using testkit::wait_until;

const std::string kPgBin = "/usr/lib/postgresql/15/bin/";

class PortalDeploymentTest : public ::testing::Test {
 protected:
  // ctest runs each test in its own process, so every test gets a fresh deployment with the
  // table the write tests use.
  static void SetUpTestSuite() {
    d_ = new testkit::Deployment();
    const std::string l = d_->wait_leader(60s);
    if (!l.empty()) (void)d_->exec(l, "CREATE TABLE IF NOT EXISTS portal_t(k int)");
  }
  static void TearDownTestSuite() {
    delete d_;
    d_ = nullptr;
  }

  static testkit::Deployment& d() { return *d_; }

  // libpq keyword/value string through portal k (read-write unless `ro`).
  static std::string conninfo(int k, const std::string& extra = "", bool ro = false) {
    return fmt::format(
        "host=localhost port={} user=admin dbname=postgres sslmode=verify-full sslrootcert={} passfile={} "
        "connect_timeout=10 {}",
        ro ? d().portal_ro_port(k) : d().portal_port(k), d().ca_cert(), d().pgpass(), extra);
  }

  static RunResult psql(const std::string& conn, const std::vector<std::string>& commands) {
    std::vector<std::string> argv = {kPgBin + "psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", conn};
    for (const auto& c : commands) {
      argv.push_back("-c");
      argv.push_back(c);
    }
    auto r = run({.argv = argv, .env = {{"PGPASSFILE", d().pgpass()}}}, 60s);
    EXPECT_TRUE(r.ok());
    return r.ok() ? *r : RunResult{};
  }

  static RunResult openssl(std::vector<std::string> args, const std::string& stdin_data = {}) {
    args.insert(args.begin(), {"/usr/bin/openssl", "s_client"});
    auto r = run({.argv = args, .stdin_data = stdin_data}, 30s);
    EXPECT_TRUE(r.ok());
    return r.ok() ? *r : RunResult{};
  }

  // One value from a fresh libpq connection through portal k.
  static std::optional<std::string> query(int k, const std::string& sql, bool ro = false) {
    PGconn* c = PQconnectdb(conninfo(k, "", ro).c_str());
    std::optional<std::string> out;
    if (PQstatus(c) == CONNECTION_OK) {
      PGresult* r = PQexec(c, sql.c_str());
      if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) out = PQgetvalue(r, 0, 0);
      PQclear(r);
    }
    PQfinish(c);
    return out;
  }

  static std::string leader() { return d().wait_leader(60s); }

  static std::string metrics(int k) {
    auto r = api::http_get(fmt::format("http://127.0.0.1:{}/metrics", d().portal_http_port(k)), 5s);
    return r.ok() ? r->body : std::string();
  }

  static inline testkit::Deployment* d_ = nullptr;
};

TEST_F(PortalDeploymentTest, DeploymentJsonListsPortalsAndTheCa) {
  std::ifstream in(d().dir() + "/deployment.json");
  const auto j = nlohmann::json::parse(in);
  ASSERT_EQ(j.at("portals").size(), 2u);
  EXPECT_EQ(j["portals"][0]["port"].get<int>(), d().portal_port(1));
  EXPECT_EQ(j["portals"][1]["ro_port"].get<int>(), d().portal_ro_port(2));
  EXPECT_EQ(j["portals"][0]["http_url"].get<std::string>(),
            fmt::format("http://127.0.0.1:{}", d().portal_http_port(1)));
  EXPECT_EQ(j.at("ca_cert").get<std::string>(), d().ca_cert());
  const auto uri = j.at("connection_uri").get<std::string>();
  EXPECT_NE(uri.find(fmt::format("127.0.0.1:{},127.0.0.1:{}", d().portal_port(1), d().portal_port(2))),
            std::string::npos)
      << uri;
  EXPECT_NE(uri.find("sslmode=verify-full"), std::string::npos) << uri;
  EXPECT_NE(j.at("direct_uri").get<std::string>().find(std::to_string(d().pg_port("pg1"))), std::string::npos);
  // The URI as printed works with psql.
  const auto r = psql(uri, {"select pg_is_in_recovery()"});
  ASSERT_TRUE(r.status.ok()) << r.output;
  EXPECT_EQ(r.output, "f\n");
}

TEST_F(PortalDeploymentTest, PsqlAndLibpqThroughEachPortalReachTheLeader) {
  const std::string l = leader();
  ASSERT_FALSE(l.empty());
  for (int k : d().portals()) {
    const auto r = psql(conninfo(k), {"select inet_server_port()", "\\conninfo"});
    ASSERT_TRUE(r.status.ok()) << r.output;
    EXPECT_EQ(r.output.substr(0, r.output.find('\n')), std::to_string(d().pg_port(l))) << r.output;
    EXPECT_NE(r.output.find("SSL connection (protocol: TLSv1.3"), std::string::npos) << r.output;

    PGconn* c = PQconnectdb(conninfo(k).c_str());
    ASSERT_EQ(PQstatus(c), CONNECTION_OK) << PQerrorMessage(c);
    EXPECT_EQ(PQsslInUse(c), 1);
    PGresult* res = PQexec(c, "CREATE TABLE IF NOT EXISTS portal_t(k int); INSERT INTO portal_t VALUES (1)");
    EXPECT_EQ(PQresultStatus(res), PGRES_COMMAND_OK) << PQresultErrorMessage(res);
    PQclear(res);
    PQfinish(c);
  }
}

TEST_F(PortalDeploymentTest, HealthAndMetrics) {
  for (int k : d().portals()) {
    auto h = api::http_get(fmt::format("http://127.0.0.1:{}/health", d().portal_http_port(k)), 5s);
    ASSERT_TRUE(h.ok());
    EXPECT_EQ(h->status, 200) << h->body;
    EXPECT_NE(h->body.find("\"member\""), std::string::npos) << h->body;
  }
  ASSERT_TRUE(query(1, "select 1"));
  const auto m = metrics(1);
  EXPECT_NE(m.find("tandem_portal_sessions_routed_total{cluster=\"tandem\",portal=\"portal1\",listener=\"rw\"}"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("tandem_portal_routing_mode{cluster=\"tandem\",portal=\"portal1\",mode=\"etcd\"} 1"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("tandem_portal_bytes_total"), std::string::npos);
  EXPECT_NE(m.find("tandem_portal_tls_handshake_failures_total"), std::string::npos);
}

TEST_F(PortalDeploymentTest, OpensslStarttlsShowsTls13AndRefusesTls11) {
  for (int k : d().portals()) {
    const auto ok =
        openssl({"-starttls", "postgres", "-connect", fmt::format("127.0.0.1:{}", d().portal_port(k)), "-CAfile",
                 d().ca_cert(), "-verify_hostname", "localhost", "-verify_return_error", "-brief"});
    EXPECT_NE(ok.output.find("Protocol version: TLSv1.3"), std::string::npos) << ok.output;
    EXPECT_NE(ok.output.find("Verification: OK"), std::string::npos) << ok.output;
    // SECLEVEL=0 lets the client really offer TLS 1.1, so the refusal is the portal's.
    const auto old = openssl({"-starttls", "postgres", "-connect", fmt::format("127.0.0.1:{}", d().portal_port(k)),
                              "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", "-CAfile", d().ca_cert(), "-brief"});
    EXPECT_FALSE(old.status.ok()) << old.output;
    EXPECT_NE(old.output.find("alert protocol version"), std::string::npos) << old.output;
  }
}

TEST_F(PortalDeploymentTest, PlaintextClientGetsSqlstate28000) {
  // A raw StartupMessage without TLS; the answer is an ErrorResponse with C=28000.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(d().portal_port(1)));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  std::string body = std::string("\x00\x03\x00\x00", 4) + "user" + '\0' + "admin" + '\0' + "database" + '\0' +
                     "postgres" + '\0' + '\0';
  const uint32_t len = htonl(static_cast<uint32_t>(body.size() + 4));
  std::string packet(reinterpret_cast<const char*>(&len), 4);
  packet += body;
  ASSERT_EQ(write(fd, packet.data(), packet.size()), static_cast<ssize_t>(packet.size()));
  std::string reply;
  char buf[1024];
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) reply.append(buf, static_cast<size_t>(n));
  close(fd);
  ASSERT_FALSE(reply.empty());
  EXPECT_EQ(reply[0], 'E');
  EXPECT_NE(reply.find(std::string("C28000") + '\0'), std::string::npos);
  EXPECT_NE(reply.find("TLS is required"), std::string::npos) << reply;
  // psql says so too.
  const auto r = psql(conninfo(2, "sslmode=disable"), {"select 1"});
  EXPECT_FALSE(r.status.ok());
  EXPECT_NE(r.output.find("TLS is required"), std::string::npos) << r.output;
}

TEST_F(PortalDeploymentTest, WrongHostNameFailsVerification) {
  const auto r = psql(fmt::format("host=wrong.example hostaddr=127.0.0.1 port={} user=admin dbname=postgres "
                                  "sslmode=verify-full sslrootcert={}",
                                  d().portal_port(1), d().ca_cert()),
                      {"select 1"});
  EXPECT_FALSE(r.status.ok());
  EXPECT_NE(r.output.find("does not match host name \"wrong.example\""), std::string::npos) << r.output;
  // The address itself is in the certificate.
  const auto ip = psql(fmt::format("host=127.0.0.1 port={} user=admin dbname=postgres sslmode=verify-full "
                                   "sslrootcert={}",
                                   d().portal_port(1), d().ca_cert()),
                       {"select 1"});
  EXPECT_TRUE(ip.status.ok()) << ip.output;
}

TEST_F(PortalDeploymentTest, DirectTlsNeedsAlpn) {
  // PostgreSQL 17's direct TLS: the handshake first, ALPN "postgresql", then a plain
  // StartupMessage inside TLS; the leader answers with its SCRAM authentication request.
  std::string body = std::string("\x00\x03\x00\x00", 4) + "user" + '\0' + "admin" + '\0' + "database" + '\0' +
                     "postgres" + '\0' + '\0';
  const uint32_t len = htonl(static_cast<uint32_t>(body.size() + 4));
  const std::string startup = std::string(reinterpret_cast<const char*>(&len), 4) + body;
  // The leader then waits for the client's SCRAM message: `timeout` ends s_client.
  const auto with = run({.argv = {"/usr/bin/timeout", "5", "/usr/bin/openssl", "s_client", "-connect",
                                  fmt::format("127.0.0.1:{}", d().portal_port(1)), "-alpn", "postgresql", "-CAfile",
                                  d().ca_cert(), "-verify_hostname", "localhost", "-ign_eof"},
                         .stdin_data = startup},
                        30s)
                        .value_or(RunResult{});
  EXPECT_NE(with.output.find("ALPN protocol: postgresql"), std::string::npos) << with.output;
  EXPECT_NE(with.output.find("Verify return code: 0 (ok)"), std::string::npos) << with.output;
  EXPECT_NE(with.output.find("SCRAM-SHA-256"), std::string::npos) << with.output;
  const auto without = openssl(
      {"-connect", fmt::format("127.0.0.1:{}", d().portal_port(1)), "-CAfile", d().ca_cert(), "-brief", "-ign_eof"},
      startup);
  EXPECT_NE(without.output.find("without ALPN"), std::string::npos) << without.output;
  EXPECT_EQ(without.output.find("SCRAM-SHA-256"), std::string::npos) << without.output;
}

TEST_F(PortalDeploymentTest, ReadOnlyPortLandsOnTheFollower) {
  ASSERT_TRUE(d().wait_streaming(d().other(leader()), 60s));
  for (int k : d().portals()) {
    std::optional<std::string> v;
    // The follower's lag is judged from published positions; give it a moment to settle.
    EXPECT_TRUE(wait_until(
        [&] {
          v = query(k, "select pg_is_in_recovery()", true);
          return v == "t";
        },
        20s, 200ms))
        << (v ? *v : "no answer");
  }
}

TEST_F(PortalDeploymentTest, QueryCancelThroughThePortal) {
  PGconn* conn = PQconnectdb(conninfo(2).c_str());
  ASSERT_EQ(PQstatus(conn), CONNECTION_OK) << PQerrorMessage(conn);
  ASSERT_EQ(PQsendQuery(conn, "select pg_sleep(60)"), 1);
  const std::string l = leader();
  ASSERT_TRUE(wait_until(
      [&] {
        auto r = d().exec(l, "select count(*) from pg_stat_activity where query = 'select pg_sleep(60)'");
        return r && !r->rows.empty() && r->rows[0][0] == "1";
      },
      20s, 100ms));
  const auto t0 = std::chrono::steady_clock::now();
  PGcancel* cancel = PQgetCancel(conn);
  char err[256] = {};
  ASSERT_EQ(PQcancel(cancel, err, sizeof err), 1) << err;
  PQfreeCancel(cancel);
  PGresult* res = PQgetResult(conn);
  ASSERT_NE(res, nullptr);
  const char* sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
  EXPECT_STREQ(sqlstate != nullptr ? sqlstate : "", "57014") << PQresultErrorMessage(res);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
  PQclear(res);
  while ((res = PQgetResult(conn)) != nullptr) PQclear(res);
  PQfinish(conn);
}

TEST_F(PortalDeploymentTest, SighupReloadsTheCertificateWithoutDroppingSessions) {
  PGconn* kept = PQconnectdb(conninfo(1).c_str());
  ASSERT_EQ(PQstatus(kept), CONNECTION_OK) << PQerrorMessage(kept);
  // Reissue the server certificate with one more name, as a renewal would.
  portal::pki::EnsurePkiRequest req;
  req.dir = d().dir() + "/pki";
  req.server.dns_names = {"localhost", "renewed.tandem.test"};
  req.server.ip_addresses = {"127.0.0.1", "::1"};
  req.server.now = std::chrono::system_clock::now();
  req.ca.now = req.server.now;
  auto out = portal::pki::ensure_deployment_pki(req);
  ASSERT_TRUE(out.ok()) << out.error().message;
  EXPECT_EQ(out->action, portal::pki::PkiAction::reissued_names);
  const auto check_name = [&] {
    return openssl({"-starttls", "postgres", "-connect", fmt::format("127.0.0.1:{}", d().portal_port(1)), "-CAfile",
                    d().ca_cert(), "-verify_hostname", "renewed.tandem.test", "-verify_return_error", "-brief"});
  };
  EXPECT_EQ(check_name().output.find("Verification: OK"), std::string::npos);
  ASSERT_EQ(kill(d().portal_pid(1), SIGHUP), 0);
  EXPECT_TRUE(wait_until([&] { return check_name().output.find("Verification: OK") != std::string::npos; }, 10s));
  EXPECT_NE(metrics(1).find("tandem_portal_tls_context_generation{cluster=\"tandem\",portal=\"portal1\"} 2"),
            std::string::npos);
  // The session that started with the old certificate goes on.
  PGresult* r = PQexec(kept, "select 7");
  EXPECT_EQ(PQresultStatus(r), PGRES_TUPLES_OK) << PQresultErrorMessage(r);
  PQclear(r);
  PQfinish(kept);
  EXPECT_TRUE(query(1, "select 1"));
}

// Connects through portal 1 in a loop while a switchover runs: every connection is held
// and then lands on a member that accepts writes; none fails and none reaches a read-only
// member.
TEST_F(PortalDeploymentTest, SwitchoverHoldsNewConnectionsAndNeverRoutesToReadOnly) {
  const std::string old_leader = leader();
  ASSERT_FALSE(old_leader.empty());
  const std::string candidate = d().other(old_leader);
  ASSERT_TRUE(d().wait_sync_standby(candidate, 60s));
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, connect_failed{0}, read_only{0}, cut_off{0};
  std::string first_error;
  std::mutex mu;
  std::thread client([&] {
    while (!stop.load()) {
      PGconn* c = PQconnectdb(conninfo(1, "connect_timeout=40").c_str());
      if (PQstatus(c) != CONNECTION_OK) {
        ++connect_failed;
        std::lock_guard lock(mu);
        if (first_error.empty()) first_error = PQerrorMessage(c);
      } else {
        PGresult* r = PQexec(c, "INSERT INTO portal_t VALUES (2)");
        const char* st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        if (PQresultStatus(r) == PGRES_COMMAND_OK) {
          ++ok;
        } else if (st != nullptr && std::string(st) == "25006") {
          ++read_only;
        } else {
          ++cut_off;  // the old leader shut down under an established session
          std::lock_guard lock(mu);
          if (first_error.empty()) first_error = PQresultErrorMessage(r);
        }
        PQclear(r);
      }
      PQfinish(c);
      std::this_thread::sleep_for(20ms);
    }
  });
  std::this_thread::sleep_for(500ms);
  auto r = d().tandem({"ctl", "switchover", "--candidate", candidate});
  EXPECT_TRUE(r.ok() && r->status.ok()) << (r.ok() ? r->output : r.error().message);
  EXPECT_EQ(d().wait_leader(60s, old_leader), candidate);
  // Keep connecting a little after the change.
  const int before = ok.load();
  EXPECT_TRUE(wait_until([&] { return ok.load() > before + 5; }, 30s));
  stop = true;
  client.join();
  EXPECT_EQ(read_only.load(), 0);
  // Connections that started before the switchover began may be cut when the old leader
  // shuts down; connections that arrive during it are held, so failures stay rare.
  EXPECT_LE(connect_failed.load() + cut_off.load(), 2) << first_error;
  EXPECT_GT(ok.load(), 10);
  const auto m = metrics(1);
  EXPECT_EQ(m.find("tandem_portal_held_total{cluster=\"tandem\",portal=\"portal1\",listener=\"rw\"} 0"),
            std::string::npos)
      << "no session was held during the switchover:\n"
      << m;
  EXPECT_EQ(query(1, "select inet_server_port()"), std::to_string(d().pg_port(candidate)));
}

TEST_F(PortalDeploymentTest, LeaderCrashClosesOldSessionsAndNewOnesReachTheNewLeader) {
  const std::string old_leader = leader();
  ASSERT_FALSE(old_leader.empty());
  const std::string next = d().other(old_leader);
  ASSERT_TRUE(d().wait_sync_standby(next, 60s));
  PGconn* old_session = PQconnectdb(conninfo(1).c_str());
  ASSERT_EQ(PQstatus(old_session), CONNECTION_OK) << PQerrorMessage(old_session);

  d().kill9(d().agent_pid(old_leader));
  d().kill9(d().postmaster_pid(old_leader));
  ASSERT_EQ(d().wait_leader(60s, old_leader), next);
  // The orphaned backend of the dead postmaster may still answer, but once the leader
  // changed the portal has closed the session: it fails at once instead of hanging or
  // writing to the old server.
  const auto t0 = std::chrono::steady_clock::now();
  PGresult* res = PQexec(old_session, "select 1");
  EXPECT_NE(PQresultStatus(res), PGRES_TUPLES_OK);
  PQclear(res);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  PQfinish(old_session);

  // New connections are held until the new leader accepts writes, then land there.
  for (int k : d().portals()) {
    std::optional<std::string> port;
    EXPECT_TRUE(wait_until(
        [&] {
          port = query(k, "select inet_server_port()");
          return port == std::to_string(d().pg_port(next));
        },
        30s, 200ms))
        << (port ? *port : "no answer");
    PGconn* c = PQconnectdb(conninfo(k).c_str());
    PGresult* w = PQexec(c, "INSERT INTO portal_t VALUES (3)");
    EXPECT_EQ(PQresultStatus(w), PGRES_COMMAND_OK) << PQresultErrorMessage(w);
    PQclear(w);
    PQfinish(c);
  }
  // Bring the old leader back as a follower for the tests that follow.
  EXPECT_TRUE(d().up());
  EXPECT_TRUE(d().wait_streaming(old_leader, 120s));
}

TEST_F(PortalDeploymentTest, OnePortalDownClientWithBothHostsStillConnects) {
  const pid_t p1 = d().portal_pid(1);
  const pid_t p2 = d().portal_pid(2);
  ASSERT_GT(p1, 0);
  d().kill9(p1);
  ASSERT_TRUE(wait_until([&] { return !process_alive(p1); }, 10s));
  std::ifstream in(d().dir() + "/deployment.json");
  const auto uri = nlohmann::json::parse(in).at("connection_uri").get<std::string>();
  const auto r = psql(uri, {"select pg_is_in_recovery()"});
  ASSERT_TRUE(r.status.ok()) << r.output;
  EXPECT_EQ(r.output, "f\n");
  // `tandem up` starts only the missing portal.
  ASSERT_TRUE(d().up());
  EXPECT_EQ(d().portal_pid(2), p2);
  EXPECT_NE(d().portal_pid(1), p1);
  EXPECT_TRUE(process_alive(d().portal_pid(1)));
  EXPECT_TRUE(query(1, "select 1"));
}

}  // namespace
}  // namespace tandem
