#pragma once
// The portal's routing decisions as pure functions: a cluster snapshot (or the answers of
// the agents' /primary endpoints) in, a target and one sentence saying why out. No I/O
// and no clock reads, so every rule is table-tested (tests/unit/portal/route_decision_test).
//
// Read-write rules, in order:
//   - a switchover that is due (the `switchover` key exists, scheduled now or earlier):
//     hold new sessions, because the old leader is about to stop and the new one is not
//     ready yet;
//   - no leader key (expired lease or released): hold, an election is in progress;
//   - a leader key whose member does not report itself a running primary that holds the
//     key (role "leader", state "running"): hold, it is still promoting;
//   - otherwise route to that member, and only to it.
// "hold" means: keep a new client waiting (up to the hold timeout) instead of refusing it.
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "dcs/cluster.hpp"
#include "portal/relay/endpoint.hpp"
#include "portal/service/portal_config.hpp"

namespace tandem::portal::service {

enum class RouteKind {
  route,  // send new sessions to `endpoint`
  hold,   // a leader change is in progress: keep new sessions waiting
  none,   // nowhere to go (no cluster yet): refuse at once
};
const char* route_kind_name(RouteKind k);

struct RouteChoice {
  RouteKind kind = RouteKind::none;
  std::optional<relay::Endpoint> endpoint;  // set when kind == route
  std::string reason;                       // one sentence for the log
  // Leave sessions attached to other members alone: set while a switchover is due but the
  // old leader still runs as primary with the key (its sessions end when it shuts down;
  // closing them earlier would only fail clients that are still authenticating), and when
  // the /primary probes are inconclusive (a missed answer proves no leader change).
  bool keep_sessions = false;
  bool operator==(const RouteChoice&) const = default;
};

// How the portal reaches members: TLS or not (see PortalConfig::backend_tls).
struct BackendPolicy {
  BackendTls tls = BackendTls::off;
};

// The read-write target from one snapshot; `now_ms` (unix millis) decides whether a
// scheduled switchover is due.
RouteChoice choose_write_route(const dcs::ClusterSnapshot& s, const BackendPolicy& policy, int64_t now_ms);

// The read-only target: the streaming follower with the least replay lag behind the
// leader's last published WAL position, if that lag is at most `max_lag_bytes` (ties go to
// the lower name; members tagged noloadbalance are skipped); otherwise the write route.
RouteChoice choose_read_route(const dcs::ClusterSnapshot& s, const BackendPolicy& policy, int64_t max_lag_bytes,
                              int64_t now_ms);

// Members a read-only session may stay attached to: streaming followers and a ready
// leader. Read-only sessions on any other member are closed (the member went away or
// changed role); lag alone does not close a session.
std::set<std::string> readable_members(const dcs::ClusterSnapshot& s, int64_t now_ms);

// The answer of one agent's /primary endpoint, for the fallback used when etcd cannot be
// reached.
struct ProbeAnswer {
  StaticMember member;    // who was asked, and where its PostgreSQL listens
  bool answered = false;  // an HTTP answer arrived at all
  int status = 0;         // 200: "I am the running leader holding the lease"
};

// Routes only when exactly one member says 200; otherwise hold (none answered yes, or
// more than one did, which must never happen but is not acted upon).
RouteChoice choose_from_probes(const std::vector<ProbeAnswer>& answers, const BackendPolicy& policy);

// Whom to probe: every member of the last snapshot that published an API URL and an
// address, plus the configured static members not already in it.
std::vector<StaticMember> probe_targets(const std::optional<dcs::ClusterSnapshot>& last,
                                        const std::vector<StaticMember>& configured);

// The endpoint for a member's PostgreSQL.
relay::Endpoint endpoint_for(const std::string& member, const std::string& host, int port, const BackendPolicy& policy);

}  // namespace tandem::portal::service
