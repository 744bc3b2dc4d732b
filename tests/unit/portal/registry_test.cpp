#include <gtest/gtest.h>

#include "portal/relay/route.hpp"
#include "portal/relay/session_registry.hpp"

namespace tandem::portal::relay {
namespace {

const Endpoint kPg1{.member = "pg1", .host = "127.0.0.1", .port = 5432};
const Endpoint kPg2{.member = "pg2", .host = "127.0.0.2", .port = 5432};

// A registry whose closers record what they were asked and unregister like a session.
struct Recorder {
  SessionRegistry registry;
  std::vector<std::pair<SessionId, std::string>> closed;

  SessionId add(const std::string& listener = "rw") {
    auto id = std::make_shared<SessionId>(0);
    *id = registry.add(listener, [this, id](const std::string& reason) {
      closed.emplace_back(*id, reason);
      registry.remove(*id);
    });
    return *id;
  }
};

TEST(SessionRegistry, AddRemoveAndSnapshot) {
  Recorder r;
  const auto a = r.add();
  const auto b = r.add("ro");
  EXPECT_NE(a, b);
  EXPECT_EQ(r.registry.size(), 2u);
  r.registry.set_endpoint(a, kPg1);
  const auto snap = r.registry.snapshot();
  ASSERT_EQ(snap.size(), 2u);
  EXPECT_EQ(snap[0].endpoint, kPg1);
  EXPECT_EQ(snap[1].listener, "ro");
  EXPECT_FALSE(snap[1].endpoint.has_value());
  r.registry.remove(a);
  r.registry.remove(a);  // twice is harmless
  EXPECT_EQ(r.registry.size(), 1u);
  r.registry.set_endpoint(a, kPg2);  // unknown ids are ignored
  EXPECT_EQ(r.registry.size(), 1u);
}

TEST(SessionRegistry, CancelTargetByKey) {
  Recorder r;
  const auto a = r.add();
  const auto b = r.add();
  r.registry.set_endpoint(a, kPg1);
  r.registry.set_endpoint(b, kPg2);
  const wire::CancelKey ka{100, {1, 2, 3, 4}};
  const wire::CancelKey kb{200, {5, 6, 7, 8}};
  r.registry.set_cancel_key(a, ka);
  r.registry.set_cancel_key(b, kb);
  EXPECT_EQ(r.registry.find_cancel_target(ka), kPg1);
  EXPECT_EQ(r.registry.find_cancel_target(kb), kPg2);
  EXPECT_FALSE(r.registry.find_cancel_target({100, {5, 6, 7, 8}}).has_value());  // right pid, wrong secret
  r.registry.remove(a);
  EXPECT_FALSE(r.registry.find_cancel_target(ka).has_value());
}

TEST(SessionRegistry, CloseAttachedAndListener) {
  Recorder r;
  const auto a = r.add();
  const auto b = r.add();
  r.add();  // still negotiating: no endpoint
  const auto d = r.add("ro");
  r.registry.set_endpoint(a, kPg1);
  r.registry.set_endpoint(b, kPg2);
  r.registry.set_endpoint(d, kPg1);
  EXPECT_EQ(r.registry.close_attached_if([](const Endpoint& e) { return e.member == "pg1"; }, "pg1 demoted"), 2u);
  ASSERT_EQ(r.closed.size(), 2u);
  EXPECT_EQ(r.closed[0], std::make_pair(a, std::string("pg1 demoted")));
  EXPECT_EQ(r.closed[1].first, d);
  EXPECT_EQ(r.registry.close_listener("rw", "shutdown"), 2u);  // b and c
  EXPECT_EQ(r.registry.size(), 0u);
}

TEST(CurrentRoute, ChangingTheTargetClosesSessionsElsewhere) {
  Recorder r;
  CurrentRoute route(&r.registry);
  EXPECT_FALSE(route.get().has_value());
  EXPECT_EQ(route.set(kPg1, "elected"), 0u);
  EXPECT_EQ(route.as_route_fn()(), kPg1);
  const auto a = r.add();
  const auto b = r.add();
  r.add();  // negotiating, not attached: left alone
  r.registry.set_endpoint(a, kPg1);
  r.registry.set_endpoint(b, kPg1);
  EXPECT_EQ(route.set(kPg1, "same leader"), 0u);
  EXPECT_EQ(route.set(kPg2, "failover"), 2u);
  EXPECT_EQ(route.get(), kPg2);
  EXPECT_EQ(r.registry.size(), 1u);
  const auto c = r.add();
  r.registry.set_endpoint(c, kPg2);
  EXPECT_EQ(route.set(std::nullopt, "leader lost"), 1u);
  EXPECT_FALSE(route.get().has_value());
  EXPECT_EQ(r.closed.back().second, "leader lost");
}

TEST(CurrentRoute, EndpointDetailsMatter) {
  Recorder r;
  CurrentRoute route(&r.registry);
  route.set(kPg1, "start");
  const auto a = r.add();
  r.registry.set_endpoint(a, kPg1);
  Endpoint over_tls = kPg1;
  over_tls.tls = true;
  EXPECT_EQ(route.set(over_tls, "member now needs TLS"), 1u);
}

TEST(CurrentRoute, WithoutRegistry) {
  CurrentRoute route(nullptr);
  EXPECT_EQ(route.set(kPg1, "x"), 0u);
  EXPECT_EQ(route.get(), kPg1);
  EXPECT_EQ(kPg1.describe(), "pg1 at 127.0.0.1:5432");
}

}  // namespace
}  // namespace tandem::portal::relay
