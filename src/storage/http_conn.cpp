#include "storage/http_conn.hpp"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <algorithm>
#include <limits>
#include <optional>

namespace tandem::storage {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

std::string HttpResponse::header(std::string_view lower_name) const {
  for (const auto& [k, v] : headers) {
    if (k == lower_name) return v;
  }
  return {};
}

struct HttpConnection::Impl {
  std::string host;
  std::string port;
  std::chrono::milliseconds connect_timeout;
  std::chrono::milliseconds io_timeout;
  HttpTls tls;
  asio::io_context ioc;
  std::optional<asio::ssl::context> ssl_ctx;                       // made on the first TLS connect
  std::optional<beast::tcp_stream> stream;                         // a plain connection
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls_stream;  // a TLS connection
  beast::flat_buffer buffer;

  bool connected() const { return stream.has_value() || tls_stream.has_value(); }
  beast::tcp_stream& lowest() { return tls_stream ? beast::get_lowest_layer(*tls_stream) : *stream; }
  // Calls f with whichever stream is open.
  template <typename F>
  beast::error_code with_stream(F&& f) {
    if (tls_stream) return f(*tls_stream);
    return f(*stream);
  }

  // Runs one asynchronous operation to completion on our private io_context.
  template <typename Start>
  beast::error_code run(Start&& start) {
    beast::error_code result = asio::error::would_block;
    start([&result](beast::error_code ec, auto&&...) { result = ec; });
    ioc.restart();
    ioc.run();
    return result;
  }

  Error transport_error(std::string_view what, const beast::error_code& ec) const {
    Errc code = ec == beast::error::timeout ? Errc::timeout : Errc::unavailable;
    return make_error(code, "{} {}:{}: {}", what, host, port, ec.message());
  }

  Status make_ssl_context() {
    if (ssl_ctx) return {};
    asio::ssl::context ctx(asio::ssl::context::tls_client);
    SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION);
    ctx.set_verify_mode(asio::ssl::verify_peer);
    beast::error_code ec;
    if (tls.ca_file.empty()) {
      ctx.set_default_verify_paths(ec);
      if (ec) return make_error(Errc::io, "cannot load the system's trusted certificates: {}", ec.message());
    } else {
      ctx.load_verify_file(tls.ca_file, ec);
      if (ec) return make_error(Errc::invalid_argument, "cannot read CA file {}: {}", tls.ca_file, ec.message());
    }
    ssl_ctx.emplace(std::move(ctx));
    return {};
  }

  // TLS on the connected `stream`: SNI and the name (or address) the certificate must carry.
  Status handshake() {
    if (auto s = make_ssl_context(); !s) return s;
    tls_stream.emplace(std::move(*stream), *ssl_ctx);
    stream.reset();
    SSL* ssl = tls_stream->native_handle();
    beast::error_code ec;
    (void)asio::ip::make_address(host, ec);
    if (!ec) {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str());
    } else {
      SSL_set_tlsext_host_name(ssl, host.c_str());
      SSL_set1_host(ssl, host.c_str());
    }
    beast::get_lowest_layer(*tls_stream).expires_after(connect_timeout);
    ec = run([&](auto handler) { tls_stream->async_handshake(asio::ssl::stream_base::client, handler); });
    if (!ec) return {};
    const bool tls_failure = ec.category() == asio::error::get_ssl_category();
    close();
    if (!tls_failure) return transport_error("TLS handshake with", ec);
    return make_error(Errc::permission_denied, "TLS handshake with {}:{} failed: {}{}", host, port, ec.message(),
                      tls.ca_file.empty() ? " (the system's trust store was used; give a CA file for a private CA)"
                                          : " (CA file " + tls.ca_file + ")");
  }

  Status connect() {
    if (connected()) return {};
    tcp::resolver resolver(ioc);
    beast::error_code ec;
    auto endpoints = resolver.resolve(host, port, ec);
    if (ec) return transport_error("cannot resolve", ec);
    stream.emplace(ioc);
    stream->expires_after(connect_timeout);
    ec = run([&](auto handler) { stream->async_connect(endpoints, handler); });
    if (ec) {
      stream.reset();
      return transport_error("cannot connect to", ec);
    }
    stream->socket().set_option(tcp::no_delay(true), ec);
    buffer.clear();
    if (tls.enabled) return handshake();
    return {};
  }

  void close() {
    if (!connected()) return;
    beast::error_code ec;
    lowest().socket().shutdown(tcp::socket::shutdown_both, ec);
    lowest().close();
    stream.reset();
    tls_stream.reset();
    buffer.clear();
  }
};

HttpConnection::HttpConnection(std::string host, std::string port, std::chrono::milliseconds connect_timeout,
                               std::chrono::milliseconds io_timeout, HttpTls tls)
    : impl_(std::make_unique<Impl>()) {
  impl_->host = std::move(host);
  impl_->port = std::move(port);
  impl_->connect_timeout = connect_timeout;
  impl_->io_timeout = io_timeout;
  impl_->tls = std::move(tls);
}

HttpConnection::~HttpConnection() {
  impl_->close();
}

void HttpConnection::close() {
  impl_->close();
}

Result<HttpResponse> HttpConnection::send(std::string_view method, std::string_view target,
                                          const std::vector<std::pair<std::string, std::string>>& headers,
                                          std::string_view body, const ByteSink* sink) {
  Impl& m = *impl_;
  http::request<http::string_body> req;
  req.method_string(beast::string_view(method.data(), method.size()));
  req.target(beast::string_view(target.data(), target.size()));
  req.version(11);
  for (const auto& [k, v] : headers) req.set(k, v);
  req.body().assign(body.data(), body.size());
  req.prepare_payload();
  if (method == "GET" || method == "HEAD" || method == "DELETE") {
    if (body.empty()) req.erase(http::field::content_length);
  }

  // A reused keep-alive connection may have been closed by the server while idle; then
  // reconnect once at once. A fresh connection's failure goes back to the caller.
  for (int round = 0; round < 2; ++round) {
    const bool reused = m.connected();
    if (auto s = m.connect(); !s) return s.error();

    m.lowest().expires_after(m.io_timeout);
    beast::error_code ec = m.with_stream(
        [&](auto& stream) { return m.run([&](auto handler) { http::async_write(stream, req, handler); }); });
    http::response_parser<http::buffer_body> parser;
    // Boost 1.74 compares a none limit as "less than everything": use the largest value instead.
    parser.body_limit(std::numeric_limits<std::uint64_t>::max());
    if (method == "HEAD") parser.skip(true);
    if (!ec) {
      m.lowest().expires_after(m.io_timeout);
      ec = m.with_stream([&](auto& stream) {
        return m.run([&](auto handler) { http::async_read_header(stream, m.buffer, parser, handler); });
      });
    }
    if (ec) {
      m.close();
      if (reused && round == 0) continue;
      return m.transport_error(fmt::format("{} {} to", method, target), ec);
    }

    HttpResponse resp;
    const auto& head = parser.get();
    resp.status = static_cast<int>(head.result_int());
    for (const auto& f : head) {
      std::string name(f.name_string());
      std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
      resp.headers.emplace_back(std::move(name), std::string(f.value()));
    }
    const bool to_sink = sink != nullptr && resp.status / 100 == 2;
    std::string chunk(64 * 1024, '\0');
    while (!parser.is_done()) {
      parser.get().body().data = chunk.data();
      parser.get().body().size = chunk.size();
      m.lowest().expires_after(m.io_timeout);
      ec = m.with_stream([&](auto& stream) {
        return m.run([&](auto handler) { http::async_read(stream, m.buffer, parser, handler); });
      });
      if (ec == http::error::need_buffer) ec = {};
      // Bytes decoded before an error are good: hand them on, so a resumed download
      // continues right after them.
      size_t n = chunk.size() - parser.get().body().size;
      if (n > 0 && to_sink) {
        if (auto s = (*sink)(std::string_view(chunk.data(), n)); !s) {
          m.close();
          return s.error();
        }
      } else if (n > 0) {
        resp.body.append(chunk.data(), n);
      }
      if (ec) {
        m.close();
        return m.transport_error(fmt::format("reading the response to {} {} from", method, target), ec);
      }
    }
    if (!parser.keep_alive()) m.close();
    return resp;
  }
  return make_error(Errc::internal, "unreachable: HTTP send loop ended");
}

}  // namespace tandem::storage
