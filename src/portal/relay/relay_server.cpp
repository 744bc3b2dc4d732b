#include "portal/relay/relay_server.hpp"

#include <future>

#include <spdlog/spdlog.h>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

namespace tandem::portal::relay {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {
// After an accept error (for example EMFILE), wait this long before accepting again.
constexpr std::chrono::milliseconds kAcceptBackoff{100};
// How long stop() lets sessions close on their own before it stops the workers.
constexpr std::chrono::seconds kStopGrace{2};
}  // namespace

RelayServer::RelayServer(RelayServerOptions opts, tls::ServerContextHolder* server_tls,
                         std::shared_ptr<tls::SslContext> backend_tls, RouteFn route, SessionRegistry* registry)
    : opts_(std::move(opts)), ctx_(std::make_shared<ListenerContext>()) {
  ctx_->name = opts_.name;
  ctx_->options = opts_.session;
  ctx_->server_tls = server_tls;
  ctx_->backend_tls = std::move(backend_tls);
  ctx_->route = std::move(route);
  ctx_->hold = opts_.hold;
  ctx_->registry = registry;
}

RelayServer::~RelayServer() {
  stop();
}

Status RelayServer::start() {
  if (running_) return make_error(Errc::internal, "relay {} is already running", opts_.name);
  const int count = std::max(1, opts_.workers);
  for (int i = 0; i < count; ++i) {
    workers_.push_back(std::make_unique<IoContext>(1));
    guards_.emplace_back(workers_.back()->get_executor());
  }
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(opts_.listen_host, ec);
  if (ec) return make_error(Errc::invalid_argument, "'{}' is not an IP address to listen on", opts_.listen_host);
  acceptor_ = std::make_unique<tcp::acceptor>(*workers_[0]);
  const tcp::endpoint where(address, opts_.port);
  acceptor_->open(where.protocol(), ec);
  if (!ec) acceptor_->set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor_->bind(where, ec);
  if (!ec) acceptor_->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    acceptor_.reset();
    guards_.clear();
    workers_.clear();
    return make_error(Errc::unavailable, "portal {} cannot listen on {}:{}: {}", opts_.name, opts_.listen_host,
                      opts_.port, ec.message());
  }
  port_ = acceptor_->local_endpoint().port();
  const int loops = opts_.relay_loops < 0 ? count : opts_.relay_loops;
  for (int i = 0; i < loops; ++i) {
    loops_.push_back(std::make_unique<RelayLoop>(fmt::format("{}-{}", opts_.name, i)));
    if (auto s = loops_.back()->start(); !s.ok()) {
      loops_.clear();
      ctx_->loops.clear();
      acceptor_.reset();
      guards_.clear();
      workers_.clear();
      return s;
    }
    ctx_->loops.push_back(loops_.back().get());
  }
  ctx_->stopping.store(false);
  for (auto& w : workers_) threads_.emplace_back([io = w.get()] { io->run(); });
  running_ = true;
  asio::post(*workers_[0], [this] { accept_next(); });
  spdlog::info("portal {} listening on {}:{} with {} workers and {} relay threads", opts_.name, opts_.listen_host,
               port_, count, loops_.size());
  return {};
}

void RelayServer::accept_next() {
  IoContext& target = *workers_[next_worker_];
  next_worker_ = (next_worker_ + 1) % workers_.size();
  // The socket belongs to the worker that will own the session.
  auto socket = std::make_shared<tcp::socket>(target);
  acceptor_->async_accept(*socket, [this, &target, socket](const boost::system::error_code& ec) {
    if (ec == asio::error::operation_aborted || !acceptor_->is_open()) return;
    if (ec) {
      spdlog::warn("portal {}: accept failed: {}; retrying in {} ms", opts_.name, ec.message(), kAcceptBackoff.count());
      auto timer = std::make_shared<asio::steady_timer>(*workers_[0], kAcceptBackoff);
      timer->async_wait([this, timer](const boost::system::error_code& e) {
        if (!e && acceptor_->is_open()) accept_next();
      });
      return;
    }
    auto session = std::make_shared<Session>(std::move(*socket), ctx_);
    asio::post(target, [session] { session->start(); });
    accept_next();
  });
}

void RelayServer::stop() {
  if (!running_) return;
  running_ = false;
  ctx_->stopping.store(true);
  std::promise<void> closed;
  asio::post(*workers_[0], [this, &closed] {
    boost::system::error_code ignored;
    acceptor_->close(ignored);
    closed.set_value();
  });
  closed.get_future().wait();
  const auto n = ctx_->registry->close_listener(ctx_->name, "the portal is shutting down");
  guards_.clear();
  const auto deadline = std::chrono::steady_clock::now() + kStopGrace;
  while (ctx_->counters.active.load() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  for (auto& w : workers_) w->stop();
  for (auto& t : threads_) t.join();
  threads_.clear();
  // Sessions still on a loop end here, while their workers' io_contexts still exist.
  for (auto& l : loops_) l->stop();
  ctx_->loops.clear();
  loops_.clear();
  acceptor_.reset();
  workers_.clear();
  spdlog::info("portal {} stopped ({} sessions closed)", opts_.name, n);
}

}  // namespace tandem::portal::relay
