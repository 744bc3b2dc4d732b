#pragma once
// ISO-8601 timestamps for the REST API (status times, scheduled switchovers).
#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.hpp"

namespace tandem::api {

// "2024-05-01T12:30:00.123Z" for unix milliseconds.
std::string format_iso8601(int64_t unix_ms);

// Parses "2024-05-01T12:30:00Z", "2024-05-01T12:30:00.5+02:00", "2024-05-01 12:30:00+0200"
// into unix milliseconds. A time zone (Z or an offset) is required so a schedule never
// depends on the server's local time.
Result<int64_t> parse_iso8601(std::string_view text);

}  // namespace tandem::api
