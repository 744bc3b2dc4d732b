#include "api/health.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <limits>

#include <nlohmann/json.hpp>

#include "api/metrics.hpp"
#include "api/time_format.hpp"

namespace tandem::api {

using nlohmann::json;

namespace {

constexpr std::array<std::string_view, 20> kGetPaths = {
    "/",         "/status",    "/patroni", "/primary", "/master",      "/leader", "/read-write",
    "/replica",  "/read-only", "/health",  "/sync",    "/synchronous", "/async",  "/asynchronous",
    "/liveness", "/readiness", "/cluster", "/history", "/config",      "/metrics"};

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

bool truthy(std::string_view v) {
  return iequals(v, "true") || iequals(v, "on") || iequals(v, "yes") || v == "1";
}

json opt_int(const std::optional<int64_t>& v) {
  return v ? json(*v) : json(nullptr);
}

// The value a member's tag has, as a query string would spell it.
std::string tag_value(const dcs::Tags& tags, const std::string& name) {
  if (name == "nofailover") return tags.nofailover ? "true" : "false";
  if (name == "nosync") return tags.nosync ? "true" : "false";
  auto it = tags.other.find(name);
  return it == tags.other.end() ? std::string() : it->second;
}

// Patroni's tag filters: ?tag_<name>=<value> must all match this member's tags.
bool tags_match(const dcs::Tags& tags, const std::map<std::string, std::string>& query) {
  for (const auto& [key, want] : query) {
    if (key.rfind("tag_", 0) != 0 || key.size() == 4) continue;
    auto have = tag_value(tags, key.substr(4));
    bool boolean = iequals(have, "true") || iequals(have, "false");
    if (boolean ? truthy(have) != truthy(want) : have != want) return false;
  }
  return true;
}

json tags_json(const dcs::Tags& tags) {
  json j = json::object();
  if (tags.nofailover) j["nofailover"] = true;
  if (tags.nosync) j["nosync"] = true;
  for (const auto& [k, v] : tags.other) j[k] = v;
  return j;
}

dcs::DynamicConfig config_or_default(const MemberView& view) {
  return view.snapshot.config.value_or(dcs::DynamicConfig{});
}

// How long the view may go without a new HA cycle before /liveness fails.
int64_t liveness_limit_ms(const MemberView& view) {
  auto c = config_or_default(view);
  return std::max<int64_t>(2LL * c.ttl, 3LL * c.loop_wait) * 1000;
}

bool replica_streaming(const MemberView& v) {
  return v.pg_running && v.in_recovery && v.streaming;
}

std::string normalize(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  return path;
}

}  // namespace

std::optional<int64_t> parse_byte_size(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
  int64_t number = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), number);
  if (ec != std::errc() || p == text.data() || number < 0) return std::nullopt;
  std::string_view unit(p, static_cast<size_t>(text.data() + text.size() - p));
  while (!unit.empty() && unit.front() == ' ') unit.remove_prefix(1);
  int shift = 0;
  if (!unit.empty()) {
    char u = static_cast<char>(std::tolower(static_cast<unsigned char>(unit.front())));
    switch (u) {
      case 'b': shift = 0; break;
      case 'k': shift = 10; break;
      case 'm': shift = 20; break;
      case 'g': shift = 30; break;
      case 't': shift = 40; break;
      default: return std::nullopt;
    }
    auto suffix = unit.substr(1);
    if (u == 'b') {
      if (!suffix.empty()) return std::nullopt;
    } else if (!(suffix.empty() || iequals(suffix, "b") || iequals(suffix, "ib"))) {
      return std::nullopt;
    }
  }
  if (number > (std::numeric_limits<int64_t>::max() >> shift)) return std::nullopt;
  return number << shift;
}

std::optional<int64_t> effective_lag(const MemberView& view) {
  if (view.holds_leader_lease) return 0;
  if (view.lag_bytes) return std::max<int64_t>(0, *view.lag_bytes);
  const auto* leader = view.snapshot.leader_member();
  if (!leader || !view.in_recovery) return std::nullopt;
  if (leader->wal_position.value() <= view.wal_position.value()) return 0;
  return static_cast<int64_t>(leader->wal_position.value() - view.wal_position.value());
}

bool is_get_path(std::string_view path) {
  auto p = normalize(std::string(path));
  return std::find(kGetPaths.begin(), kGetPaths.end(), p) != kGetPaths.end();
}

json member_status_json(const MemberView& v) {
  const auto& s = v.snapshot;
  json j{{"state", v.pg_state},
         {"role", v.role},
         {"member", v.member},
         {"cluster", v.cluster},
         {"holds_leader_lease", v.holds_leader_lease},
         {"pg_running", v.pg_running},
         {"in_recovery", v.in_recovery},
         {"timeline", v.timeline},
         {"wal",
          {{"position", v.wal_position.to_string()},
           {"position_bytes", v.wal_position.value()},
           {"replay_position", v.replay_position.to_string()}}},
         {"lag", opt_int(effective_lag(v))},
         {"sync_mode", dcs::to_string(v.sync_mode)},
         {"sync_standby", v.is_sync_standby},
         {"pause", v.paused},
         {"pending_restart", v.pending_restart},
         {"leader", s.leader ? json(s.leader->name) : json(nullptr)},
         {"cluster_unlocked", !s.leader.has_value()},
         {"dcs_reachable", v.dcs_reachable},
         {"lease", {{"age_ms", opt_int(v.lease_age_ms)}, {"remaining_ms", opt_int(v.lease_remaining_ms)}}},
         {"tags", tags_json(v.tags)},
         {"ha_cycles", v.ha_cycles},
         {"last_decision", v.last_decision},
         {"api_url", v.api_url},
         {"conn_url", v.conn_url},
         {"server_version", v.server_version},
         {"database_system_identifier", v.system_identifier},
         {"tandem", {{"version", v.version}, {"scope", v.cluster}, {"name", v.member}}}};
  if (v.in_recovery) j["replication_state"] = v.streaming ? "streaming" : "not streaming";
  j["postmaster_start_time"] = v.pg_start_time_ms > 0 ? json(format_iso8601(v.pg_start_time_ms)) : json(nullptr);
  j["agent_start_time"] = v.agent_start_time_ms > 0 ? json(format_iso8601(v.agent_start_time_ms)) : json(nullptr);
  j["published_at"] = v.published_ms > 0 ? json(format_iso8601(v.published_ms)) : json(nullptr);
  return j;
}

json cluster_json(const MemberView& v) {
  const auto& s = v.snapshot;
  const auto* leader = s.leader_member();
  json members = json::array();
  for (const auto& [name, m] : s.members) {
    json lag = nullptr;
    if (leader) {
      if (leader->name == name) {
        lag = 0;
      } else {
        lag = leader->wal_position > m.wal_position
                  ? static_cast<int64_t>(leader->wal_position.value() - m.wal_position.value())
                  : int64_t{0};
      }
    }
    members.push_back(json{{"name", m.name},
                           {"host", m.host},
                           {"port", m.pg_port},
                           {"role", m.role},
                           {"state", m.state},
                           {"timeline", m.timeline},
                           {"wal_position", m.wal_position.to_string()},
                           {"lag", lag},
                           {"api_url", m.api_url},
                           {"conn_url", m.conn_url},
                           {"pending_restart", m.pending_restart},
                           {"tags", tags_json(m.tags)},
                           {"updated_at", m.updated_ms > 0 ? json(format_iso8601(m.updated_ms)) : json(nullptr)}});
  }
  json switchover = nullptr;
  if (s.switchover) {
    switchover = json{{"leader", s.switchover->leader}, {"candidate", s.switchover->candidate}};
    switchover["scheduled_at"] =
        s.switchover->scheduled_at_ms > 0 ? json(format_iso8601(s.switchover->scheduled_at_ms)) : json(nullptr);
  }
  json sync_standby = nullptr;
  if (s.sync && s.sync->sync_standby) sync_standby = *s.sync->sync_standby;
  return json{{"scope", v.cluster},
              {"leader", s.leader ? json(s.leader->name) : json(nullptr)},
              {"sync_standby", sync_standby},
              {"pause", v.paused},
              {"scheduled_switchover", switchover},
              {"initialized", s.initialize.has_value()},
              {"members", members},
              {"revision", s.revision}};
}

Response handle_get(const MemberView& v, const Request& req, int64_t now_ms) {
  const std::string path = normalize(req.path);
  if (path == "/cluster") return json_response(200, cluster_json(v));
  if (path == "/history") {
    json arr = json::array();
    for (const auto& h : v.snapshot.history) {
      auto e = dcs::to_json(h);
      e["time"] = format_iso8601(h.time_ms);
      arr.push_back(std::move(e));
    }
    return json_response(200, arr);
  }
  if (path == "/config") {
    if (!v.snapshot.config) {
      return error_response(make_error(Errc::unavailable, "the cluster has no dynamic configuration yet"));
    }
    return json_response(200, dcs::to_json(*v.snapshot.config));
  }
  if (path == "/metrics") {
    Response r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = render_metrics(v, now_ms);
    return r;
  }
  if (!is_get_path(path)) return error_response(make_error(Errc::not_found, "no such endpoint: {}", path));

  // Health endpoints: status depends on the role; the body is always the member status.
  std::optional<int64_t> max_lag;
  if (auto it = req.query.find("lag"); it != req.query.end()) {
    max_lag = parse_byte_size(it->second);
    if (!max_lag) {
      return error_response(make_error(Errc::invalid_argument,
                                       "lag '{}' is not a byte size; use e.g. lag=1048576, lag=16MB or lag=1GB",
                                       it->second));
    }
  }
  const auto lag = effective_lag(v);
  const bool lagging = max_lag && (!lag || *lag > *max_lag);
  const bool primary_ok = v.holds_leader_lease;
  const bool replica_ok = replica_streaming(v) && !no_load_balance(v.tags) && !lagging;
  const bool sync = v.is_sync_standby && v.sync_mode != dcs::SyncMode::off;

  bool ok = false;
  auto body = member_status_json(v);
  if (path == "/primary" || path == "/master" || path == "/leader" || path == "/read-write" || path == "/") {
    ok = primary_ok;
  } else if (path == "/status" || path == "/patroni") {
    ok = true;
  } else if (path == "/replica") {
    ok = replica_ok;
  } else if (path == "/read-only") {
    ok = primary_ok || replica_ok;
  } else if (path == "/health") {
    ok = v.pg_running;
  } else if (path == "/sync" || path == "/synchronous") {
    ok = replica_ok && sync;
  } else if (path == "/async" || path == "/asynchronous") {
    ok = replica_ok && !sync;
  } else if (path == "/liveness") {
    int64_t age = now_ms - v.published_ms;
    body["last_cycle_age_ms"] = age;
    ok = age <= liveness_limit_ms(v);
  } else if (path == "/readiness") {
    ok = primary_ok || replica_streaming(v);
  }
  if (ok && path != "/status" && path != "/patroni" && path != "/liveness" && !tags_match(v.tags, req.query)) {
    ok = false;
  }
  return json_response(ok ? 200 : 503, body);
}

}  // namespace tandem::api
