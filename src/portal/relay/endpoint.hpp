#pragma once
// Where the relay sends a session: one PostgreSQL member, and how to reach it.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include <fmt/format.h>

namespace tandem::portal::relay {

struct Endpoint {
  std::string member;  // member name, for logs and metrics ("pg1")
  std::string host;    // an IP address or a DNS name
  std::uint16_t port = 0;
  bool tls = false;             // SSLRequest + TLS to the member, verifying its certificate
  std::string tls_server_name;  // name expected in the member's certificate; `host` when empty

  bool operator==(const Endpoint&) const = default;
  std::string describe() const {
    return fmt::format("{} at {}:{}{}", member.empty() ? "member" : member, host, port, tls ? " (TLS)" : "");
  }
};

// Picks the endpoint for a new session, or nullopt when there is nowhere to go right now
// (no leader). Called on worker threads, concurrently: it must be thread-safe and must
// not block (read a snapshot, never do I/O).
using RouteFn = std::function<std::optional<Endpoint>()>;

// True while a session that found no route should wait for one (a leader change is in
// progress) rather than be refused. Same threading rules as RouteFn.
using HoldFn = std::function<bool()>;

}  // namespace tandem::portal::relay
