#pragma once
// Router: keeps the portal's read-write and read-only routes current. It loads the cluster
// snapshot from etcd, then watches /tandem/<cluster>/ (one etcd watch stream, no polling)
// and re-decides on every change with the pure functions of route_decision.hpp. When the
// watch has been broken and reads have failed for longer than etcd_unreachable_after, it
// falls back to asking the agents' /primary endpoints (the members of the last snapshot
// plus the configured ones) until etcd answers again.
//
// Owned by the PortalService; start() and stop() from the owner's thread. It runs one
// thread of its own (the decisions and route changes happen there); the etcd watch
// callback only flags that something changed. holding() and status() may be called from
// any thread.
#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "dcs/cluster.hpp"
#include "portal/relay/route.hpp"
#include "portal/relay/session_registry.hpp"
#include "portal/service/portal_config.hpp"
#include "portal/service/route_decision.hpp"

namespace tandem::portal::service {

enum class RoutingMode { starting, etcd, fallback };
const char* routing_mode_name(RoutingMode m);

// What /health and /metrics show about routing.
struct RouterStatus {
  RoutingMode mode = RoutingMode::starting;
  RouteKind write_kind = RouteKind::none;
  std::string write_member;  // empty unless write_kind == route
  std::string write_reason;
  RouteKind read_kind = RouteKind::none;
  std::string read_member;
  std::uint64_t route_changes = 0;  // read-write target changes (including to and from "none")
  std::uint64_t snapshots = 0;      // snapshots loaded from etcd
  std::uint64_t probes = 0;         // fallback probe rounds
};

class Router {
 public:
  // `rw` and `ro` must outlive the router; `ro` and `ro_registry` may be null (no
  // read-only listener). Both routes are built without a registry: the router closes
  // sessions itself. Read-write sessions attached to anything but the target are closed
  // through `rw_registry` (unless the decision says to keep them); read-only sessions
  // attached to members that can no longer serve reads through `ro_registry`.
  Router(const PortalConfig& cfg, relay::CurrentRoute* rw, relay::SessionRegistry* rw_registry, relay::CurrentRoute* ro,
         relay::SessionRegistry* ro_registry);
  ~Router();
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;

  void start();
  void stop();

  // True while new read-write sessions should wait for a route.
  bool holding() const { return holding_.load(std::memory_order_acquire); }
  bool read_holding() const { return read_holding_.load(std::memory_order_acquire); }
  RouterStatus status() const;

 private:
  struct Etcd;

  void run();
  // Loads a snapshot and applies it; false when etcd could not be read.
  bool refresh_from_etcd();
  void apply_snapshot(const dcs::ClusterSnapshot& s);
  void probe_agents();
  void apply_write(const RouteChoice& c);
  void apply_read(const RouteChoice& c);

  const PortalConfig cfg_;
  const BackendPolicy policy_;
  relay::CurrentRoute* rw_;
  relay::SessionRegistry* rw_registry_;
  relay::CurrentRoute* ro_;
  relay::SessionRegistry* ro_registry_;

  std::unique_ptr<Etcd> etcd_;
  std::atomic<bool> holding_{true};
  std::atomic<bool> read_holding_{true};

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool changed_ = false;  // the watch saw an event since the last load
  bool stop_ = false;
  RouterStatus status_;
  std::optional<dcs::ClusterSnapshot> last_snapshot_;  // router thread only
  std::optional<RouteChoice> last_write_;              // router thread only
  std::optional<RouteChoice> last_read_;               // router thread only
  std::thread thread_;
};

}  // namespace tandem::portal::service
