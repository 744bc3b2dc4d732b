// Pump: one direction of the plaintext relay (copy and splice modes) between real
// loopback TCP sockets: no byte lost or reordered, back-pressure, end of stream, errors.
#include "portal/relay/pump.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace tandem::portal::relay {
namespace {

using Bytes = std::vector<std::uint8_t>;

// A connected loopback TCP pair: `near` is what the relay holds, `far` is the peer.
struct TcpPair {
  int near = -1;
  int far = -1;
  TcpPair() {
    const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(listener, 1), 0);
    socklen_t len = sizeof a;
    getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len);
    far = ::socket(AF_INET, SOCK_STREAM, 0);
    EXPECT_EQ(::connect(far, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    near = ::accept(listener, nullptr, nullptr);
    ::close(listener);
    ::fcntl(near, F_SETFL, ::fcntl(near, F_GETFL) | O_NONBLOCK);
    timeval tv{20, 0};
    setsockopt(far, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~TcpPair() {
    if (near >= 0) ::close(near);
    if (far >= 0) ::close(far);
  }
  // Closes the far end with a reset instead of a FIN.
  void reset_far() {
    linger l{1, 0};
    setsockopt(far, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    ::close(far);
    far = -1;
  }
};

bool wait_for(int fd, short events) {
  pollfd p{fd, events, 0};
  return ::poll(&p, 1, 20'000) > 0;
}

Bytes random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  Bytes b(n);
  for (auto& x : b) x = static_cast<std::uint8_t>(rng());
  return b;
}

// Relays everything from src.far through the pump to dst.far until src.far is closed.
// Returns the number of times the destination was full.
int relay_until_eof(Pump& pump, const TcpPair& src, const TcpPair& dst) {
  int blocked = 0;
  for (;;) {
    if (pump.pending() > 0) {
      const auto w = pump.flush();
      EXPECT_NE(w, Pump::Write::error) << std::strerror(pump.error());
      if (w == Pump::Write::error) return blocked;
      if (w == Pump::Write::blocked) {
        ++blocked;
        EXPECT_TRUE(wait_for(dst.near, POLLOUT));
      }
      continue;
    }
    const auto r = pump.fill();
    if (r == Pump::Read::eof) return blocked;
    EXPECT_NE(r, Pump::Read::error) << std::strerror(pump.error());
    if (r == Pump::Read::error) return blocked;
    if (r == Pump::Read::would_block) {
      EXPECT_TRUE(wait_for(src.near, POLLIN));
    }
  }
}

class PumpTest : public ::testing::TestWithParam<Pump::Mode> {
 protected:
  void SetUp() override {
    signal(SIGPIPE, SIG_IGN);  // splice(2) into a reset socket raises it
    if (GetParam() == Pump::Mode::splice) {
      Pipe p = Pipe::open();
      ASSERT_TRUE(p.valid());
      pump_.use_pipe(std::move(p));
    } else {
      pump_.use_buffer(&buffer_);
    }
  }

  TcpPair src_;
  TcpPair dst_;
  RelayBuffer buffer_{16 * 1024};
  Pump pump_{src_.near, dst_.near};
};

TEST_P(PumpTest, MovesEveryByteInOrderUnderBackPressure) {
  const Bytes payload = random_bytes(8 * 1024 * 1024, 7);
  std::thread writer([&] {
    std::size_t off = 0;
    while (off < payload.size()) {
      const auto n = ::send(src_.far, payload.data() + off, std::min<std::size_t>(100'000, payload.size() - off), 0);
      ASSERT_GT(n, 0);
      off += static_cast<std::size_t>(n);
    }
    ::shutdown(src_.far, SHUT_WR);
  });
  // The reader starts late, so the destination fills up and the pump has to wait.
  Bytes got;
  std::thread reader([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    std::uint8_t buf[65536];
    for (;;) {
      const auto n = ::recv(dst_.far, buf, sizeof buf, 0);
      if (n <= 0) break;
      got.insert(got.end(), buf, buf + n);
    }
  });
  const int blocked = relay_until_eof(pump_, src_, dst_);
  ::shutdown(dst_.near, SHUT_WR);
  writer.join();
  reader.join();
  EXPECT_GT(blocked, 0) << "the destination never filled up; back-pressure was not exercised";
  ASSERT_EQ(got.size(), payload.size());
  EXPECT_TRUE(got == payload);
  EXPECT_EQ(pump_.pending(), 0u);
}

TEST_P(PumpTest, ReportsWouldBlockThenEndOfStream) {
  EXPECT_EQ(pump_.fill(), Pump::Read::would_block);
  const Bytes hello = {'Q', 0, 0, 0, 5, 'x'};
  ASSERT_EQ(::send(src_.far, hello.data(), hello.size(), 0), static_cast<ssize_t>(hello.size()));
  ASSERT_TRUE(wait_for(src_.near, POLLIN));
  ASSERT_EQ(pump_.fill(), Pump::Read::data);
  EXPECT_EQ(pump_.last_read(), hello.size());
  if (GetParam() == Pump::Mode::copy) {
    EXPECT_EQ(Bytes(pump_.last_chunk().begin(), pump_.last_chunk().end()), hello);
  } else {
    EXPECT_TRUE(pump_.last_chunk().empty());  // spliced bytes never reach user space
  }
  EXPECT_EQ(pump_.flush(), Pump::Write::done);
  Bytes got(hello.size());
  ASSERT_EQ(::recv(dst_.far, got.data(), got.size(), MSG_WAITALL), static_cast<ssize_t>(got.size()));
  EXPECT_EQ(got, hello);
  ::shutdown(src_.far, SHUT_WR);
  ASSERT_TRUE(wait_for(src_.near, POLLIN));
  EXPECT_EQ(pump_.fill(), Pump::Read::eof);
}

TEST_P(PumpTest, ResetSourceIsAnError) {
  const Bytes b = {1, 2, 3};
  ASSERT_EQ(::send(src_.far, b.data(), b.size(), 0), 3);
  src_.reset_far();
  Pump::Read r = Pump::Read::would_block;
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(wait_for(src_.near, POLLIN));
    r = pump_.fill();
    if (r == Pump::Read::data) {  // what arrived before the reset may still be delivered
      EXPECT_EQ(pump_.flush(), Pump::Write::done);
      continue;
    }
    if (r != Pump::Read::would_block) break;
  }
  EXPECT_EQ(r, Pump::Read::error);
  EXPECT_EQ(pump_.error(), ECONNRESET);
}

TEST_P(PumpTest, ResetDestinationIsAWriteError) {
  dst_.reset_far();
  // The first write may still be accepted locally; the reset shows at the latest on the next.
  Pump::Write w = Pump::Write::done;
  for (int i = 0; i < 20 && w != Pump::Write::error; ++i) {
    const Bytes b(1000, 'a');
    ASSERT_EQ(::send(src_.far, b.data(), b.size(), 0), 1000);
    ASSERT_TRUE(wait_for(src_.near, POLLIN));
    ASSERT_EQ(pump_.fill(), Pump::Read::data);
    w = pump_.flush();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(w, Pump::Write::error);
  EXPECT_TRUE(pump_.error() == EPIPE || pump_.error() == ECONNRESET) << std::strerror(pump_.error());
}

TEST_P(PumpTest, TakePipeOnlyGivesBackAnEmptyPipe) {
  if (GetParam() == Pump::Mode::copy) GTEST_SKIP() << "no pipe in copy mode";
  const Bytes b(4000, 'b');
  ASSERT_EQ(::send(src_.far, b.data(), b.size(), 0), 4000);
  ASSERT_TRUE(wait_for(src_.near, POLLIN));
  ASSERT_EQ(pump_.fill(), Pump::Read::data);
  EXPECT_GT(pump_.pending(), 0u);
  EXPECT_FALSE(pump_.take_pipe().valid());  // still holds bytes: closed, not reused
}

INSTANTIATE_TEST_SUITE_P(Modes, PumpTest, ::testing::Values(Pump::Mode::copy, Pump::Mode::splice),
                         [](const auto& info) { return info.param == Pump::Mode::copy ? "copy" : "splice"; });

TEST(PipeTest, OpenMoveAndClose) {
  Pipe a = Pipe::open();
  ASSERT_TRUE(a.valid());
  const int r = a.read_end();
  Pipe b = std::move(a);
  EXPECT_FALSE(a.valid());  // NOLINT(bugprone-use-after-move): moved-from is documented empty
  EXPECT_EQ(b.read_end(), r);
  EXPECT_NE(::fcntl(r, F_GETFL) & O_NONBLOCK, 0);
  b.reset();
  EXPECT_EQ(::fcntl(r, F_GETFD), -1);  // closed
}

}  // namespace
}  // namespace tandem::portal::relay
