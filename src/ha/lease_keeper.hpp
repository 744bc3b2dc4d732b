#pragma once
// LeaseKeeper: keeps this agent's etcd lease alive and fences a primary whose lease may
// expire. Two threads of its own, independent of the HA loop (which may be busy in a long
// action such as a clone):
//  - the renewer sends a keepalive every ttl/8 (every 100 ms while failing) and records a conservative local deadline
//    (send time + ttl: etcd starts the ttl when it *receives* the keepalive, later);
//    when the lease is gone it grants a new one;
//  - the watchdog checks every 50 ms whether a writable primary is within fence_margin of
//    that deadline and, if so, sends SIGQUIT to the postmaster (immediate shutdown).
// The HA thread tells it whether PostgreSQL is a writable primary and the postmaster pid.
// Owned by the Agent; start() after construction, stop() before destruction.
#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

#include "base/clock.hpp"
#include "dcs/store.hpp"

namespace tandem::ha {

class LeaseKeeper {
 public:
  // `on_change` runs on the renewer thread when the lease was replaced or fencing fired.
  LeaseKeeper(dcs::ClusterStore& store, int ttl_seconds, std::function<void()> on_change);
  ~LeaseKeeper();

  // Grants the first lease (retrying until `timeout`), then starts the threads.
  Status start(std::chrono::milliseconds timeout);
  void stop();

  int64_t lease_id() const { return lease_id_.load(); }
  // The conservative local expiry of the current lease; nullopt when there is none.
  std::optional<TimePoint> deadline() const;
  std::optional<TimePoint> last_renewal() const;

  // Set by the HA thread after each observation and action.
  void arm(pid_t postmaster_pid, bool writable_primary, bool paused, int ttl_seconds);
  // True once the watchdog fenced since the last call (and resets it).
  bool take_fenced();
  // Revokes the lease (clean shutdown: the leader key goes at once).
  void revoke();

 private:
  void renew_loop();
  void watchdog_loop();
  bool grant();

  dcs::ClusterStore& store_;
  std::function<void()> on_change_;
  std::atomic<int> ttl_s_;
  std::atomic<int64_t> lease_id_{0};
  std::atomic<int64_t> deadline_ns_{0};  // steady clock ns; 0 = none
  std::atomic<int64_t> renewed_ns_{0};
  std::atomic<pid_t> pm_pid_{0};
  std::atomic<bool> primary_{false};
  std::atomic<bool> paused_{false};
  std::atomic<bool> fenced_{false};
  std::atomic<bool> stopping_{false};
  bool failing_ = false;  // renewer thread only
  std::mutex mu_;
  std::condition_variable cv_;
  std::thread renewer_;
  std::thread watchdog_;
};

}  // namespace tandem::ha
