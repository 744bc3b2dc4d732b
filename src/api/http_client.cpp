#include "api/http_client.hpp"

#include <cctype>
#include <charconv>
#include <optional>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace tandem::api {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

std::string HttpUrl::host_header() const {
  bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

Result<HttpUrl> parse_http_url(std::string_view url) {
  constexpr std::string_view kScheme = "http://";
  if (url.substr(0, kScheme.size()) != kScheme) {
    if (url.substr(0, 8) == "https://") {
      return make_error(Errc::invalid_argument, "URL '{}': https is not supported by this client; use http://", url);
    }
    return make_error(Errc::invalid_argument, "URL '{}' must start with http://", url);
  }
  auto rest = url.substr(kScheme.size());
  auto slash = rest.find_first_of("/?");
  auto authority = rest.substr(0, slash);
  HttpUrl out;
  out.target = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  if (out.target.front() == '?') out.target = "/" + out.target;
  if (authority.find('@') != std::string_view::npos) {
    return make_error(Errc::invalid_argument, "URL '{}': credentials in the URL are not supported", url);
  }
  std::string_view port_text;
  if (!authority.empty() && authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos)
      return make_error(Errc::invalid_argument, "URL '{}': unclosed '[' in host", url);
    out.host = std::string(authority.substr(1, close - 1));
    auto after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return make_error(Errc::invalid_argument, "URL '{}': expected ':' after ']'", url);
      port_text = after.substr(1);
    }
  } else {
    auto colon = authority.rfind(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port_text = authority.substr(colon + 1);
  }
  if (out.host.empty()) return make_error(Errc::invalid_argument, "URL '{}' has no host", url);
  if (!port_text.empty()) {
    int port = 0;
    auto [p, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc() || p != port_text.data() + port_text.size() || port < 1 || port > 65535) {
      return make_error(Errc::invalid_argument, "URL '{}': port '{}' is not a number between 1 and 65535", url,
                        port_text);
    }
    out.port = port;
  }
  return out;
}

namespace {

// One request/response exchange on a private io_context; a timer bounds the whole of it.
class Exchange {
 public:
  Exchange(const HttpClientRequest& request, HttpUrl url)
      : request_(request), url_(std::move(url)), resolver_(ioc_), stream_(ioc_), timer_(ioc_) {}

  Result<HttpClientResponse> run() {
    req_.method_string(request_.method);
    req_.target(url_.target);
    req_.version(11);
    req_.set(http::field::host, url_.host_header());
    req_.set(http::field::user_agent, "tandem");
    req_.set(http::field::connection, "close");
    for (const auto& [k, v] : request_.headers) req_.set(k, v);
    if (!request_.body.empty()) {
      req_.set(http::field::content_type, request_.content_type);
      req_.body() = request_.body;
    }
    req_.prepare_payload();
    parser_.body_limit(request_.max_response_bytes);
    if (request_.method == "HEAD") parser_.skip(true);

    timer_.expires_after(request_.timeout);
    timer_.async_wait([this](beast::error_code ec) {
      if (ec || done_) return;
      timed_out_ = true;
      resolver_.cancel();
      beast::error_code ignored;
      stream_.socket().close(ignored);
    });
    resolver_.async_resolve(
        url_.host, std::to_string(url_.port), [this](beast::error_code ec, tcp::resolver::results_type results) {
          if (ec) return finish(ec, "resolve");
          stream_.async_connect(results, [this](beast::error_code cec, const tcp::endpoint&) {
            if (cec) return finish(cec, "connect");
            http::async_write(stream_, req_, [this](beast::error_code wec, std::size_t) {
              // A server may answer early (e.g. 413) and stop reading: still try to read its answer.
              if (wec && timed_out_) return finish(wec, "send");
              http::async_read(stream_, buffer_, parser_, [this, wec](beast::error_code rec, std::size_t) {
                if (rec && wec) return finish(wec, "send");
                finish(rec, "receive");
              });
            });
          });
        });
    ioc_.run();
    if (error_) return *error_;
    HttpClientResponse out;
    auto& res = parser_.get();
    out.status = static_cast<int>(res.result_int());
    for (const auto& field : res) {
      std::string name(field.name_string());
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      out.headers[name] = std::string(field.value());
    }
    out.body = std::move(res.body());
    return out;
  }

 private:
  void finish(const beast::error_code& ec, const char* step) {
    done_ = true;
    timer_.cancel();
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.socket().close(ignored);
    if (!ec) return;
    std::string what = fmt::format("{} {}", request_.method, request_.url);
    if (timed_out_) {
      error_ = make_error(Errc::timeout, "{}: no complete answer within {} ms (stuck at {})", what,
                          request_.timeout.count(), step);
    } else if (ec == net::error::connection_refused) {
      error_ = make_error(Errc::unavailable, "{}: connection refused by {} (is the agent running?)", what,
                          url_.host_header());
    } else if (std::string_view(step) == "resolve" || std::string_view(step) == "connect") {
      error_ = make_error(Errc::unavailable, "{}: cannot {} {}: {}", what, step, url_.host_header(), ec.message());
    } else if (ec == http::error::end_of_stream || ec == http::error::partial_message || ec == net::error::eof ||
               ec == net::error::connection_reset || ec == net::error::broken_pipe) {
      error_ = make_error(Errc::unavailable, "{}: {} closed the connection during {}: {}", what, url_.host_header(),
                          step, ec.message());
    } else if (ec == http::error::body_limit) {
      error_ = make_error(Errc::protocol, "{}: answer larger than {} bytes", what, request_.max_response_bytes);
    } else {
      error_ = make_error(Errc::protocol, "{}: {} failed: {}", what, step, ec.message());
    }
  }

  const HttpClientRequest& request_;
  HttpUrl url_;
  net::io_context ioc_;
  tcp::resolver resolver_;
  beast::tcp_stream stream_;
  net::steady_timer timer_;
  http::request<http::string_body> req_;
  beast::flat_buffer buffer_;
  http::response_parser<http::string_body> parser_;
  std::optional<Error> error_;
  bool timed_out_ = false;
  bool done_ = false;
};

}  // namespace

Result<HttpClientResponse> http_request(const HttpClientRequest& request) {
  auto url = parse_http_url(request.url);
  if (!url) return url.error();
  if (request.method.empty()) return make_error(Errc::invalid_argument, "HTTP method must not be empty");
  if (request.timeout.count() <= 0) return make_error(Errc::invalid_argument, "HTTP timeout must be positive");
  Exchange exchange(request, std::move(*url));
  return exchange.run();
}

Result<HttpClientResponse> http_get(const std::string& url, std::chrono::milliseconds timeout) {
  HttpClientRequest r;
  r.url = url;
  r.timeout = timeout;
  return http_request(r);
}

Result<HttpClientResponse> http_post(const std::string& url, const std::string& json_body,
                                     std::chrono::milliseconds timeout) {
  HttpClientRequest r;
  r.method = "POST";
  r.url = url;
  r.body = json_body;
  r.timeout = timeout;
  return http_request(r);
}

}  // namespace tandem::api
