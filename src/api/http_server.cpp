#include "api/http_server.hpp"

#include <array>
#include <atomic>
#include <cctype>
#include <optional>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

namespace tandem::api {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

// What every connection of one server shares; outlives the connections (shared_ptr).
struct Shared {
  HttpServerOptions options;
  HttpServer::Handler handler;
  std::atomic<size_t> connections{0};
};

bool is_peer_gone(const beast::error_code& ec) {
  return ec == http::error::end_of_stream || ec == http::error::partial_message || ec == net::error::eof ||
         ec == net::error::connection_reset || ec == net::error::operation_aborted || ec == net::error::broken_pipe ||
         ec == beast::error::timeout || ec == net::error::not_connected;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// One accepted connection: reads requests one after another (keep-alive), calls the
// handler, writes the answers. Lives on its own strand; owned by its pending operations.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket&& socket, std::shared_ptr<Shared> shared)
      : stream_(std::move(socket)), shared_(std::move(shared)) {
    beast::error_code ec;
    auto ep = stream_.socket().remote_endpoint(ec);
    if (!ec) remote_ = ep.address().to_string() + ":" + std::to_string(ep.port());
  }
  ~Session() { shared_->connections.fetch_sub(1); }

  void run() {
    net::dispatch(stream_.get_executor(), beast::bind_front_handler(&Session::read_header, shared_from_this()));
  }

 private:
  const HttpServerOptions& opts() const { return shared_->options; }

  void read_header() {
    parser_.emplace();
    parser_->body_limit(opts().max_body_bytes);
    parser_->header_limit(static_cast<std::uint32_t>(opts().max_header_bytes));
    stream_.expires_after(opts().read_timeout);
    http::async_read_header(stream_, buffer_, *parser_,
                            beast::bind_front_handler(&Session::on_header, shared_from_this()));
  }

  void on_header(beast::error_code ec, std::size_t) {
    if (ec) return on_read_error(ec);
    auto length = parser_->content_length();
    if (length && *length > opts().max_body_bytes) {
      return send_error(
          413, fmt::format("request body of {} bytes exceeds the limit of {} bytes", *length, opts().max_body_bytes));
    }
    if (parser_->is_done()) return on_body({}, 0);
    if (beast::iequals(parser_->get()[http::field::expect], "100-continue")) {
      continue_.emplace(http::status::continue_, parser_->get().version());
      http::async_write(stream_, *continue_, beast::bind_front_handler(&Session::on_continue, shared_from_this()));
      return;
    }
    read_body();
  }

  void on_continue(beast::error_code ec, std::size_t) {
    continue_.reset();
    if (ec) return close();
    read_body();
  }

  void read_body() {
    http::async_read(stream_, buffer_, *parser_, beast::bind_front_handler(&Session::on_body, shared_from_this()));
  }

  void on_body(beast::error_code ec, std::size_t) {
    if (ec) return on_read_error(ec);
    handle(parser_->release());
  }

  void on_read_error(const beast::error_code& ec) {
    if (ec == http::error::body_limit) {
      return send_error(413, fmt::format("request body exceeds the limit of {} bytes", opts().max_body_bytes));
    }
    if (ec == http::error::header_limit) {
      return send_error(431, fmt::format("request header exceeds the limit of {} bytes", opts().max_header_bytes));
    }
    if (ec == http::error::bad_version) return send_error(505, "only HTTP/1.0 and HTTP/1.1 are supported");
    if (is_peer_gone(ec) || ec.category() != http::make_error_code(http::error::bad_target).category()) {
      if (ec != http::error::end_of_stream && ec != beast::error::timeout && ec != net::error::operation_aborted) {
        spdlog::debug("api: connection from {} ended: {}", remote_, ec.message());
      }
      return close();
    }
    send_error(400, fmt::format("malformed HTTP request: {}", ec.message()));
  }

  void send_error(int status, const std::string& message) {
    spdlog::debug("api: {} from {}: {}", status, remote_, message);
    auto r = json_response(status, nlohmann::json{{"error", message}});
    res_ = {};
    res_.version(11);
    res_.result(static_cast<unsigned>(status));
    res_.set(http::field::content_type, r.content_type);
    res_.set(http::field::server, "tandem");
    res_.set(http::field::connection, "close");
    res_.keep_alive(false);
    res_.body() = std::move(r.body);
    res_.prepare_payload();
    write(/*close_after=*/true, /*drain=*/true);
  }

  void handle(http::request<http::string_body> req) {
    Request r;
    r.remote = remote_;
    r.method = std::string(req.method_string());
    bool head = r.method == "HEAD";
    if (head) r.method = "GET";
    for (const auto& field : req) {
      auto name = lower(std::string_view(field.name_string().data(), field.name_string().size()));
      auto [it, inserted] = r.headers.emplace(name, std::string(field.value()));
      if (!inserted) it->second += ", " + std::string(field.value());
    }
    r.body = std::move(req.body());

    Response out;
    auto target = parse_target(std::string_view(req.target().data(), req.target().size()));
    if (!target) {
      out = error_response(target.error());
    } else {
      r.path = std::move(target->path);
      r.query = std::move(target->query);
      try {
        out = shared_->handler(r);
      } catch (const std::exception& e) {
        spdlog::error("api: handler failed on {} {}: {}", r.method, r.path, e.what());
        out = json_response(500, nlohmann::json{{"error", std::string("internal error: ") + e.what()}});
      }
    }

    if (out.status < 100 || out.status > 599) {
      spdlog::error("api: handler answered {} {} with invalid status {}", r.method, r.path, out.status);
      out = json_response(500, nlohmann::json{{"error", "internal error: handler returned an invalid status"}});
    }
    res_ = {};
    res_.version(req.version());
    res_.result(static_cast<unsigned>(out.status));
    res_.set(http::field::server, "tandem");
    if (!out.content_type.empty()) res_.set(http::field::content_type, out.content_type);
    for (const auto& [k, v] : out.headers) res_.set(k, v);
    res_.keep_alive(req.keep_alive());
    res_.body() = std::move(out.body);
    res_.prepare_payload();
    if (head) res_.body().clear();  // Content-Length still announces the GET body size.
    write(!req.keep_alive(), /*drain=*/false);
  }

  void write(bool close_after, bool drain) {
    stream_.expires_after(opts().write_timeout);
    http::async_write(stream_, res_,
                      [self = shared_from_this(), close_after, drain](beast::error_code ec, std::size_t) {
                        self->on_write(ec, close_after, drain);
                      });
  }

  void on_write(beast::error_code ec, bool close_after, bool drain) {
    if (ec) return close();
    if (close_after) {
      beast::error_code ignored;
      stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
      // Reading what the peer still sends before closing avoids a TCP reset that could
      // destroy the error answer before the peer reads it.
      if (drain) return drain_input();
      return close();
    }
    read_header();
  }

  void drain_input() {
    stream_.expires_after(std::chrono::seconds(2));
    stream_.async_read_some(net::buffer(drain_buf_), [self = shared_from_this()](beast::error_code ec, std::size_t n) {
      self->drained_ += n;
      if (ec || self->drained_ > 8 * 1024 * 1024) return self->close();
      self->drain_input();
    });
  }

  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.socket().close(ignored);
  }

  beast::tcp_stream stream_;
  std::shared_ptr<Shared> shared_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::optional<http::response<http::empty_body>> continue_;
  http::response<http::string_body> res_;
  std::array<char, 16 * 1024> drain_buf_{};
  size_t drained_ = 0;
  std::string remote_ = "unknown";
};

}  // namespace

struct HttpServer::Impl {
  std::shared_ptr<Shared> shared;
  std::unique_ptr<net::io_context> ioc;
  std::unique_ptr<tcp::acceptor> acceptor;
  std::unique_ptr<net::steady_timer> retry_timer;
  std::vector<std::thread> threads;
  std::atomic<int> port{0};
  std::atomic<bool> running{false};

  Result<tcp::endpoint> resolve(const std::string& host, int port_number) {
    std::string h = host.empty() || host == "*" ? "0.0.0.0" : host;
    if (h.size() > 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
    beast::error_code ec;
    auto addr = net::ip::make_address(h, ec);
    if (!ec) return tcp::endpoint(addr, static_cast<unsigned short>(port_number));
    tcp::resolver resolver(*ioc);
    auto results = resolver.resolve(h, std::to_string(port_number), tcp::resolver::passive, ec);
    if (ec || results.empty()) {
      return make_error(Errc::invalid_argument, "cannot listen on {}:{}: cannot resolve host: {}", host, port_number,
                        ec ? ec.message() : "no addresses");
    }
    return results.begin()->endpoint();
  }

  void accept() {
    acceptor->async_accept(net::make_strand(*ioc), [this](beast::error_code ec, tcp::socket socket) {
      if (ec == net::error::operation_aborted || !acceptor->is_open()) return;
      if (ec) {
        // E.g. out of file descriptors: back off instead of spinning.
        spdlog::warn("api: accept on port {} failed: {}", port.load(), ec.message());
        retry_timer->expires_after(std::chrono::milliseconds(100));
        retry_timer->async_wait([this](beast::error_code tec) {
          if (!tec) accept();
        });
        return;
      }
      if (shared->connections.fetch_add(1) >= shared->options.max_connections) {
        shared->connections.fetch_sub(1);
        spdlog::warn("api: refusing a connection: {} connections already open", shared->options.max_connections);
        beast::error_code ignored;
        socket.close(ignored);
      } else {
        std::make_shared<Session>(std::move(socket), shared)->run();
      }
      accept();
    });
  }
};

HttpServer::HttpServer(HttpServerOptions options, Handler handler) : impl_(std::make_unique<Impl>()) {
  impl_->shared = std::make_shared<Shared>();
  impl_->shared->options = std::move(options);
  impl_->shared->handler = std::move(handler);
}

HttpServer::~HttpServer() {
  stop();
}

Status HttpServer::start() {
  auto& im = *impl_;
  if (im.running) return make_error(Errc::conflict, "HTTP server already running on port {}", im.port.load());
  const auto& o = im.shared->options;
  if (o.port < 0 || o.port > 65535) return make_error(Errc::invalid_argument, "port {} is out of range", o.port);
  if (o.threads < 1) return make_error(Errc::invalid_argument, "threads must be at least 1");
  im.ioc = std::make_unique<net::io_context>(o.threads);
  auto ep = im.resolve(o.host, o.port);
  if (!ep) {
    im.ioc.reset();
    return ep.error();
  }
  im.acceptor = std::make_unique<tcp::acceptor>(*im.ioc);
  im.retry_timer = std::make_unique<net::steady_timer>(*im.ioc);
  beast::error_code ec;
  auto fail = [&](const char* what) -> Status {
    Errc code = Errc::io;
    std::string hint;
    if (ec == net::error::address_in_use) {
      code = Errc::conflict;
      hint = " (another process is listening on this port; choose another api listen port)";
    } else if (ec == net::error::access_denied) {
      code = Errc::permission_denied;
    } else if (ec == boost::system::errc::address_not_available) {
      code = Errc::invalid_argument;
      hint = " (the address is not configured on this machine)";
    }
    auto err = make_error(code, "cannot listen on {}:{}: {} failed: {}{}", o.host, o.port, what, ec.message(), hint);
    im.acceptor.reset();
    im.retry_timer.reset();
    im.ioc.reset();
    return err;
  };
  im.acceptor->open(ep->protocol(), ec);
  if (ec) return fail("socket");
  im.acceptor->set_option(net::socket_base::reuse_address(true), ec);
  if (ec) return fail("setsockopt");
  im.acceptor->bind(*ep, ec);
  if (ec) return fail("bind");
  im.acceptor->listen(net::socket_base::max_listen_connections, ec);
  if (ec) return fail("listen");
  im.port = im.acceptor->local_endpoint().port();
  im.accept();
  im.running = true;
  for (int i = 0; i < o.threads; ++i) {
    im.threads.emplace_back([ioc = im.ioc.get()] {
      for (;;) {
        try {
          ioc->run();
          return;
        } catch (const std::exception& e) {
          spdlog::error("api: I/O thread caught an exception: {}", e.what());
        }
      }
    });
  }
  spdlog::info("api: listening on {}:{}", o.host, im.port.load());
  return {};
}

void HttpServer::stop() {
  auto& im = *impl_;
  if (!im.running.exchange(false)) return;
  im.ioc->stop();
  for (auto& t : im.threads) t.join();
  im.threads.clear();
  beast::error_code ignored;
  im.acceptor->close(ignored);
  im.acceptor.reset();
  im.retry_timer.reset();
  im.ioc.reset();  // destroys pending operations and with them every open connection
  spdlog::info("api: stopped listening on port {}", im.port.load());
}

int HttpServer::port() const {
  return impl_->port;
}

bool HttpServer::running() const {
  return impl_->running;
}

}  // namespace tandem::api
