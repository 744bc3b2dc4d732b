#pragma once
// HttpServer: a small HTTP/1.1 server (Boost.Beast) for the agent's REST API.
//
// Owned by the agent. start() binds and spawns `threads` I/O threads that run the
// server's own io_context; the handler is called on those threads (so it must be
// thread-safe, and a slow handler holds one of them). stop() (or the destructor) closes
// the listener and every connection and joins the threads; never call it from a handler.
// Keep-alive, request size limits and read/write timeouts are enforced per connection; a
// malformed request gets a 4xx answer and the connection is closed.
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "api/http_types.hpp"
#include "base/result.hpp"

namespace tandem::api {

struct HttpServerOptions {
  std::string host = "127.0.0.1";  // IPv4 or IPv6 address or a host name; "*" = all IPv4 addresses
  int port = 8008;                 // 0: let the kernel choose (see HttpServer::port())
  size_t max_body_bytes = 64 * 1024;
  size_t max_header_bytes = 16 * 1024;
  std::chrono::milliseconds read_timeout{10000};   // a whole request, and keep-alive idle time
  std::chrono::milliseconds write_timeout{10000};  // a whole response
  int threads = 2;
  size_t max_connections = 256;  // further connections are closed at once
};

class HttpServer {
 public:
  using Handler = std::function<Response(const Request&)>;

  HttpServer(HttpServerOptions options, Handler handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds, listens and starts the I/O threads. Fails with a message naming the address
  // when the address cannot be bound (port in use: Errc::conflict).
  [[nodiscard]] Status start();
  // Idempotent; joins the I/O threads.
  void stop();

  // The bound port (useful with port 0); 0 before start().
  int port() const;
  bool running() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::api
