#pragma once
// Time used by decisions. Decisions take `now` as an argument; only I/O code reads clocks.
#include <chrono>

namespace tandem {

using SteadyClock = std::chrono::steady_clock;
using TimePoint = SteadyClock::time_point;
using Millis = std::chrono::milliseconds;
using Seconds = std::chrono::seconds;

inline int64_t unix_millis_now() {
  return std::chrono::duration_cast<Millis>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace tandem
