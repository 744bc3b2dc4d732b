#pragma once
// A relay thread for plaintext sessions: once a session's client and member sockets are
// both plain TCP and the member has its StartupMessage, the session hands the two sockets
// to one RelayLoop, which moves bytes between them until either side ends. Its own
// level-triggered epoll loop costs one read and one write per chunk and direction (plus
// one epoll_wait per batch of ready sockets), with no per-message allocation:
//  - client → member is spliced (splice(2) through a pipe) from the start;
//  - member → client is copied through one buffer until ReadyForQuery (the bytes are
//    scanned for BackendKeyData, which keeps CancelRequest working), then spliced too.
// A session whose client side is TLS (and member side plain) can be adopted as well: its
// SSL object then reads and writes the client socket directly (SSL_read / SSL_write, read
// ahead on), through one buffer per direction.
// Pipes and start-up buffers are pooled per loop. A half-close is passed on (shutdown of
// the other side's write direction); the session ends when both directions ended, on an
// error, on the idle timeout, or when asked through request_close().
// Owned by the RelayServer, which stops it after its asio workers; a connection stays
// on its loop for its whole life, so the loop's state needs no locks (only the inbox).
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/result.hpp"
#include "portal/relay/buffer.hpp"
#include "portal/relay/pump.hpp"
#include "portal/relay/session_registry.hpp"

namespace tandem::portal::relay {

class Session;

class RelayLoop {
 public:
  explicit RelayLoop(std::string name);
  ~RelayLoop();
  RelayLoop(const RelayLoop&) = delete;
  RelayLoop& operator=(const RelayLoop&) = delete;

  // Creates the epoll and wake-up descriptors and starts the thread.
  [[nodiscard]] Status start();
  // Stops the thread and closes every connection still on the loop (their sessions end
  // here, on the caller's thread). Idempotent.
  void stop();

  // Takes over a session's sockets (the descriptors now belong to the loop). `client_ssl`
  // (owned by the session) is set when the client side is TLS; it must already do its I/O
  // on `client_fd`. From any thread.
  void adopt(std::shared_ptr<Session> session, int client_fd, int server_fd, SSL* client_ssl = nullptr);
  // Asks the loop to close one session; unknown ids are ignored. From any thread.
  void request_close(SessionId id, std::string reason);

  // Sessions on this loop right now (for tests and metrics).
  std::size_t connections() const { return count_.load(std::memory_order_relaxed); }

 private:
  struct Connection;
  struct Direction;
  struct Tag {
    Connection* conn;
    bool client;  // the client's socket (else the member's)
  };
  struct Adoption {
    std::shared_ptr<Session> session;
    int client_fd;
    int server_fd;
    SSL* client_ssl;
  };
  struct CloseRequest {
    SessionId id;
    std::string reason;
  };
  using Clock = std::chrono::steady_clock;

  void run();
  void wake();
  void drain_inbox();
  void add(Adoption a);
  void on_event(const Tag& tag, std::uint32_t events);
  // Reads once in `d` and writes what it read; false when the connection was closed.
  bool pump(Connection& c, Direction& d);
  bool flush(Connection& c, Direction& d);
  void on_eof(Connection& c, Direction& d);
  void maybe_switch_to_splice(Connection& c);
  void update_interest(Connection& c);
  void check_idle(Clock::time_point now);
  void close(Connection& c, const std::string& reason);
  Pipe take_pipe();
  void give_pipe(Pipe p);
  std::unique_ptr<RelayBuffer> take_buffer(std::size_t size);
  void give_buffer(std::unique_ptr<RelayBuffer> b);

  std::string name_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: new adoptions or close requests in the inbox
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<std::size_t> count_{0};

  std::mutex inbox_mu_;
  std::vector<Adoption> adoptions_;
  std::vector<CloseRequest> close_requests_;
  std::atomic<bool> wake_pending_{false};

  // Loop thread only.
  std::map<SessionId, std::unique_ptr<Connection>> connections_;
  std::vector<std::unique_ptr<Connection>> closed_;  // freed after the current batch of events
  std::vector<Pipe> spare_pipes_;
  std::vector<std::unique_ptr<RelayBuffer>> spare_buffers_;
  Clock::time_point next_idle_check_{};
  Clock::time_point idle_since_{};  // when the last connection closed
};

}  // namespace tandem::portal::relay
