#pragma once
// Prometheus text exposition (format 0.0.4) of one portal, for GET /metrics: sessions per
// listener and per member, bytes, TLS handshake failures, rejected plaintext and other
// refusals, held connections, route changes and the routing mode. A pure function of the
// values passed in, so it is unit-tested without a server.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "portal/relay/options.hpp"
#include "portal/service/router.hpp"

namespace tandem::portal::service {

struct ListenerMetrics {
  std::string name;                                // "rw", "ro"
  const relay::RelayCounters* counters = nullptr;  // must be valid during rendering
  std::map<std::string, std::size_t> attached;     // member -> sessions attached to it now
};

struct PortalMetricsInput {
  std::string cluster;
  std::string portal;
  std::vector<ListenerMetrics> listeners;
  RouterStatus router;
  std::uint64_t tls_generation = 0;   // server TLS contexts installed (1 + reloads)
  std::int64_t cert_not_after_s = 0;  // unix seconds; 0 when unknown
};

std::string render_portal_metrics(const PortalMetricsInput& in);

}  // namespace tandem::portal::service
