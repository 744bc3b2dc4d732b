#include "api/handler.hpp"

#include <nlohmann/json.hpp>

#include "base/clock.hpp"

namespace tandem::api {

using nlohmann::json;

namespace {

Response method_not_allowed(const std::string& path, const std::string& method, const std::string& allowed) {
  auto r = json_response(405, json{{"error", fmt::format("{} does not accept {}; use {}", path, method, allowed)}});
  r.headers.emplace_back("Allow", allowed);
  return r;
}

}  // namespace

Response route(const MemberView* view, AgentControl& control, const ApiAuth& auth, const Request& req, int64_t now_ms) {
  std::string path = req.path;
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  std::string control_methods;
  const bool control_path = is_control_path(path, &control_methods);
  if (req.method == "GET") {
    if (control_path) return method_not_allowed(path, req.method, control_methods);
    if (!is_get_path(path)) return error_response(make_error(Errc::not_found, "no such endpoint: {}", path));
    if (!view) {
      return json_response(503, json{{"role", "uninitialized"},
                                     {"state", "starting"},
                                     {"error", "the agent has not completed its first HA cycle yet"}});
    }
    return handle_get(*view, req, now_ms);
  }
  if (is_get_path(path)) return method_not_allowed(path, req.method, "GET, HEAD");
  if (!control_path) return error_response(make_error(Errc::not_found, "no such endpoint: {}", path));
  if (control_methods.find(req.method) == std::string::npos) {
    return method_not_allowed(path, req.method, control_methods);
  }
  if (!check_basic_auth(auth, req.header("authorization"))) {
    auto r = json_response(401, json{{"error", fmt::format("{} {} requires valid credentials", req.method, path)}});
    r.headers.emplace_back("WWW-Authenticate", "Basic realm=\"tandem\"");
    return r;
  }
  Request normalized = req;
  normalized.path = path;
  return handle_control(control, normalized);
}

HttpServer::Handler make_handler(const ViewPublisher& publisher, AgentControl& control, ApiAuth auth) {
  return [&publisher, &control, auth = std::move(auth)](const Request& req) {
    auto view = publisher.current();
    return route(view.get(), control, auth, req, unix_millis_now());
  };
}

}  // namespace tandem::api
