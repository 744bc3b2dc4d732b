#pragma once
// One side of a session: a TCP socket that may be upgraded to TLS in place (after an
// SSLRequest, or at once for direct TLS). Reads and writes go to whichever layer is on
// top. Owned by its Session; used only on the session's worker thread.
#include <memory>
#include <optional>
#include <utility>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>

#include "portal/tls/server_context.hpp"

namespace tandem::portal::relay {

class Stream {
 public:
  using tcp = boost::asio::ip::tcp;
  using TlsStream = boost::asio::ssl::stream<tcp::socket>;

  explicit Stream(tcp::socket socket) : plain_(std::move(socket)) {}

  tcp::socket& socket() { return tls_ ? tls_->next_layer() : *plain_; }
  bool is_tls() const { return tls_ != nullptr; }
  TlsStream& tls() { return *tls_; }
  SSL* ssl() { return tls_ ? tls_->native_handle() : nullptr; }

  // Puts TLS on top of the socket. The context stays alive as long as this stream, so a
  // reload of the portal's certificate never affects a session that already started.
  void start_tls(std::shared_ptr<tls::SslContext> ctx) {
    ctx_ = std::move(ctx);
    tls_ = std::make_unique<TlsStream>(std::move(*plain_), *ctx_);
    plain_.reset();
  }

  template <typename Buffers, typename Handler>
  void async_read_some(const Buffers& buffers, Handler&& handler) {
    if (tls_) {
      tls_->async_read_some(buffers, std::forward<Handler>(handler));
    } else {
      plain_->async_read_some(buffers, std::forward<Handler>(handler));
    }
  }

  // Writes all of `buffers` (or fails).
  template <typename Buffers, typename Handler>
  void async_write(const Buffers& buffers, Handler&& handler) {
    if (tls_) {
      boost::asio::async_write(*tls_, buffers, std::forward<Handler>(handler));
    } else {
      boost::asio::async_write(*plain_, buffers, std::forward<Handler>(handler));
    }
  }

  // Closes the socket; pending operations complete with operation_aborted.
  void close() {
    boost::system::error_code ec;
    socket().shutdown(tcp::socket::shutdown_both, ec);
    socket().close(ec);
  }

 private:
  std::optional<tcp::socket> plain_;
  std::shared_ptr<tls::SslContext> ctx_;  // declared before tls_: destroyed after it
  std::unique_ptr<TlsStream> tls_;
};

}  // namespace tandem::portal::relay
