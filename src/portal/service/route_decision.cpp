#include "portal/service/route_decision.hpp"

#include <algorithm>
#include <limits>

#include <fmt/format.h>

namespace tandem::portal::service {

namespace {

bool switchover_due(const dcs::ClusterSnapshot& s, int64_t now_ms) {
  return s.switchover && s.switchover->scheduled_at_ms <= now_ms;
}

bool is_ready_leader(const dcs::Member& m) {
  return m.role == "leader" && m.state == "running";
}

bool no_load_balance(const dcs::Member& m) {
  auto it = m.tags.other.find("noloadbalance");
  return it != m.tags.other.end() && (it->second == "true" || it->second == "on" || it->second == "yes");
}

RouteChoice hold(std::string reason) {
  return RouteChoice{RouteKind::hold, std::nullopt, std::move(reason)};
}

}  // namespace

const char* route_kind_name(RouteKind k) {
  switch (k) {
    case RouteKind::route: return "route";
    case RouteKind::hold: return "hold";
    case RouteKind::none: return "none";
  }
  return "unknown";
}

relay::Endpoint endpoint_for(const std::string& member, const std::string& host, int port,
                             const BackendPolicy& policy) {
  relay::Endpoint e;
  e.member = member;
  e.host = host;
  e.port = static_cast<std::uint16_t>(port);
  e.tls = policy.tls == BackendTls::on;
  return e;
}

RouteChoice choose_write_route(const dcs::ClusterSnapshot& s, const BackendPolicy& policy, int64_t now_ms) {
  if (!s.initialize && !s.leader && s.members.empty()) {
    return RouteChoice{RouteKind::none, std::nullopt, "the cluster has no members yet (not bootstrapped)"};
  }
  if (switchover_due(s, now_ms)) {
    const auto& sw = *s.switchover;
    const dcs::Member* current = s.leader_member();
    RouteChoice c = hold(
        fmt::format("a switchover{}{} is in progress; holding new sessions until the new leader accepts writes",
                    sw.leader.empty() ? "" : " from " + sw.leader, sw.candidate.empty() ? "" : " to " + sw.candidate));
    c.keep_sessions = current != nullptr && is_ready_leader(*current);
    return c;
  }
  if (!s.leader) return hold("no member holds the leader key; an election is in progress");
  const dcs::Member* m = s.leader_member();
  if (m == nullptr) {
    return hold(fmt::format("{} holds the leader key but has not published its status", s.leader->name));
  }
  if (!is_ready_leader(*m)) {
    return hold(fmt::format("{} holds the leader key but is not a running primary yet (role {}, state {})", m->name,
                            m->role, m->state));
  }
  if (m->host.empty() || m->pg_port <= 0 || m->pg_port > 65535) {
    return hold(fmt::format("{} leads but has not published where PostgreSQL listens", m->name));
  }
  return RouteChoice{RouteKind::route, endpoint_for(m->name, m->host, m->pg_port, policy),
                     fmt::format("{} holds the leader key and runs as primary", m->name)};
}

RouteChoice choose_read_route(const dcs::ClusterSnapshot& s, const BackendPolicy& policy, int64_t max_lag_bytes,
                              int64_t now_ms) {
  RouteChoice write = choose_write_route(s, policy, now_ms);
  const dcs::Member* leader = s.leader_member();
  const dcs::Member* best = nullptr;
  uint64_t best_lag = std::numeric_limits<uint64_t>::max();
  if (leader != nullptr && leader->role == "leader") {
    const uint64_t head = leader->wal_position.value();
    for (const auto& [name, m] : s.members) {
      if (name == leader->name || m.role != "replica" || m.state != "streaming" || no_load_balance(m)) continue;
      if (m.host.empty() || m.pg_port <= 0 || m.pg_port > 65535) continue;
      const uint64_t replayed = m.replay_position.value();
      const uint64_t lag = head > replayed ? head - replayed : 0;
      if (lag > static_cast<uint64_t>(std::max<int64_t>(max_lag_bytes, 0))) continue;
      if (lag < best_lag) {  // members iterate in name order: ties keep the lower name
        best = &m;
        best_lag = lag;
      }
    }
  }
  if (best != nullptr) {
    return RouteChoice{
        RouteKind::route, endpoint_for(best->name, best->host, best->pg_port, policy),
        fmt::format("{} streams {} bytes behind the leader (limit {})", best->name, best_lag, max_lag_bytes)};
  }
  if (write.kind == RouteKind::route) {
    write.reason = fmt::format("no follower streams within {} bytes of the leader; reading from the leader: {}",
                               max_lag_bytes, write.reason);
  }
  return write;
}

std::set<std::string> readable_members(const dcs::ClusterSnapshot& s, int64_t now_ms) {
  std::set<std::string> out;
  for (const auto& [name, m] : s.members) {
    if (m.role == "replica" && m.state == "streaming") out.insert(name);
  }
  auto write = choose_write_route(s, BackendPolicy{}, now_ms);
  if (write.kind == RouteKind::route) out.insert(write.endpoint->member);
  return out;
}

RouteChoice choose_from_probes(const std::vector<ProbeAnswer>& answers, const BackendPolicy& policy) {
  std::vector<const ProbeAnswer*> yes;
  std::size_t answered = 0;
  for (const auto& a : answers) {
    if (!a.answered) continue;
    ++answered;
    if (a.status == 200) yes.push_back(&a);
  }
  if (yes.size() == 1) {
    const auto& m = yes.front()->member;
    return RouteChoice{RouteKind::route, endpoint_for(m.name, m.host, m.port, policy),
                       fmt::format("etcd is unreachable; {} is the only member whose /primary says 200", m.name)};
  }
  // Without etcd a missing answer proves nothing about the member that served until now:
  // hold new sessions but keep the existing ones.
  RouteChoice c;
  if (yes.size() > 1) {
    std::string names;
    for (const auto* a : yes) names += (names.empty() ? "" : ", ") + a->member.name;
    c = hold(
        fmt::format("etcd is unreachable and {} members claim to be primary ({}); routing to none", yes.size(), names));
  } else {
    c = hold(fmt::format("etcd is unreachable and none of the {} members asked ({} answered) is a primary",
                         answers.size(), answered));
  }
  c.keep_sessions = true;
  return c;
}

std::vector<StaticMember> probe_targets(const std::optional<dcs::ClusterSnapshot>& last,
                                        const std::vector<StaticMember>& configured) {
  std::vector<StaticMember> out;
  if (last) {
    for (const auto& [name, m] : last->members) {
      if (m.api_url.empty() || m.host.empty() || m.pg_port <= 0) continue;
      out.push_back(StaticMember{name, m.api_url, m.host, m.pg_port});
    }
  }
  for (const auto& c : configured) {
    const bool known = std::any_of(out.begin(), out.end(), [&](const StaticMember& o) { return o.name == c.name; });
    if (!known) out.push_back(c);
  }
  return out;
}

}  // namespace tandem::portal::service
