#pragma once
// EtcdClient: a small synchronous client for etcd's v3 gRPC API (KV, Lease, Watch) with
// deadlines and failover between endpoints. Plain structs in, plain structs out: no
// protobuf types leak to callers.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "dcs/etcd/kv.hpp"
#include "dcs/store.hpp"

namespace tandem::dcs::etcd {

class EtcdClient;

// A watch on every key under a prefix, running on its own thread. It reconnects after
// errors (trying the next endpoint) and resumes at the revision after the last event it
// delivered, so no event is lost or repeated unless history was compacted (then it says
// so through WatchUpdate::compact_revision). The callback runs on the watch thread and
// must not block for long. Owned by the caller; the EtcdClient must outlive it.
class PrefixWatch final : public KvWatch {
 public:
  ~PrefixWatch() override;
  PrefixWatch(const PrefixWatch&) = delete;
  PrefixWatch& operator=(const PrefixWatch&) = delete;

  // Stops the thread and waits for it; no callback runs after this returns. Not from
  // inside the callback.
  void stop() override;
  // True while a watch stream is established on some endpoint.
  bool connected() const;
  // The revision the watch resumes from after a reconnect (0 until it first connects
  // when started "from now").
  int64_t next_revision() const;

 private:
  friend class EtcdClient;
  struct State;
  explicit PrefixWatch(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// Talks to an etcd cluster through any of its endpoints. Every call has a deadline of
// options.call_timeout on one endpoint; on UNAVAILABLE or DEADLINE_EXCEEDED it tries the
// next endpoint (round-robin from the last one that worked) until options.retry_timeout
// is spent, then returns Errc::unavailable or Errc::timeout naming the endpoints tried.
// Mutations retried after a timeout may have been applied by the first attempt; callers
// that care make them idempotent (compare-and-swap plus a read in the failure branch).
// Thread-safe: any thread may call any method concurrently.
class EtcdClient final : public Kv {
 public:
  explicit EtcdClient(const EtcdOptions& options);
  ~EtcdClient() override;
  EtcdClient(const EtcdClient&) = delete;
  EtcdClient& operator=(const EtcdClient&) = delete;

  Result<RangeResult> get(const std::string& key) override;
  Result<RangeResult> get_prefix(const std::string& prefix, int64_t revision) override;
  Result<int64_t> put(const std::string& key, const std::string& value, int64_t lease) override;
  Result<DeleteResult> del(const std::string& key) override;
  Result<DeleteResult> del_prefix(const std::string& prefix) override;
  Result<TxnResult> txn(const std::vector<TxnCompare>& compares, const std::vector<TxnOp>& success,
                        const std::vector<TxnOp>& failure) override;

  Result<LeaseInfo> lease_grant(int64_t ttl_seconds) override;
  // One request and one response on a LeaseKeepAlive stream, with the call deadline.
  Result<int64_t> lease_keepalive(int64_t lease_id) override;
  Status lease_revoke(int64_t lease_id) override;
  Result<LeaseInfo> lease_time_to_live(int64_t lease_id) override;

  std::unique_ptr<KvWatch> watch(const std::string& prefix, int64_t start_revision, WatchCallback callback) override;
  // The same, with the concrete type (connected(), next_revision()) and optional prev_kv.
  std::unique_ptr<PrefixWatch> watch_prefix(const std::string& prefix, int64_t start_revision, WatchCallback callback,
                                            bool prev_kv);

  // The endpoints as given, and the one the next call starts with.
  const std::vector<std::string>& endpoints() const;
  std::string current_endpoint() const;

 private:
  friend class PrefixWatch;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The smallest key greater than every key starting with `prefix` (etcd's range_end for a
// prefix); "\0" when there is none.
std::string prefix_end(const std::string& prefix);

// "http://127.0.0.1:2379/" -> "127.0.0.1:2379". Empty when the URL has no host:port.
std::string endpoint_target(const std::string& url);

}  // namespace tandem::dcs::etcd
