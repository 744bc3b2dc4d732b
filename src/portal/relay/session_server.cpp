// Session, server side: choosing a member, connecting to it (optionally with TLS) and
// handing it the client's StartupMessage.
#include <spdlog/spdlog.h>
#include <boost/asio/buffer.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>

#include "portal/relay/session.hpp"
#include "portal/tls/client_context.hpp"

namespace tandem::portal::relay {

namespace asio = boost::asio;

namespace {
// How often routing is retried when the target changes while a session attaches to it.
constexpr int kMaxRouteAttempts = 3;
}  // namespace

void Session::route_and_connect(int attempt) {
  auto target = ctx_->route ? ctx_->route() : std::nullopt;
  if (!target) {
    hold_or_refuse(attempt);
    return;
  }
  if (hold_until_) {
    hold_until_.reset();
    ctx_->counters.holding.fetch_sub(1, std::memory_order_relaxed);
    spdlog::info("portal {} session {} from {}: released to {}", ctx_->name, id_, peer_, target->describe());
  }
  endpoint_ = *target;
  ctx_->registry->set_endpoint(id_, endpoint_);
  // A target change between route() and set_endpoint() would miss this session in its
  // sweep of the registry; reading the route again after registering closes that gap.
  if (ctx_->route() != endpoint_) {
    if (attempt >= kMaxRouteAttempts) {
      ctx_->counters.no_route.fetch_add(1, std::memory_order_relaxed);
      reject(wire::sqlstate::kCannotConnectNow, "the leader is changing right now", "Retry in a few seconds.");
      return;
    }
    route_and_connect(attempt + 1);
    return;
  }
  ctx_->counters.routed.fetch_add(1, std::memory_order_relaxed);
  connect_backend([this] { forward_startup(); });
}

void Session::hold_or_refuse(int attempt) {
  const auto now = Clock::now();
  const bool may_hold = ctx_->hold && ctx_->options.hold_timeout.count() > 0 && ctx_->hold();
  if (may_hold && !hold_until_) {
    // The start-up timer no longer applies: the client has done its part.
    ++timer_generation_;
    timer_.cancel();
    hold_until_ = now + ctx_->options.hold_timeout;
    ctx_->counters.held.fetch_add(1, std::memory_order_relaxed);
    ctx_->counters.holding.fetch_add(1, std::memory_order_relaxed);
    spdlog::info("portal {} session {} from {}: a leader change is in progress; holding for up to {} ms", ctx_->name,
                 id_, peer_, ctx_->options.hold_timeout.count());
  }
  if (may_hold && now < *hold_until_) {
    auto retry = std::make_shared<asio::steady_timer>(executor_, ctx_->options.hold_retry);
    retry->async_wait([self = shared_from_this(), retry, attempt](const boost::system::error_code& ec) {
      if (ec || self->done()) return;
      self->route_and_connect(attempt);
    });
    return;
  }
  ctx_->counters.no_route.fetch_add(1, std::memory_order_relaxed);
  if (hold_until_) {
    hold_until_.reset();
    ctx_->counters.holding.fetch_sub(1, std::memory_order_relaxed);
    ctx_->counters.hold_timeouts.fetch_add(1, std::memory_order_relaxed);
    reject(wire::sqlstate::kCannotConnectNow,
           fmt::format("no leader accepted writes within {} ms", ctx_->options.hold_timeout.count()),
           "A leader change is taking longer than usual; retry in a few seconds.");
    return;
  }
  reject(wire::sqlstate::kCannotConnectNow, "no leader is available right now",
         "The cluster may be electing a new leader; retry in a few seconds.");
}

void Session::connect_backend(std::function<void()> on_ready) {
  state_ = State::connecting;
  arm_timer(Clock::now() + ctx_->options.connect_timeout);
  backend_.emplace(tcp::socket(executor_));
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(endpoint_.host, ec);
  auto on_connect = [self = shared_from_this(), on_ready = std::move(on_ready)](const boost::system::error_code& ec,
                                                                                const auto&) mutable {
    if (self->done()) return;
    if (ec) {
      self->backend_failed(ec.message());
      return;
    }
    self->on_backend_connected(std::move(on_ready));
  };
  if (!ec) {
    const std::array<tcp::endpoint, 1> targets{tcp::endpoint(address, endpoint_.port)};
    asio::async_connect(backend_->socket(), targets, std::move(on_connect));
    return;
  }
  resolver_.emplace(executor_);
  resolver_->async_resolve(
      endpoint_.host, std::to_string(endpoint_.port),
      [self = shared_from_this(), on_connect = std::move(on_connect)](
          const boost::system::error_code& ec, const tcp::resolver::results_type& results) mutable {
        if (self->done()) return;
        if (ec) {
          self->backend_failed(fmt::format("cannot resolve {}: {}", self->endpoint_.host, ec.message()));
          return;
        }
        asio::async_connect(self->backend_->socket(), results, std::move(on_connect));
      });
}

void Session::on_backend_connected(std::function<void()> on_ready) {
  boost::system::error_code ignored;
  backend_->socket().set_option(tcp::no_delay(true), ignored);
  backend_->socket().set_option(asio::socket_base::keep_alive(true), ignored);
  if (!endpoint_.tls) {
    on_ready();
    return;
  }
  if (!ctx_->backend_tls) {
    backend_failed("TLS to this member is configured, but the portal has no CA file to verify it");
    return;
  }
  reply_ = wire::encode_request_code(wire::kSslRequestCode);
  backend_->async_write(asio::buffer(reply_), [self = shared_from_this(), on_ready = std::move(on_ready)](
                                                  const boost::system::error_code& ec, std::size_t) mutable {
    if (self->done()) return;
    if (ec) {
      self->backend_failed(ec.message());
      return;
    }
    self->start_backend_tls(std::move(on_ready));
  });
}

void Session::start_backend_tls(std::function<void()> on_ready) {
  asio::async_read(
      backend_->socket(), asio::buffer(&byte_, 1),
      [self = shared_from_this(), on_ready = std::move(on_ready)](const boost::system::error_code& ec,
                                                                  std::size_t) mutable {
        if (self->done()) return;
        if (ec) {
          self->backend_failed(ec.message());
          return;
        }
        if (self->byte_ != wire::kAcceptTls) {
          self->backend_failed("the member refused TLS (is ssl = on in its postgresql.conf?)");
          return;
        }
        self->backend_->start_tls(self->ctx_->backend_tls);
        const auto& name =
            self->endpoint_.tls_server_name.empty() ? self->endpoint_.host : self->endpoint_.tls_server_name;
        if (auto s = tls::expect_server_identity(self->backend_->ssl(), name); !s) {
          self->backend_failed(s.error().message);
          return;
        }
        self->backend_->tls().async_handshake(asio::ssl::stream_base::client, [self, on_ready = std::move(on_ready)](
                                                                                  const boost::system::error_code& ec) {
          if (self->done()) return;
          if (ec) {
            const long verify = SSL_get_verify_result(self->backend_->ssl());
            self->backend_failed(fmt::format(
                "TLS handshake with the member failed: {}{}", ec.message(),
                verify != X509_V_OK ? fmt::format(" ({})", X509_verify_cert_error_string(verify)) : std::string()));
            return;
          }
          self->check_channel_binding();
          on_ready();
        });
      });
}

// SCRAM-SHA-256-PLUS binds to the hash of the certificate the client saw (ours); the
// member checks it against its own. They agree only when both present the same
// certificate, so a difference is worth one warning per listener.
void Session::check_channel_binding() {
  if (!client_.is_tls()) return;
  const X509* ours = SSL_get_certificate(client_.ssl());
  const X509* theirs = SSL_get0_peer_certificate(backend_->ssl());
  if (ours == nullptr || theirs == nullptr || X509_cmp(ours, theirs) == 0) return;
  if (ctx_->warned_cert_mismatch.exchange(true)) return;
  spdlog::warn(
      "portal {}: {} presents a different certificate than the portal, so SCRAM channel binding "
      "(SCRAM-SHA-256-PLUS) fails through the portal; give portals and members the same certificate, or have "
      "clients use channel_binding=disable",
      ctx_->name, endpoint_.describe());
}

void Session::backend_failed(const std::string& why) {
  ctx_->counters.backend_failures.fetch_add(1, std::memory_order_relaxed);
  reject(wire::sqlstate::kConnectionFailure, fmt::format("could not connect to {}: {}", endpoint_.describe(), why),
         "The portal will route new connections to the current leader; retry in a few seconds.");
}

void Session::forward_startup() {
  // Forward exactly what the client sent (any bytes it sent after the StartupMessage too).
  backend_->async_write(asio::buffer(startup_.data(), have_), [self = shared_from_this()](
                                                                  const boost::system::error_code& ec, std::size_t n) {
    if (self->done()) return;
    if (ec) {
      self->backend_failed(ec.message());
      return;
    }
    self->ctx_->counters.bytes_to_server.fetch_add(n, std::memory_order_relaxed);
    spdlog::debug("portal {} session {} from {}: user {} database {} attached to {}", self->ctx_->name, self->id_,
                  self->peer_, self->user_, self->database_, self->endpoint_.describe());
    self->start_relay();
  });
}

}  // namespace tandem::portal::relay
