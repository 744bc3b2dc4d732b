// Session, relay: bytes both ways until either side closes, plus the session's one timer
// (start-up deadline, connect deadline, then idle timeout). Sessions that are plain TCP
// on both sides go to a RelayLoop (splice, see relay_loop.hpp); the others (TLS on either
// side) relay here, on the asio worker, through one buffer per direction.
#include <unistd.h>

#include <spdlog/spdlog.h>
#include <boost/asio/buffer.hpp>

#include "portal/relay/relay_loop.hpp"
#include "portal/relay/session.hpp"

namespace tandem::portal::relay {

namespace asio = boost::asio;

void Session::start_relay() {
  state_ = State::relaying;
  std::vector<std::uint8_t>().swap(startup_);  // forwarded already; free it
  if (!ctx_->loops.empty() && !backend_->is_tls() && (!client_.is_tls() || client_tls_is_drained())) {
    hand_to_loop();
    return;
  }
  const std::size_t size = std::max(ctx_->options.buffer_size, kMinBufferSize);
  to_server_ = std::make_unique<RelayBuffer>(size);
  to_client_ = std::make_unique<RelayBuffer>(size);
  last_activity_ = Clock::now();
  if (ctx_->options.idle_timeout.count() > 0) {
    arm_timer(last_activity_ + ctx_->options.idle_timeout);
  } else {
    ++timer_generation_;
    timer_.cancel();
  }
  pump_to_server();
  pump_to_client();
}

// Asio's TLS stream keeps OpenSSL behind a memory BIO pair; the session can leave it only
// when nothing is buffered there: no record SSL has read but not returned, no ciphertext
// waiting in the pair, no output asio has not sent yet.
bool Session::client_tls_is_drained() {
  SSL* ssl = client_.ssl();
  return SSL_has_pending(ssl) == 0 && BIO_ctrl_pending(SSL_get_rbio(ssl)) == 0 &&
         BIO_ctrl_wpending(SSL_get_wbio(ssl)) == 0;
}

void Session::hand_to_loop() {
  ++timer_generation_;  // the loop keeps the idle timeout from now on
  timer_.cancel();
  boost::system::error_code client_ec;
  boost::system::error_code backend_ec;
  const int client_fd = client_.socket().release(client_ec);
  const int backend_fd = backend_->socket().release(backend_ec);
  BIO* socket_bio = nullptr;
  if (!client_ec && client_.is_tls()) {
    socket_bio = BIO_new_socket(client_fd, BIO_NOCLOSE);
    if (socket_bio == nullptr) client_ec = boost::asio::error::no_memory;
  }
  if (client_ec || backend_ec) {
    if (!client_ec) ::close(client_fd);
    if (!backend_ec) ::close(backend_fd);
    close(fmt::format("could not hand the connection to a relay thread: {}",
                      (client_ec ? client_ec : backend_ec).message()));
    return;
  }
  SSL* ssl = nullptr;
  if (client_.is_tls()) {
    // From now on OpenSSL reads and writes the socket itself (asio's stream is not used
    // again; it frees the SSL object when the session ends). Reading ahead lets one recv()
    // take several records; buffers are kept instead of freed after every message.
    ssl = client_.ssl();
    SSL_set_bio(ssl, socket_bio, socket_bio);
    SSL_set_read_ahead(ssl, 1);
    SSL_clear_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
  } else {
    ctx_->counters.spliced.fetch_add(1, std::memory_order_relaxed);
  }
  RelayLoop* loop = ctx_->loops[id_ % ctx_->loops.size()];
  loop_ = loop;
  ctx_->counters.relayed_by_loop.fetch_add(1, std::memory_order_relaxed);
  loop->adopt(shared_from_this(), client_fd, backend_fd, ssl);
}

void Session::end_on_loop(const std::string& reason) {
  state_ = State::finished;
  ctx_->registry->remove(id_);
  spdlog::info("portal {} session {} from {} (user {}, database {}, {}) closed: {}", ctx_->name, id_, peer_, user_,
               database_, endpoint_.describe(), reason);
}

void Session::pump_to_server() {
  client_.async_read_some(asio::buffer(to_server_->data(), to_server_->size()),
                          [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) {
                            if (self->done()) return;
                            if (ec) {
                              self->close(self->describe_end(ec, "client"));
                              return;
                            }
                            self->last_activity_ = Clock::now();
                            self->ctx_->counters.bytes_to_server.fetch_add(n, std::memory_order_relaxed);
                            self->backend_->async_write(asio::buffer(self->to_server_->data(), n),
                                                        [self](const boost::system::error_code& ec, std::size_t) {
                                                          if (self->done()) return;
                                                          if (ec) {
                                                            self->close(self->describe_end(ec, "member"));
                                                            return;
                                                          }
                                                          self->pump_to_server();
                                                        });
                          });
}

void Session::pump_to_client() {
  backend_->async_read_some(asio::buffer(to_client_->data(), to_client_->size()),
                            [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) {
                              if (self->done()) return;
                              if (ec) {
                                self->close(self->describe_end(ec, "member"));
                                return;
                              }
                              self->last_activity_ = Clock::now();
                              self->ctx_->counters.bytes_to_client.fetch_add(n, std::memory_order_relaxed);
                              if (!self->scanner_.done()) self->scan_server_bytes(self->to_client_->first(n));
                              self->client_.async_write(asio::buffer(self->to_client_->data(), n),
                                                        [self](const boost::system::error_code& ec, std::size_t) {
                                                          if (self->done()) return;
                                                          if (ec) {
                                                            self->close(self->describe_end(ec, "client"));
                                                            return;
                                                          }
                                                          self->pump_to_client();
                                                        });
                            });
}

void Session::scan_server_bytes(std::span<const std::uint8_t> bytes) {
  const auto& st = scanner_.feed(bytes);
  if (st.backend_key && !cancel_key_registered_) {
    ctx_->registry->set_cancel_key(id_, *st.backend_key);
    cancel_key_registered_ = true;
  }
  if (st.protocol_error) {
    spdlog::warn("portal {} session {} from {}: stopped following the member's messages: {}", ctx_->name, id_, peer_,
                 *st.protocol_error);
  } else if (st.ready_for_query) {
    spdlog::debug("portal {} session {} from {}: start-up finished on {}", ctx_->name, id_, peer_,
                  endpoint_.describe());
  }
}

void Session::arm_timer(Clock::time_point at) {
  const auto generation = ++timer_generation_;
  timer_.expires_at(at);
  timer_.async_wait([self = shared_from_this(), generation](const boost::system::error_code& ec) {
    if (ec || generation != self->timer_generation_ || self->state_ == State::finished) return;
    self->on_timer();
  });
}

void Session::on_timer() {
  if (rejecting_) {
    rejecting_ = false;
    close("the client did not take the error message in time");
    return;
  }
  const auto ms = [](auto d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); };
  switch (state_) {
    case State::negotiating:
      ctx_->counters.timeouts.fetch_add(1, std::memory_order_relaxed);
      close(fmt::format("start-up not completed within {} ms", ms(ctx_->options.handshake_timeout)));
      return;
    case State::connecting:
      ctx_->counters.timeouts.fetch_add(1, std::memory_order_relaxed);
      backend_failed(fmt::format("no answer within {} ms", ms(ctx_->options.connect_timeout)));
      return;
    case State::relaying: {
      const auto idle_until = last_activity_ + ctx_->options.idle_timeout;
      if (Clock::now() < idle_until) {
        arm_timer(idle_until);
        return;
      }
      ctx_->counters.timeouts.fetch_add(1, std::memory_order_relaxed);
      close(fmt::format("idle for {} ms", ms(ctx_->options.idle_timeout)));
      return;
    }
    case State::finished: return;
  }
}

std::string Session::describe_end(const boost::system::error_code& ec, const char* side) const {
  if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) {
    return fmt::format("{} closed the connection", side);
  }
  return fmt::format("{} connection failed: {}", side, ec.message());
}

}  // namespace tandem::portal::relay
