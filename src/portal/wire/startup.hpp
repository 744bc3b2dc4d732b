#pragma once
// Pure decoder for the first packets a PostgreSQL client sends (before any backend is
// involved): SSLRequest, GSSENCRequest, CancelRequest, StartupMessage, or the first byte
// of a direct TLS ClientHello (PostgreSQL 17 `sslnegotiation=direct`).
//
// decode_startup() is stateless: the caller keeps the bytes received so far and calls it
// again after every read until it answers Ready or Reject. It never reads past the span
// it is given and allocates only for the decoded message itself.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace tandem::portal::wire {

// Request codes sent in place of a protocol version (PostgreSQL's pqcomm.h).
inline constexpr std::uint32_t kCancelRequestCode = 80877102;  // 1234.5678
inline constexpr std::uint32_t kSslRequestCode = 80877103;     // 1234.5679
inline constexpr std::uint32_t kGssEncRequestCode = 80877104;  // 1234.5680
inline constexpr std::uint32_t kProtocol30 = 196608;           // 3.0
inline constexpr std::uint8_t kTlsHandshakeRecord = 0x16;      // first byte of a TLS ClientHello

// PostgreSQL's MAX_STARTUP_PACKET_LENGTH: the length word excluded, as the server counts it.
inline constexpr std::size_t kMaxStartupPacketLength = 10000;
// Secret keys of BackendKeyData / CancelRequest: 4 bytes in protocol 3.0, up to 256 in 3.2.
inline constexpr std::size_t kMinCancelSecretLength = 4;
inline constexpr std::size_t kMaxCancelSecretLength = 256;

// Where in the negotiation the client is; the same bytes mean different things.
enum class StartupPhase {
  initial,       // nothing received yet: direct TLS, SSLRequest, GSSENCRequest, cancel or startup
  after_gss_no,  // we answered 'N' to GSSENCRequest: SSLRequest, cancel or startup may follow
  in_tls,        // inside TLS: only a StartupMessage or a CancelRequest is allowed
};

enum class StartupKind {
  ssl_request,     // answer 'S' (or 'N') and start TLS
  gssenc_request,  // answer 'N' and decode the next packet
  cancel_request,  // forward to the backend that owns the key, then close
  startup,         // a StartupMessage to forward to the backend
  direct_tls,      // the client started TLS at once; no bytes consumed
};

const char* startup_kind_name(StartupKind kind);

struct StartupParam {
  std::string name;
  std::string value;
  bool operator==(const StartupParam&) const = default;
};

// The key that identifies a backend for CancelRequest (from BackendKeyData).
struct CancelKey {
  std::uint32_t pid = 0;
  std::vector<std::uint8_t> secret;  // 4 bytes in protocol 3.0
  bool operator==(const CancelKey&) const = default;
};

struct StartupPacket {
  StartupKind kind = StartupKind::startup;
  std::size_t length = 0;            // bytes this packet occupies at the start of the buffer
  std::uint32_t protocol = 0;        // StartupMessage: requested protocol version
  std::vector<StartupParam> params;  // StartupMessage: key/value pairs in the order sent
  CancelKey cancel;                  // CancelRequest: the key to cancel

  // The value of a StartupMessage parameter, or empty when absent.
  std::string_view param(std::string_view name) const;
  std::uint16_t protocol_major() const { return static_cast<std::uint16_t>(protocol >> 16); }
  std::uint16_t protocol_minor() const { return static_cast<std::uint16_t>(protocol & 0xFFFF); }
};

// More bytes are needed; `at_least` is how many bytes the buffer must hold in total.
struct NeedMore {
  std::size_t at_least = 0;
};

// The client broke the protocol. `sqlstate` and `reason` go into the ErrorResponse (or
// the log line when we cannot answer), e.g. 08P01 "invalid length of startup packet".
struct Reject {
  std::string sqlstate;
  std::string reason;
};

using StartupResult = std::variant<NeedMore, StartupPacket, Reject>;

// Decodes the packet at the start of `buf`.
StartupResult decode_startup(std::span<const std::uint8_t> buf, StartupPhase phase);

// Encodes a StartupMessage (used by tests and by the portal's own health probes).
std::vector<std::uint8_t> encode_startup(const std::vector<StartupParam>& params, std::uint32_t protocol = kProtocol30);
// Encodes an SSLRequest or GSSENCRequest (8 bytes).
std::vector<std::uint8_t> encode_request_code(std::uint32_t code);
// Encodes a CancelRequest.
std::vector<std::uint8_t> encode_cancel_request(const CancelKey& key);

}  // namespace tandem::portal::wire
