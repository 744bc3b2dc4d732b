#include "portal/relay/session_registry.hpp"

namespace tandem::portal::relay {

SessionId SessionRegistry::add(std::string listener, SessionCloser closer) {
  std::lock_guard lock(mu_);
  const SessionId id = next_id_++;
  sessions_.emplace(id, Entry{std::move(listener), std::move(closer), std::nullopt, std::nullopt});
  return id;
}

void SessionRegistry::remove(SessionId id) {
  std::lock_guard lock(mu_);
  sessions_.erase(id);
}

void SessionRegistry::set_endpoint(SessionId id, const Endpoint& endpoint) {
  std::lock_guard lock(mu_);
  if (auto it = sessions_.find(id); it != sessions_.end()) it->second.endpoint = endpoint;
}

void SessionRegistry::set_cancel_key(SessionId id, const wire::CancelKey& key) {
  std::lock_guard lock(mu_);
  if (auto it = sessions_.find(id); it != sessions_.end()) it->second.cancel_key = key;
}

std::optional<Endpoint> SessionRegistry::find_cancel_target(const wire::CancelKey& key) const {
  std::lock_guard lock(mu_);
  for (const auto& [id, e] : sessions_) {
    if (e.cancel_key && *e.cancel_key == key && e.endpoint) return e.endpoint;
  }
  return std::nullopt;
}

std::size_t SessionRegistry::close_attached_if(const std::function<bool(const Endpoint&)>& pred,
                                               const std::string& reason) {
  std::vector<SessionCloser> to_close;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, e] : sessions_) {
      if (e.endpoint && pred(*e.endpoint)) to_close.push_back(e.closer);
    }
  }
  // Outside the lock: a closer may run the session's close() inline, which calls remove().
  for (auto& close : to_close) close(reason);
  return to_close.size();
}

std::size_t SessionRegistry::close_listener(const std::string& listener, const std::string& reason) {
  std::vector<SessionCloser> to_close;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, e] : sessions_) {
      if (e.listener == listener) to_close.push_back(e.closer);
    }
  }
  for (auto& close : to_close) close(reason);
  return to_close.size();
}

std::size_t SessionRegistry::size() const {
  std::lock_guard lock(mu_);
  return sessions_.size();
}

std::vector<SessionSummary> SessionRegistry::snapshot() const {
  std::lock_guard lock(mu_);
  std::vector<SessionSummary> out;
  out.reserve(sessions_.size());
  for (const auto& [id, e] : sessions_) out.push_back({id, e.listener, e.endpoint, e.cancel_key.has_value()});
  return out;
}

}  // namespace tandem::portal::relay
