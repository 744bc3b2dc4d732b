#pragma once
// Routing of the whole REST API: GET endpoints to handle_get(), POST/DELETE to
// handle_control(), with method checks and optional Basic auth on unsafe methods.
#include <cstdint>

#include "api/basic_auth.hpp"
#include "api/control.hpp"
#include "api/health.hpp"
#include "api/http_server.hpp"
#include "api/member_view.hpp"

namespace tandem::api {

// Answers one request. `view` is nullptr before the agent published its first view:
// GET endpoints then answer 503 (role "uninitialized", state "starting").
Response route(const MemberView* view, AgentControl& control, const ApiAuth& auth, const Request& req, int64_t now_ms);

// The handler to give HttpServer: reads the current view from `publisher` per request.
// `publisher` and `control` must outlive the server.
HttpServer::Handler make_handler(const ViewPublisher& publisher, AgentControl& control, ApiAuth auth = {});

}  // namespace tandem::api
