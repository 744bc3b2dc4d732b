#pragma once
// A synchronous HTTP/1.1 client for http://host:port/path URLs, used by `tandem ctl` and
// by agents checking each other. Each call uses its own io_context and connection
// (Connection: close), so it is safe to call from any thread. No TLS.
#include <chrono>
#include <map>
#include <string>
#include <string_view>

#include "base/result.hpp"

namespace tandem::api {

struct HttpUrl {
  std::string host;  // without brackets for IPv6
  int port = 80;
  std::string target;               // "/path?query", at least "/"
  std::string host_header() const;  // "host:port", IPv6 in brackets
};

// Parses "http://host[:port][/path][?query]"; IPv6 hosts in brackets. Other schemes
// (https) are rejected with a message saying so.
Result<HttpUrl> parse_http_url(std::string_view url);

struct HttpClientRequest {
  std::string method = "GET";
  std::string url;
  std::string body;
  std::string content_type = "application/json";  // sent when the body is not empty
  std::map<std::string, std::string> headers;     // extra headers, e.g. Authorization
  std::chrono::milliseconds timeout{5000};        // resolve + connect + send + receive
  size_t max_response_bytes = 16 * 1024 * 1024;
};

struct HttpClientResponse {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

// Sends one request and waits for the whole answer. Any HTTP status is a success here;
// errors are transport failures: Errc::unavailable (refused, unreachable, closed early),
// Errc::timeout (the overall timeout passed), Errc::protocol (not a valid HTTP answer),
// Errc::invalid_argument (bad URL).
Result<HttpClientResponse> http_request(const HttpClientRequest& request);

Result<HttpClientResponse> http_get(const std::string& url,
                                    std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));
Result<HttpClientResponse> http_post(const std::string& url, const std::string& json_body,
                                     std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));

}  // namespace tandem::api
