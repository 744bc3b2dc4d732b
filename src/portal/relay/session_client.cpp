// Session, client side: everything before a member is involved.
#include <spdlog/spdlog.h>
#include <algorithm>
#include <cstring>

#include <boost/asio/buffer.hpp>

#include "portal/relay/session.hpp"

namespace tandem::portal::relay {

namespace asio = boost::asio;
using wire::StartupKind;

namespace {
// The negotiation buffer starts this small and grows with the packet, keeping room for a
// few bytes more than needed so that unexpected extra bytes (after an SSLRequest) show.
constexpr std::size_t kInitialStartupBuffer = 256;
constexpr std::size_t kStartupSlack = 64;
}  // namespace

void Session::read_startup(std::size_t at_least) {
  const std::size_t want = std::max(kInitialStartupBuffer, at_least + kStartupSlack);
  if (startup_.size() < want) startup_.resize(want);
  client_.async_read_some(asio::buffer(startup_.data() + have_, startup_.size() - have_),
                          [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) {
                            if (self->done()) return;
                            if (ec) {
                              self->close(self->describe_end(ec, "client") + " during start-up");
                              return;
                            }
                            self->have_ += n;
                            self->on_startup_bytes();
                          });
}

void Session::on_startup_bytes() {
  auto result = wire::decode_startup(std::span<const std::uint8_t>(startup_.data(), have_), phase_);
  if (const auto* more = std::get_if<wire::NeedMore>(&result)) {
    read_startup(more->at_least);
    return;
  }
  if (const auto* rej = std::get_if<wire::Reject>(&result)) {
    ctx_->counters.rejected_protocol.fetch_add(1, std::memory_order_relaxed);
    reject(rej->sqlstate, rej->reason);
    return;
  }
  const auto& packet = std::get<wire::StartupPacket>(result);
  switch (packet.kind) {
    case StartupKind::ssl_request: on_ssl_request(packet.length); return;
    case StartupKind::gssenc_request: on_gssenc_request(packet.length); return;
    case StartupKind::direct_tls: on_direct_tls(); return;
    case StartupKind::cancel_request: on_cancel_request(packet.cancel); return;
    case StartupKind::startup: on_startup_message(packet); return;
  }
}

void Session::on_ssl_request(std::size_t packet_length) {
  if (have_ > packet_length) {
    // The client cannot know our answer yet, so these bytes were not meant for TLS: a
    // buggy client, or plaintext injected by a man in the middle (CVE-2021-23214).
    ctx_->counters.rejected_protocol.fetch_add(1, std::memory_order_relaxed);
    reject(wire::sqlstate::kProtocolViolation, "received unencrypted data after SSL request", {},
           "This could be either a client-software bug or evidence of an attempted man-in-the-middle attack.");
    return;
  }
  have_ = 0;
  auto tls_ctx = ctx_->server_tls != nullptr ? ctx_->server_tls->current() : nullptr;
  if (!tls_ctx || ssl_refused_) {
    if (ssl_refused_) {
      ctx_->counters.rejected_protocol.fetch_add(1, std::memory_order_relaxed);
      reject(wire::sqlstate::kProtocolViolation, "SSLRequest received twice");
      return;
    }
    ssl_refused_ = true;
    phase_ = wire::StartupPhase::after_gss_no;
    send_byte(wire::kRefuse, [this] { read_startup(); });
    return;
  }
  send_byte(wire::kAcceptTls, [this, tls_ctx] {
    client_.start_tls(tls_ctx);
    client_.tls().async_handshake(
        asio::ssl::stream_base::server,
        [self = shared_from_this()](const boost::system::error_code& ec) { self->on_client_handshake(ec, false); });
  });
}

void Session::on_gssenc_request(std::size_t packet_length) {
  std::memmove(startup_.data(), startup_.data() + packet_length, have_ - packet_length);
  have_ -= packet_length;
  phase_ = wire::StartupPhase::after_gss_no;
  send_byte(wire::kRefuse, [this] { have_ > 0 ? on_startup_bytes() : read_startup(); });
}

void Session::on_direct_tls() {
  auto tls_ctx = ctx_->server_tls != nullptr ? ctx_->server_tls->current() : nullptr;
  if (!tls_ctx) {
    ctx_->counters.rejected_protocol.fetch_add(1, std::memory_order_relaxed);
    close("direct TLS attempted, but this listener has no TLS certificate");
    return;
  }
  client_.start_tls(tls_ctx);
  // The ClientHello bytes already read are handed to the TLS layer.
  client_.tls().async_handshake(asio::ssl::stream_base::server, asio::buffer(startup_.data(), have_),
                                [self = shared_from_this()](const boost::system::error_code& ec, std::size_t used) {
                                  if (self->done()) return;
                                  if (!ec && used != self->have_) {
                                    self->ctx_->counters.rejected_protocol.fetch_add(1, std::memory_order_relaxed);
                                    self->close("received unencrypted data after the TLS handshake started");
                                    return;
                                  }
                                  self->on_client_handshake(ec, true);
                                });
}

void Session::on_client_handshake(const boost::system::error_code& ec, bool direct) {
  if (done()) return;
  if (ec) {
    ctx_->counters.tls_handshake_failures.fetch_add(1, std::memory_order_relaxed);
    close(fmt::format("TLS handshake failed: {}", ec.message()));
    return;
  }
  ctx_->counters.tls_sessions.fetch_add(1, std::memory_order_relaxed);
  if (direct && !tls::alpn_is_postgresql(client_.ssl())) {
    ctx_->counters.rejected_protocol.fetch_add(1, std::memory_order_relaxed);
    reject(wire::sqlstate::kProtocolViolation,
           "received direct TLS connection request without ALPN protocol \"postgresql\"",
           "Use a client that sends ALPN (libpq 17 or newer), or start TLS with an SSLRequest.");
    return;
  }
  spdlog::debug("portal {} session {} from {}: {}{}", ctx_->name, id_, peer_, tls::describe_tls(client_.ssl()),
                direct ? " (direct)" : "");
  phase_ = wire::StartupPhase::in_tls;
  have_ = 0;
  read_startup();
}

void Session::on_startup_message(const wire::StartupPacket& packet) {
  user_ = std::string(packet.param("user"));
  database_ = std::string(packet.param("database"));
  if (!client_.is_tls() && !ctx_->options.allow_plaintext) {
    ctx_->counters.rejected_plaintext.fetch_add(1, std::memory_order_relaxed);
    reject(wire::sqlstate::kInvalidAuthorization, "TLS is required to connect to this portal",
           "Connect with sslmode=verify-full and the deployment's CA certificate as sslrootcert.");
    return;
  }
  route_and_connect(1);
}

void Session::on_cancel_request(const wire::CancelKey& key) {
  auto target = ctx_->registry->find_cancel_target(key);
  if (!target) {
    // Like PostgreSQL: an unknown key is ignored, and the client learns nothing.
    ctx_->counters.cancels_unmatched.fetch_add(1, std::memory_order_relaxed);
    close(fmt::format("cancel request for unknown backend pid {} ignored", key.pid));
    return;
  }
  endpoint_ = *target;
  cancel_to_forward_ = key;
  connect_backend([this] {
    reply_ = wire::encode_cancel_request(*cancel_to_forward_);
    backend_->async_write(
        asio::buffer(reply_), [self = shared_from_this()](const boost::system::error_code& ec, std::size_t) {
          if (self->done()) return;
          if (ec) {
            self->close(
                fmt::format("forwarding cancel request to {} failed: {}", self->endpoint_.describe(), ec.message()));
            return;
          }
          self->ctx_->counters.cancels_forwarded.fetch_add(1, std::memory_order_relaxed);
          self->close(fmt::format("cancel request for backend pid {} forwarded to {}", self->cancel_to_forward_->pid,
                                  self->endpoint_.describe()));
        });
  });
}

void Session::send_byte(std::uint8_t byte, std::function<void()> next) {
  byte_ = byte;
  client_.async_write(asio::buffer(&byte_, 1), [self = shared_from_this(), next = std::move(next)](
                                                   const boost::system::error_code& ec, std::size_t) {
    if (self->done()) return;
    if (ec) {
      self->close(self->describe_end(ec, "client") + " during start-up");
      return;
    }
    next();
  });
}

void Session::reject(std::string_view sqlstate, const std::string& message, std::string_view hint,
                     std::string_view detail) {
  if (done()) return;
  rejecting_ = true;
  reported_ = true;
  spdlog::warn("portal {} session {} from {}: refused: {} (SQLSTATE {})", ctx_->name, id_, peer_, message, sqlstate);
  reply_ = wire::encode_error_response({.sqlstate = sqlstate, .message = message, .detail = detail, .hint = hint});
  timer_.cancel();
  if (backend_) backend_->close();
  // Bound the write: a client that never reads must not keep the session alive.
  arm_timer(Clock::now() + ctx_->options.connect_timeout);
  client_.async_write(asio::buffer(reply_),
                      [self = shared_from_this(), message](const boost::system::error_code&, std::size_t) {
                        self->rejecting_ = false;
                        self->close("refused: " + message);
                      });
}

}  // namespace tandem::portal::relay
