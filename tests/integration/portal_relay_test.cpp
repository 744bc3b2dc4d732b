// The portal relay in front of a real PostgreSQL 15, used by real clients: psql and libpq
// with sslmode=verify-full, openssl s_client (STARTTLS postgres, TLS 1.1, direct TLS with
// and without ALPN), a cancel through the portal, a route change, TLS to the member, and
// a flood of malformed packets after which the portal is back to its baseline.
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include <gtest/gtest.h>
#include <libpq-fe.h>

#include "base/process.hpp"
#include "portal/pki/certificates.hpp"
#include "portal/pki/pem_files.hpp"
#include "portal/relay/relay_server.hpp"
#include "portal/relay/route.hpp"
#include "portal/tls/client_context.hpp"
#include "portal/wire/startup.hpp"
#include "testkit/testkit.hpp"

namespace tandem::portal {
namespace {

using namespace std::chrono_literals;
const std::string kPgBin = "/usr/lib/postgresql/15/bin/";

// One PostgreSQL 15 server for the whole file, with ssl=on (certificate from the test CA),
// scram-sha-256 on TCP, and a pgpass file for the superuser.
class PortalRelayTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testkit::TempDir("tandem-portal-it");
    const auto now = std::chrono::system_clock::now();
    auto ca = pki::create_ca({.now = now});
    ASSERT_TRUE(ca.ok());
    ASSERT_TRUE(pki::write_cert_pem(ca->cert.get(), ca_file()).ok());
    auto portal_cert =
        pki::issue_server_cert(*ca, {.dns_names = {"localhost"}, .ip_addresses = {"127.0.0.1"}, .now = now});
    ASSERT_TRUE(portal_cert.ok());
    ASSERT_TRUE(pki::write_certified_key(*portal_cert, path("portal.crt"), path("portal.key")).ok());

    // PostgreSQL: data directory, socket directory, password file, and a certificate of
    // its own (different from the portal's) issued by the same CA.
    for (const char* d : {"data", "run"}) {
      std::filesystem::create_directories(path(d));
      std::filesystem::permissions(path(d), std::filesystem::perms::owner_all);
    }
    auto member_cert =
        pki::issue_server_cert(*ca, {.dns_names = {"localhost"}, .ip_addresses = {"127.0.0.1"}, .now = now});
    ASSERT_TRUE(member_cert.ok());
    ASSERT_TRUE(pki::write_certified_key(*member_cert, path("member.crt"), path("member.key")).ok());
    write_private(path("pwfile"), password_ + "\n");
    write_private(path("pgpass"), "*:*:*:postgres:" + password_ + "\n");
    for (const char* p : {"data", "run", "pwfile"}) ASSERT_TRUE(chown_recursive(path(p), "postgres").ok());
    setenv("PGPASSFILE", path("pgpass").c_str(), 1);
    setenv("PGCONNECT_TIMEOUT", "10", 1);

    auto init = run({.argv = {kPgBin + "initdb", "-D", path("data"), "-U", "postgres", "--pwfile", path("pwfile"),
                              "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync"},
                     .run_as_user = "postgres",
                     .cwd = dir_->path()},
                    120s);
    ASSERT_TRUE(init.ok() && init->status.ok()) << (init.ok() ? init->output : init.error().to_string());

    install_member_certificate("member");  // data/server.crt and server.key, the defaults
    pg_port_ = testkit::free_port();
    auto pid = spawn({.argv = {kPgBin + "postgres", "-D", path("data"), "-p", std::to_string(pg_port_), "-k",
                               path("run"), "-c", "listen_addresses=127.0.0.1", "-c", "ssl=on", "-c", "fsync=off"},
                      .run_as_user = "postgres",
                      .cwd = dir_->path(),
                      .output_file = path("postgresql.log"),
                      .parent_death_signal = SIGQUIT});
    ASSERT_TRUE(pid.ok()) << pid.error().to_string();
    pg_pid_ = *pid;
    const bool ready = testkit::wait_until(
        [] {
          auto r = run({.argv = {kPgBin + "pg_isready", "-q", "-h", "127.0.0.1", "-p", std::to_string(pg_port_)}}, 5s);
          return r.ok() && r->status.ok();
        },
        60s, 100ms);
    ASSERT_TRUE(ready) << "PostgreSQL did not start; see " << path("postgresql.log");
  }

  static void TearDownTestSuite() {
    if (pg_pid_ > 0) {
      kill(pg_pid_, SIGINT);  // fast shutdown
      if (!wait_for(pg_pid_, 30s)) {
        kill(pg_pid_, SIGKILL);
        (void)wait_for(pg_pid_, 10s);
      }
    }
    delete dir_;
  }

  void SetUp() override {
    auto holder = tls::ServerContextHolder::create({path("portal.crt"), path("portal.key")});
    ASSERT_TRUE(holder.ok()) << holder.error().to_string();
    tls_ = std::move(holder.value());
    route_.set(member(), "test start");
    auto backend_tls = tls::make_client_context({ca_file()});
    ASSERT_TRUE(backend_tls.ok());
    relay_ = std::make_unique<relay::RelayServer>(
        relay::RelayServerOptions{.name = "rw", .port = 0, .workers = 2, .session = {.handshake_timeout = 3s}},
        tls_.get(), *backend_tls, route_.as_route_fn(), &registry_);
    ASSERT_TRUE(relay_->start().ok());
  }

  void TearDown() override { relay_->stop(); }

  // Copies <name>.crt/.key to the member's data directory (where ssl_cert_file and
  // ssl_key_file point by default).
  static void install_member_certificate(const std::string& name) {
    const auto opts = std::filesystem::copy_options::overwrite_existing;
    std::filesystem::copy_file(path(name + ".crt"), path("data/server.crt"), opts);
    std::filesystem::copy_file(path(name + ".key"), path("data/server.key"), opts);
    std::filesystem::permissions(path("data/server.key"),
                                 std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    ASSERT_TRUE(chown_recursive(path("data"), "postgres").ok());
  }

  // Makes the running member present <name>.crt, and waits until it does.
  static void serve_member_certificate(const std::string& name) {
    install_member_certificate(name);
    ASSERT_TRUE(psql(direct_conninfo(), {"select pg_reload_conf()"}).status.ok());
    std::ifstream in(path(name + ".crt"));
    const std::string pem((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    ASSERT_TRUE(testkit::wait_until(
        [&] {
          const auto r = openssl({"-starttls", "postgres", "-connect", fmt::format("127.0.0.1:{}", pg_port_)});
          return r.output.find(pem) != std::string::npos;
        },
        20s, 100ms));
  }

  static std::string direct_conninfo() {
    return fmt::format("host=127.0.0.1 port={} dbname=postgres user=postgres sslmode=disable", pg_port_);
  }

  static relay::Endpoint member() {
    return {.member = "pg1", .host = "127.0.0.1", .port = static_cast<std::uint16_t>(pg_port_)};
  }
  static std::string path(const std::string& name) { return dir_->sub(name); }
  static std::string ca_file() { return path("ca.crt"); }
  static void write_private(const std::string& file, const std::string& text) {
    std::ofstream(file) << text;
    std::filesystem::permissions(file, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  }

  std::string conninfo(const std::string& extra = "sslmode=verify-full", std::uint16_t port = 0) const {
    return fmt::format("host=localhost port={} sslrootcert={} dbname=postgres user=postgres {}",
                       port != 0 ? port : relay_->port(), ca_file(), extra);
  }

  static RunResult psql(const std::string& conn, const std::vector<std::string>& commands) {
    std::vector<std::string> argv = {kPgBin + "psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", conn};
    for (const auto& c : commands) {
      argv.push_back("-c");
      argv.push_back(c);
    }
    auto r = run({.argv = argv}, 60s);
    EXPECT_TRUE(r.ok());
    return r.ok() ? *r : RunResult{};
  }

  static RunResult openssl(std::vector<std::string> args) {
    args.insert(args.begin(), {"/usr/bin/openssl", "s_client"});
    auto r = run({.argv = args}, 30s);
    EXPECT_TRUE(r.ok());
    return r.ok() ? *r : RunResult{};
  }

  static int open_fds() {
    int n = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
    return n;
  }

  // Heap bytes in use (not merely kept by the allocator), small and mmapped chunks.
  static long heap_in_use_kib() {
    const struct mallinfo2 mi = mallinfo2();
    return static_cast<long>((mi.uordblks + mi.hblkhd) / 1024);
  }

  static long rss_kib() {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    }
    return -1;
  }

  static inline testkit::TempDir* dir_ = nullptr;
  static inline int pg_port_ = 0;
  static inline pid_t pg_pid_ = -1;
  static inline const std::string password_ = "portal test 'secret' pw";

  std::unique_ptr<tls::ServerContextHolder> tls_;
  relay::SessionRegistry registry_;
  relay::CurrentRoute route_{&registry_};
  std::unique_ptr<relay::RelayServer> relay_;
};

TEST_F(PortalRelayTest, PsqlVerifyFullThroughThePortal) {
  const auto r = psql(conninfo(), {"select 40 + 2", "\\conninfo"});
  ASSERT_TRUE(r.status.ok()) << r.output;
  EXPECT_NE(r.output.find("42\n"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("SSL connection (protocol: TLSv1.3"), std::string::npos) << r.output;
  EXPECT_GE(relay_->counters().tls_sessions.load(), 1u);
  EXPECT_GE(relay_->counters().bytes_to_client.load(), 100u);
}

TEST_F(PortalRelayTest, PlaintextClientGetsTlsRequired) {
  const auto r = psql(conninfo("sslmode=disable"), {"select 1"});
  EXPECT_FALSE(r.status.ok());
  EXPECT_NE(r.output.find("FATAL:  TLS is required to connect to this portal"), std::string::npos) << r.output;
  EXPECT_EQ(relay_->counters().rejected_plaintext.load(), 1u);
  // sslmode=prefer tries TLS first and gets it.
  EXPECT_TRUE(psql(conninfo("sslmode=prefer"), {"select 1"}).status.ok());
}

TEST_F(PortalRelayTest, OpensslStarttlsNegotiatesTls13) {
  const auto r = openssl({"-starttls", "postgres", "-connect", fmt::format("127.0.0.1:{}", relay_->port()), "-CAfile",
                          ca_file(), "-verify_hostname", "localhost", "-verify_return_error", "-brief"});
  EXPECT_NE(r.output.find("Protocol version: TLSv1.3"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("Verification: OK"), std::string::npos) << r.output;
}

TEST_F(PortalRelayTest, Tls11IsRefusedByTheServer) {
  // SECLEVEL=0 makes the client really offer TLS 1.1, so the refusal is the portal's.
  const auto r = openssl({"-starttls", "postgres", "-connect", fmt::format("127.0.0.1:{}", relay_->port()), "-tls1_1",
                          "-cipher", "DEFAULT@SECLEVEL=0", "-CAfile", ca_file(), "-brief"});
  EXPECT_FALSE(r.status.ok()) << r.output;
  EXPECT_EQ(r.output.find("Protocol version: TLSv1.1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("alert protocol version"), std::string::npos) << r.output;
  EXPECT_TRUE(testkit::wait_until([&] { return relay_->counters().tls_handshake_failures.load() == 1; }, 5s));
}

TEST_F(PortalRelayTest, WrongHostNameFailsVerification) {
  const auto r = psql(fmt::format("host=db.elsewhere.test hostaddr=127.0.0.1 port={} sslrootcert={} dbname=postgres "
                                  "user=postgres sslmode=verify-full",
                                  relay_->port(), ca_file()),
                      {"select 1"});
  EXPECT_FALSE(r.status.ok());
  EXPECT_NE(r.output.find("does not match host name \"db.elsewhere.test\""), std::string::npos) << r.output;
  // With the right name on the same address it works.
  EXPECT_TRUE(psql(fmt::format("host=localhost hostaddr=127.0.0.1 port={} sslrootcert={} dbname=postgres "
                               "user=postgres sslmode=verify-full",
                               relay_->port(), ca_file()),
                   {"select 1"})
                  .status.ok());
}

TEST_F(PortalRelayTest, DirectTlsNeedsAlpn) {
  const auto with = openssl({"-connect", fmt::format("127.0.0.1:{}", relay_->port()), "-alpn", "postgresql", "-CAfile",
                             ca_file(), "-verify_hostname", "localhost"});
  EXPECT_NE(with.output.find("ALPN protocol: postgresql"), std::string::npos) << with.output;
  EXPECT_NE(with.output.find("New, TLSv1.3"), std::string::npos) << with.output;
  EXPECT_NE(with.output.find("Verify return code: 0 (ok)"), std::string::npos) << with.output;
  // Without ALPN the handshake completes, then the portal says why and closes.
  const auto without =
      openssl({"-connect", fmt::format("127.0.0.1:{}", relay_->port()), "-CAfile", ca_file(), "-brief", "-ign_eof"});
  EXPECT_NE(without.output.find("without ALPN"), std::string::npos) << without.output;
}

TEST_F(PortalRelayTest, CancelThroughThePortal) {
  PGconn* conn = PQconnectdb(conninfo().c_str());
  ASSERT_EQ(PQstatus(conn), CONNECTION_OK) << PQerrorMessage(conn);
  ASSERT_EQ(PQsendQuery(conn, "select pg_sleep(60)"), 1);
  // Wait until the query really runs, watching from a direct connection.
  const auto direct = direct_conninfo();
  ASSERT_TRUE(testkit::wait_until(
      [&] {
        auto r = psql(direct, {"select count(*) from pg_stat_activity where query = 'select pg_sleep(60)' and "
                               "state = 'active'"});
        return r.output == "1\n";
      },
      20s, 100ms));
  const auto t0 = std::chrono::steady_clock::now();
  PGcancel* cancel = PQgetCancel(conn);
  char err[256] = {};
  ASSERT_EQ(PQcancel(cancel, err, sizeof err), 1) << err;
  PQfreeCancel(cancel);
  PGresult* res = PQgetResult(conn);
  ASSERT_NE(res, nullptr);
  EXPECT_EQ(PQresultStatus(res), PGRES_FATAL_ERROR);
  const char* sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
  EXPECT_STREQ(sqlstate != nullptr ? sqlstate : "", "57014") << PQresultErrorMessage(res);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
  PQclear(res);
  while ((res = PQgetResult(conn)) != nullptr) PQclear(res);
  EXPECT_EQ(relay_->counters().cancels_forwarded.load(), 1u);
  PQfinish(conn);
}

TEST_F(PortalRelayTest, RouteChangeClosesSessionsAndNoLeaderIsClear) {
  PGconn* conn = PQconnectdb(conninfo().c_str());
  ASSERT_EQ(PQstatus(conn), CONNECTION_OK) << PQerrorMessage(conn);
  ASSERT_TRUE(testkit::wait_until([&] { return registry_.size() == 1; }, 5s));
  EXPECT_EQ(route_.set(std::nullopt, "leader lost"), 1u);
  PGresult* res = PQexec(conn, "select 1");
  EXPECT_NE(PQresultStatus(res), PGRES_TUPLES_OK);
  PQclear(res);
  EXPECT_EQ(PQstatus(conn), CONNECTION_BAD);
  PQfinish(conn);

  const auto r = psql(conninfo(), {"select 1"});
  EXPECT_FALSE(r.status.ok());
  EXPECT_NE(r.output.find("no leader is available right now"), std::string::npos) << r.output;

  route_.set(member(), "leader back");
  EXPECT_TRUE(psql(conninfo(), {"select 1"}).status.ok());
}

TEST_F(PortalRelayTest, TlsToTheMemberIsVerified) {
  serve_member_certificate("member");
  relay::Endpoint tls_member = member();
  tls_member.tls = true;
  tls_member.tls_server_name = "localhost";
  route_.set(tls_member, "member over TLS");
  // The member's certificate differs from the portal's: SCRAM channel binding, which binds
  // to the certificate the client sees, cannot succeed, and the member says so.
  const auto bound = psql(conninfo(), {"select 1"});
  EXPECT_FALSE(bound.status.ok());
  EXPECT_NE(bound.output.find("channel binding"), std::string::npos) << bound.output;
  const auto r = psql(conninfo("sslmode=verify-full channel_binding=disable"),
                      {"select ssl, version from pg_stat_ssl where pid = pg_backend_pid()"});
  ASSERT_TRUE(r.status.ok()) << r.output;
  EXPECT_EQ(r.output, "t|TLSv1.3\n");

  tls_member.tls_server_name = "pg.elsewhere.test";
  route_.set(tls_member, "member with a name its certificate lacks");
  const auto bad = psql(conninfo(), {"select 1"});
  EXPECT_FALSE(bad.status.ok());
  EXPECT_NE(bad.output.find("could not connect to pg1"), std::string::npos) << bad.output;
  EXPECT_NE(bad.output.find("hostname mismatch"), std::string::npos) << bad.output;
}

TEST_F(PortalRelayTest, SharedCertificateKeepsScramChannelBinding) {
  // With the portal's certificate on the member too, tls-server-end-point is the same on
  // both legs, so SCRAM-SHA-256-PLUS passes through the portal.
  serve_member_certificate("portal");
  relay::Endpoint tls_member = member();
  tls_member.tls = true;
  tls_member.tls_server_name = "localhost";
  route_.set(tls_member, "member over TLS");
  const auto r = psql(conninfo("sslmode=verify-full channel_binding=require"),
                      {"select ssl from pg_stat_ssl where pid = pg_backend_pid()"});
  ASSERT_TRUE(r.status.ok()) << r.output;
  EXPECT_EQ(r.output, "t\n");
  serve_member_certificate("member");
}

TEST_F(PortalRelayTest, MalformedFloodThenAValidClient) {
  // Warm up once so lazily allocated state is part of the baseline.
  ASSERT_TRUE(psql(conninfo(), {"select 1"}).status.ok());
  ASSERT_TRUE(testkit::wait_until([&] { return relay_->counters().active.load() == 0; }, 5s));
  const int fds_before = open_fds();
  const long heap_before = heap_in_use_kib();
  malloc_trim(0);  // compare memory the portal holds, not what the allocator caches
  const long rss_before = rss_kib();

  std::mt19937 rng(2024);
  std::uniform_int_distribution<int> byte(0, 255);
  const auto valid = wire::encode_startup({{"user", "postgres"}, {"database", "postgres"}});
  auto connect = [&] {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(relay_->port());
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    return fd;
  };
  // Slow clients: a few bytes of a packet, then nothing; the portal cuts them off.
  std::vector<int> slow;
  for (int i = 0; i < 20; ++i) {
    const int fd = connect();
    ::send(fd, valid.data(), 1 + static_cast<std::size_t>(i % 7), MSG_NOSIGNAL);
    slow.push_back(fd);
  }
  for (int i = 0; i < 3000; ++i) {
    std::vector<std::uint8_t> b;
    switch (i % 5) {
      case 0:
        b.resize(1 + static_cast<std::size_t>(byte(rng)));
        for (auto& x : b) x = static_cast<std::uint8_t>(byte(rng));
        break;
      case 1: b.assign(valid.begin(), valid.begin() + 1 + i % static_cast<int>(valid.size() - 1)); break;
      case 2: b = {0, 0, 0x7f, 0xff, 0, 3, 0, 0}; break;
      case 3: b = wire::encode_startup({{"user", "x"}}, (1234u << 16) | 9999u); break;
      case 4: b = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00}; break;
    }
    const int fd = connect();
    ::send(fd, b.data(), b.size(), MSG_NOSIGNAL);
    ::close(fd);
  }
  const auto r = psql(conninfo(), {"select 'still here'"});
  EXPECT_TRUE(r.status.ok()) << r.output;
  EXPECT_EQ(r.output, "still here\n");
  // The slow clients are cut off after the 3 s start-up timeout, without our help.
  ASSERT_TRUE(testkit::wait_until([&] { return relay_->counters().active.load() == 0 && registry_.size() == 0; }, 30s));
  for (int fd : slow) {
    std::uint8_t x;
    EXPECT_LE(::recv(fd, &x, 1, 0), 0);  // closed by the portal
    ::close(fd);
  }
  EXPECT_GE(relay_->counters().timeouts.load(), 20u);
  EXPECT_GT(relay_->counters().rejected_protocol.load(), 1000u);
  const long heap_after = heap_in_use_kib();
  malloc_trim(0);
  const long rss_after = rss_kib();
  std::printf("after the flood: open files %d -> %d, heap in use %ld -> %ld KiB, RSS %ld -> %ld KiB\n", fds_before,
              open_fds(), heap_before, heap_after, rss_before, rss_after);
  EXPECT_EQ(open_fds(), fds_before);
  EXPECT_LT(heap_after - heap_before, 1024) << "the portal holds more memory than before the flood";
  EXPECT_LT(rss_after - rss_before, 8 * 1024);
}

}  // namespace
}  // namespace tandem::portal
