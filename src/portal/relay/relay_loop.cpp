#include "portal/relay/relay_loop.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <csignal>
#include <cstring>

#include <openssl/err.h>
#include <spdlog/spdlog.h>

#include "portal/relay/session.hpp"

namespace tandem::portal::relay {

namespace {
// How often idle sessions and lingering half-closed ones are looked for (only while the
// loop has connections).
constexpr std::chrono::milliseconds kCheckInterval{100};
// After one side closed its direction, how long the other may keep the session open.
constexpr std::chrono::seconds kHalfCloseLinger{30};
// How long a loop without connections keeps its pooled pipes and buffers.
constexpr std::chrono::seconds kPoolLinger{1};
constexpr std::size_t kMaxSparePipes = 64;
constexpr std::size_t kMaxSpareBuffers = 16;
constexpr int kMaxEvents = 64;

std::string describe_errno(int err) {
  if (err == EPROTO) return "TLS error";
  return err == ECONNRESET || err == EPIPE ? "connection reset" : std::strerror(err);
}
}  // namespace

struct RelayLoop::Direction {
  Direction(int src, int dst, bool to_server) : pump(src, dst), to_server(to_server) {}
  Pump pump;
  bool to_server;
  bool eof = false;  // the source ended; the destination's write side was shut down
  const char* source() const { return to_server ? "client" : "member"; }
  const char* destination() const { return to_server ? "member" : "client"; }
  bool can_read() const { return !eof && pump.pending() == 0; }
};

struct RelayLoop::Connection {
  Connection(std::shared_ptr<Session> s, int cfd, int sfd)
      : session(std::move(s)),
        client_fd(cfd),
        server_fd(sfd),
        to_server(cfd, sfd, true),
        to_client(sfd, cfd, false),
        client_tag{this, true},
        server_tag{this, false} {}

  std::shared_ptr<Session> session;
  int client_fd;
  int server_fd;
  Direction to_server;
  Direction to_client;
  std::unique_ptr<RelayBuffer> to_server_buffer;  // only when no pipe could be had
  std::unique_ptr<RelayBuffer> to_client_buffer;  // until ReadyForQuery (or without a pipe)
  Tag client_tag;
  Tag server_tag;
  std::uint32_t client_events = 0;  // interest registered with epoll
  std::uint32_t server_events = 0;
  SSL* client_ssl = nullptr;  // the session's, when the client side is TLS (never spliced)
  Clock::time_point last_activity;
  Clock::time_point half_closed_at;
  bool closed = false;
};

RelayLoop::RelayLoop(std::string name) : name_(std::move(name)) {}

RelayLoop::~RelayLoop() {
  stop();
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

Status RelayLoop::start() {
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) return make_error(Errc::io, "relay loop {}: epoll_create1: {}", name_, std::strerror(errno));
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) return make_error(Errc::io, "relay loop {}: eventfd: {}", name_, std::strerror(errno));
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;  // the wake-up descriptor
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev) != 0) {
    return make_error(Errc::io, "relay loop {}: epoll_ctl: {}", name_, std::strerror(errno));
  }
  thread_ = std::thread([this] { run(); });
  return {};
}

void RelayLoop::stop() {
  if (!thread_.joinable()) return;
  stopping_.store(true);
  wake();
  thread_.join();
  // Whatever is still here ends now, on this thread.
  drain_inbox();
  while (!connections_.empty()) close(*connections_.begin()->second, "the portal is shutting down");
  closed_.clear();
}

void RelayLoop::adopt(std::shared_ptr<Session> session, int client_fd, int server_fd, SSL* client_ssl) {
  {
    std::lock_guard lock(inbox_mu_);
    adoptions_.push_back({std::move(session), client_fd, server_fd, client_ssl});
  }
  wake();
}

void RelayLoop::request_close(SessionId id, std::string reason) {
  {
    std::lock_guard lock(inbox_mu_);
    close_requests_.push_back({id, std::move(reason)});
  }
  wake();
}

void RelayLoop::wake() {
  if (wake_pending_.exchange(true)) return;  // one write is enough until the loop reads it
  const std::uint64_t one = 1;
  [[maybe_unused]] const auto n = ::write(wake_fd_, &one, sizeof one);
}

void RelayLoop::run() {
  // splice(2) into a socket whose peer is gone raises SIGPIPE; here it is only an error.
  sigset_t pipe_signal;
  sigemptyset(&pipe_signal);
  sigaddset(&pipe_signal, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_signal, nullptr);

  std::array<epoll_event, kMaxEvents> events;
  while (!stopping_.load(std::memory_order_relaxed)) {
    const bool pooled = !spare_pipes_.empty() || !spare_buffers_.empty();
    const int timeout = connections_.empty() && !pooled ? -1 : static_cast<int>(kCheckInterval.count());
    const int n = ::epoll_wait(epoll_fd_, events.data(), kMaxEvents, timeout);
    if (n < 0 && errno != EINTR) {
      spdlog::error("portal relay loop {}: epoll_wait failed: {}", name_, std::strerror(errno));
      break;
    }
    for (int i = 0; i < n; ++i) {
      if (events[i].data.ptr == nullptr) {
        std::uint64_t v;
        [[maybe_unused]] const auto r = ::read(wake_fd_, &v, sizeof v);
        wake_pending_.store(false);
        drain_inbox();
        continue;
      }
      on_event(*static_cast<const Tag*>(events[i].data.ptr), events[i].events);
    }
    closed_.clear();  // no event of this batch refers to them any more
    if (connections_.empty() && pooled && Clock::now() - idle_since_ >= kPoolLinger) {
      // Idle for a while: give the pooled pipes and buffers back, so an idle portal holds
      // none (kept meanwhile: clients that reconnect for every transaction reuse them).
      spare_pipes_.clear();
      spare_buffers_.clear();
    }
    if (!connections_.empty()) {
      const auto now = Clock::now();
      if (now >= next_idle_check_) {
        next_idle_check_ = now + kCheckInterval;
        check_idle(now);
        closed_.clear();
      }
    }
  }
}

void RelayLoop::drain_inbox() {
  std::vector<Adoption> adoptions;
  std::vector<CloseRequest> closes;
  {
    std::lock_guard lock(inbox_mu_);
    adoptions.swap(adoptions_);
    closes.swap(close_requests_);
  }
  for (auto& a : adoptions) add(std::move(a));
  for (auto& r : closes) {
    const auto it = connections_.find(r.id);
    if (it != connections_.end()) close(*it->second, r.reason);
  }
}

void RelayLoop::add(Adoption a) {
  for (int fd : {a.client_fd, a.server_fd}) {
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags >= 0 && (flags & O_NONBLOCK) == 0) ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  }
  const SessionId id = a.session->id_;
  auto owned = std::make_unique<Connection>(std::move(a.session), a.client_fd, a.server_fd);
  Connection& c = *owned;
  connections_.emplace(id, std::move(owned));
  count_.fetch_add(1, std::memory_order_relaxed);
  c.last_activity = Clock::now();
  const std::size_t buffer_size = std::max(c.session->ctx_->options.buffer_size, kMinBufferSize);

  c.client_ssl = a.client_ssl;
  Pipe pipe = c.client_ssl == nullptr ? take_pipe() : Pipe();
  if (pipe.valid()) {
    c.to_server.pump.use_pipe(std::move(pipe));
  } else {
    c.to_server_buffer = take_buffer(buffer_size);
    c.to_server.pump.use_buffer(c.to_server_buffer.get());
  }
  c.to_client_buffer = take_buffer(buffer_size);
  c.to_client.pump.use_buffer(c.to_client_buffer.get());
  if (c.client_ssl != nullptr) {
    c.to_server.pump.use_tls(c.client_ssl, nullptr);
    c.to_client.pump.use_tls(nullptr, c.client_ssl);
  }
  maybe_switch_to_splice(c);

  for (Tag* tag : {&c.client_tag, &c.server_tag}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = tag;
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, tag->client ? c.client_fd : c.server_fd, &ev) != 0) {
      close(c, fmt::format("the relay could not watch the connection: {}", std::strerror(errno)));
      return;
    }
  }
  c.client_events = c.server_events = EPOLLIN;
}

void RelayLoop::on_event(const Tag& tag, std::uint32_t events) {
  Connection& c = *tag.conn;
  if (c.closed) return;
  // This socket is the source of one direction and the destination of the other.
  Direction& in = tag.client ? c.to_server : c.to_client;
  Direction& out = tag.client ? c.to_client : c.to_server;
  const char* side = tag.client ? "client" : "member";
  if ((events & EPOLLERR) != 0) {
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(tag.client ? c.client_fd : c.server_fd, SOL_SOCKET, SO_ERROR, &err, &len);
    close(c, fmt::format("{} connection failed: {}", side, describe_errno(err != 0 ? err : ECONNRESET)));
    return;
  }
  bool acted = false;
  if ((events & (EPOLLOUT | EPOLLHUP)) != 0 && out.pump.pending() > 0) {
    acted = true;
    if (!flush(c, out)) return;
  }
  if ((events & (EPOLLIN | EPOLLHUP)) != 0 && in.can_read()) {
    acted = true;
    if (!pump(c, in)) return;
  }
  if (!acted && (events & EPOLLHUP) != 0) {
    close(c, fmt::format("{} closed the connection", side));
    return;
  }
  update_interest(c);
}

bool RelayLoop::pump(Connection& c, Direction& d) {
  auto& counters = c.session->ctx_->counters;
  for (;;) {
    switch (d.pump.fill()) {
      case Pump::Read::data: {
        c.last_activity = Clock::now();
        const auto n = d.pump.last_read();
        (d.to_server ? counters.bytes_to_server : counters.bytes_to_client).fetch_add(n, std::memory_order_relaxed);
        if (!d.to_server && !c.session->scanner_.done()) c.session->scan_server_bytes(d.pump.last_chunk());
        if (!flush(c, d)) return false;
        // TLS may have read more records than it returned; the socket will not say so.
        if (d.pump.source_has_buffered() && d.can_read()) continue;
        return true;
      }
      case Pump::Read::eof: on_eof(c, d); return !c.closed;
      case Pump::Read::would_block: return true;
      case Pump::Read::error:
        close(c, fmt::format("{} connection failed: {}", d.source(), describe_errno(d.pump.error())));
        return false;
    }
    return true;
  }
}

bool RelayLoop::flush(Connection& c, Direction& d) {
  switch (d.pump.flush()) {
    case Pump::Write::done:
      if (!d.to_server) maybe_switch_to_splice(c);
      return true;
    case Pump::Write::blocked: return true;
    case Pump::Write::error:
      close(c, fmt::format("{} connection failed: {}", d.destination(), describe_errno(d.pump.error())));
      return false;
  }
  return true;
}

void RelayLoop::on_eof(Connection& c, Direction& d) {
  d.eof = true;
  Direction& other = d.to_server ? c.to_client : c.to_server;
  if (other.eof) {
    close(c, fmt::format("{} closed the connection", d.source()));
    return;
  }
  // Pass the half-close on: the other side reads end-of-stream once it has everything
  // (a TLS client gets a close_notify first).
  if (!d.to_server && c.client_ssl != nullptr) {
    SSL_shutdown(c.client_ssl);
    ERR_clear_error();
  }
  ::shutdown(d.to_server ? c.server_fd : c.client_fd, SHUT_WR);
  c.half_closed_at = Clock::now();
}

void RelayLoop::maybe_switch_to_splice(Connection& c) {
  Pump& p = c.to_client.pump;
  if (c.client_ssl != nullptr || p.mode() != Pump::Mode::copy || p.pending() != 0 || !c.session->scanner_.done()) {
    return;
  }
  Pipe pipe = take_pipe();
  if (!pipe.valid()) return;  // out of descriptors: keep copying
  p.use_pipe(std::move(pipe));
  give_buffer(std::move(c.to_client_buffer));
}

void RelayLoop::update_interest(Connection& c) {
  const std::uint32_t client_want =
      (c.to_server.can_read() ? EPOLLIN : 0u) | (c.to_client.pump.pending() > 0 ? EPOLLOUT : 0u);
  const std::uint32_t server_want =
      (c.to_client.can_read() ? EPOLLIN : 0u) | (c.to_server.pump.pending() > 0 ? EPOLLOUT : 0u);
  if (client_want != c.client_events) {
    epoll_event ev{};
    ev.events = client_want;
    ev.data.ptr = &c.client_tag;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.client_fd, &ev);
    c.client_events = client_want;
  }
  if (server_want != c.server_events) {
    epoll_event ev{};
    ev.events = server_want;
    ev.data.ptr = &c.server_tag;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.server_fd, &ev);
    c.server_events = server_want;
  }
}

void RelayLoop::check_idle(Clock::time_point now) {
  const auto ms = [](auto d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); };
  std::vector<std::pair<Connection*, std::string>> expired;
  for (auto& [id, c] : connections_) {
    const auto idle = c->session->ctx_->options.idle_timeout;
    if (idle.count() > 0 && now - c->last_activity >= idle) {
      c->session->ctx_->counters.timeouts.fetch_add(1, std::memory_order_relaxed);
      expired.emplace_back(c.get(), fmt::format("idle for {} ms", ms(idle)));
    } else if ((c->to_server.eof || c->to_client.eof) && now - c->half_closed_at >= kHalfCloseLinger) {
      expired.emplace_back(c.get(), fmt::format("{} did not close its side within {} s after the {} did",
                                                c->to_server.eof ? "member" : "client", kHalfCloseLinger.count(),
                                                c->to_server.eof ? "client" : "member"));
    }
  }
  for (auto& [c, reason] : expired) close(*c, reason);
}

void RelayLoop::close(Connection& c, const std::string& reason) {
  if (c.closed) return;
  c.closed = true;
  if (c.client_ssl != nullptr && !c.to_client.eof) {
    SSL_shutdown(c.client_ssl);  // close_notify, as PostgreSQL sends it; best effort, never waits
    ERR_clear_error();
  }
  ::close(c.client_fd);  // also removes them from the epoll set
  ::close(c.server_fd);
  give_pipe(c.to_server.pump.take_pipe());
  give_pipe(c.to_client.pump.take_pipe());
  give_buffer(std::move(c.to_server_buffer));
  give_buffer(std::move(c.to_client_buffer));
  c.session->end_on_loop(reason);
  const auto it = connections_.find(c.session->id_);
  if (it != connections_.end()) {
    closed_.push_back(std::move(it->second));
    connections_.erase(it);
    count_.fetch_sub(1, std::memory_order_relaxed);
  }
  if (connections_.empty()) idle_since_ = Clock::now();
}

Pipe RelayLoop::take_pipe() {
  if (spare_pipes_.empty()) return Pipe::open();
  Pipe p = std::move(spare_pipes_.back());
  spare_pipes_.pop_back();
  return p;
}

void RelayLoop::give_pipe(Pipe p) {
  if (p.valid() && spare_pipes_.size() < kMaxSparePipes) spare_pipes_.push_back(std::move(p));
}

std::unique_ptr<RelayBuffer> RelayLoop::take_buffer(std::size_t size) {
  while (!spare_buffers_.empty()) {
    auto b = std::move(spare_buffers_.back());
    spare_buffers_.pop_back();
    if (b->size() == size) return b;
  }
  return std::make_unique<RelayBuffer>(size);
}

void RelayLoop::give_buffer(std::unique_ptr<RelayBuffer> b) {
  if (b && spare_buffers_.size() < kMaxSpareBuffers) spare_buffers_.push_back(std::move(b));
}

}  // namespace tandem::portal::relay
