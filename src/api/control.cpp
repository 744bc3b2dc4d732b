#include "api/control.hpp"

#include <charconv>
#include <initializer_list>

#include <nlohmann/json.hpp>

#include "api/time_format.hpp"

namespace tandem::api {

using nlohmann::json;

namespace {

// The body as a JSON object; an empty body is an empty object.
Result<json> parse_body(const Request& req, std::initializer_list<std::string_view> allowed) {
  json body = json::object();
  bool blank = req.body.find_first_not_of(" \t\r\n") == std::string::npos;
  if (!blank) {
    body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
    if (body.is_discarded()) {
      return make_error(Errc::invalid_argument, "{}: request body is not valid JSON", req.path);
    }
    if (!body.is_object())
      return make_error(Errc::invalid_argument, "{}: request body must be a JSON object", req.path);
  }
  for (const auto& [key, _] : body.items()) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      std::string names;
      for (auto a : allowed) names += (names.empty() ? "" : ", ") + std::string(a);
      return make_error(Errc::invalid_argument, "{}: unknown field '{}' (accepted: {})", req.path, key,
                        names.empty() ? "none" : names);
    }
  }
  return body;
}

Result<std::string> string_field(const json& body, const char* key, const std::string& path) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return std::string();
  if (!it->is_string()) return make_error(Errc::invalid_argument, "{}: '{}' must be a string", path, key);
  return it->get<std::string>();
}

Result<bool> bool_field(const json& body, const char* key, const std::string& path, bool fallback) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) return make_error(Errc::invalid_argument, "{}: '{}' must be true or false", path, key);
  return it->get<bool>();
}

Response ok(int status, const Result<std::string>& r) {
  if (!r) return error_response(r.error());
  return json_response(status, json{{"message", r.value()}});
}

Response do_switchover(AgentControl& control, const Request& req) {
  auto body = parse_body(req, {"leader", "candidate", "scheduled_at"});
  if (!body) return error_response(body.error());
  auto leader = string_field(*body, "leader", req.path);
  if (!leader) return error_response(leader.error());
  auto candidate = string_field(*body, "candidate", req.path);
  if (!candidate) return error_response(candidate.error());
  if (leader->empty()) {
    return error_response(make_error(Errc::invalid_argument,
                                     "/switchover: 'leader' (the current leader's name) is required; use /failover "
                                     "to promote a candidate when there is no healthy leader"));
  }
  int64_t at = 0;
  if (auto it = body->find("scheduled_at"); it != body->end() && !it->is_null()) {
    auto parsed = parse_schedule(*it);
    if (!parsed)
      return error_response(
          make_error(Errc::invalid_argument, "/switchover: scheduled_at: {}", parsed.error().message));
    at = *parsed;
  }
  return ok(at > 0 ? 202 : 200, control.switchover(*leader, *candidate, at));
}

Response do_failover(AgentControl& control, const Request& req) {
  auto body = parse_body(req, {"leader", "candidate"});
  if (!body) return error_response(body.error());
  auto candidate = string_field(*body, "candidate", req.path);
  if (!candidate) return error_response(candidate.error());
  if (candidate->empty()) {
    return error_response(
        make_error(Errc::invalid_argument, "/failover: 'candidate' (the member to promote) is required"));
  }
  auto leader = string_field(*body, "leader", req.path);
  if (!leader) return error_response(leader.error());
  if (!leader->empty()) {
    // A failover that names the leader is a switchover: it must go through the leader.
    return ok(200, control.switchover(*leader, *candidate, 0));
  }
  return ok(200, control.failover(*candidate));
}

}  // namespace

Result<int64_t> parse_schedule(const json& value) {
  if (value.is_number_integer()) {
    auto ms = value.get<int64_t>();
    if (ms < 0) return make_error(Errc::invalid_argument, "unix milliseconds must not be negative");
    return ms;
  }
  if (!value.is_string()) {
    return make_error(Errc::invalid_argument, "expected an ISO-8601 time string or unix milliseconds");
  }
  const auto& text = value.get_ref<const std::string&>();
  int64_t ms = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), ms);
  if (!text.empty() && ec == std::errc() && p == text.data() + text.size()) {
    if (ms < 0) return make_error(Errc::invalid_argument, "unix milliseconds must not be negative");
    return ms;
  }
  return parse_iso8601(text);
}

bool is_control_path(std::string_view path, std::string* allowed) {
  std::string a;
  if (path == "/switchover") {
    a = "POST, DELETE";
  } else if (path == "/failover" || path == "/restart" || path == "/reinitialize" || path == "/pause" ||
             path == "/resume") {
    a = "POST";
  } else {
    return false;
  }
  if (allowed) *allowed = std::move(a);
  return true;
}

Response handle_control(AgentControl& control, const Request& req) {
  const auto& p = req.path;
  if (req.method == "DELETE" && p == "/switchover") {
    auto body = parse_body(req, {});
    if (!body) return error_response(body.error());
    return ok(200, control.cancel_switchover());
  }
  std::string allowed;
  if (!is_control_path(p, &allowed)) return error_response(make_error(Errc::not_found, "no such endpoint: {}", p));
  if (req.method != "POST") {
    auto r = json_response(405, json{{"error", fmt::format("{} does not accept {}; use {}", p, req.method, allowed)}});
    r.headers.emplace_back("Allow", allowed);
    return r;
  }
  if (p == "/switchover") return do_switchover(control, req);
  if (p == "/failover") return do_failover(control, req);
  if (p == "/restart") {
    auto body = parse_body(req, {});
    if (!body) return error_response(body.error());
    return ok(200, control.restart());
  }
  if (p == "/reinitialize") {
    auto body = parse_body(req, {"force", "from_backup"});
    if (!body) return error_response(body.error());
    auto force = bool_field(*body, "force", p, false);
    if (!force) return error_response(force.error());
    auto from_backup = bool_field(*body, "from_backup", p, false);
    if (!from_backup) return error_response(from_backup.error());
    if (*from_backup) return ok(200, control.reinitialize_from_backup());
    return ok(200, control.reinitialize(*force));
  }
  auto body = parse_body(req, {});
  if (!body) return error_response(body.error());
  return ok(200, control.pause(p == "/pause"));
}

}  // namespace tandem::api
