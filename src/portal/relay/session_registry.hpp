#pragma once
// Every live session of a portal, from accept to close: which listener took it, which
// member it is attached to and the BackendKeyData that member gave it. Used to
//  - forward a CancelRequest to the member that owns the key,
//  - close at once the sessions attached to a member that stopped being the target
//    (leader change),
//  - close everything on shutdown.
// Thread-safe (one mutex; calls are short and never do I/O). Sessions are closed through
// the closer they registered, which posts to the session's own worker thread.
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "portal/relay/endpoint.hpp"
#include "portal/wire/startup.hpp"

namespace tandem::portal::relay {

using SessionId = std::uint64_t;
// Asks a session to close; `reason` is logged by the session. Must not block.
using SessionCloser = std::function<void(const std::string& reason)>;

struct SessionSummary {
  SessionId id = 0;
  std::string listener;
  std::optional<Endpoint> endpoint;
  bool has_cancel_key = false;
};

class SessionRegistry {
 public:
  SessionId add(std::string listener, SessionCloser closer);
  void remove(SessionId id);
  void set_endpoint(SessionId id, const Endpoint& endpoint);
  void set_cancel_key(SessionId id, const wire::CancelKey& key);

  // The member that gave out `key`, if a session here holds it.
  std::optional<Endpoint> find_cancel_target(const wire::CancelKey& key) const;

  // Closes sessions attached to an endpoint for which `pred` is true; returns how many.
  std::size_t close_attached_if(const std::function<bool(const Endpoint&)>& pred, const std::string& reason);
  // Closes every session of `listener` (attached or not); returns how many.
  std::size_t close_listener(const std::string& listener, const std::string& reason);

  std::size_t size() const;
  std::vector<SessionSummary> snapshot() const;

 private:
  struct Entry {
    std::string listener;
    SessionCloser closer;
    std::optional<Endpoint> endpoint;
    std::optional<wire::CancelKey> cancel_key;
  };

  mutable std::mutex mu_;
  SessionId next_id_ = 1;
  std::map<SessionId, Entry> sessions_;
};

}  // namespace tandem::portal::relay
