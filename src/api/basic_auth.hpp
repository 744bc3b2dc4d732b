#pragma once
// HTTP Basic authentication for the REST API's unsafe (non-GET) endpoints.
#include <optional>
#include <string>
#include <string_view>

#include "base/secret.hpp"

namespace tandem::api {

// Credentials the API demands for POST/DELETE; disabled when `username` is empty.
struct ApiAuth {
  std::string username;
  Secret password;
  bool enabled() const { return !username.empty(); }
};

std::string base64_encode(std::string_view data);
std::optional<std::string> base64_decode(std::string_view text);

// "Basic <base64(user:password)>", for an Authorization header.
std::string basic_auth_header(const std::string& username, const Secret& password);

// True when `authorization_header` carries exactly `auth`'s credentials (compared in
// constant time). Always true when `auth` is disabled.
bool check_basic_auth(const ApiAuth& auth, std::string_view authorization_header);

}  // namespace tandem::api
