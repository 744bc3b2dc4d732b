#pragma once
// Internals of EtcdClient shared by etcd_client.cpp and etcd_watch.cpp: the per-endpoint
// channels and stubs and the failover loop. Not part of the public API.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/clock.hpp"
#include "dcs/etcd/etcd_client.hpp"
#include "etcd_rpc.grpc.pb.h"

namespace tandem::dcs::etcd {

// One etcd endpoint: a gRPC channel (connects lazily, reconnects by itself) and its stubs.
// Stubs are thread-safe.
struct Endpoint {
  std::string url;     // as configured
  std::string target;  // host:port for gRPC
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<etcdserverpb::KV::Stub> kv;
  std::unique_ptr<etcdserverpb::Watch::Stub> watch;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease;
};

// gRPC codes after which another endpoint may succeed.
bool is_failover_code(grpc::StatusCode code);
Errc errc_from_grpc(grpc::StatusCode code);
const char* grpc_code_name(grpc::StatusCode code);
KeyValue from_proto(const mvccpb::KeyValue& kv);
// Marks a request so that an etcd member without a raft leader fails it at once
// (UNAVAILABLE "no leader") instead of waiting; lets us move on to a healthy member.
void require_leader(grpc::ClientContext& ctx);

struct EtcdClient::Impl {
  std::vector<std::string> urls;
  std::vector<Endpoint> endpoints;
  std::chrono::milliseconds call_timeout{1000};
  std::chrono::milliseconds retry_timeout{3000};
  std::atomic<size_t> current{0};  // index of the endpoint that last worked

  explicit Impl(const EtcdOptions& options);

  // Runs `fn(endpoint, context)` on endpoints in turn, starting from the last good one,
  // each attempt with its own deadline, until it succeeds, fails with an error another
  // endpoint would not fix, or retry_timeout is spent.
  template <typename Fn>
  Status call(std::string_view what, Fn&& fn) {
    const auto start = SteadyClock::now();
    const auto deadline = start + retry_timeout;
    const size_t n = endpoints.size();
    const size_t first = current.load();
    std::vector<std::pair<size_t, std::string>> failures;  // last failure per endpoint, in order
    bool timed_out = false;
    for (size_t attempt = 0;; ++attempt) {
      auto now = SteadyClock::now();
      if (attempt > 0 && now >= deadline) break;
      if (attempt > 0 && attempt % n == 0) {
        // Every endpoint failed once: pause briefly so a fast-failing round (connection
        // refused everywhere, an election in progress) does not spin.
        std::this_thread::sleep_for(std::min<SteadyClock::duration>(std::chrono::milliseconds(100), deadline - now));
        now = SteadyClock::now();
        if (now >= deadline) break;
      }
      const size_t idx = (first + attempt) % n;
      Endpoint& ep = endpoints[idx];
      auto budget = std::max<SteadyClock::duration>(std::min<SteadyClock::duration>(call_timeout, deadline - now),
                                                    std::chrono::milliseconds(1));
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + budget);
      require_leader(ctx);
      grpc::Status st = fn(ep, ctx);
      if (st.ok()) {
        current.store(idx);
        return {};
      }
      if (!is_failover_code(st.error_code())) {
        return make_error(errc_from_grpc(st.error_code()), "etcd {} on {}: {} ({})", what, ep.target,
                          st.error_message(), grpc_code_name(st.error_code()));
      }
      if (st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) timed_out = true;
      std::string why = st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED
                            ? fmt::format("no answer within {} ms",
                                          std::chrono::duration_cast<std::chrono::milliseconds>(budget).count())
                            : st.error_message();
      auto it = std::find_if(failures.begin(), failures.end(), [&](const auto& f) { return f.first == idx; });
      if (it != failures.end()) failures.erase(it);
      failures.emplace_back(idx, std::move(why));
    }
    std::string tried;
    for (const auto& [idx, why] : failures) {
      if (!tried.empty()) tried += "; ";
      tried += fmt::format("{} ({})", endpoints[idx].target, why);
    }
    auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - start).count();
    return make_error(timed_out ? Errc::timeout : Errc::unavailable,
                      "etcd {} failed on every endpoint within {} ms: {}; check that a majority of the etcd "
                      "members is running and reachable",
                      what, elapsed, tried);
  }
};

}  // namespace tandem::dcs::etcd
