#pragma once
// MemoryKv: an in-process imitation of etcd's KV, transaction, lease and watch semantics
// (revisions, create/mod revision, version, leases deleting their keys on expiry, prefix
// watches from a past revision), for unit tests of code that uses a ClusterStore.
//
//   auto kv = std::make_shared<memory::MemoryKv>(clock);   // one "etcd"
//   auto a = memory::make_memory_store(kv, "c1");          // agent a
//   auto b = memory::make_memory_store(kv, "c1");          // agent b sees a's writes
//
// Leases expire by the injected clock, checked at the start of every call (and by
// expire_leases()); nothing runs in the background except watch delivery threads.
// Thread-safe. Must outlive the stores and watches made from it.
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/clock.hpp"
#include "dcs/etcd/kv.hpp"
#include "dcs/store.hpp"

namespace tandem::dcs::memory {

class MemoryKv final : public etcd::Kv {
 public:
  using Clock = std::function<TimePoint()>;
  // Events kept for watches that start in the past; older ones count as compacted.
  static constexpr size_t kEventHistory = 10000;

  explicit MemoryKv(Clock clock = {});
  ~MemoryKv() override;
  MemoryKv(const MemoryKv&) = delete;
  MemoryKv& operator=(const MemoryKv&) = delete;

  // Fault injection: while unavailable, every call fails with Errc::unavailable (watches
  // stay registered but see nothing, as no write can happen).
  void set_available(bool available);
  // Deletes the keys of every lease whose TTL has passed by the clock.
  void expire_leases();
  int64_t revision() const;

  Result<etcd::RangeResult> get(const std::string& key) override;
  Result<etcd::RangeResult> get_prefix(const std::string& prefix, int64_t revision) override;
  Result<int64_t> put(const std::string& key, const std::string& value, int64_t lease) override;
  Result<etcd::DeleteResult> del(const std::string& key) override;
  Result<etcd::DeleteResult> del_prefix(const std::string& prefix) override;
  Result<etcd::TxnResult> txn(const std::vector<etcd::TxnCompare>& compares, const std::vector<etcd::TxnOp>& success,
                              const std::vector<etcd::TxnOp>& failure) override;
  Result<etcd::LeaseInfo> lease_grant(int64_t ttl_seconds) override;
  Result<int64_t> lease_keepalive(int64_t lease_id) override;
  Status lease_revoke(int64_t lease_id) override;
  Result<etcd::LeaseInfo> lease_time_to_live(int64_t lease_id) override;
  std::unique_ptr<etcd::KvWatch> watch(const std::string& prefix, int64_t start_revision,
                                       etcd::WatchCallback callback) override;

 private:
  struct Lease {
    int64_t ttl = 0;
    TimePoint expires;
  };
  struct Watcher;
  class Watch;
  struct Change {
    int64_t revision = 0;
    std::vector<etcd::WatchEvent> events;
  };

  TimePoint now() const;
  Status check_available() const;  // requires mu_
  void expire_locked();            // requires mu_
  // Applies one write operation at revision_ + 1 (not yet committed); returns its result.
  Result<etcd::TxnOpResult> apply(const etcd::TxnOp& op, std::vector<etcd::WatchEvent>& events);
  bool holds(const etcd::TxnCompare& c) const;
  std::vector<etcd::KeyValue> range(const std::string& key, bool prefix) const;
  // Commits the events of one revision: history and watchers.
  void commit(std::vector<etcd::WatchEvent> events);
  void unregister(Watcher* w);

  Clock clock_;
  mutable std::mutex mu_;
  bool available_ = true;
  int64_t revision_ = 1;  // etcd starts at revision 1
  int64_t next_lease_ = 0x7a6b000000001000;
  std::map<std::string, etcd::KeyValue> kvs_;
  std::map<int64_t, Lease> leases_;
  std::deque<Change> history_;
  int64_t compacted_ = 0;  // highest revision dropped from history_
  std::vector<std::shared_ptr<Watcher>> watchers_;
};

// A ClusterStore over `kv` for `cluster` (the same store code as etcd uses).
std::unique_ptr<ClusterStore> make_memory_store(std::shared_ptr<MemoryKv> kv, const std::string& cluster);

}  // namespace tandem::dcs::memory
