#include "ha/lease_keeper.hpp"

#include <signal.h>

#include <spdlog/spdlog.h>

#include "ha/decide.hpp"

namespace tandem::ha {

namespace {

int64_t to_ns(TimePoint t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}
TimePoint from_ns(int64_t ns) {
  return TimePoint(std::chrono::nanoseconds(ns));
}

}  // namespace

LeaseKeeper::LeaseKeeper(dcs::ClusterStore& store, int ttl_seconds, std::function<void()> on_change)
    : store_(store), on_change_(std::move(on_change)), ttl_s_(ttl_seconds) {}

LeaseKeeper::~LeaseKeeper() {
  stop();
}

std::optional<TimePoint> LeaseKeeper::deadline() const {
  int64_t ns = deadline_ns_.load();
  if (ns == 0) return std::nullopt;
  return from_ns(ns);
}

std::optional<TimePoint> LeaseKeeper::last_renewal() const {
  int64_t ns = renewed_ns_.load();
  if (ns == 0) return std::nullopt;
  return from_ns(ns);
}

bool LeaseKeeper::grant() {
  auto sent = SteadyClock::now();
  auto g = store_.grant_lease(ttl_s_.load());
  if (!g) {
    spdlog::warn("lease: cannot grant a lease: {}", g.error().message);
    return false;
  }
  lease_id_ = g->id;
  renewed_ns_ = to_ns(sent);
  deadline_ns_ = to_ns(sent + Seconds(std::min<int64_t>(g->ttl_seconds, ttl_s_.load())));
  spdlog::info("lease: granted lease {:x} with ttl {} s", g->id, g->ttl_seconds);
  return true;
}

Status LeaseKeeper::start(std::chrono::milliseconds timeout) {
  auto until = SteadyClock::now() + timeout;
  while (!grant()) {
    if (SteadyClock::now() > until)
      return make_error(Errc::unavailable, "cannot get a lease from etcd within {} ms", timeout.count());
    std::this_thread::sleep_for(Millis(500));
  }
  renewer_ = std::thread([this] { renew_loop(); });
  watchdog_ = std::thread([this] { watchdog_loop(); });
  return {};
}

void LeaseKeeper::stop() {
  stopping_ = true;
  cv_.notify_all();
  if (renewer_.joinable()) renewer_.join();
  if (watchdog_.joinable()) watchdog_.join();
}

void LeaseKeeper::arm(pid_t postmaster_pid, bool writable_primary, bool paused, int ttl_seconds) {
  pm_pid_ = postmaster_pid;
  primary_ = writable_primary;
  paused_ = paused;
  ttl_s_ = ttl_seconds;
}

bool LeaseKeeper::take_fenced() {
  return fenced_.exchange(false);
}

void LeaseKeeper::revoke() {
  int64_t id = lease_id_.exchange(0);
  deadline_ns_ = 0;
  if (id != 0) {
    if (auto s = store_.revoke_lease(id); !s) spdlog::warn("lease: revoke failed: {}", s.error().message);
  }
}

void LeaseKeeper::renew_loop() {
  while (!stopping_) {
    // Every ttl/8, and every 100 ms while renewals fail: what decides whether a leader
    // survives an etcd leader election is how soon after it a renewal is *sent*.
    Millis interval(failing_ ? 100 : std::max(250, ttl_s_.load() * 1000 / 8));
    {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, interval, [this] { return stopping_.load(); });
    }
    if (stopping_) break;
    int64_t id = lease_id_.load();
    if (id == 0) {
      if (grant()) on_change_();
      continue;
    }
    auto sent = SteadyClock::now();
    auto r = store_.keepalive(id);
    failing_ = !(r && *r > 0);
    if (r && *r > 0) {
      renewed_ns_ = to_ns(sent);
      int64_t ttl = std::min<int64_t>(*r, ttl_s_.load());
      // Only move the deadline forward: an old, slow answer must not shorten or extend wrongly.
      int64_t next = to_ns(sent + Seconds(ttl));
      int64_t cur = deadline_ns_.load();
      while (next > cur && !deadline_ns_.compare_exchange_weak(cur, next)) {
      }
      continue;
    }
    if ((r && *r <= 0) || (!r && r.error().code == Errc::not_found)) {
      spdlog::warn("lease: lease {:x} has expired in etcd; requesting a new one", id);
      lease_id_ = 0;
      deadline_ns_ = 0;
      if (grant()) on_change_();
      continue;
    }
    spdlog::warn("lease: keepalive failed: {}", r.error().message);
  }
}

void LeaseKeeper::watchdog_loop() {
  while (!stopping_) {
    {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, Millis(50), [this] { return stopping_.load(); });
    }
    if (stopping_ || !primary_ || paused_) continue;
    LocalState l;
    l.pg = PgRun::running;
    l.in_recovery = false;
    l.lease_deadline = deadline();
    dcs::DynamicConfig cfg;
    cfg.ttl = ttl_s_.load();
    if (!must_fence(l, cfg, SteadyClock::now())) continue;
    pid_t pid = pm_pid_.load();
    if (pid > 0 && kill(pid, SIGQUIT) == 0) {
      spdlog::error(
          "fencing: my lease may expire within {} ms and could not be renewed; sent SIGQUIT to PostgreSQL (pid {})",
          fence_margin(cfg).count(), pid);
    }
    primary_ = false;
    fenced_ = true;
    on_change_();
  }
}

}  // namespace tandem::ha
