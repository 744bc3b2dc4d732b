#include "dcs/etcd/etcd_store.hpp"

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>
#include <stdexcept>

namespace tandem::dcs {

std::unique_ptr<ClusterStore> make_etcd_store(const EtcdOptions& opts) {
  return std::make_unique<etcd::EtcdStore>(opts);
}

}  // namespace tandem::dcs

namespace tandem::dcs::etcd {

namespace {

constexpr int kHistoryAttempts = 10;

bool valid_cluster_name(const std::string& c) {
  return !c.empty() && c.find_first_of("/\n\t ") == std::string::npos && c != "." && c != "..";
}

}  // namespace

ClusterKeys::ClusterKeys(const std::string& cluster) : prefix("/tandem/" + cluster + "/") {
  if (!valid_cluster_name(cluster)) {
    throw std::invalid_argument(
        fmt::format("cluster name '{}' is not valid: it must be non-empty and contain no '/' or spaces", cluster));
  }
}

EtcdStore::EtcdStore(const EtcdOptions& options) : keys_(options.cluster) {
  auto client = std::make_shared<EtcdClient>(options);
  etcd_ = client.get();
  kv_ = std::move(client);
}

EtcdStore::EtcdStore(const std::string& cluster, std::shared_ptr<Kv> kv) : keys_(cluster), kv_(std::move(kv)) {
  if (!kv_) throw std::invalid_argument("EtcdStore: no Kv given");
}

EtcdStore::~EtcdStore() {
  if (watch_) watch_->stop();
}

Result<ClusterSnapshot> EtcdStore::load() {
  auto r = kv_->get_prefix(keys_.prefix, 0);
  if (!r) return r.error();
  ClusterSnapshot s;
  s.revision = r->revision;
  auto skip = [&](const KeyValue& kv, const Error& e) {
    // Once per stored version of the key, not once per HA cycle.
    {
      std::lock_guard lock(mu_);
      auto [it, inserted] = reported_bad_.try_emplace(kv.key, kv.mod_revision);
      if (!inserted && it->second == kv.mod_revision) return;
      it->second = kv.mod_revision;
    }
    spdlog::warn("dcs: ignoring {} (mod revision {}): {}; fix or delete the key", kv.key, kv.mod_revision, e.message);
  };
  const std::string members = keys_.members();
  for (const auto& kv : r->kvs) {
    if (kv.key == keys_.leader()) {
      if (kv.value.empty()) {
        skip(kv, make_error(Errc::protocol, "empty leader name"));
        continue;
      }
      s.leader = Leader{kv.value, kv.lease, kv.mod_revision};
    } else if (kv.key.rfind(members, 0) == 0) {
      std::string name = kv.key.substr(members.size());
      if (name.empty() || name.find('/') != std::string::npos) {
        skip(kv, make_error(Errc::protocol, "not a member key"));
        continue;
      }
      auto m = member_from_json(kv.value);
      if (!m) {
        skip(kv, m.error());
        continue;
      }
      if (m->name != name) {
        spdlog::warn("dcs: {} holds member name '{}'; using the key's name '{}'", kv.key, m->name, name);
        m->name = name;
      }
      s.members.emplace(name, std::move(*m));
    } else if (kv.key == keys_.config()) {
      auto c = config_from_json(kv.value);
      if (!c) {
        skip(kv, c.error());
        continue;
      }
      c->mod_revision = kv.mod_revision;
      s.config = std::move(*c);
    } else if (kv.key == keys_.initialize()) {
      s.initialize = kv.value;
    } else if (kv.key == keys_.sync()) {
      auto v = sync_from_json(kv.value);
      if (!v) {
        skip(kv, v.error());
        continue;
      }
      v->mod_revision = kv.mod_revision;
      s.sync = std::move(*v);
    } else if (kv.key == keys_.switchover()) {
      auto v = switchover_from_json(kv.value);
      if (!v) {
        skip(kv, v.error());
        continue;
      }
      v->mod_revision = kv.mod_revision;
      s.switchover = std::move(*v);
    } else if (kv.key == keys_.history()) {
      auto v = history_from_json(kv.value);
      if (!v) {
        skip(kv, v.error());
        continue;
      }
      s.history = std::move(*v);
    }
    // Other keys under the prefix belong to newer versions or other tools: ignored.
  }
  return s;
}

Result<LeaseGrant> EtcdStore::grant_lease(int64_t ttl_seconds) {
  if (ttl_seconds < 1) return make_error(Errc::invalid_argument, "lease ttl {} must be at least 1 second", ttl_seconds);
  auto r = kv_->lease_grant(ttl_seconds);
  if (!r) return r.error();
  return LeaseGrant{r->id, r->ttl};
}

Result<int64_t> EtcdStore::keepalive(int64_t lease_id) {
  return kv_->lease_keepalive(lease_id);
}

Status EtcdStore::revoke_lease(int64_t lease_id) {
  return kv_->lease_revoke(lease_id);
}

Result<bool> EtcdStore::create_if_absent(const std::string& key, const std::string& value, int64_t lease) {
  auto r = kv_->txn({TxnCompare::absent(key)}, {TxnOp::put(key, value, lease)}, {TxnOp::get(key)});
  if (!r) return r.error();
  if (r->succeeded) return true;
  if (r->results.empty() || r->results[0].kvs.empty()) return false;
  const auto& kv = r->results[0].kvs[0];
  return kv.value == value && kv.lease == lease;
}

Result<bool> EtcdStore::try_acquire_leader(const std::string& name, int64_t lease_id) {
  if (name.empty()) return make_error(Errc::invalid_argument, "leader name must not be empty");
  auto r = create_if_absent(keys_.leader(), name, lease_id);
  if (r && *r) spdlog::info("dcs: {} acquired the leader key with lease {:x}", name, lease_id);
  return r;
}

Result<bool> EtcdStore::refresh_leader(const std::string& name, int64_t lease_id) {
  auto r = kv_->txn({TxnCompare::value_equals(keys_.leader(), name)}, {TxnOp::put(keys_.leader(), name, lease_id)}, {});
  if (!r) return r.error();
  return r->succeeded;
}

Result<bool> EtcdStore::release_leader(const std::string& name) {
  auto r = kv_->txn({TxnCompare::value_equals(keys_.leader(), name)}, {TxnOp::del(keys_.leader())}, {});
  if (!r) return r.error();
  if (r->succeeded) spdlog::info("dcs: {} released the leader key", name);
  return r->succeeded;
}

Status EtcdStore::put_member(const Member& m, int64_t lease_id) {
  if (m.name.empty() || m.name.find('/') != std::string::npos) {
    return make_error(Errc::invalid_argument, "member name '{}' must be non-empty and contain no '/'", m.name);
  }
  auto r = kv_->put(keys_.member(m.name), to_json(m).dump(), lease_id);
  if (!r) return r.error();
  return {};
}

Result<bool> EtcdStore::claim_member(const Member& m, int64_t lease_id) {
  if (m.name.empty() || m.name.find('/') != std::string::npos) {
    return make_error(Errc::invalid_argument, "member name '{}' must be non-empty and contain no '/'", m.name);
  }
  return create_if_absent(keys_.member(m.name), to_json(m).dump(), lease_id);
}

Status EtcdStore::delete_member(const std::string& name) {
  if (name.empty()) return make_error(Errc::invalid_argument, "member name must not be empty");
  auto r = kv_->del(keys_.member(name));
  if (!r) return r.error();
  return {};
}

Result<bool> EtcdStore::try_initialize(const std::string& owner) {
  if (owner.empty()) return make_error(Errc::invalid_argument, "initialize owner must not be empty");
  return create_if_absent(keys_.initialize(), owner, 0);
}

Result<bool> EtcdStore::set_initialize(const std::string& expected, const std::string& value) {
  const auto key = keys_.initialize();
  auto r = kv_->txn({TxnCompare::value_equals(key, expected)}, {TxnOp::put(key, value)}, {TxnOp::get(key)});
  if (!r) return r.error();
  if (r->succeeded) return true;
  // A retry of an attempt that had applied finds our value in place.
  return !r->results.empty() && !r->results[0].kvs.empty() && r->results[0].kvs[0].value == value;
}

Status EtcdStore::cancel_initialize(const std::string& expected) {
  const auto key = keys_.initialize();
  auto r = kv_->txn({TxnCompare::value_equals(key, expected)}, {TxnOp::del(key)}, {});
  if (!r) return r.error();
  return {};
}

Result<bool> EtcdStore::write_sync(const SyncState& s) {
  if (s.leader.empty()) return make_error(Errc::invalid_argument, "sync: leader must not be empty");
  auto r =
      kv_->txn({TxnCompare::value_equals(keys_.leader(), s.leader)}, {TxnOp::put(keys_.sync(), to_json(s).dump())}, {});
  if (!r) return r.error();
  return r->succeeded;
}

Result<bool> EtcdStore::write_config(const DynamicConfig& c, int64_t expected_mod_revision) {
  if (auto v = validate(c); !v) return v.error();
  const auto key = keys_.config();
  const std::string value = to_json(c).dump();
  TxnCompare guard = expected_mod_revision == 0
                         ? TxnCompare::absent(key)
                         : TxnCompare::mod_revision(key, TxnCompare::Op::equal, expected_mod_revision);
  auto r = kv_->txn({guard}, {TxnOp::put(key, value)}, {TxnOp::get(key)});
  if (!r) return r.error();
  if (r->succeeded) return true;
  return !r->results.empty() && !r->results[0].kvs.empty() && r->results[0].kvs[0].value == value;
}

Result<bool> EtcdStore::set_switchover(const Switchover& s) {
  return create_if_absent(keys_.switchover(), to_json(s).dump(), 0);
}

Status EtcdStore::clear_switchover() {
  auto r = kv_->del(keys_.switchover());
  if (!r) return r.error();
  return {};
}

Status EtcdStore::append_history(const HistoryEntry& e) {
  const auto key = keys_.history();
  for (int attempt = 0; attempt < kHistoryAttempts; ++attempt) {
    auto cur = kv_->get(key);
    if (!cur) return cur.error();
    std::vector<HistoryEntry> entries;
    int64_t mod_revision = 0;
    if (!cur->kvs.empty()) {
      mod_revision = cur->kvs[0].mod_revision;
      auto parsed = history_from_json(cur->kvs[0].value);
      if (parsed) {
        entries = std::move(*parsed);
      } else {
        spdlog::warn("dcs: {} is not a valid history ({}); starting a new one", key, parsed.error().message);
      }
    }
    entries.push_back(e);
    if (entries.size() > kMaxHistory) entries.erase(entries.begin(), entries.end() - kMaxHistory);
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& h : entries) arr.push_back(to_json(h));
    TxnCompare guard = mod_revision == 0 ? TxnCompare::absent(key)
                                         : TxnCompare::mod_revision(key, TxnCompare::Op::equal, mod_revision);
    auto r = kv_->txn({guard}, {TxnOp::put(key, arr.dump())}, {});
    if (!r) return r.error();
    if (r->succeeded) return {};
  }
  return make_error(Errc::conflict, "history: gave up after {} concurrent updates of {}", kHistoryAttempts, key);
}

void EtcdStore::on_watch(const WatchUpdate& u) {
  int64_t top = 0;
  // Member records change every HA cycle of every agent; waking on them would make the
  // agents wake each other in a loop. Decisions react to the other keys; member updates
  // are read at the next loop_wait.
  const std::string members = keys_.members();
  for (const auto& ev : u.events) {
    if (ev.kv.key.compare(0, members.size(), members) == 0) continue;
    top = std::max(top, ev.kv.mod_revision);
  }
  // Compacted history: we cannot tell what changed, so report the current revision; the
  // caller reloads.
  if (u.compact_revision > 0) top = std::max(top, u.revision);
  if (top == 0) return;
  {
    std::lock_guard lock(mu_);
    if (top <= latest_rev_) return;
    latest_rev_ = top;
  }
  cv_.notify_all();
}

Result<int64_t> EtcdStore::wait_for_change(int64_t revision, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  if (!watch_) {
    watch_from_ = revision > 0 ? revision + 1 : 0;
    watch_ = kv_->watch(keys_.prefix, watch_from_, [this](const WatchUpdate& u) { on_watch(u); });
  }
  if (revision > 0 && watch_from_ > 0 && revision + 1 < watch_from_) {
    // Older than the watch: something may have changed that the watch never saw.
    return std::max(latest_rev_, watch_from_ - 1);
  }
  cv_.wait_for(lock, timeout, [&] { return latest_rev_ > revision || wake_pending_; });
  wake_pending_ = false;
  return latest_rev_ > revision ? latest_rev_ : revision;
}

void EtcdStore::wake() {
  {
    std::lock_guard lock(mu_);
    wake_pending_ = true;
  }
  cv_.notify_all();
}

}  // namespace tandem::dcs::etcd
