#pragma once
// The pure GET side of the REST API: Patroni-compatible health endpoints (/primary,
// /replica?lag=, /read-only, /sync, ...), member and cluster status, history, config and
// metrics. No sockets and no clocks: the caller passes the view and `now_ms`.
#include <cstdint>
#include <optional>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

#include "api/http_types.hpp"
#include "api/member_view.hpp"

namespace tandem::api {

// Answers a GET (or HEAD, which the server turns into GET) for `req.path`. Unknown paths
// get 404. Health endpoints answer 200 or 503 with the member status as body.
Response handle_get(const MemberView& view, const Request& req, int64_t now_ms);

// True when `path` is served by handle_get().
bool is_get_path(std::string_view path);

// Parses a byte size: "1048576", "16kB", "10MB", "1GB", "2TB" (1024-based units as in
// PostgreSQL; unit letters are case-insensitive, "B" and "iB" suffixes are optional).
std::optional<int64_t> parse_byte_size(std::string_view text);

// The JSON status of this member (body of /, /status and every health endpoint).
nlohmann::json member_status_json(const MemberView& view);

// The JSON of the whole cluster as this member last saw it (body of /cluster).
nlohmann::json cluster_json(const MemberView& view);

// How far `view`'s member is behind the leader in bytes: the agent's figure when it gave
// one, else computed from the leader's WAL position in the snapshot; 0 for the leader.
std::optional<int64_t> effective_lag(const MemberView& view);

}  // namespace tandem::api
