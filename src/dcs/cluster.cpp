#include "dcs/cluster.hpp"

#include <nlohmann/json.hpp>

namespace tandem::dcs {

using nlohmann::json;

const char* to_string(SyncMode m) {
  switch (m) {
    case SyncMode::off: return "off";
    case SyncMode::on: return "on";
    case SyncMode::strict: return "strict";
  }
  return "on";
}

std::optional<SyncMode> parse_sync_mode(std::string_view s) {
  if (s == "off" || s == "false") return SyncMode::off;
  if (s == "on" || s == "true") return SyncMode::on;
  if (s == "strict") return SyncMode::strict;
  return std::nullopt;
}

Status validate(const DynamicConfig& c) {
  if (c.ttl < 2) return make_error(Errc::invalid_argument, "ttl: {} is too short (minimum 2 seconds)", c.ttl);
  if (c.loop_wait < 1) return make_error(Errc::invalid_argument, "loop_wait: must be at least 1 second");
  if (c.retry_timeout < 1) return make_error(Errc::invalid_argument, "retry_timeout: must be at least 1 second");
  // The leader must be able to renew at least twice and still fence itself in time.
  if (c.loop_wait + c.retry_timeout > c.ttl) {
    return make_error(Errc::invalid_argument,
                      "ttl: {} must be at least loop_wait + retry_timeout ({} + {}) so the leader can renew its lease "
                      "and fence itself before it expires",
                      c.ttl, c.loop_wait, c.retry_timeout);
  }
  if (c.maximum_lag_on_failover < 0)
    return make_error(Errc::invalid_argument, "maximum_lag_on_failover: must not be negative");
  if (c.primary_start_timeout < 0)
    return make_error(Errc::invalid_argument, "primary_start_timeout: must not be negative");
  for (const auto& [k, v] : c.parameters) {
    if (k.empty() || k.find_first_of(" \t\n'=") != std::string::npos)
      return make_error(Errc::invalid_argument, "parameters: '{}' is not a valid PostgreSQL parameter name", k);
    if (v.find('\n') != std::string::npos)
      return make_error(Errc::invalid_argument, "parameters.{}: value must be on one line", k);
  }
  return {};
}

json to_json(const Member& m) {
  json tags = json::object();
  if (m.tags.nofailover) tags["nofailover"] = true;
  if (m.tags.nosync) tags["nosync"] = true;
  for (const auto& [k, v] : m.tags.other) tags[k] = v;
  return json{{"name", m.name},
              {"role", m.role},
              {"state", m.state},
              {"timeline", m.timeline},
              {"wal_position", m.wal_position.to_string()},
              {"replay_position", m.replay_position.to_string()},
              {"api_url", m.api_url},
              {"conn_url", m.conn_url},
              {"host", m.host},
              {"pg_port", m.pg_port},
              {"tags", tags},
              {"pending_restart", m.pending_restart},
              {"updated_ms", m.updated_ms}};
}

json to_json(const SyncState& s) {
  return json{{"leader", s.leader}, {"sync_standby", s.sync_standby ? json(*s.sync_standby) : json(nullptr)}};
}

json to_json(const Switchover& s) {
  return json{{"leader", s.leader}, {"candidate", s.candidate}, {"scheduled_at_ms", s.scheduled_at_ms}};
}

json to_json(const DynamicConfig& c) {
  return json{{"ttl", c.ttl},
              {"loop_wait", c.loop_wait},
              {"retry_timeout", c.retry_timeout},
              {"maximum_lag_on_failover", c.maximum_lag_on_failover},
              {"synchronous_mode", to_string(c.synchronous_mode)},
              {"paused", c.paused},
              {"primary_start_timeout", c.primary_start_timeout},
              {"parameters", c.parameters}};
}

json to_json(const HistoryEntry& h) {
  return json{{"time_ms", h.time_ms}, {"from", h.from},         {"to", h.to},
              {"reason", h.reason},   {"timeline", h.timeline}, {"lsn", h.lsn.to_string()}};
}

json to_json(const ClusterSnapshot& s) {
  json members = json::array();
  for (const auto& [_, m] : s.members) members.push_back(to_json(m));
  json history = json::array();
  for (const auto& h : s.history) history.push_back(to_json(h));
  return json{{"initialize", s.initialize ? json(*s.initialize) : json(nullptr)},
              {"leader", s.leader ? json(s.leader->name) : json(nullptr)},
              {"members", members},
              {"sync", s.sync ? to_json(*s.sync) : json(nullptr)},
              {"switchover", s.switchover ? to_json(*s.switchover) : json(nullptr)},
              {"config", s.config ? to_json(*s.config) : json(nullptr)},
              {"history", history},
              {"revision", s.revision}};
}

namespace {

Result<json> parse(const std::string& text, const char* what) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    return make_error(Errc::protocol, "{}: stored value is not valid JSON: {}", what, e.what());
  }
}

template <typename T>
T get_or(const json& j, const char* key, T fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  return it->get<T>();
}

Lsn lsn_or_zero(const json& j, const char* key) {
  auto s = get_or<std::string>(j, key, "");
  return Lsn::parse(s).value_or(Lsn{});
}

}  // namespace

Result<Member> member_from_json(const std::string& text) {
  auto j = parse(text, "member");
  if (!j) return j.error();
  if (!j->is_object()) return make_error(Errc::protocol, "member: expected a JSON object");
  try {
    Member m;
    m.name = j->at("name").get<std::string>();
    m.role = get_or<std::string>(*j, "role", "");
    m.state = get_or<std::string>(*j, "state", "");
    m.timeline = get_or<uint32_t>(*j, "timeline", 0);
    m.wal_position = lsn_or_zero(*j, "wal_position");
    m.replay_position = lsn_or_zero(*j, "replay_position");
    m.api_url = get_or<std::string>(*j, "api_url", "");
    m.conn_url = get_or<std::string>(*j, "conn_url", "");
    m.host = get_or<std::string>(*j, "host", "");
    m.pg_port = get_or<int>(*j, "pg_port", 0);
    m.pending_restart = get_or<bool>(*j, "pending_restart", false);
    m.updated_ms = get_or<int64_t>(*j, "updated_ms", 0);
    if (auto t = j->find("tags"); t != j->end() && t->is_object()) {
      for (auto it = t->begin(); it != t->end(); ++it) {
        if (it.key() == "nofailover")
          m.tags.nofailover = it->get<bool>();
        else if (it.key() == "nosync")
          m.tags.nosync = it->get<bool>();
        else if (it->is_string())
          m.tags.other[it.key()] = it->get<std::string>();
      }
    }
    return m;
  } catch (const json::exception& e) {
    return make_error(Errc::protocol, "member: {}", e.what());
  }
}

Result<SyncState> sync_from_json(const std::string& text) {
  auto j = parse(text, "sync");
  if (!j) return j.error();
  if (!j->is_object()) return make_error(Errc::protocol, "sync: expected a JSON object");
  try {
    SyncState s;
    s.leader = get_or<std::string>(*j, "leader", "");
    if (auto it = j->find("sync_standby"); it != j->end() && it->is_string()) s.sync_standby = it->get<std::string>();
    return s;
  } catch (const json::exception& e) {
    return make_error(Errc::protocol, "sync: {}", e.what());
  }
}

Result<Switchover> switchover_from_json(const std::string& text) {
  auto j = parse(text, "switchover");
  if (!j) return j.error();
  if (!j->is_object()) return make_error(Errc::protocol, "switchover: expected a JSON object");
  try {
    Switchover s;
    s.leader = get_or<std::string>(*j, "leader", "");
    s.candidate = get_or<std::string>(*j, "candidate", "");
    s.scheduled_at_ms = get_or<int64_t>(*j, "scheduled_at_ms", 0);
    return s;
  } catch (const json::exception& e) {
    return make_error(Errc::protocol, "switchover: {}", e.what());
  }
}

Result<DynamicConfig> config_from_json(const json& j) {
  if (!j.is_object()) return make_error(Errc::invalid_argument, "config: expected a JSON object");
  DynamicConfig c;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const auto& k = it.key();
    const auto& v = it.value();
    try {
      if (k == "ttl")
        c.ttl = v.get<int>();
      else if (k == "loop_wait")
        c.loop_wait = v.get<int>();
      else if (k == "retry_timeout")
        c.retry_timeout = v.get<int>();
      else if (k == "maximum_lag_on_failover")
        c.maximum_lag_on_failover = v.get<int64_t>();
      else if (k == "primary_start_timeout")
        c.primary_start_timeout = v.get<int>();
      else if (k == "paused")
        c.paused = v.get<bool>();
      else if (k == "synchronous_mode") {
        auto m = v.is_boolean() ? std::optional(v.get<bool>() ? SyncMode::on : SyncMode::off)
                                : parse_sync_mode(v.get<std::string>());
        if (!m)
          return make_error(Errc::invalid_argument, "synchronous_mode: expected off, on or strict, got {}", v.dump());
        c.synchronous_mode = *m;
      } else if (k == "parameters") {
        if (!v.is_object()) return make_error(Errc::invalid_argument, "parameters: expected an object");
        for (auto p = v.begin(); p != v.end(); ++p) {
          c.parameters[p.key()] = p->is_string() ? p->get<std::string>() : p->dump();
        }
      } else {
        return make_error(Errc::invalid_argument, "{}: unknown setting", k);
      }
    } catch (const json::exception&) {
      return make_error(Errc::invalid_argument, "{}: wrong type, got {}", k, v.dump());
    }
  }
  if (auto s = validate(c); !s) return s.error();
  return c;
}

Result<DynamicConfig> config_from_json(const std::string& text) {
  auto j = parse(text, "config");
  if (!j) return j.error();
  return config_from_json(*j);
}

Result<std::vector<HistoryEntry>> history_from_json(const std::string& text) {
  auto j = parse(text, "history");
  if (!j) return j.error();
  if (!j->is_array()) return make_error(Errc::protocol, "history: expected an array");
  std::vector<HistoryEntry> out;
  try {
    for (const auto& e : *j) {
      if (!e.is_object()) return make_error(Errc::protocol, "history: entry {} is not a JSON object", out.size());
      HistoryEntry h;
      h.time_ms = get_or<int64_t>(e, "time_ms", 0);
      h.from = get_or<std::string>(e, "from", "");
      h.to = get_or<std::string>(e, "to", "");
      h.reason = get_or<std::string>(e, "reason", "");
      h.timeline = get_or<uint32_t>(e, "timeline", 0);
      h.lsn = lsn_or_zero(e, "lsn");
      out.push_back(std::move(h));
    }
  } catch (const json::exception& e) {
    return make_error(Errc::protocol, "history: {}", e.what());
  }
  return out;
}

}  // namespace tandem::dcs
