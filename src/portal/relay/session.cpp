// Session lifecycle: construction, registration, close.
#include "portal/relay/session.hpp"

#include "portal/relay/relay_loop.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>

namespace tandem::portal::relay {

namespace asio = boost::asio;

Session::Session(tcp::socket socket, std::shared_ptr<ListenerContext> ctx)
    : ctx_(std::move(ctx)), executor_(socket.get_executor()), client_(std::move(socket)), timer_(executor_) {
  ctx_->counters.accepted.fetch_add(1, std::memory_order_relaxed);
  ctx_->counters.active.fetch_add(1, std::memory_order_relaxed);
}

Session::~Session() {
  // Normally close() has removed it already; not when a stopped worker dropped the session.
  if (id_ != 0) ctx_->registry->remove(id_);
  if (hold_until_) ctx_->counters.holding.fetch_sub(1, std::memory_order_relaxed);
  ctx_->counters.active.fetch_sub(1, std::memory_order_relaxed);
}

void Session::start() {
  boost::system::error_code ec;
  const auto remote = client_.socket().remote_endpoint(ec);
  peer_ = ec ? "unknown peer" : fmt::format("{}:{}", remote.address().to_string(), remote.port());
  client_.socket().set_option(tcp::no_delay(true), ec);
  client_.socket().set_option(asio::socket_base::keep_alive(true), ec);
  // The registry may ask from any thread; the close itself runs on this session's thread.
  id_ = ctx_->registry->add(ctx_->name, [weak = weak_from_this(), exec = executor_](const std::string& reason) {
    asio::post(exec, [weak, reason] {
      if (auto self = weak.lock()) self->close(reason);
    });
  });
  if (ctx_->stopping.load()) {
    close("the portal is shutting down");
    return;
  }
  if (static_cast<std::size_t>(ctx_->counters.active.load(std::memory_order_relaxed)) > ctx_->options.max_sessions) {
    ctx_->counters.rejected_too_many.fetch_add(1, std::memory_order_relaxed);
    reject(wire::sqlstate::kTooManyConnections, "too many connections to this portal",
           fmt::format("This portal accepts at most {} connections.", ctx_->options.max_sessions));
    return;
  }
  arm_timer(Clock::now() + ctx_->options.handshake_timeout);
  read_startup();
}

void Session::close(const std::string& reason) {
  if (loop_ != nullptr) {
    loop_->request_close(id_, reason);
    return;
  }
  if (state_ == State::finished) return;
  const bool relayed = state_ == State::relaying;
  state_ = State::finished;
  rejecting_ = false;
  ++timer_generation_;
  timer_.cancel();
  if (resolver_) resolver_->cancel();
  client_.close();
  if (backend_) backend_->close();
  ctx_->registry->remove(id_);
  if (relayed) {
    spdlog::info("portal {} session {} from {} (user {}, database {}, {}) closed: {}", ctx_->name, id_, peer_, user_,
                 database_, endpoint_.describe(), reason);
  } else if (reported_) {
    spdlog::debug("portal {} session {} from {} closed: {}", ctx_->name, id_, peer_, reason);
  } else {
    spdlog::info("portal {} session {} from {} closed: {}", ctx_->name, id_, peer_, reason);
  }
}

}  // namespace tandem::portal::relay
