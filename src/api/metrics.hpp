#pragma once
// Prometheus text exposition (format 0.0.4) of one member's state, for GET /metrics.
#include <cstdint>
#include <string>
#include <string_view>

#include "api/member_view.hpp"

namespace tandem::api {

// Every series carries cluster="..." and member="..." labels; series whose value is
// unknown (e.g. lag of a replica that does not know the leader's position) are omitted.
std::string render_metrics(const MemberView& view, int64_t now_ms);

// Escapes a label value: backslash, double quote and newline.
std::string escape_label_value(std::string_view v);

}  // namespace tandem::api
