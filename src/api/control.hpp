#pragma once
// The POST side of the REST API: operator actions the agent carries out.
#include <cstdint>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "api/http_types.hpp"
#include "base/result.hpp"

namespace tandem::api {

// Implemented by the agent (src/ha). Calls come from API threads, concurrently with the
// agent's own loop, so implementations hand the request to the HA thread (or write the
// DCS) and return a sentence saying what happened or was scheduled. Errors use Errc;
// the API maps them to HTTP statuses in one place (http_status_for).
class AgentControl {
 public:
  virtual ~AgentControl() = default;
  // Planned switchover away from `leader` (which must be the current leader) to
  // `candidate` (empty: the healthiest replica), now or at `scheduled_at_ms` (unix ms; 0 = now).
  virtual Result<std::string> switchover(const std::string& leader, const std::string& candidate,
                                         int64_t scheduled_at_ms) = 0;
  // Manual failover to `candidate`, also when there is no healthy leader.
  virtual Result<std::string> failover(const std::string& candidate) = 0;
  // Cancels a scheduled switchover.
  virtual Result<std::string> cancel_switchover() = 0;
  // Restarts this member's PostgreSQL.
  virtual Result<std::string> restart() = 0;
  // Wipes this replica's data and clones it again from the leader; `force` also when
  // PostgreSQL is running.
  virtual Result<std::string> reinitialize(bool force) = 0;
  // Rebuilds this replica from the latest backup plus archived WAL instead of the
  // leader, then streams from the leader. Agents without a backup repository refuse.
  virtual Result<std::string> reinitialize_from_backup() {
    return make_error(Errc::invalid_argument, "this agent cannot reinitialize from a backup");
  }
  // Enters (true) or leaves (false) maintenance mode for the whole cluster.
  virtual Result<std::string> pause(bool paused) = 0;
};

// Answers POST /switchover, /failover, /restart, /reinitialize, /pause, /resume and
// DELETE /switchover. Validates the JSON body (unknown keys are errors) and calls `control`.
Response handle_control(AgentControl& control, const Request& req);

// True when `path` is served by handle_control(); `allowed` receives its methods ("POST, DELETE").
bool is_control_path(std::string_view path, std::string* allowed = nullptr);

// A schedule given as ISO-8601 text or unix milliseconds (integer or digit string).
Result<int64_t> parse_schedule(const nlohmann::json& value);

}  // namespace tandem::api
