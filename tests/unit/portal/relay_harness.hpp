#pragma once
// Test helpers for the relay: a blocking client on a raw socket (plaintext or OpenSSL on
// the fd, with receive timeouts so a test never hangs) and a fake PostgreSQL backend that
// answers every StartupMessage with AuthenticationOk, BackendKeyData and ReadyForQuery,
// echoes whatever follows (closing when a read starts with Terminate 'X'), and records
// CancelRequests.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "portal/wire/byte_order.hpp"
#include "portal/wire/startup.hpp"

namespace tandem::portal::testing {

using Bytes = std::vector<std::uint8_t>;

inline int connect_loopback(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  timeval tv{30, 0};  // no test waits longer than this for a byte (generous: sanitizer builds on a busy machine)
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  return fd;
}

// One PostgreSQL message as read by a client.
struct Message {
  char type = 0;
  Bytes body;
  // A field of an ErrorResponse ('C' for SQLSTATE, 'M' for the message).
  std::string field(char code) const {
    std::size_t i = 0;
    while (i < body.size() && body[i] != 0) {
      const char c = static_cast<char>(body[i++]);
      std::string v;
      while (i < body.size() && body[i] != 0) v.push_back(static_cast<char>(body[i++]));
      ++i;
      if (c == code) return v;
    }
    return {};
  }
};

// A blocking client connection. Every read has a 30 s timeout.
class TestClient {
 public:
  explicit TestClient(std::uint16_t port) : fd_(connect_loopback(port)) {}
  ~TestClient() {
    if (ssl_ != nullptr) SSL_free(ssl_);
    if (ctx_ != nullptr) SSL_CTX_free(ctx_);
    if (fd_ >= 0) ::close(fd_);
  }
  TestClient(const TestClient&) = delete;
  TestClient& operator=(const TestClient&) = delete;

  bool connected() const { return fd_ >= 0; }

  bool send(const Bytes& b) {
    if (ssl_ != nullptr) return SSL_write(ssl_, b.data(), static_cast<int>(b.size())) == static_cast<int>(b.size());
    return ::send(fd_, b.data(), b.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(b.size());
  }

  // Reads exactly n bytes; nullopt on EOF, error or timeout.
  std::optional<Bytes> read_exact(std::size_t n) {
    Bytes out(n);
    std::size_t have = 0;
    while (have < n) {
      const long r = ssl_ != nullptr ? SSL_read(ssl_, out.data() + have, static_cast<int>(n - have))
                                     : ::recv(fd_, out.data() + have, n - have, 0);
      if (r <= 0) return std::nullopt;
      have += static_cast<std::size_t>(r);
    }
    return out;
  }

  std::optional<Message> read_message() {
    auto head = read_exact(5);
    if (!head) return std::nullopt;
    const std::uint32_t len = wire::read_u32(*head, 1);
    if (len < 4) return std::nullopt;
    auto body = read_exact(len - 4);
    if (!body) return std::nullopt;
    return Message{static_cast<char>((*head)[0]), std::move(*body)};
  }

  // True when the peer closes the connection (EOF or reset) before the read timeout.
  bool closed_by_peer() {
    std::uint8_t b;
    for (;;) {
      const long r = ssl_ != nullptr ? SSL_read(ssl_, &b, 1) : ::recv(fd_, &b, 1, 0);
      if (r > 0) continue;  // drain whatever was still in flight
      if (r == 0) return true;
      if (ssl_ != nullptr) {
        const int e = SSL_get_error(ssl_, static_cast<int>(r));
        ERR_clear_error();
        return e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && errno != EAGAIN && errno != EWOULDBLOCK);
      }
      return errno != EAGAIN && errno != EWOULDBLOCK;
    }
  }

  // Runs a TLS handshake on the socket, verifying the server for `host` against `ca_file`.
  // `alpn` empty: no ALPN extension. Returns false when the handshake fails.
  bool start_tls(const std::string& ca_file, const std::string& host, const std::string& alpn = "postgresql",
                 int max_version = 0) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    SSL_CTX_load_verify_locations(ctx_, ca_file.c_str(), nullptr);
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
    if (max_version != 0) SSL_CTX_set_max_proto_version(ctx_, max_version);
    if (!alpn.empty()) {
      Bytes wire_alpn{static_cast<std::uint8_t>(alpn.size())};
      wire_alpn.insert(wire_alpn.end(), alpn.begin(), alpn.end());
      SSL_CTX_set_alpn_protos(ctx_, wire_alpn.data(), static_cast<unsigned>(wire_alpn.size()));
    }
    ssl_ = SSL_new(ctx_);
    SSL_set_fd(ssl_, fd_);
    SSL_set_tlsext_host_name(ssl_, host.c_str());
    SSL_set1_host(ssl_, host.c_str());
    const bool ok = SSL_connect(ssl_) == 1;
    ERR_clear_error();
    return ok;
  }

  SSL* ssl() { return ssl_; }
  // Half-close: no more bytes from this client (plaintext only).
  void shutdown_write() { ::shutdown(fd_, SHUT_WR); }
  // Closes with a TCP reset instead of a FIN (plaintext only).
  void reset() {
    linger l{1, 0};
    setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
};

inline Bytes startup_for(const std::string& user = "alice", const std::string& db = "shop") {
  return wire::encode_startup({{"user", user}, {"database", db}});
}

// A fake PostgreSQL backend on an ephemeral loopback port. Each connection is served by
// its own thread; all are joined by the destructor.
class FakeBackend {
 public:
  static constexpr std::uint32_t kSecret = 0xA1B2C3D4;

  FakeBackend() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(listen_fd_, 128);
    socklen_t len = sizeof a;
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~FakeBackend() {
    stop_ = true;
    acceptor_.join();
    ::close(listen_fd_);
    std::lock_guard lock(mu_);
    for (int fd : open_fds_) ::shutdown(fd, SHUT_RDWR);
    for (auto& t : workers_) t.join();
  }

  std::uint16_t port() const { return port_; }
  std::vector<wire::CancelKey> cancels() const {
    std::lock_guard lock(mu_);
    return cancels_;
  }
  std::vector<std::string> users() const {
    std::lock_guard lock(mu_);
    return users_;
  }

 private:
  void accept_loop() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      const int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) continue;
      std::lock_guard lock(mu_);
      open_fds_.push_back(fd);
      const auto pid = static_cast<std::uint32_t>(1000 + workers_.size());
      workers_.emplace_back([this, fd, pid] { serve(fd, pid); });
    }
  }

  static bool read_exact(int fd, std::uint8_t* out, std::size_t n) {
    std::size_t have = 0;
    while (have < n) {
      const ssize_t r = ::recv(fd, out + have, n - have, 0);
      if (r <= 0) return false;
      have += static_cast<std::size_t>(r);
    }
    return true;
  }

  void serve(int fd, std::uint32_t pid) {
    Bytes head(4);
    if (read_exact(fd, head.data(), 4)) {
      const std::uint32_t len = wire::read_u32(head, 0);
      Bytes packet = head;
      packet.resize(len);
      if (len >= 8 && len <= 10004 && read_exact(fd, packet.data() + 4, len - 4)) {
        const auto r = wire::decode_startup(packet, wire::StartupPhase::initial);
        if (const auto* p = std::get_if<wire::StartupPacket>(&r)) {
          if (p->kind == wire::StartupKind::cancel_request) {
            std::lock_guard lock(mu_);
            cancels_.push_back(p->cancel);
          } else if (p->kind == wire::StartupKind::startup) {
            {
              std::lock_guard lock(mu_);
              users_.emplace_back(p->param("user"));
            }
            Bytes answer = {'R', 0, 0, 0, 8, 0, 0, 0, 0, 'K', 0, 0, 0, 12};
            wire::append_u32(answer, pid);
            wire::append_u32(answer, kSecret);
            answer.insert(answer.end(), {'Z', 0, 0, 0, 5, 'I'});
            ::send(fd, answer.data(), answer.size(), MSG_NOSIGNAL);
            std::uint8_t buf[4096];
            for (;;) {
              const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
              if (n <= 0) break;
              if (buf[0] == 'X') break;  // Terminate: close, like PostgreSQL
              ::send(fd, buf, static_cast<std::size_t>(n), MSG_NOSIGNAL);
            }
          }
        }
      }
    }
    {
      std::lock_guard lock(mu_);
      std::erase(open_fds_, fd);
    }
    ::close(fd);
  }

  int listen_fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  mutable std::mutex mu_;
  std::vector<std::thread> workers_;
  std::vector<int> open_fds_;
  std::vector<wire::CancelKey> cancels_;
  std::vector<std::string> users_;
};

}  // namespace tandem::portal::testing
