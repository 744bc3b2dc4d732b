#include "portal/service/router.hpp"

#include <spdlog/spdlog.h>

#include "api/http_client.hpp"
#include "base/clock.hpp"
#include "dcs/etcd/etcd_store.hpp"

namespace tandem::portal::service {

namespace {
// How often the router thread looks at the watch's health (a local flag, no I/O).
constexpr std::chrono::milliseconds kTick{200};
// While the watch is broken, at most one snapshot read per this interval.
constexpr std::chrono::milliseconds kDegradedReload{1000};
// Fallback probes: one round per interval, each request with this timeout.
constexpr std::chrono::milliseconds kProbeInterval{500};
constexpr std::chrono::milliseconds kProbeTimeout{800};

bool same_target(const std::optional<RouteChoice>& a, const RouteChoice& b) {
  return a && a->kind == b.kind && a->endpoint == b.endpoint;
}

std::string target_text(const RouteChoice& c) {
  return c.endpoint ? c.endpoint->describe() : std::string(route_kind_name(c.kind));
}
}  // namespace

const char* routing_mode_name(RoutingMode m) {
  switch (m) {
    case RoutingMode::starting: return "starting";
    case RoutingMode::etcd: return "etcd";
    case RoutingMode::fallback: return "fallback";
  }
  return "unknown";
}

struct Router::Etcd {
  explicit Etcd(const dcs::EtcdOptions& o) : store(o) {}
  dcs::etcd::EtcdStore store;
  std::unique_ptr<dcs::etcd::PrefixWatch> watch;  // started after the first snapshot
};

Router::Router(const PortalConfig& cfg, relay::CurrentRoute* rw, relay::SessionRegistry* rw_registry,
               relay::CurrentRoute* ro, relay::SessionRegistry* ro_registry)
    : cfg_(cfg), policy_{cfg.backend_tls}, rw_(rw), rw_registry_(rw_registry), ro_(ro), ro_registry_(ro_registry) {
  dcs::EtcdOptions o;
  o.endpoints = cfg_.etcd_endpoints;
  o.cluster = cfg_.cluster;
  o.call_timeout = cfg_.etcd_call_timeout;
  etcd_ = std::make_unique<Etcd>(o);
}

Router::~Router() {
  stop();
}

void Router::start() {
  if (thread_.joinable()) return;
  {
    std::lock_guard lock(mu_);
    stop_ = false;
  }
  thread_ = std::thread([this] { run(); });
}

void Router::stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (etcd_ && etcd_->watch) {
    etcd_->watch->stop();
    etcd_->watch.reset();
  }
}

RouterStatus Router::status() const {
  std::lock_guard lock(mu_);
  return status_;
}

void Router::run() {
  using Clock = std::chrono::steady_clock;
  auto last_ok = Clock::now();
  auto last_reload = Clock::time_point{};
  auto last_probe = Clock::time_point{};
  spdlog::info("portal {}: routing for cluster {} from etcd ({} endpoints)", cfg_.name, cfg_.cluster,
               cfg_.etcd_endpoints.size());
  for (;;) {
    bool changed = false;
    {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, kTick, [&] { return stop_ || changed_; });
      if (stop_) return;
      changed = changed_;
      changed_ = false;
    }
    const auto now = Clock::now();
    const bool watching = etcd_->watch && etcd_->watch->connected();
    const RoutingMode mode = status().mode;
    bool reload = changed || !etcd_->watch;
    // Back from a fallback or a broken watch: read the current state once.
    if (!watching || mode != RoutingMode::etcd) reload = reload || now - last_reload >= kDegradedReload;
    if (reload) {
      last_reload = now;
      if (refresh_from_etcd()) last_ok = Clock::now();
    } else if (watching) {
      last_ok = now;
      // A scheduled switchover becomes due without any etcd event.
      if (last_snapshot_ && last_snapshot_->switchover) apply_snapshot(*last_snapshot_);
    }
    const bool etcd_lost = Clock::now() - last_ok > cfg_.etcd_unreachable_after;
    if (etcd_lost && Clock::now() - last_probe >= kProbeInterval) {
      last_probe = Clock::now();
      if (mode != RoutingMode::fallback) {
        spdlog::warn("portal {}: etcd unreachable for more than {} ms; routing by the agents' /primary answers",
                     cfg_.name, cfg_.etcd_unreachable_after.count());
        std::lock_guard lock(mu_);
        status_.mode = RoutingMode::fallback;
      }
      probe_agents();
    }
  }
}

bool Router::refresh_from_etcd() {
  auto snap = etcd_->store.load();
  if (!snap) {
    spdlog::debug("portal {}: cannot read the cluster state: {}", cfg_.name, snap.error().message);
    return false;
  }
  if (!etcd_->watch) {
    // Watch from the revision after the snapshot: no change between them is missed.
    etcd_->watch = etcd_->store.etcd_client()->watch_prefix(
        etcd_->store.keys().prefix, snap->revision + 1,
        [this](const dcs::etcd::WatchUpdate& u) {
          if (u.events.empty() && u.compact_revision == 0) return;
          {
            std::lock_guard lock(mu_);
            changed_ = true;
          }
          cv_.notify_all();
        },
        false);
  }
  {
    std::lock_guard lock(mu_);
    if (status_.mode != RoutingMode::etcd) {
      if (status_.mode == RoutingMode::fallback)
        spdlog::info("portal {}: etcd answers again; routing from etcd", cfg_.name);
      status_.mode = RoutingMode::etcd;
    }
    ++status_.snapshots;
  }
  apply_snapshot(*snap);
  last_snapshot_ = std::move(*snap);
  return true;
}

void Router::apply_snapshot(const dcs::ClusterSnapshot& s) {
  const int64_t now_ms = unix_millis_now();
  apply_write(choose_write_route(s, policy_, now_ms));
  if (ro_ == nullptr) return;
  apply_read(choose_read_route(s, policy_, cfg_.read_only_max_lag_bytes, now_ms));
  if (ro_registry_ != nullptr) {
    const auto readable = readable_members(s, now_ms);
    const auto n = ro_registry_->close_attached_if(
        [&](const relay::Endpoint& e) { return !readable.contains(e.member); }, "the member can no longer serve reads");
    if (n > 0) spdlog::info("portal {}: closed {} read-only sessions on members that stopped serving", cfg_.name, n);
  }
}

void Router::probe_agents() {
  std::vector<ProbeAnswer> answers;
  for (const auto& m : probe_targets(last_snapshot_, cfg_.fallback_members)) {
    ProbeAnswer a;
    a.member = m;
    auto r = api::http_get(m.api_url + "/primary", kProbeTimeout);
    if (r) {
      a.answered = true;
      a.status = r->status;
    }
    answers.push_back(std::move(a));
  }
  {
    std::lock_guard lock(mu_);
    ++status_.probes;
  }
  const auto c = choose_from_probes(answers, policy_);
  apply_write(c);
  if (ro_ != nullptr) apply_read(c);
}

void Router::apply_write(const RouteChoice& c) {
  const bool same = same_target(last_write_, c);
  // Order matters to sessions that read the route and then the hold flag: a held session
  // must never see "no route" with holding off when a route is about to appear.
  if (c.kind == RouteKind::hold) holding_.store(true, std::memory_order_release);
  if (!same) {
    (void)rw_->set(c.endpoint, "the read-write target changed: " + c.reason);
    spdlog::info("portal {}: read-write route {} -> {}: {}", cfg_.name,
                 last_write_ ? target_text(*last_write_) : std::string("(start)"), target_text(c), c.reason);
  }
  // After the new target is in place (a session registering meanwhile re-reads it), close
  // what is attached elsewhere; repeated on every decision, so none slips through.
  if (!c.keep_sessions && rw_registry_ != nullptr) {
    const auto closed =
        rw_registry_->close_attached_if([&](const relay::Endpoint& e) { return !c.endpoint || e != *c.endpoint; },
                                        "the read-write target changed: " + c.reason);
    if (closed > 0) spdlog::info("portal {}: closed {} read-write sessions attached elsewhere", cfg_.name, closed);
  }
  if (c.kind != RouteKind::hold) holding_.store(false, std::memory_order_release);
  {
    std::lock_guard lock(mu_);
    if (!same) ++status_.route_changes;
    status_.write_kind = c.kind;
    status_.write_member = c.endpoint ? c.endpoint->member : "";
    status_.write_reason = c.reason;
  }
  last_write_ = c;
}

void Router::apply_read(const RouteChoice& c) {
  const bool same = same_target(last_read_, c);
  if (c.kind == RouteKind::hold) read_holding_.store(true, std::memory_order_release);
  if (!same) {
    (void)ro_->set(c.endpoint, "the read-only target changed: " + c.reason);
    spdlog::info("portal {}: read-only route -> {}: {}", cfg_.name, target_text(c), c.reason);
  }
  if (c.kind != RouteKind::hold) read_holding_.store(false, std::memory_order_release);
  {
    std::lock_guard lock(mu_);
    status_.read_kind = c.kind;
    status_.read_member = c.endpoint ? c.endpoint->member : "";
  }
  last_read_ = c;
}

}  // namespace tandem::portal::service
