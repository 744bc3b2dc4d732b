#pragma once
// ClusterStore: the cluster-state operations the agent and `tandem ctl` need,
// over keys /tandem/<cluster>/{leader,members/<name>,config,initialize,sync,history,switchover}.
// Implemented by dcs/etcd (real) and dcs/memory (a fake for unit tests of I/O-free code).
// Every call has a deadline (retry_timeout); a dead endpoint fails over to the next one.
// Thread-safety: implementations may be called from several threads at once.
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "dcs/cluster.hpp"

namespace tandem::dcs {

struct LeaseGrant {
  int64_t id = 0;
  int64_t ttl_seconds = 0;
};

class ClusterStore {
 public:
  virtual ~ClusterStore() = default;

  // Reads every key under the cluster prefix at one revision.
  virtual Result<ClusterSnapshot> load() = 0;

  // Leases.
  virtual Result<LeaseGrant> grant_lease(int64_t ttl_seconds) = 0;
  // Renews once; returns the TTL etcd now gives the lease (0 or not_found when it has expired).
  virtual Result<int64_t> keepalive(int64_t lease_id) = 0;
  virtual Status revoke_lease(int64_t lease_id) = 0;

  // leader: create it bound to `lease_id` only when absent (create_revision == 0).
  // Returns true when we now hold it, false when someone else does.
  virtual Result<bool> try_acquire_leader(const std::string& name, int64_t lease_id) = 0;
  // Re-binds the leader key to `lease_id` when its value is still `name` (after a new lease).
  virtual Result<bool> refresh_leader(const std::string& name, int64_t lease_id) = 0;
  // Deletes the leader key when its value is `name`.
  virtual Result<bool> release_leader(const std::string& name) = 0;

  // members/<name>, bound to lease_id.
  virtual Status put_member(const Member& m, int64_t lease_id) = 0;
  // Creates members/<name> only when absent; false when another agent uses the name.
  virtual Result<bool> claim_member(const Member& m, int64_t lease_id) = 0;
  virtual Status delete_member(const std::string& name) = 0;

  // initialize: create-only. Returns true when we won the race to bootstrap.
  virtual Result<bool> try_initialize(const std::string& owner) = 0;
  // Replace the initialize value (owner -> system identifier) when it still holds `expected`.
  virtual Result<bool> set_initialize(const std::string& expected, const std::string& value) = 0;
  // Deletes initialize when it still holds `expected` (a failed bootstrap lets another try).
  virtual Status cancel_initialize(const std::string& expected) = 0;

  // sync: written by the leader only while it holds the leader key (txn compare on leader value).
  virtual Result<bool> write_sync(const SyncState& s) = 0;

  // config: compare-and-swap on mod_revision (0 = create when absent).
  virtual Result<bool> write_config(const DynamicConfig& c, int64_t expected_mod_revision) = 0;

  // switchover: set (create-only) and clear.
  virtual Result<bool> set_switchover(const Switchover& s) = 0;
  virtual Status clear_switchover() = 0;

  // history: appends one entry (read-modify-write with compare on revision, retried).
  virtual Status append_history(const HistoryEntry& e) = 0;

  // Blocks until a key under the prefix other than members/* changes after `revision`
  // (member records are rewritten every cycle and would wake every agent), or `timeout`
  // passes, or wake() is called. Returns the revision seen (unchanged on timeout).
  virtual Result<int64_t> wait_for_change(int64_t revision, std::chrono::milliseconds timeout) = 0;
  // Interrupts a wait_for_change in another thread.
  virtual void wake() = 0;
};

struct EtcdOptions {
  std::vector<std::string> endpoints;            // "http://127.0.0.1:2379" or "127.0.0.1:2379"
  std::string cluster;                           // cluster name: keys live under /tandem/<cluster>/
  std::chrono::milliseconds call_timeout{1000};  // deadline of one gRPC call on one endpoint
  // Total time one operation may take, failing over between endpoints;
  // 0: call_timeout times the number of endpoints.
  std::chrono::milliseconds retry_timeout{0};
};

// Creates the etcd-backed store. Does not connect until first use.
std::unique_ptr<ClusterStore> make_etcd_store(const EtcdOptions& opts);

}  // namespace tandem::dcs
