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
#include "dcs/store.hpp"

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

class EtcdClient;

// A watch on every key under a prefix, running on its own thread. It reconnects after
// errors (trying the next endpoint) and resumes at the revision after the last event it
// delivered, so no event is lost or repeated unless history was compacted (then it says
// so through WatchUpdate::compact_revision). The callback runs on the watch thread and
// must not block for long. Owned by the caller; the EtcdClient must outlive it.
class PrefixWatch {
 public:
  ~PrefixWatch();
  PrefixWatch(const PrefixWatch&) = delete;
  PrefixWatch& operator=(const PrefixWatch&) = delete;

  // Stops the thread and waits for it; no callback runs after this returns.
  void stop();
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
class EtcdClient {
 public:
  explicit EtcdClient(const EtcdOptions& options);
  ~EtcdClient();
  EtcdClient(const EtcdClient&) = delete;
  EtcdClient& operator=(const EtcdClient&) = delete;

  Result<RangeResult> get(const std::string& key);
  // Every key starting with `prefix`, sorted by key, at `revision` (0: newest).
  Result<RangeResult> get_prefix(const std::string& prefix, int64_t revision = 0);
  // Returns the revision of the write.
  Result<int64_t> put(const std::string& key, const std::string& value, int64_t lease = 0);
  Result<DeleteResult> del(const std::string& key);
  Result<DeleteResult> del_prefix(const std::string& prefix);
  Result<TxnResult> txn(const std::vector<TxnCompare>& compares, const std::vector<TxnOp>& success,
                        const std::vector<TxnOp>& failure = {});

  Result<LeaseInfo> lease_grant(int64_t ttl_seconds);
  // Renews once (one request and one response on a LeaseKeepAlive stream); returns the
  // new TTL, or 0 when the lease no longer exists.
  Result<int64_t> lease_keepalive(int64_t lease_id);
  // Revoking a lease that no longer exists succeeds.
  Status lease_revoke(int64_t lease_id);
  Result<LeaseInfo> lease_time_to_live(int64_t lease_id);

  // Starts a watch of every key under `prefix` from `start_revision` (inclusive; 0: from
  // now). See PrefixWatch.
  std::unique_ptr<PrefixWatch> watch_prefix(const std::string& prefix, int64_t start_revision, WatchCallback callback,
                                            bool prev_kv = false);

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
