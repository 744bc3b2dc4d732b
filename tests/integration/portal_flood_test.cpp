// Bad input against a real `tandem portal` (portal 1 of a `tandem up` deployment, in front of
// PostgreSQL 15): thousands of malformed, truncated, oversized and garbage start-up packets
// from several threads at once, plus slow clients that send part of a packet and then
// nothing (cut off by the portal's start-up timeout). Afterwards a valid client still
// works, and the portal process is back to its baseline: no session open (/metrics), the
// same number of open files (/proc/PID/fd) and no memory growth (VmRSS; a second, identical
// flood must not grow it further, which is what a leak would do).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "api/http_client.hpp"
#include "portal/wire/startup.hpp"
#include "testkit/deployment.hpp"
#include "testkit/testkit.hpp"

namespace tandem {
namespace {

using namespace std::chrono_literals;
using Bytes = std::vector<std::uint8_t>;
const std::string kPsql = "/usr/lib/postgresql/15/bin/psql";

// The portal's start-up limits (portal/service/portal_config.hpp defaults, which `tandem up` keeps).
constexpr std::size_t kMaxStartupPacket = portal::wire::kMaxStartupPacketLength;
constexpr auto kStartupTimeout = 10s;

int connect_to(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

Bytes be32(std::uint32_t v) {
  return {static_cast<std::uint8_t>(v >> 24), static_cast<std::uint8_t>(v >> 16), static_cast<std::uint8_t>(v >> 8),
          static_cast<std::uint8_t>(v)};
}

Bytes concat(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Malformed start-up input number i (kinds cycle), drawn from `rng`.
Bytes bad_packet(int i, std::mt19937& rng) {
  std::uniform_int_distribution<int> byte(0, 255);
  const Bytes valid = portal::wire::encode_startup({{"user", "admin"}, {"database", "postgres"}});
  const Bytes ssl_request = portal::wire::encode_request_code(portal::wire::kSslRequestCode);
  const Bytes gss_request = portal::wire::encode_request_code(portal::wire::kGssEncRequestCode);
  switch (i % 13) {
    case 0: {  // garbage
      Bytes b(1 + static_cast<std::size_t>(byte(rng)));
      for (auto& x : b) x = static_cast<std::uint8_t>(byte(rng));
      return b;
    }
    case 1:  // a StartupMessage cut short, then close
      return Bytes(valid.begin(), valid.begin() + 1 + static_cast<long>(rng() % (valid.size() - 1)));
    case 2: return concat(be32(4 + static_cast<std::uint32_t>(rng() % 4)), {0, 3, 0, 0});  // length below 8
    case 3: return concat(be32(0x7fffffff), {0, 3, 0, 0});                                 // absurd length
    case 4: {  // just over the 10,000-byte limit, and all of it sent
      const std::string big(kMaxStartupPacket + 1 + rng() % 2000, 'a');
      return portal::wire::encode_startup({{"user", "admin"}, {"options", big}});
    }
    case 5: {  // unknown protocol versions: 2.0, 4.0, 3.9999, 1234.5678
      const std::uint32_t versions[] = {2u << 16, 4u << 16, (3u << 16) | 9999u, (1234u << 16) | 5678u};
      return portal::wire::encode_startup({{"user", "admin"}}, versions[rng() % 4]);
    }
    case 6: return concat(ssl_request, valid);  // plaintext after an SSLRequest (injection)
    case 7: return concat(gss_request, {0xde, 0xad, 0xbe, 0xef, 0x00});
    case 8: return {0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03};  // truncated ClientHello
    case 9: {  // a CancelRequest for a key nobody has
      Bytes b = concat(be32(16), be32(portal::wire::kCancelRequestCode));
      for (int k = 0; k < 8; ++k) b.push_back(static_cast<std::uint8_t>(byte(rng)));
      return b;
    }
    case 10: {  // the header promises 200 bytes, half of them come, then close
      Bytes b = concat(be32(200), be32(3u << 16));
      b.resize(100, 'x');
      return b;
    }
    case 11: return ssl_request;  // then close before the handshake
    case 12: return valid;        // plaintext: refused with 28000
  }
  return {};
}

class PortalFloodTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { d_ = new testkit::Deployment(); }
  static void TearDownTestSuite() {
    delete d_;
    d_ = nullptr;
  }
  static testkit::Deployment& d() { return *d_; }

  static std::string conninfo() {
    return fmt::format(
        "host=localhost port={} user=admin dbname=postgres sslmode=verify-full sslrootcert={} connect_timeout=10",
        d().portal_port(1), d().ca_cert());
  }
  static bool valid_client_works() {
    auto r = run({.argv = {kPsql, "-X", "-At", "-c", "select 'through the portal'", conninfo()},
                  .env = {{"PGPASSFILE", d().pgpass()}}},
                 60s);
    if (!r.ok() || !r->status.ok()) {
      ADD_FAILURE() << (r.ok() ? r->output : r.error().to_string());
      return false;
    }
    EXPECT_EQ(r->output, "through the portal\n");
    return true;
  }

  // Sum of one metric family over all its label sets, from the portal's /metrics.
  static double metric(const std::string& family) {
    auto r = api::http_get(fmt::format("http://127.0.0.1:{}/metrics", d().portal_http_port(1)), 5s);
    if (!r.ok() || r->status != 200) return -1;
    std::istringstream in(r->body);
    std::string line;
    double sum = 0;
    while (std::getline(in, line)) {
      if (line.rfind(family, 0) != 0 || (line[family.size()] != '{' && line[family.size()] != ' ')) continue;
      sum += std::stod(line.substr(line.rfind(' ') + 1));
    }
    return sum;
  }
  static double metric_with(const std::string& family, const std::string& label) {
    auto r = api::http_get(fmt::format("http://127.0.0.1:{}/metrics", d().portal_http_port(1)), 5s);
    if (!r.ok() || r->status != 200) return -1;
    std::istringstream in(r->body);
    std::string line;
    double sum = 0;
    while (std::getline(in, line)) {
      if (line.rfind(family + "{", 0) == 0 && line.find(label) != std::string::npos) {
        sum += std::stod(line.substr(line.rfind(' ') + 1));
      }
    }
    return sum;
  }

  static int open_files(pid_t pid) {
    int n = 0;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(fmt::format("/proc/{}/fd", pid), ec)) {
      (void)e;
      ++n;
    }
    return ec ? -1 : n;
  }
  static long rss_kib(pid_t pid) {
    std::ifstream status(fmt::format("/proc/{}/status", pid));
    std::string line;
    while (std::getline(status, line)) {
      if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    }
    return -1;
  }

  // Waits until no client session is open on the portal (the slow ones are cut off by the
  // start-up timeout).
  static bool portal_idle() {
    return testkit::wait_until([] { return metric("tandem_portal_sessions_open") == 0; }, kStartupTimeout + 30s, 100ms);
  }

  struct FloodResult {
    int sent = 0;
    int slow_cut_off = 0;
  };

  // `count` bad connections from 4 threads, and `slow` clients that dribble a few bytes
  // and then stay silent until the portal closes them.
  static FloodResult flood(int count, int slow, unsigned seed) {
    const int port = d().portal_port(1);
    std::vector<int> slow_fds;
    const Bytes valid = portal::wire::encode_startup({{"user", "admin"}, {"database", "postgres"}});
    for (int i = 0; i < slow; ++i) {
      const int fd = connect_to(port);
      if (fd < 0) continue;
      // A few bytes of a StartupMessage (or of an SSLRequest), then nothing.
      ::send(fd, valid.data(), 1 + static_cast<std::size_t>(i % 7), MSG_NOSIGNAL);
      slow_fds.push_back(fd);
    }
    std::atomic<int> sent{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        std::mt19937 rng(seed + static_cast<unsigned>(t));
        for (int i = t; i < count; i += 4) {
          const Bytes b = bad_packet(i, rng);
          const int fd = connect_to(port);
          if (fd < 0) continue;
          ::send(fd, b.data(), b.size(), MSG_NOSIGNAL);  // the portal may close early: errors are fine
          if (i % 3 == 0) {
            // Half-close, then read whatever the portal answers (an ErrorResponse, 'S', 'N')
            // until it closes: a packet cut short ends with the client's end-of-stream.
            ::shutdown(fd, SHUT_WR);
            std::uint8_t sink[512];
            while (::recv(fd, sink, sizeof sink, 0) > 0) {
            }
          }
          ::close(fd);
          ++sent;
        }
      });
    }
    // A valid client in the middle of the flood is served too.
    EXPECT_TRUE(valid_client_works());
    for (auto& t : threads) t.join();
    // Slow clients: the portal closes them after its start-up timeout, not before 1/2 of it.
    FloodResult r{sent.load(), 0};
    for (int fd : slow_fds) {
      timeval tv{static_cast<long>(std::chrono::seconds(kStartupTimeout).count()) + 20, 0};
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      std::uint8_t x;
      const auto n = ::recv(fd, &x, 1, 0);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) ++r.slow_cut_off;
      ::close(fd);
    }
    return r;
  }

  static inline testkit::Deployment* d_ = nullptr;
};

TEST_F(PortalFloodTest, MalformedAndSlowStartupThenAValidClientAndNoLeak) {
  ASSERT_FALSE(d().wait_leader(120s).empty());
  ASSERT_TRUE(testkit::wait_until(
      [] {
        auto r = run(
            {.argv = {kPsql, "-X", "-At", "-c", "select 1", conninfo()}, .env = {{"PGPASSFILE", d().pgpass()}}}, 30s);
        return r.ok() && r->status.ok();
      },
      120s, 500ms))
      << "portal 1 never let a client through";
  const pid_t pid = d().portal_pid(1);
  ASSERT_GT(pid, 0);
  // Warm-up, so lazily created state (TLS session caches, pools, allocator arenas) is
  // part of the baseline.
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(valid_client_works());
  flood(260, 0, 1);
  ASSERT_TRUE(portal_idle());
  const int fds_before = open_files(pid);
  const long rss_before = rss_kib(pid);
  const double protocol_before = metric_with("tandem_portal_rejected_total", "reason=\"protocol\"");
  const double timeouts_before = metric("tandem_portal_timeouts_total");

  const auto t0 = std::chrono::steady_clock::now();
  const FloodResult first = flood(3000, 40, 100);
  const auto flood_time = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(first.sent, 3000);
  EXPECT_EQ(first.slow_cut_off, 40);
  EXPECT_GE(flood_time, kStartupTimeout / 2) << "slow clients were cut off before the start-up timeout";
  ASSERT_TRUE(portal_idle());
  EXPECT_TRUE(valid_client_works());
  ASSERT_TRUE(portal_idle());
  EXPECT_GT(metric_with("tandem_portal_rejected_total", "reason=\"protocol\"") - protocol_before, 1000);
  EXPECT_GE(metric("tandem_portal_timeouts_total") - timeouts_before, 40);
  // Open files: the same as before, give or take the HTTP connection of /metrics itself.
  int fds_after = -1;
  EXPECT_TRUE(testkit::wait_until(
      [&] {
        fds_after = open_files(pid);
        return fds_after <= fds_before + 1;
      },
      15s, 200ms))
      << "open files " << fds_before << " -> " << fds_after;
  const long rss_after_first = rss_kib(pid);

  const FloodResult second = flood(3000, 40, 200);
  EXPECT_EQ(second.slow_cut_off, 40);
  ASSERT_TRUE(portal_idle());
  EXPECT_TRUE(valid_client_works());
  ASSERT_TRUE(portal_idle());
  const long rss_after_second = rss_kib(pid);
  int fds_after_second = -1;
  EXPECT_TRUE(testkit::wait_until(
      [&] {
        fds_after_second = open_files(pid);
        return fds_after_second <= fds_before + 1;
      },
      15s, 200ms));
  std::printf("portal pid %d: open files %d -> %d -> %d; VmRSS %ld -> %ld -> %ld KiB\n", pid, fds_before, fds_after,
              fds_after_second, rss_before, rss_after_first, rss_after_second);
  EXPECT_LT(rss_after_first - rss_before, 16 * 1024) << "the first flood left the portal much bigger";
  EXPECT_LT(rss_after_second - rss_after_first, 4 * 1024) << "memory grows with every flood: a leak";
  EXPECT_TRUE(process_alive(pid)) << "the portal died";
}

}  // namespace
}  // namespace tandem
