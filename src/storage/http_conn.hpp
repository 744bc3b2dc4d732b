#pragma once
// HttpConnection: one keep-alive HTTP/1.1 connection to one endpoint, plain or over TLS,
// blocking calls with a deadline on every connect, handshake, write and read (Boost.Beast
// underneath, driven by a private io_context). Response bodies of 2xx answers can be
// streamed into a sink. Owned and used by one thread.
#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.hpp"
#include "storage/crypto.hpp"

namespace tandem::storage {

struct HttpResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;                                          // error bodies, and 2xx bodies when no sink was given

  std::string header(std::string_view lower_name) const;
};

// TLS to the endpoint: TLS 1.2 or newer, the server's certificate verified against
// `ca_file` (PEM bundle) or, when empty, the system's trust store, and its name (or IP
// address) checked against the host we connect to.
struct HttpTls {
  bool enabled = false;
  std::string ca_file;
};

class HttpConnection {
 public:
  HttpConnection(std::string host, std::string port, std::chrono::milliseconds connect_timeout,
                 std::chrono::milliseconds io_timeout, HttpTls tls = {});
  ~HttpConnection();
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  // Sends one request. `target` is the encoded request target; `headers` must include Host.
  // With a `sink`, a 2xx body goes to the sink instead of HttpResponse::body.
  // Transport failures are Errc::unavailable (connect/reset) or Errc::timeout; a TLS
  // handshake the server fails (certificate not trusted, wrong name) is
  // Errc::permission_denied, and an unreadable CA file Errc::invalid_argument.
  Result<HttpResponse> send(std::string_view method, std::string_view target,
                            const std::vector<std::pair<std::string, std::string>>& headers, std::string_view body,
                            const ByteSink* sink);

  void close();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::storage
