#include "portal/service/portal_metrics.hpp"

#include <fmt/format.h>

#include "api/metrics.hpp"

namespace tandem::portal::service {

namespace {

// Accumulates families in order; each family's HELP and TYPE come once.
class Exposition {
 public:
  explicit Exposition(std::string base_labels) : base_(std::move(base_labels)) {}

  void family(const char* name, const char* type, const char* help) {
    out_ += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
    name_ = name;
  }
  template <typename V>
  void sample(const std::string& labels, V value) {
    out_ += fmt::format("{}{{{}{}{}}} {}\n", name_, base_, labels.empty() ? "" : ",", labels, value);
  }
  std::string take() { return std::move(out_); }

 private:
  std::string base_;
  std::string name_;
  std::string out_;
};

std::string label(const char* key, const std::string& value) {
  return fmt::format("{}=\"{}\"", key, api::escape_label_value(value));
}

}  // namespace

std::string render_portal_metrics(const PortalMetricsInput& in) {
  Exposition e(label("cluster", in.cluster) + "," + label("portal", in.portal));
  using Counter = std::atomic<std::uint64_t> relay::RelayCounters::*;
  const auto per_listener = [&](const char* name, const char* type, const char* help, Counter field) {
    e.family(name, type, help);
    for (const auto& l : in.listeners) e.sample(label("listener", l.name), (l.counters->*field).load());
  };

  e.family("tandem_portal_sessions_open", "gauge", "Client sessions alive (negotiating, held or relaying).");
  for (const auto& l : in.listeners) e.sample(label("listener", l.name), l.counters->active.load());
  per_listener("tandem_portal_sessions_accepted_total", "counter", "Client connections accepted.",
               &relay::RelayCounters::accepted);
  per_listener("tandem_portal_sessions_routed_total", "counter", "Sessions sent to a member.",
               &relay::RelayCounters::routed);
  e.family("tandem_portal_sessions_attached", "gauge", "Sessions attached to each member now.");
  for (const auto& l : in.listeners) {
    for (const auto& [member, n] : l.attached) e.sample(label("listener", l.name) + "," + label("member", member), n);
  }
  e.family("tandem_portal_bytes_total", "counter", "Bytes relayed, by direction.");
  for (const auto& l : in.listeners) {
    e.sample(label("listener", l.name) + ",direction=\"to_server\"", l.counters->bytes_to_server.load());
    e.sample(label("listener", l.name) + ",direction=\"to_client\"", l.counters->bytes_to_client.load());
  }
  per_listener("tandem_portal_tls_sessions_total", "counter", "Client sessions that completed a TLS handshake.",
               &relay::RelayCounters::tls_sessions);
  per_listener("tandem_portal_tls_handshake_failures_total", "counter", "Client TLS handshakes that failed.",
               &relay::RelayCounters::tls_handshake_failures);
  e.family("tandem_portal_rejected_total", "counter", "Client sessions refused, by reason.");
  for (const auto& l : in.listeners) {
    const auto& c = *l.counters;
    const std::string ll = label("listener", l.name);
    e.sample(ll + ",reason=\"plaintext\"", c.rejected_plaintext.load());
    e.sample(ll + ",reason=\"protocol\"", c.rejected_protocol.load());
    e.sample(ll + ",reason=\"too_many\"", c.rejected_too_many.load());
    e.sample(ll + ",reason=\"no_route\"", c.no_route.load());
  }
  per_listener("tandem_portal_backend_failures_total", "counter", "Connections to members that failed.",
               &relay::RelayCounters::backend_failures);
  per_listener("tandem_portal_timeouts_total", "counter", "Sessions closed by a start-up, connect or idle timeout.",
               &relay::RelayCounters::timeouts);
  per_listener("tandem_portal_cancels_forwarded_total", "counter", "CancelRequests forwarded to a member.",
               &relay::RelayCounters::cancels_forwarded);
  per_listener("tandem_portal_held_total", "counter", "Sessions held while a leader change was in progress.",
               &relay::RelayCounters::held);
  per_listener("tandem_portal_hold_timeouts_total", "counter", "Held sessions refused because no leader came in time.",
               &relay::RelayCounters::hold_timeouts);
  e.family("tandem_portal_sessions_holding", "gauge", "Sessions waiting for a route now.");
  for (const auto& l : in.listeners) e.sample(label("listener", l.name), l.counters->holding.load());

  e.family("tandem_portal_route_changes_total", "counter", "Changes of the read-write target.");
  e.sample("", in.router.route_changes);
  e.family("tandem_portal_write_route", "gauge", "1 when new read-write sessions have a target.");
  e.sample(label("state", route_kind_name(in.router.write_kind)) + "," + label("member", in.router.write_member),
           in.router.write_kind == RouteKind::route ? 1 : 0);
  e.family("tandem_portal_routing_mode", "gauge", "Where routing decisions come from (1 for the current mode).");
  for (auto m : {RoutingMode::starting, RoutingMode::etcd, RoutingMode::fallback}) {
    e.sample(label("mode", routing_mode_name(m)), in.router.mode == m ? 1 : 0);
  }
  e.family("tandem_portal_tls_context_generation", "counter", "Server TLS contexts installed (1 + reloads).");
  e.sample("", in.tls_generation);
  if (in.cert_not_after_s > 0) {
    e.family("tandem_portal_certificate_expiry_timestamp_seconds", "gauge", "When the portal's certificate expires.");
    e.sample("", in.cert_not_after_s);
  }
  return e.take();
}

}  // namespace tandem::portal::service
