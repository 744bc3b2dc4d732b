#pragma once
// Settings and counters shared by every session of one relay listener.
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace tandem::portal::relay {

struct RelayOptions {
  bool allow_plaintext = false;  // accept StartupMessage without TLS (otherwise 28000)
  // From accept until the StartupMessage is complete, TLS handshake included.
  std::chrono::milliseconds handshake_timeout{10'000};
  // Connecting to the member (and its TLS handshake, when used).
  std::chrono::milliseconds connect_timeout{5'000};
  // A session with no bytes either way for this long is closed; zero disables it.
  std::chrono::milliseconds idle_timeout{0};
  // Bytes per direction per session, allocated once; at least kMinBufferSize.
  std::size_t buffer_size = 64 * 1024;
  std::size_t max_sessions = 1000;  // concurrent client connections per listener
  // While the listener's HoldFn says a leader change is in progress, a new session with no
  // route waits up to this long (re-checking every hold_retry) instead of being refused;
  // zero refuses at once.
  std::chrono::milliseconds hold_timeout{0};
  std::chrono::milliseconds hold_retry{20};
};

// A floor for buffer_size, so a misconfiguration cannot make the relay crawl.
inline constexpr std::size_t kMinBufferSize = 16 * 1024;

// Monotonic counters and one gauge, read by /metrics. Updated with relaxed atomics from
// any worker thread.
struct RelayCounters {
  std::atomic<std::uint64_t> accepted{0};
  std::atomic<std::int64_t> active{0};  // gauge: sessions alive (negotiating or relaying)
  std::atomic<std::uint64_t> routed{0};
  std::atomic<std::uint64_t> relayed_by_loop{0};  // sessions a RelayLoop relayed (member side plain TCP)
  std::atomic<std::uint64_t> spliced{0};          // ... of which plain TCP on both sides (splice)
  std::atomic<std::uint64_t> tls_sessions{0};
  std::atomic<std::uint64_t> tls_handshake_failures{0};
  std::atomic<std::uint64_t> rejected_plaintext{0};
  std::atomic<std::uint64_t> rejected_protocol{0};
  std::atomic<std::uint64_t> rejected_too_many{0};
  std::atomic<std::uint64_t> no_route{0};
  std::atomic<std::uint64_t> held{0};           // sessions that waited for a route
  std::atomic<std::uint64_t> hold_timeouts{0};  // ... and were refused when none came in time
  std::atomic<std::int64_t> holding{0};         // gauge: sessions waiting for a route now
  std::atomic<std::uint64_t> backend_failures{0};
  std::atomic<std::uint64_t> timeouts{0};
  std::atomic<std::uint64_t> cancels_forwarded{0};
  std::atomic<std::uint64_t> cancels_unmatched{0};
  std::atomic<std::uint64_t> bytes_to_server{0};
  std::atomic<std::uint64_t> bytes_to_client{0};
};

}  // namespace tandem::portal::relay
