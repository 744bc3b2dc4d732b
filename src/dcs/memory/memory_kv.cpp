#include "dcs/memory/memory_kv.hpp"

#include <algorithm>
#include <thread>

#include "dcs/etcd/etcd_store.hpp"

namespace tandem::dcs::memory {

using etcd::DeleteResult;
using etcd::KeyValue;
using etcd::LeaseInfo;
using etcd::RangeResult;
using etcd::TxnCompare;
using etcd::TxnOp;
using etcd::TxnOpResult;
using etcd::TxnResult;
using etcd::WatchEvent;
using etcd::WatchUpdate;

// One watch: a queue filled by commits (under MemoryKv::mu_) and drained by its own
// thread, so callbacks never run inside a MemoryKv call (as with etcd, they are async).
struct MemoryKv::Watcher {
  std::string prefix;
  etcd::WatchCallback callback;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<WatchUpdate> queue;  // guarded by mu
  bool stopping = false;          // guarded by mu
  std::thread thread;

  void push(WatchUpdate u) {
    {
      std::lock_guard lock(mu);
      queue.push_back(std::move(u));
    }
    cv.notify_all();
  }

  // Pushes the events of one revision that fall under the prefix.
  void offer(int64_t current, const std::vector<WatchEvent>& events) {
    WatchUpdate u;
    u.revision = current;
    for (const auto& e : events) {
      if (e.kv.key.rfind(prefix, 0) == 0) u.events.push_back(e);
    }
    if (!u.events.empty()) push(std::move(u));
  }

  void run() {
    std::unique_lock lock(mu);
    while (true) {
      cv.wait(lock, [&] { return stopping || !queue.empty(); });
      if (stopping) return;
      WatchUpdate u = std::move(queue.front());
      queue.pop_front();
      lock.unlock();
      callback(u);
      lock.lock();
    }
  }

  void halt() {
    {
      std::lock_guard lock(mu);
      stopping = true;
    }
    cv.notify_all();
    if (thread.joinable() && thread.get_id() != std::this_thread::get_id()) thread.join();
  }
};

class MemoryKv::Watch final : public etcd::KvWatch {
 public:
  Watch(MemoryKv* kv, std::shared_ptr<Watcher> w) : kv_(kv), w_(std::move(w)) {}
  ~Watch() override { stop(); }
  void stop() override {
    if (!w_) return;
    kv_->unregister(w_.get());
    w_->halt();
    w_.reset();
  }

 private:
  MemoryKv* kv_;
  std::shared_ptr<Watcher> w_;
};

MemoryKv::MemoryKv(Clock clock) : clock_(std::move(clock)) {
  if (!clock_) clock_ = [] { return SteadyClock::now(); };
}

MemoryKv::~MemoryKv() {
  std::vector<std::shared_ptr<Watcher>> left;
  {
    std::lock_guard lock(mu_);
    left.swap(watchers_);
  }
  for (auto& w : left) w->halt();
}

TimePoint MemoryKv::now() const {
  return clock_();
}

void MemoryKv::set_available(bool available) {
  std::lock_guard lock(mu_);
  available_ = available;
}

Status MemoryKv::check_available() const {
  if (available_) return {};
  return make_error(Errc::unavailable, "memory kv: unavailable (fault injected by the test)");
}

int64_t MemoryKv::revision() const {
  std::lock_guard lock(mu_);
  return revision_;
}

void MemoryKv::expire_leases() {
  std::lock_guard lock(mu_);
  expire_locked();
}

void MemoryKv::expire_locked() {
  const TimePoint t = now();
  for (auto it = leases_.begin(); it != leases_.end();) {
    if (it->second.expires > t) {
      ++it;
      continue;
    }
    const int64_t id = it->first;
    it = leases_.erase(it);
    std::vector<WatchEvent> events;
    for (auto kv = kvs_.begin(); kv != kvs_.end();) {
      if (kv->second.lease != id) {
        ++kv;
        continue;
      }
      WatchEvent e;
      e.type = WatchEvent::Type::del;
      e.kv.key = kv->first;
      e.kv.mod_revision = revision_ + 1;
      e.prev_kv = kv->second;
      events.push_back(std::move(e));
      kv = kvs_.erase(kv);
    }
    commit(std::move(events));
  }
}

void MemoryKv::commit(std::vector<WatchEvent> events) {
  if (events.empty()) return;
  ++revision_;
  for (const auto& w : watchers_) w->offer(revision_, events);
  history_.push_back(Change{revision_, std::move(events)});
  while (history_.size() > kEventHistory) {
    compacted_ = history_.front().revision;
    history_.pop_front();
  }
}

std::vector<KeyValue> MemoryKv::range(const std::string& key, bool prefix) const {
  std::vector<KeyValue> out;
  if (!prefix) {
    if (auto it = kvs_.find(key); it != kvs_.end()) out.push_back(it->second);
    return out;
  }
  for (auto it = kvs_.lower_bound(key); it != kvs_.end() && it->first.rfind(key, 0) == 0; ++it) {
    out.push_back(it->second);
  }
  return out;
}

bool MemoryKv::holds(const TxnCompare& c) const {
  auto it = kvs_.find(c.key);
  if (it == kvs_.end() && c.target == TxnCompare::Target::value) return false;  // as etcd does
  KeyValue kv = it == kvs_.end() ? KeyValue{} : it->second;
  int cmp = 0;
  auto sign = [](auto a, auto b) { return a < b ? -1 : (a > b ? 1 : 0); };
  switch (c.target) {
    case TxnCompare::Target::version: cmp = sign(kv.version, c.number); break;
    case TxnCompare::Target::create_revision: cmp = sign(kv.create_revision, c.number); break;
    case TxnCompare::Target::mod_revision: cmp = sign(kv.mod_revision, c.number); break;
    case TxnCompare::Target::value: cmp = sign(kv.value.compare(c.value), 0); break;
  }
  switch (c.op) {
    case TxnCompare::Op::equal: return cmp == 0;
    case TxnCompare::Op::not_equal: return cmp != 0;
    case TxnCompare::Op::greater: return cmp > 0;
    case TxnCompare::Op::less: return cmp < 0;
  }
  return false;
}

Result<TxnOpResult> MemoryKv::apply(const TxnOp& op, std::vector<WatchEvent>& events) {
  TxnOpResult r;
  r.kind = op.kind;
  const int64_t rev = revision_ + 1;
  switch (op.kind) {
    case TxnOp::Kind::get: r.kvs = range(op.key, op.prefix); break;
    case TxnOp::Kind::put: {
      if (op.key.empty()) return make_error(Errc::invalid_argument, "memory kv: empty key");
      KeyValue& kv = kvs_[op.key];
      std::optional<KeyValue> prev;
      if (kv.create_revision != 0) prev = kv;
      kv.key = op.key;
      kv.value = op.value;
      if (kv.create_revision == 0) kv.create_revision = rev;
      kv.mod_revision = rev;
      kv.version += 1;
      kv.lease = op.lease;
      events.push_back(WatchEvent{WatchEvent::Type::put, kv, prev});
      break;
    }
    case TxnOp::Kind::del: {
      for (const auto& old : range(op.key, op.prefix)) {
        WatchEvent e;
        e.type = WatchEvent::Type::del;
        e.kv.key = old.key;
        e.kv.mod_revision = rev;
        e.prev_kv = old;
        events.push_back(std::move(e));
        kvs_.erase(old.key);
        ++r.deleted;
      }
      break;
    }
  }
  return r;
}

Result<RangeResult> MemoryKv::get(const std::string& key) {
  std::lock_guard lock(mu_);
  if (auto st = check_available(); !st) return st.error();
  expire_locked();
  return RangeResult{revision_, range(key, false)};
}

Result<RangeResult> MemoryKv::get_prefix(const std::string& prefix, int64_t revision) {
  std::lock_guard lock(mu_);
  if (auto st = check_available(); !st) return st.error();
  expire_locked();
  if (revision != 0 && revision != revision_) {
    return make_error(Errc::invalid_argument,
                      "memory kv: revision {} is not the current one ({}); old revisions are not kept", revision,
                      revision_);
  }
  return RangeResult{revision_, range(prefix, true)};
}

Result<int64_t> MemoryKv::put(const std::string& key, const std::string& value, int64_t lease) {
  auto r = txn({}, {TxnOp::put(key, value, lease)}, {});
  if (!r) return r.error();
  return r->revision;
}

Result<DeleteResult> MemoryKv::del(const std::string& key) {
  auto r = txn({}, {TxnOp::del(key)}, {});
  if (!r) return r.error();
  return DeleteResult{r->revision, r->results.at(0).deleted};
}

Result<DeleteResult> MemoryKv::del_prefix(const std::string& prefix) {
  auto r = txn({}, {TxnOp::del(prefix, true)}, {});
  if (!r) return r.error();
  return DeleteResult{r->revision, r->results.at(0).deleted};
}

Result<TxnResult> MemoryKv::txn(const std::vector<TxnCompare>& compares, const std::vector<TxnOp>& success,
                                const std::vector<TxnOp>& failure) {
  std::lock_guard lock(mu_);
  if (auto st = check_available(); !st) return st.error();
  expire_locked();
  TxnResult out;
  out.succeeded = std::all_of(compares.begin(), compares.end(), [&](const TxnCompare& c) { return holds(c); });
  const auto& ops = out.succeeded ? success : failure;
  // Like etcd, a put bound to a missing lease fails the whole transaction.
  for (const auto& op : ops) {
    if (op.kind == TxnOp::Kind::put && op.lease != 0 && !leases_.count(op.lease)) {
      return make_error(Errc::not_found, "memory kv: requested lease {:x} not found", op.lease);
    }
  }
  std::vector<WatchEvent> events;
  for (const auto& op : ops) {
    auto r = apply(op, events);
    if (!r) return r.error();
    out.results.push_back(std::move(*r));
  }
  commit(std::move(events));
  out.revision = revision_;
  return out;
}

Result<LeaseInfo> MemoryKv::lease_grant(int64_t ttl_seconds) {
  std::lock_guard lock(mu_);
  if (auto st = check_available(); !st) return st.error();
  expire_locked();
  if (ttl_seconds < 1) return make_error(Errc::invalid_argument, "memory kv: lease ttl must be positive");
  const int64_t id = next_lease_++;
  leases_[id] = Lease{ttl_seconds, now() + std::chrono::seconds(ttl_seconds)};
  return LeaseInfo{id, ttl_seconds, ttl_seconds};
}

Result<int64_t> MemoryKv::lease_keepalive(int64_t lease_id) {
  std::lock_guard lock(mu_);
  if (auto st = check_available(); !st) return st.error();
  expire_locked();
  auto it = leases_.find(lease_id);
  if (it == leases_.end()) return int64_t{0};
  it->second.expires = now() + std::chrono::seconds(it->second.ttl);
  return it->second.ttl;
}

Status MemoryKv::lease_revoke(int64_t lease_id) {
  std::lock_guard lock(mu_);
  if (auto st = check_available(); !st) return st;
  expire_locked();
  auto it = leases_.find(lease_id);
  if (it == leases_.end()) return {};
  it->second.expires = TimePoint::min();
  expire_locked();
  return {};
}

Result<LeaseInfo> MemoryKv::lease_time_to_live(int64_t lease_id) {
  std::lock_guard lock(mu_);
  if (auto st = check_available(); !st) return st.error();
  expire_locked();
  auto it = leases_.find(lease_id);
  if (it == leases_.end()) return LeaseInfo{lease_id, -1, 0};
  auto left = std::chrono::ceil<std::chrono::seconds>(it->second.expires - now()).count();
  return LeaseInfo{lease_id, left, it->second.ttl};
}

std::unique_ptr<etcd::KvWatch> MemoryKv::watch(const std::string& prefix, int64_t start_revision,
                                               etcd::WatchCallback callback) {
  auto w = std::make_shared<Watcher>();
  w->prefix = prefix;
  w->callback = std::move(callback);
  {
    std::lock_guard lock(mu_);
    if (start_revision > 0 && start_revision <= revision_) {
      int64_t from = start_revision;
      if (start_revision <= compacted_) {
        WatchUpdate u;
        u.revision = revision_;
        u.compact_revision = compacted_ + 1;
        w->push(std::move(u));
        from = compacted_ + 1;
      }
      for (const auto& c : history_) {
        if (c.revision >= from) w->offer(revision_, c.events);
      }
    }
    watchers_.push_back(w);
  }
  Watcher* raw = w.get();
  w->thread = std::thread([raw] { raw->run(); });
  return std::make_unique<Watch>(this, std::move(w));
}

void MemoryKv::unregister(Watcher* w) {
  std::lock_guard lock(mu_);
  watchers_.erase(std::remove_if(watchers_.begin(), watchers_.end(), [&](const auto& p) { return p.get() == w; }),
                  watchers_.end());
}

std::unique_ptr<ClusterStore> make_memory_store(std::shared_ptr<MemoryKv> kv, const std::string& cluster) {
  return std::make_unique<etcd::EtcdStore>(cluster, std::move(kv));
}

}  // namespace tandem::dcs::memory
