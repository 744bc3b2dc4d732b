#pragma once
// Kv: the etcd v3 operations the cluster store is built on (KV with transactions, leases,
// prefix watches), as plain values. EtcdClient implements it over gRPC; memory::MemoryKv
// imitates it in-process for unit tests. Keeping both behind one interface means the
// store's compare-and-swap logic is the same code in tests and in production.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/result.hpp"

namespace tandem::dcs::etcd {

// One stored key as etcd reports it.
struct KeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t version = 0;
  int64_t lease = 0;
  bool operator==(const KeyValue&) const = default;
};

struct RangeResult {
  int64_t revision = 0;  // store revision the read was served at
  std::vector<KeyValue> kvs;
};

struct DeleteResult {
  int64_t revision = 0;
  int64_t deleted = 0;
};

// A guard of a transaction. A missing key has create/mod revision and version 0; a VALUE
// compare on a missing key is always false.
struct TxnCompare {
  enum class Target { version, create_revision, mod_revision, value };
  enum class Op { equal, not_equal, greater, less };
  std::string key;
  Target target = Target::value;
  Op op = Op::equal;
  int64_t number = 0;  // for version and revisions
  std::string value;   // for Target::value

  static TxnCompare value_equals(std::string key, std::string value);
  static TxnCompare create_revision(std::string key, Op op, int64_t revision);
  static TxnCompare mod_revision(std::string key, Op op, int64_t revision);
  static TxnCompare version(std::string key, Op op, int64_t version);
  // create_revision == 0.
  static TxnCompare absent(std::string key) { return create_revision(std::move(key), Op::equal, 0); }
};

// One operation inside a transaction.
struct TxnOp {
  enum class Kind { get, put, del };
  Kind kind = Kind::get;
  std::string key;
  std::string value;    // put
  int64_t lease = 0;    // put
  bool prefix = false;  // get/del: every key starting with `key`

  static TxnOp get(std::string key, bool prefix = false);
  static TxnOp put(std::string key, std::string value, int64_t lease = 0);
  static TxnOp del(std::string key, bool prefix = false);
};

struct TxnOpResult {
  TxnOp::Kind kind = TxnOp::Kind::get;
  std::vector<KeyValue> kvs;  // get
  int64_t deleted = 0;        // del
};

struct TxnResult {
  bool succeeded = false;  // the compares held and the success ops ran
  int64_t revision = 0;
  std::vector<TxnOpResult> results;  // one per op of the branch that ran
};

struct LeaseInfo {
  int64_t id = 0;
  int64_t ttl = 0;  // remaining seconds; -1 when expired or unknown
  int64_t granted_ttl = 0;
};

struct WatchEvent {
  enum class Type { put, del };
  Type type = Type::put;
  KeyValue kv;  // for del: the key with mod_revision set to the revision of the deletion
  std::optional<KeyValue> prev_kv;
};

// What a watch delivers: a batch of events, or a report that history was compacted.
struct WatchUpdate {
  std::vector<WatchEvent> events;
  int64_t revision = 0;  // store revision in the response header
  // > 0: the revision the watch wanted was compacted away and events were missed. The
  // caller must reload its state; the watch goes on from this (oldest available) revision.
  int64_t compact_revision = 0;
};

using WatchCallback = std::function<void(const WatchUpdate&)>;

// A running watch. Destroying it stops it; no callback runs after stop() returns.
class KvWatch {
 public:
  virtual ~KvWatch() = default;
  virtual void stop() = 0;
};

// Thread-safe: any thread may call any method concurrently.
class Kv {
 public:
  virtual ~Kv() = default;

  virtual Result<RangeResult> get(const std::string& key) = 0;
  // Every key starting with `prefix`, sorted by key, at `revision` (0: newest).
  virtual Result<RangeResult> get_prefix(const std::string& prefix, int64_t revision) = 0;
  // Returns the revision of the write. `lease` 0: no lease.
  virtual Result<int64_t> put(const std::string& key, const std::string& value, int64_t lease) = 0;
  virtual Result<DeleteResult> del(const std::string& key) = 0;
  virtual Result<DeleteResult> del_prefix(const std::string& prefix) = 0;
  virtual Result<TxnResult> txn(const std::vector<TxnCompare>& compares, const std::vector<TxnOp>& success,
                                const std::vector<TxnOp>& failure) = 0;

  virtual Result<LeaseInfo> lease_grant(int64_t ttl_seconds) = 0;
  // Renews once; returns the new TTL, or 0 when the lease no longer exists.
  virtual Result<int64_t> lease_keepalive(int64_t lease_id) = 0;
  // Revoking a lease that no longer exists succeeds.
  virtual Status lease_revoke(int64_t lease_id) = 0;
  virtual Result<LeaseInfo> lease_time_to_live(int64_t lease_id) = 0;

  // Watches every key under `prefix` from `start_revision` (inclusive; 0: from now),
  // calling `callback` on a thread of the watch. The Kv must outlive the watch.
  virtual std::unique_ptr<KvWatch> watch(const std::string& prefix, int64_t start_revision, WatchCallback callback) = 0;
};

}  // namespace tandem::dcs::etcd
