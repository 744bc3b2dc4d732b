#include "portal/relay/route.hpp"

namespace tandem::portal::relay {

std::size_t CurrentRoute::set(std::optional<Endpoint> target, const std::string& reason) {
  auto next = std::make_shared<const std::optional<Endpoint>>(std::move(target));
  target_.store(next, std::memory_order_release);
  if (registry_ == nullptr) return 0;
  return registry_->close_attached_if([&](const Endpoint& e) { return !next->has_value() || e != next->value(); },
                                      reason);
}

std::optional<Endpoint> CurrentRoute::get() const {
  return *target_.load(std::memory_order_acquire);
}

}  // namespace tandem::portal::relay
