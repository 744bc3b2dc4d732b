// The portal's Prometheus exposition: families, labels and values from the counters.
#include <gtest/gtest.h>

#include "portal/service/portal_metrics.hpp"

namespace tandem::portal::service {
namespace {

bool has_line(const std::string& text, const std::string& line) {
  return text.find(line + "\n") != std::string::npos;
}

TEST(PortalMetrics, RendersCountersPerListenerAndMember) {
  relay::RelayCounters rw;
  relay::RelayCounters ro;
  rw.active = 3;
  rw.routed = 17;
  rw.bytes_to_server = 1000;
  rw.bytes_to_client = 5000;
  rw.tls_handshake_failures = 2;
  rw.rejected_plaintext = 4;
  rw.held = 6;
  rw.holding = 1;
  ro.routed = 5;
  PortalMetricsInput in;
  in.cluster = "prod";
  in.portal = "portal1";
  in.listeners.push_back({"rw", &rw, {{"pg1", 3}}});
  in.listeners.push_back({"ro", &ro, {{"pg2", 1}}});
  in.router.mode = RoutingMode::etcd;
  in.router.write_kind = RouteKind::route;
  in.router.write_member = "pg1";
  in.router.route_changes = 2;
  in.tls_generation = 3;
  in.cert_not_after_s = 1900000000;
  const auto m = render_portal_metrics(in);
  const std::string base = "cluster=\"prod\",portal=\"portal1\"";
  EXPECT_TRUE(has_line(m, "# TYPE tandem_portal_sessions_open gauge")) << m;
  EXPECT_TRUE(has_line(m, "tandem_portal_sessions_open{" + base + ",listener=\"rw\"} 3")) << m;
  EXPECT_TRUE(has_line(m, "tandem_portal_sessions_routed_total{" + base + ",listener=\"ro\"} 5")) << m;
  EXPECT_TRUE(has_line(m, "tandem_portal_sessions_attached{" + base + ",listener=\"rw\",member=\"pg1\"} 3")) << m;
  EXPECT_TRUE(has_line(m, "tandem_portal_bytes_total{" + base + ",listener=\"rw\",direction=\"to_client\"} 5000"));
  EXPECT_TRUE(has_line(m, "tandem_portal_tls_handshake_failures_total{" + base + ",listener=\"rw\"} 2"));
  EXPECT_TRUE(has_line(m, "tandem_portal_rejected_total{" + base + ",listener=\"rw\",reason=\"plaintext\"} 4"));
  EXPECT_TRUE(has_line(m, "tandem_portal_held_total{" + base + ",listener=\"rw\"} 6"));
  EXPECT_TRUE(has_line(m, "tandem_portal_sessions_holding{" + base + ",listener=\"rw\"} 1"));
  EXPECT_TRUE(has_line(m, "tandem_portal_route_changes_total{" + base + "} 2"));
  EXPECT_TRUE(has_line(m, "tandem_portal_write_route{" + base + ",state=\"route\",member=\"pg1\"} 1"));
  EXPECT_TRUE(has_line(m, "tandem_portal_routing_mode{" + base + ",mode=\"etcd\"} 1"));
  EXPECT_TRUE(has_line(m, "tandem_portal_routing_mode{" + base + ",mode=\"fallback\"} 0"));
  EXPECT_TRUE(has_line(m, "tandem_portal_certificate_expiry_timestamp_seconds{" + base + "} 1900000000"));
  // Each family is announced once.
  EXPECT_EQ(m.find("# TYPE tandem_portal_bytes_total"), m.rfind("# TYPE tandem_portal_bytes_total"));
}

TEST(PortalMetrics, HoldAndUnknownExpiry) {
  relay::RelayCounters rw;
  PortalMetricsInput in;
  in.cluster = "c\"x";
  in.portal = "p";
  in.listeners.push_back({"rw", &rw, {}});
  in.router.write_kind = RouteKind::hold;
  const auto m = render_portal_metrics(in);
  EXPECT_TRUE(has_line(m, "tandem_portal_write_route{cluster=\"c\\\"x\",portal=\"p\",state=\"hold\",member=\"\"} 0"))
      << m;
  EXPECT_EQ(m.find("certificate_expiry"), std::string::npos);
}

}  // namespace
}  // namespace tandem::portal::service
