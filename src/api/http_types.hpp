#pragma once
// Plain HTTP request/response values shared by the server, the client and the pure
// routing code, plus the one place that maps an Errc to an HTTP status.
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "base/result.hpp"

namespace tandem::api {

// A parsed request as the server hands it to a handler. HEAD requests reach the handler
// as "GET"; the server drops the body of the answer.
struct Request {
  std::string method;                          // upper case: "GET", "POST", ...
  std::string path;                            // percent-decoded, without the query
  std::map<std::string, std::string> query;    // percent-decoded; last value wins
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  std::string remote;  // peer address, for logs

  std::string header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
};

// Splits an origin-form request target ("/replica?lag=10MB") into a decoded path and
// query parameters. Fails on a target that does not start with '/' or has a bad %-escape.
struct Target {
  std::string path;
  std::map<std::string, std::string> query;
};
Result<Target> parse_target(std::string_view target);

// Decodes %XX escapes (and '+' as space when `plus_is_space`).
std::optional<std::string> percent_decode(std::string_view s, bool plus_is_space);

// A JSON response with the given status; the body is `j.dump()`.
Response json_response(int status, const nlohmann::json& j);

// The single mapping from error codes to HTTP statuses used by every endpoint.
int http_status_for(Errc code);

// {"error": message} with the status from http_status_for().
Response error_response(const Error& e);

// The standard reason phrase ("Not Found"), or "Unknown".
const char* reason_phrase(int status);

}  // namespace tandem::api
