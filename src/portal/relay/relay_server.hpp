#pragma once
// One relay listener: a TCP acceptor and a few worker threads, each running its own
// io_context. Accepted connections are dealt round-robin to the workers, and a session
// stays on its worker for its whole life, so the relay path takes no locks.
// Owned by the portal; start() and stop() are called from the owner's thread. Sessions are
// closed through the registry by posting to their worker, so whoever changes routes
// (CurrentRoute::set) must stop doing so before the server is destroyed.
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "base/result.hpp"
#include "portal/relay/relay_loop.hpp"
#include "portal/relay/session.hpp"

namespace tandem::portal::relay {

struct RelayServerOptions {
  std::string name = "rw";  // listener name in logs, metrics and the registry
  std::string listen_host = "127.0.0.1";
  std::uint16_t port = 0;  // 0: an ephemeral port (see port())
  int workers = 2;
  // Relay threads for sessions that are plain TCP on both sides (splice, see relay_loop.hpp);
  // -1: as many as workers; 0: none (those sessions relay on the asio workers too).
  int relay_loops = -1;
  RelayOptions session;
  HoldFn hold;  // empty: never hold (a session with no route is refused at once)
};

class RelayServer {
 public:
  // `server_tls` may be null (no TLS offered: only useful with allow_plaintext);
  // `server_tls` and `registry` must outlive the server.
  RelayServer(RelayServerOptions opts, tls::ServerContextHolder* server_tls,
              std::shared_ptr<tls::SslContext> backend_tls, RouteFn route, SessionRegistry* registry);
  ~RelayServer();
  RelayServer(const RelayServer&) = delete;
  RelayServer& operator=(const RelayServer&) = delete;

  // Binds and starts the workers. The error names the address when it is taken.
  [[nodiscard]] Status start();
  // Stops accepting, closes every session of this listener and joins the workers.
  void stop();

  std::uint16_t port() const { return port_; }
  const RelayCounters& counters() const { return ctx_->counters; }
  const std::string& name() const { return ctx_->name; }

 private:
  using IoContext = boost::asio::io_context;
  using WorkGuard = boost::asio::executor_work_guard<IoContext::executor_type>;

  void accept_next();

  RelayServerOptions opts_;
  std::shared_ptr<ListenerContext> ctx_;
  std::vector<std::unique_ptr<IoContext>> workers_;
  std::vector<WorkGuard> guards_;
  std::vector<std::thread> threads_;
  std::vector<std::unique_ptr<RelayLoop>> loops_;             // stopped after the workers
  std::unique_ptr<boost::asio::ip::tcp::acceptor> acceptor_;  // on workers_[0]
  std::size_t next_worker_ = 0;                               // touched on workers_[0] only
  std::uint16_t port_ = 0;
  bool running_ = false;
};

}  // namespace tandem::portal::relay
