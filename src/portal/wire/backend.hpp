#pragma once
// Backend (server → client) messages the portal writes or watches for:
// - encode_error_response(): the ErrorResponse the portal itself sends when it refuses a
//   client (TLS required, protocol violation, no leader), before any backend exists.
// - BackendScanner: follows the server → client stream during session start-up to learn
//   the BackendKeyData (for cancel forwarding) and to see ReadyForQuery, after which the
//   relay stops looking at messages. Pure: fed byte chunks as they arrive, split anywhere.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "portal/wire/startup.hpp"

namespace tandem::portal::wire {

// Single-byte answers to SSLRequest / GSSENCRequest.
inline constexpr std::uint8_t kAcceptTls = 'S';
inline constexpr std::uint8_t kRefuse = 'N';

// SQLSTATEs the portal uses.
namespace sqlstate {
inline constexpr std::string_view kInvalidAuthorization = "28000";  // e.g. TLS required
inline constexpr std::string_view kProtocolViolation = "08P01";
inline constexpr std::string_view kConnectionFailure = "08006";
inline constexpr std::string_view kCannotConnectNow = "57P03";  // no leader right now
inline constexpr std::string_view kTooManyConnections = "53300";
inline constexpr std::string_view kFeatureNotSupported = "0A000";
}  // namespace sqlstate

struct ErrorFields {
  std::string_view severity = "FATAL";  // FATAL for every error the portal sends itself
  std::string_view sqlstate;
  std::string_view message;
  std::string_view detail;  // optional
  std::string_view hint;    // optional
};

// An ErrorResponse ('E') with fields S, V, C, M and optional D and H.
std::vector<std::uint8_t> encode_error_response(const ErrorFields& fields);

// What the scanner has seen so far.
struct ScanState {
  std::optional<CancelKey> backend_key;       // from BackendKeyData ('K')
  bool ready_for_query = false;               // a ReadyForQuery ('Z') ended start-up
  bool error = false;                         // an ErrorResponse ('E') came during start-up
  std::optional<std::string> protocol_error;  // the stream is not a PostgreSQL message stream
};

// Follows message boundaries in the server → client stream. Owned by one session, used
// on that session's thread only.
class BackendScanner {
 public:
  // Consumes all of `chunk`. Once ready_for_query or protocol_error is set, further bytes
  // are ignored (the caller stops feeding).
  const ScanState& feed(std::span<const std::uint8_t> chunk);
  const ScanState& state() const { return state_; }
  bool done() const { return state_.ready_for_query || state_.protocol_error.has_value(); }

 private:
  void on_message_start();
  void on_payload(std::span<const std::uint8_t> bytes);
  void on_message_end();

  ScanState state_;
  std::uint8_t header_[5] = {};  // type byte + length word, filled across chunks
  std::size_t header_have_ = 0;
  std::uint8_t type_ = 0;
  std::size_t payload_left_ = 0;   // bytes of the current message body still to come
  std::vector<std::uint8_t> key_;  // BackendKeyData body, collected across chunks
};

}  // namespace tandem::portal::wire
