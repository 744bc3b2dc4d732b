#pragma once
// EtcdStore: the ClusterStore (dcs/store.hpp) on etcd v3. Keys live under /tandem/<cluster>/:
//   leader            member name, bound to the leader's lease
//   members/<name>    JSON of Member, bound to that agent's lease
//   config            JSON of DynamicConfig
//   initialize        bootstrap owner, then the system identifier
//   sync              JSON of SyncState (written by the leader only)
//   history           JSON array of HistoryEntry, the last kMaxHistory entries
//   switchover        JSON of Switchover
// Every compare-and-swap is one etcd transaction whose failure branch reads the key back,
// so an attempt retried after a lost answer still reports success when it had applied.
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "dcs/etcd/etcd_client.hpp"
#include "dcs/store.hpp"

namespace tandem::dcs::etcd {

// Key layout of one cluster.
struct ClusterKeys {
  explicit ClusterKeys(const std::string& cluster);
  std::string prefix;  // "/tandem/<cluster>/"
  std::string leader() const { return prefix + "leader"; }
  std::string members() const { return prefix + "members/"; }
  std::string member(const std::string& name) const { return members() + name; }
  std::string config() const { return prefix + "config"; }
  std::string initialize() const { return prefix + "initialize"; }
  std::string sync() const { return prefix + "sync"; }
  std::string history() const { return prefix + "history"; }
  std::string switchover() const { return prefix + "switchover"; }
};

// Owned by whoever created it (the agent, `tandem ctl`); thread-safe. The name says what it
// was built for; over memory::MemoryKv it is also the in-memory fake of the store. Starts one background
// watch thread on the cluster prefix the first time wait_for_change() is called.
class EtcdStore final : public ClusterStore {
 public:
  static constexpr size_t kMaxHistory = 100;

  // Over a new EtcdClient for options.endpoints.
  explicit EtcdStore(const EtcdOptions& options);
  // Over any Kv, e.g. memory::MemoryKv in unit tests.
  EtcdStore(const std::string& cluster, std::shared_ptr<Kv> kv);
  ~EtcdStore() override;

  Result<ClusterSnapshot> load() override;
  Result<LeaseGrant> grant_lease(int64_t ttl_seconds) override;
  Result<int64_t> keepalive(int64_t lease_id) override;
  Status revoke_lease(int64_t lease_id) override;
  Result<bool> try_acquire_leader(const std::string& name, int64_t lease_id) override;
  Result<bool> refresh_leader(const std::string& name, int64_t lease_id) override;
  Result<bool> release_leader(const std::string& name) override;
  Status put_member(const Member& m, int64_t lease_id) override;
  Result<bool> claim_member(const Member& m, int64_t lease_id) override;
  Status delete_member(const std::string& name) override;
  Result<bool> try_initialize(const std::string& owner) override;
  Result<bool> set_initialize(const std::string& expected, const std::string& value) override;
  Status cancel_initialize(const std::string& expected) override;
  Result<bool> write_sync(const SyncState& s) override;
  Result<bool> write_config(const DynamicConfig& c, int64_t expected_mod_revision) override;
  Result<bool> set_switchover(const Switchover& s) override;
  Status clear_switchover() override;
  Status append_history(const HistoryEntry& e) override;
  // A caller passing a revision older than the one the background watch started at gets
  // an immediate answer (the watch cannot tell what changed before it started).
  Result<int64_t> wait_for_change(int64_t revision, std::chrono::milliseconds timeout) override;
  void wake() override;

  const ClusterKeys& keys() const { return keys_; }
  Kv& kv() { return *kv_; }
  // The etcd client underneath; nullptr when the store runs over another Kv.
  EtcdClient* etcd_client() { return etcd_; }

 private:
  // Create `key` = `value` (bound to `lease`) when absent. True when created, or when the
  // key already holds exactly what we meant to write (a retry of an applied attempt).
  Result<bool> create_if_absent(const std::string& key, const std::string& value, int64_t lease);
  void on_watch(const WatchUpdate& u);

  ClusterKeys keys_;
  std::shared_ptr<Kv> kv_;
  EtcdClient* etcd_ = nullptr;  // kv_ when it is an EtcdClient

  std::mutex mu_;
  std::condition_variable cv_;
  int64_t watch_from_ = 0;                       // first revision the watch covers; 0 before it has started
  int64_t latest_rev_ = 0;                       // highest revision of a change seen by the watch
  bool wake_pending_ = false;                    // wake() called and not yet consumed by a wait
  std::map<std::string, int64_t> reported_bad_;  // malformed key -> mod revision already logged
  std::unique_ptr<KvWatch> watch_;               // declared last: stopped before the rest goes away
};

}  // namespace tandem::dcs::etcd
