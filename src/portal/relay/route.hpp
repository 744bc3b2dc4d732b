#pragma once
// The current target of a listener as an immutable snapshot swapped atomically: workers
// read it for every new session without locking; whoever learns about leader changes
// (the etcd watch) calls set(). Changing the target closes at once the sessions attached
// to any other member, so clients fail fast and reconnect instead of hanging on a
// demoted or dead server.
#include <atomic>
#include <memory>
#include <optional>
#include <string>

#include "portal/relay/endpoint.hpp"
#include "portal/relay/session_registry.hpp"

namespace tandem::portal::relay {

class CurrentRoute {
 public:
  // `registry` may be null (then nothing is closed on change); it must outlive this.
  explicit CurrentRoute(SessionRegistry* registry) : registry_(registry) {}

  // Installs a new target (nullopt: nowhere to go). Returns how many sessions attached to
  // other members were closed.
  std::size_t set(std::optional<Endpoint> target, const std::string& reason);
  std::optional<Endpoint> get() const;
  // A RouteFn reading this snapshot; `this` must outlive the function.
  RouteFn as_route_fn() const {
    return [this] { return get(); };
  }

 private:
  SessionRegistry* registry_;
  std::atomic<std::shared_ptr<const std::optional<Endpoint>>> target_{
      std::make_shared<const std::optional<Endpoint>>()};
};

}  // namespace tandem::portal::relay
