// PrefixWatch: a reconnecting watch of a key prefix (see etcd_client.hpp).
#include <spdlog/spdlog.h>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "dcs/etcd/etcd_client.hpp"
#include "dcs/etcd/etcd_client_impl.hpp"

namespace tandem::dcs::etcd {

namespace pb = etcdserverpb;

// Shared between the owner (stop()) and the watch thread (run()).
struct PrefixWatch::State {
  EtcdClient::Impl* client = nullptr;
  std::string prefix;
  bool prev_kv = false;
  WatchCallback callback;

  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;                  // guarded by mu
  grpc::ClientContext* active = nullptr;  // guarded by mu: the open stream, to cancel on stop
  std::atomic<bool> connected{false};
  std::atomic<int64_t> next_revision{0};
  std::thread thread;

  void run();
  // One stream on one endpoint, until it ends. Returns how it ended.
  enum class Outcome { stopped, compacted, failed_before_created, broke_after_created };
  Outcome run_stream(Endpoint& ep, std::string& why);
  void deliver(const pb::WatchResponse& resp);
};

void PrefixWatch::State::deliver(const pb::WatchResponse& resp) {
  WatchUpdate u;
  u.revision = resp.header().revision();
  u.events.reserve(static_cast<size_t>(resp.events_size()));
  int64_t last = 0;
  for (const auto& e : resp.events()) {
    WatchEvent ev;
    ev.type = e.type() == mvccpb::Event::DELETE ? WatchEvent::Type::del : WatchEvent::Type::put;
    ev.kv = from_proto(e.kv());
    if (e.has_prev_kv()) ev.prev_kv = from_proto(e.prev_kv());
    last = std::max(last, ev.kv.mod_revision);
    u.events.push_back(std::move(ev));
  }
  if (last > 0) next_revision.store(std::max(next_revision.load(), last + 1));
  callback(u);
}

PrefixWatch::State::Outcome PrefixWatch::State::run_stream(Endpoint& ep, std::string& why) {
  grpc::ClientContext ctx;
  require_leader(ctx);  // a member that loses its raft leader ends the stream instead of going silent
  {
    std::lock_guard lock(mu);
    if (stopping) return Outcome::stopped;
    active = &ctx;
  }
  auto stream = ep.watch->Watch(&ctx);
  pb::WatchRequest req;
  auto* create = req.mutable_create_request();
  create->set_key(prefix);
  create->set_range_end(prefix_end(prefix));
  create->set_start_revision(next_revision.load());
  create->set_prev_kv(prev_kv);
  create->set_progress_notify(true);

  bool created = false;
  bool compacted = false;
  if (stream->Write(req)) {
    pb::WatchResponse resp;
    while (stream->Read(&resp)) {
      if (resp.created()) {
        created = true;
        connected.store(true);
        spdlog::debug("etcd watch {} established on {} from revision {}", prefix, ep.target, next_revision.load());
        // Started "from now": from here on we resume after the revision the watch began at.
        if (next_revision.load() == 0) next_revision.store(resp.header().revision() + 1);
      }
      if (resp.canceled()) {
        if (resp.compact_revision() > 0) {
          compacted = true;
          spdlog::warn("etcd watch {}: revision {} was compacted; resuming from {} (events were missed)", prefix,
                       next_revision.load(), resp.compact_revision());
          next_revision.store(resp.compact_revision());
          WatchUpdate u;
          u.revision = resp.header().revision();
          u.compact_revision = resp.compact_revision();
          callback(u);
        } else {
          why = resp.cancel_reason().empty() ? "watch canceled by the server" : resp.cancel_reason();
        }
        break;
      }
      if (resp.events_size() > 0) {
        deliver(resp);
      } else if (!resp.created() && resp.header().revision() > 0) {
        // Progress notification: every later event has a higher revision.
        next_revision.store(std::max(next_revision.load(), resp.header().revision() + 1));
      }
    }
  }
  ctx.TryCancel();
  grpc::Status st = stream->Finish();
  connected.store(false);
  {
    std::lock_guard lock(mu);
    active = nullptr;
    if (stopping) return Outcome::stopped;
  }
  if (compacted) return Outcome::compacted;
  if (why.empty()) {
    why = st.ok() || st.error_code() == grpc::StatusCode::CANCELLED
              ? std::string("stream closed")
              : fmt::format("{} ({})", st.error_message(), grpc_code_name(st.error_code()));
  }
  return created ? Outcome::broke_after_created : Outcome::failed_before_created;
}

void PrefixWatch::State::run() {
  const size_t n = client->endpoints.size();
  size_t idx = client->current.load();
  const auto min_backoff = std::chrono::milliseconds(100);
  const auto max_backoff = std::chrono::milliseconds(1000);
  // While no endpoint works, say so once and then every kRepeatWarning, not every retry.
  constexpr auto kRepeatWarning = std::chrono::seconds(30);
  auto backoff = min_backoff;
  int failures = 0;  // consecutive attempts that did not establish a stream
  TimePoint last_warning{};
  while (true) {
    Endpoint& ep = client->endpoints[idx];
    std::string why;
    Outcome outcome = run_stream(ep, why);
    if (outcome == Outcome::stopped) return;
    if (outcome == Outcome::compacted) continue;  // same endpoint, from the compact revision
    if (outcome == Outcome::broke_after_created) {
      backoff = min_backoff;
      failures = 0;
    }
    ++failures;
    size_t next = (idx + 1) % n;
    auto now = SteadyClock::now();
    if (failures == 1 || now - last_warning >= kRepeatWarning) {
      spdlog::warn("etcd watch {} on {} ended: {}; reconnecting via {} from revision {}{}", prefix, ep.target, why,
                   client->endpoints[next].target, next_revision.load(),
                   failures > 1 ? fmt::format(" ({} attempts have failed so far)", failures) : std::string());
      last_warning = now;
    } else {
      spdlog::debug("etcd watch {} on {} ended: {}", prefix, ep.target, why);
    }
    idx = next;
    std::unique_lock lock(mu);
    if (cv.wait_for(lock, backoff, [&] { return stopping; })) return;
    backoff = std::min(backoff * 2, max_backoff);
  }
}

PrefixWatch::PrefixWatch(std::unique_ptr<State> state) : state_(std::move(state)) {}

PrefixWatch::~PrefixWatch() {
  stop();
}

void PrefixWatch::stop() {
  {
    std::lock_guard lock(state_->mu);
    state_->stopping = true;
    if (state_->active != nullptr) state_->active->TryCancel();
  }
  state_->cv.notify_all();
  if (state_->thread.joinable()) state_->thread.join();
}

bool PrefixWatch::connected() const {
  return state_->connected.load();
}

int64_t PrefixWatch::next_revision() const {
  return state_->next_revision.load();
}

std::unique_ptr<KvWatch> EtcdClient::watch(const std::string& prefix, int64_t start_revision, WatchCallback callback) {
  return watch_prefix(prefix, start_revision, std::move(callback), false);
}

std::unique_ptr<PrefixWatch> EtcdClient::watch_prefix(const std::string& prefix, int64_t start_revision,
                                                      WatchCallback callback, bool prev_kv) {
  auto state = std::make_unique<PrefixWatch::State>();
  state->client = impl_.get();
  state->prefix = prefix;
  state->prev_kv = prev_kv;
  state->callback = std::move(callback);
  state->next_revision.store(start_revision > 0 ? start_revision : 0);
  PrefixWatch::State* raw = state.get();
  std::unique_ptr<PrefixWatch> watch(new PrefixWatch(std::move(state)));
  raw->thread = std::thread([raw] { raw->run(); });
  return watch;
}

}  // namespace tandem::dcs::etcd
