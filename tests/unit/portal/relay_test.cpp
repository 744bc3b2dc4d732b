// The relay in-process against a fake backend: negotiation rules, routing, cancel
// forwarding, timeouts and limits. Real PostgreSQL and real clients are in
// tests/integration/portal_relay_test.cpp.
#include "portal/relay/relay_server.hpp"

#include <filesystem>
#include <random>

#include <gtest/gtest.h>

#include "portal/pki/certificates.hpp"
#include "portal/pki/pem_files.hpp"
#include "portal/relay/route.hpp"
#include "relay_harness.hpp"

namespace tandem::portal::relay {
namespace {

using namespace std::chrono_literals;
using testing::Bytes;
using testing::FakeBackend;
using testing::TestClient;

bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 20s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return pred();
}

class RelayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = "/tmp/tandem-relay-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    const auto now = std::chrono::system_clock::now();
    auto ca = pki::create_ca({.now = now});
    ASSERT_TRUE(ca.ok());
    auto cert = pki::issue_server_cert(*ca, {.dns_names = {"localhost"}, .ip_addresses = {"127.0.0.1"}, .now = now});
    ASSERT_TRUE(cert.ok());
    ASSERT_TRUE(pki::write_cert_pem(ca->cert.get(), ca_file()).ok());
    ASSERT_TRUE(pki::write_certified_key(*cert, dir_ + "/server.crt", dir_ + "/server.key").ok());
    auto holder = tls::ServerContextHolder::create({dir_ + "/server.crt", dir_ + "/server.key"});
    ASSERT_TRUE(holder.ok());
    tls_ = std::move(holder.value());
    route_.set(Endpoint{.member = "fake", .host = "127.0.0.1", .port = backend_.port()}, "test start");
  }
  void TearDown() override {
    if (server_) server_->stop();
    std::filesystem::remove_all(dir_);
  }

  void start(RelayOptions opts = {}, int relay_loops = -1) {
    server_ = std::make_unique<RelayServer>(
        RelayServerOptions{.name = "rw", .port = 0, .workers = 2, .relay_loops = relay_loops, .session = opts},
        tls_.get(), nullptr, route_.as_route_fn(), &registry_);
    ASSERT_TRUE(server_->start().ok());
  }

  std::string ca_file() const { return dir_ + "/ca.crt"; }
  std::uint16_t port() const { return server_->port(); }

  // SSLRequest, 'S', TLS handshake, StartupMessage, and the fake's start-up answer.
  void open_tls_session(TestClient& c, std::uint32_t* pid = nullptr) {
    ASSERT_TRUE(c.send(wire::encode_request_code(wire::kSslRequestCode)));
    auto answer = c.read_exact(1);
    ASSERT_TRUE(answer.has_value());
    ASSERT_EQ((*answer)[0], 'S');
    ASSERT_TRUE(c.start_tls(ca_file(), "localhost"));
    ASSERT_TRUE(c.send(testing::startup_for()));
    expect_startup_answer(c, pid);
  }

  static void expect_startup_answer(TestClient& c, std::uint32_t* pid = nullptr) {
    auto auth = c.read_message();
    ASSERT_TRUE(auth.has_value());
    EXPECT_EQ(auth->type, 'R');
    auto key = c.read_message();
    ASSERT_TRUE(key.has_value());
    ASSERT_EQ(key->type, 'K');
    if (pid != nullptr) *pid = wire::read_u32(key->body, 0);
    auto ready = c.read_message();
    ASSERT_TRUE(ready.has_value());
    EXPECT_EQ(ready->type, 'Z');
  }

  // A plaintext StartupMessage (needs allow_plaintext) and the fake's start-up answer.
  static void open_plain_session(TestClient& c, std::uint32_t* pid = nullptr) {
    ASSERT_TRUE(c.connected());
    ASSERT_TRUE(c.send(testing::startup_for()));
    expect_startup_answer(c, pid);
  }

  static void expect_echo(TestClient& c) {
    const Bytes query = {'Q', 0, 0, 0, 13, 's', 'e', 'l', 'e', 'c', 't', ' ', '1', 0};
    ASSERT_TRUE(c.send(query));
    auto echo = c.read_exact(query.size());
    ASSERT_TRUE(echo.has_value());
    EXPECT_EQ(*echo, query);
  }

  static testing::Message expect_error(TestClient& c, const std::string& sqlstate) {
    auto m = c.read_message();
    EXPECT_TRUE(m.has_value());
    if (!m) return {};
    EXPECT_EQ(m->type, 'E');
    EXPECT_EQ(m->field('S'), "FATAL");
    EXPECT_EQ(m->field('C'), sqlstate) << m->field('M');
    EXPECT_TRUE(c.closed_by_peer());
    return *m;
  }

  bool back_to_idle() {
    return eventually([&] { return server_->counters().active.load() == 0 && registry_.size() == 0; });
  }

  std::string dir_;
  FakeBackend backend_;
  std::unique_ptr<tls::ServerContextHolder> tls_;
  SessionRegistry registry_;
  CurrentRoute route_{&registry_};
  std::unique_ptr<RelayServer> server_;
};

TEST_F(RelayTest, TlsSessionRelaysBothWays) {
  start();
  TestClient c(port());
  std::uint32_t pid = 0;
  open_tls_session(c, &pid);
  EXPECT_EQ(std::string(SSL_get_version(c.ssl())), "TLSv1.3");
  expect_echo(c);
  EXPECT_EQ(backend_.users(), std::vector<std::string>{"alice"});
  EXPECT_EQ(server_->counters().tls_sessions.load(), 1u);
  EXPECT_EQ(server_->counters().routed.load(), 1u);
  EXPECT_EQ(server_->counters().relayed_by_loop.load(), 1u);  // TLS on a relay loop, not spliced
  EXPECT_EQ(server_->counters().spliced.load(), 0u);
  ASSERT_TRUE(eventually([&] { return registry_.snapshot().size() == 1 && registry_.snapshot()[0].has_cancel_key; }));
  EXPECT_EQ(registry_.snapshot()[0].endpoint->member, "fake");
}

TEST_F(RelayTest, PlaintextStartupGets28000) {
  start();
  TestClient c(port());
  ASSERT_TRUE(c.send(testing::startup_for()));
  const auto m = expect_error(c, "28000");
  EXPECT_EQ(m.field('M'), "TLS is required to connect to this portal");
  EXPECT_NE(m.field('H').find("sslmode=verify-full"), std::string::npos);
  EXPECT_EQ(server_->counters().rejected_plaintext.load(), 1u);
  EXPECT_TRUE(backend_.users().empty());
  EXPECT_TRUE(back_to_idle());
}

TEST_F(RelayTest, PlaintextAllowedWhenConfigured) {
  start({.allow_plaintext = true});
  TestClient c(port());
  ASSERT_TRUE(c.send(testing::startup_for()));
  expect_startup_answer(c);
  expect_echo(c);
}

TEST_F(RelayTest, BytesAfterSslRequestAreRefused) {
  start();
  TestClient c(port());
  Bytes both = wire::encode_request_code(wire::kSslRequestCode);
  const Bytes startup = testing::startup_for();
  both.insert(both.end(), startup.begin(), startup.end());
  ASSERT_TRUE(c.send(both));
  const auto m = expect_error(c, "08P01");
  EXPECT_EQ(m.field('M'), "received unencrypted data after SSL request");
  EXPECT_TRUE(backend_.users().empty());
}

TEST_F(RelayTest, GssEncRefusedThenTls) {
  start();
  TestClient c(port());
  ASSERT_TRUE(c.send(wire::encode_request_code(wire::kGssEncRequestCode)));
  auto n = c.read_exact(1);
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ((*n)[0], 'N');
  open_tls_session(c);
  expect_echo(c);
}

TEST_F(RelayTest, DirectTlsNeedsAlpn) {
  start();
  {
    TestClient c(port());
    ASSERT_TRUE(c.start_tls(ca_file(), "localhost", "postgresql"));
    ASSERT_TRUE(c.send(testing::startup_for()));
    expect_startup_answer(c);
    expect_echo(c);
  }
  {
    TestClient c(port());
    ASSERT_TRUE(c.start_tls(ca_file(), "localhost", ""));  // the handshake itself succeeds
    const auto m = expect_error(c, "08P01");
    EXPECT_NE(m.field('M').find("without ALPN"), std::string::npos);
  }
  {
    TestClient c(port());
    EXPECT_FALSE(c.start_tls(ca_file(), "localhost", "http/1.1"));
  }
  EXPECT_TRUE(eventually([&] { return server_->counters().tls_handshake_failures.load() == 1; }));
}

TEST_F(RelayTest, OldTlsIsRefusedAndWrongHostFailsVerification) {
  start();
  {
    TestClient c(port());
    ASSERT_TRUE(c.send(wire::encode_request_code(wire::kSslRequestCode)));
    ASSERT_TRUE(c.read_exact(1).has_value());
    EXPECT_FALSE(c.start_tls(ca_file(), "localhost", "", TLS1_1_VERSION));
  }
  {
    TestClient c(port());
    ASSERT_TRUE(c.send(wire::encode_request_code(wire::kSslRequestCode)));
    ASSERT_TRUE(c.read_exact(1).has_value());
    EXPECT_FALSE(c.start_tls(ca_file(), "db.elsewhere.test", ""));
  }
  EXPECT_TRUE(eventually([&] { return server_->counters().tls_handshake_failures.load() == 2; }));
  EXPECT_TRUE(back_to_idle());
}

TEST_F(RelayTest, NoLeaderGets57P03) {
  start();
  route_.set(std::nullopt, "no leader");
  TestClient c(port());
  ASSERT_TRUE(c.send(wire::encode_request_code(wire::kSslRequestCode)));
  ASSERT_TRUE(c.read_exact(1).has_value());
  ASSERT_TRUE(c.start_tls(ca_file(), "localhost"));
  ASSERT_TRUE(c.send(testing::startup_for()));
  const auto m = expect_error(c, "57P03");
  EXPECT_EQ(m.field('M'), "no leader is available right now");
}

TEST_F(RelayTest, DeadMemberGets08006) {
  start({.allow_plaintext = true});
  const int dead_port = [] {
    // Bind and close: nothing listens there afterwards.
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);
    return ntohs(a.sin_port);
  }();
  route_.set(Endpoint{.member = "gone", .host = "127.0.0.1", .port = static_cast<std::uint16_t>(dead_port)}, "t");
  TestClient c(port());
  ASSERT_TRUE(c.send(testing::startup_for()));
  const auto m = expect_error(c, "08006");
  EXPECT_NE(m.field('M').find("could not connect to gone at 127.0.0.1"), std::string::npos) << m.field('M');
  EXPECT_EQ(server_->counters().backend_failures.load(), 1u);
}

TEST_F(RelayTest, CancelRequestIsForwardedToTheOwningMember) {
  start();
  TestClient session(port());
  std::uint32_t pid = 0;
  open_tls_session(session, &pid);
  ASSERT_TRUE(eventually([&] { return !registry_.snapshot().empty() && registry_.snapshot()[0].has_cancel_key; }));

  const wire::CancelKey key{pid, {0xA1, 0xB2, 0xC3, 0xD4}};
  {
    TestClient cancel(port());  // plaintext, as libpq's PQcancel sends it
    ASSERT_TRUE(cancel.send(wire::encode_cancel_request(key)));
    EXPECT_TRUE(cancel.closed_by_peer());
  }
  ASSERT_TRUE(eventually([&] { return backend_.cancels().size() == 1; }));
  EXPECT_EQ(backend_.cancels()[0], key);
  {
    TestClient wrong(port());
    ASSERT_TRUE(wrong.send(wire::encode_cancel_request({pid, {0, 0, 0, 0}})));
    EXPECT_TRUE(wrong.closed_by_peer());
  }
  EXPECT_TRUE(eventually([&] { return server_->counters().cancels_unmatched.load() == 1; }));
  EXPECT_EQ(backend_.cancels().size(), 1u);
  expect_echo(session);  // the session itself is untouched
}

TEST_F(RelayTest, RouteChangeClosesAttachedSessions) {
  start();
  TestClient c(port());
  open_tls_session(c);
  FakeBackend other;
  const auto closed = route_.set(Endpoint{.member = "new", .host = "127.0.0.1", .port = other.port()}, "failover");
  EXPECT_EQ(closed, 1u);
  EXPECT_TRUE(c.closed_by_peer());
  TestClient again(port());
  open_tls_session(again);
  EXPECT_EQ(other.users().size(), 1u);
  // Setting the same target again closes nothing.
  EXPECT_EQ(route_.set(Endpoint{.member = "new", .host = "127.0.0.1", .port = other.port()}, "same"), 0u);
  expect_echo(again);
}

TEST_F(RelayTest, IdleTimeoutClosesQuietSessions) {
  start({.idle_timeout = 300ms});
  TestClient c(port());
  open_tls_session(c);
  expect_echo(c);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(c.closed_by_peer());
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 250ms);
  EXPECT_EQ(server_->counters().timeouts.load(), 1u);
}

TEST_F(RelayTest, SlowStartupIsCutOff) {
  start({.handshake_timeout = 300ms});
  TestClient c(port());
  const Bytes startup = testing::startup_for();
  ASSERT_TRUE(c.send(Bytes(startup.begin(), startup.begin() + 6)));
  EXPECT_TRUE(c.closed_by_peer());
  EXPECT_EQ(server_->counters().timeouts.load(), 1u);
  EXPECT_TRUE(back_to_idle());
}

TEST_F(RelayTest, TooManyConnections) {
  start({.max_sessions = 1});
  TestClient first(port());
  open_tls_session(first);
  TestClient second(port());
  expect_error(second, "53300");
  expect_echo(first);
}

TEST_F(RelayTest, ReloadKeepsExistingSessions) {
  start();
  TestClient c(port());
  open_tls_session(c);
  ASSERT_TRUE(tls_->reload().ok());
  EXPECT_EQ(tls_->generation(), 2u);
  expect_echo(c);
  TestClient d(port());
  open_tls_session(d);
}

TEST_F(RelayTest, GarbageFloodThenAValidClient) {
  start({.handshake_timeout = 500ms});
  std::mt19937 rng(42);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_int_distribution<int> size(1, 300);
  const Bytes valid = testing::startup_for();
  for (int i = 0; i < 300; ++i) {
    TestClient c(port());
    ASSERT_TRUE(c.connected());
    Bytes b;
    switch (i % 6) {
      case 0:  // random bytes
        b.resize(static_cast<std::size_t>(size(rng)));
        for (auto& x : b) x = static_cast<std::uint8_t>(byte(rng));
        break;
      case 1:  // a truncated StartupMessage, then close
        b.assign(valid.begin(), valid.begin() + 1 + i % static_cast<int>(valid.size() - 1));
        break;
      case 2:  // an oversize length
        b = {0, 0, 0x40, 0, 0, 3, 0, 0};
        break;
      case 3:  // an unknown protocol version
        b = wire::encode_startup({{"user", "x"}}, 9u << 16);
        break;
      case 4:  // a truncated TLS ClientHello
        b = {0x16, 0x03, 0x01, 0x00, 0x50, 0x01};
        break;
      case 5:  // a StartupMessage with a broken layout
        b = {0, 0, 0, 12, 0, 3, 0, 0, 'u', 's', 'e', 'r'};
        break;
    }
    c.send(b);
  }
  TestClient ok(port());
  open_tls_session(ok);
  expect_echo(ok);
  EXPECT_TRUE(eventually([&] { return server_->counters().rejected_protocol.load() > 150; }));
  EXPECT_TRUE(eventually([&] { return server_->counters().active.load() == 1 && registry_.size() == 1; }));
}

TEST_F(RelayTest, StopClosesEverything) {
  start();
  TestClient c(port());
  open_tls_session(c);
  server_->stop();
  EXPECT_TRUE(c.closed_by_peer());
  EXPECT_EQ(registry_.size(), 0u);
  EXPECT_EQ(server_->counters().active.load(), 0);
}

// Plaintext on both sides: the session moves to a relay loop, which splices after the
// member's ReadyForQuery.

int open_fds() {
  int n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

// "3 -> socket:[123], ..." for a failure message.
std::string fd_listing() {
  std::string out;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    out += e.path().filename().string() + " -> " + std::filesystem::read_symlink(e.path(), ec).string() + "; ";
  }
  return out;
}

// Opens and closes a session on each worker and relay loop, so that what asio and the loops
// create lazily (each worker's epoll, eventfd and timerfd) is part of an fd baseline.
void warm_up(std::uint16_t port, int sessions = 4) {
  for (int i = 0; i < sessions; ++i) {
    TestClient c(port);
    ASSERT_TRUE(c.send(testing::startup_for()));
    for (int m = 0; m < 3; ++m) ASSERT_TRUE(c.read_message().has_value());
  }
}

TEST_F(RelayTest, SplicedSessionCarriesLargeStreamsBothWays) {
  start({.allow_plaintext = true});
  TestClient c(port());
  open_plain_session(c);
  EXPECT_EQ(server_->counters().spliced.load(), 1u);
  Bytes payload(4 * 1024 * 1024);
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<std::uint8_t>('a' + (i * 7919) % 23);
  const auto to_server_before = server_->counters().bytes_to_server.load();
  std::thread writer([&] { EXPECT_TRUE(c.send(payload)); });  // the fake echoes while we send
  const auto echo = c.read_exact(payload.size());
  writer.join();
  ASSERT_TRUE(echo.has_value());
  EXPECT_TRUE(*echo == payload);
  expect_echo(c);
  EXPECT_GE(server_->counters().bytes_to_server.load() - to_server_before, payload.size());
  EXPECT_GE(server_->counters().bytes_to_client.load(), payload.size());
}

TEST_F(RelayTest, CancelWorksForSplicedSessions) {
  start({.allow_plaintext = true});
  TestClient session(port());
  std::uint32_t pid = 0;
  open_plain_session(session, &pid);
  ASSERT_TRUE(eventually([&] { return !registry_.snapshot().empty() && registry_.snapshot()[0].has_cancel_key; }));
  {
    TestClient cancel(port());
    ASSERT_TRUE(cancel.send(wire::encode_cancel_request({pid, {0xA1, 0xB2, 0xC3, 0xD4}})));
    EXPECT_TRUE(cancel.closed_by_peer());
  }
  ASSERT_TRUE(eventually([&] { return backend_.cancels().size() == 1; }));
  EXPECT_EQ(backend_.cancels()[0].pid, pid);
  expect_echo(session);
}

TEST_F(RelayTest, SplicedClientHalfCloseIsPassedOn) {
  start({.allow_plaintext = true});
  TestClient c(port());
  open_plain_session(c);
  const Bytes query = {'Q', 0, 0, 0, 13, 's', 'e', 'l', 'e', 'c', 't', ' ', '1', 0};
  ASSERT_TRUE(c.send(query));
  c.shutdown_write();
  // The member still answers what came before the half-close, then ends the session.
  const auto echo = c.read_exact(query.size());
  ASSERT_TRUE(echo.has_value());
  EXPECT_EQ(*echo, query);
  EXPECT_TRUE(c.closed_by_peer());
  EXPECT_TRUE(back_to_idle());
}

TEST_F(RelayTest, SplicedMemberCloseReachesTheClient) {
  start({.allow_plaintext = true});
  warm_up(port());
  ASSERT_TRUE(back_to_idle());
  const int fds_before = open_fds();
  {
    TestClient c(port());
    open_plain_session(c);
    ASSERT_TRUE(c.send({'X', 0, 0, 0, 4}));  // Terminate: the fake member closes
    EXPECT_TRUE(c.closed_by_peer());
  }
  EXPECT_TRUE(back_to_idle());
  EXPECT_TRUE(eventually([&] { return open_fds() == fds_before; }))
      << open_fds() << " vs " << fds_before << ": " << fd_listing();
}

TEST_F(RelayTest, SplicedClientResetEndsTheSession) {
  start({.allow_plaintext = true});
  warm_up(port());
  ASSERT_TRUE(back_to_idle());
  const int fds_before = open_fds();
  const auto spliced_before = server_->counters().spliced.load();
  for (int i = 0; i < 20; ++i) {
    TestClient c(port());
    open_plain_session(c);
    expect_echo(c);
    c.reset();
  }
  EXPECT_TRUE(back_to_idle());
  EXPECT_TRUE(eventually([&] { return open_fds() == fds_before; }))
      << open_fds() << " vs " << fds_before << ": " << fd_listing();
  EXPECT_EQ(server_->counters().spliced.load() - spliced_before, 20u);
}

TEST_F(RelayTest, RouteChangeClosesSplicedSessions) {
  start({.allow_plaintext = true});
  TestClient c(port());
  open_plain_session(c);
  FakeBackend other;
  EXPECT_EQ(route_.set(Endpoint{.member = "new", .host = "127.0.0.1", .port = other.port()}, "failover"), 1u);
  EXPECT_TRUE(c.closed_by_peer());
  EXPECT_TRUE(back_to_idle());
  TestClient again(port());
  open_plain_session(again);
  expect_echo(again);
  EXPECT_EQ(other.users().size(), 1u);
}

TEST_F(RelayTest, SplicedIdleTimeout) {
  start({.allow_plaintext = true, .idle_timeout = 300ms});
  TestClient c(port());
  open_plain_session(c);
  expect_echo(c);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(c.closed_by_peer());
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 250ms);
  EXPECT_EQ(server_->counters().timeouts.load(), 1u);
}

TEST_F(RelayTest, StopClosesSplicedSessions) {
  start({.allow_plaintext = true});
  TestClient c(port());
  open_plain_session(c);
  server_->stop();
  EXPECT_TRUE(c.closed_by_peer());
  EXPECT_EQ(registry_.size(), 0u);
  EXPECT_EQ(server_->counters().active.load(), 0);
}

// TLS client, plaintext member: the loop reads and writes through the session's SSL object.
TEST_F(RelayTest, TlsSessionOnALoopCarriesLargeStreams) {
  start();
  TestClient c(port());
  open_tls_session(c);
  Bytes chunk(64 * 1024);
  for (int i = 0; i < 64; ++i) {  // 4 MiB in 64 KiB writes, each echoed before the next
    for (std::size_t k = 0; k < chunk.size(); ++k) chunk[k] = static_cast<std::uint8_t>('a' + (i + k * 31) % 23);
    ASSERT_TRUE(c.send(chunk));
    const auto echo = c.read_exact(chunk.size());
    ASSERT_TRUE(echo.has_value()) << "chunk " << i;
    ASSERT_TRUE(*echo == chunk) << "chunk " << i;
  }
  expect_echo(c);
  EXPECT_EQ(server_->counters().relayed_by_loop.load(), 1u);
  EXPECT_GE(server_->counters().bytes_to_client.load(), 4u * 1024 * 1024);
}

TEST_F(RelayTest, TlsCloseNotifyIsPassedOnAndTheSessionEnds) {
  start();
  TestClient c(port());
  open_tls_session(c);
  expect_echo(c);
  SSL_shutdown(c.ssl());  // close_notify: the member sees end-of-stream and closes
  EXPECT_TRUE(c.closed_by_peer());
  EXPECT_TRUE(back_to_idle());
}

TEST_F(RelayTest, WithoutRelayLoopsTlsRelaysOnTheWorkers) {
  start({}, 0);
  TestClient c(port());
  std::uint32_t pid = 0;
  open_tls_session(c, &pid);
  expect_echo(c);
  EXPECT_EQ(server_->counters().relayed_by_loop.load(), 0u);
  ASSERT_TRUE(eventually([&] { return !registry_.snapshot().empty() && registry_.snapshot()[0].has_cancel_key; }));
}

TEST_F(RelayTest, WithoutRelayLoopsPlaintextRelaysOnTheWorkers) {
  start({.allow_plaintext = true}, 0);
  TestClient c(port());
  std::uint32_t pid = 0;
  open_plain_session(c, &pid);
  expect_echo(c);
  EXPECT_EQ(server_->counters().spliced.load(), 0u);
  ASSERT_TRUE(eventually([&] { return !registry_.snapshot().empty() && registry_.snapshot()[0].has_cancel_key; }));
}

TEST(RelayServerStart, PortInUseIsAClearError) {
  SessionRegistry registry;
  RelayServer a(RelayServerOptions{.name = "a", .port = 0}, nullptr, nullptr, {}, &registry);
  ASSERT_TRUE(a.start().ok());
  RelayServer b(RelayServerOptions{.name = "b", .port = a.port()}, nullptr, nullptr, {}, &registry);
  auto s = b.start();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("cannot listen on 127.0.0.1:" + std::to_string(a.port())), std::string::npos)
      << s.error().message;
}

}  // namespace
}  // namespace tandem::portal::relay
