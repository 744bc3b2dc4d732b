#include "portal/wire/startup.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "portal/wire/byte_order.hpp"

namespace tandem::portal::wire {

namespace {

constexpr std::size_t kHeaderLength = 8;  // length word + request code / protocol version
constexpr std::size_t kMaxTotalLength = kMaxStartupPacketLength + 4;
constexpr const char* kProtocolViolation = "08P01";
constexpr const char* kFeatureNotSupported = "0A000";
constexpr const char* kInvalidAuthorization = "28000";

Reject protocol_violation(std::string reason) {
  return Reject{kProtocolViolation, std::move(reason)};
}

// The smallest length the first bytes of a length word allow; lets garbage be rejected
// after its first byte instead of waiting for four.
std::uint64_t min_possible_length(std::span<const std::uint8_t> buf) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < 4; ++i) v = (v << 8) | (i < buf.size() ? buf[i] : 0);
  return v;
}

std::string describe_version(std::uint32_t code) {
  return fmt::format("{}.{}", code >> 16, code & 0xFFFF);
}

// Reads a NUL-terminated string in buf[pos, end); nullopt-like false when no NUL is there.
bool read_cstring(std::span<const std::uint8_t> buf, std::size_t& pos, std::size_t end, std::string& out) {
  const auto* begin = buf.data() + pos;
  const auto* stop = buf.data() + end;
  const auto* nul = std::find(begin, stop, std::uint8_t{0});
  if (nul == stop) return false;
  out.assign(reinterpret_cast<const char*>(begin), static_cast<std::size_t>(nul - begin));
  pos += static_cast<std::size_t>(nul - begin) + 1;
  return true;
}

StartupResult decode_cancel(std::span<const std::uint8_t> buf, std::size_t len) {
  if (len < kHeaderLength + 4 + kMinCancelSecretLength || len > kHeaderLength + 4 + kMaxCancelSecretLength) {
    return protocol_violation(fmt::format("invalid length of cancel request packet: {} bytes", len));
  }
  if (buf.size() < len) return NeedMore{len};
  StartupPacket p;
  p.kind = StartupKind::cancel_request;
  p.length = len;
  p.cancel.pid = read_u32(buf, kHeaderLength);
  p.cancel.secret.assign(buf.begin() + kHeaderLength + 4, buf.begin() + static_cast<std::ptrdiff_t>(len));
  return p;
}

StartupResult decode_startup_message(std::span<const std::uint8_t> buf, std::size_t len, std::uint32_t version) {
  if (version >> 16 != 3) {
    return Reject{kFeatureNotSupported, fmt::format("unsupported frontend protocol {}: server supports 3.0 to 3.x",
                                                    describe_version(version))};
  }
  if (buf.size() < len) return NeedMore{len};
  StartupPacket p;
  p.kind = StartupKind::startup;
  p.length = len;
  p.protocol = version;
  std::size_t pos = kHeaderLength;
  while (true) {
    if (pos >= len) return protocol_violation("invalid startup packet layout: expected terminator as last byte");
    if (buf[pos] == 0) {
      if (pos != len - 1) return protocol_violation("invalid startup packet layout: expected terminator as last byte");
      break;
    }
    StartupParam param;
    if (!read_cstring(buf, pos, len, param.name)) {
      return protocol_violation("invalid startup packet layout: parameter name is not NUL-terminated");
    }
    if (!read_cstring(buf, pos, len, param.value)) {
      return protocol_violation(
          fmt::format("invalid startup packet layout: missing value for parameter \"{}\"", param.name.substr(0, 64)));
    }
    p.params.push_back(std::move(param));
  }
  if (p.param("user").empty()) {
    return Reject{kInvalidAuthorization, "no PostgreSQL user name specified in startup packet"};
  }
  return p;
}

}  // namespace

const char* startup_kind_name(StartupKind kind) {
  switch (kind) {
    case StartupKind::ssl_request: return "SSLRequest";
    case StartupKind::gssenc_request: return "GSSENCRequest";
    case StartupKind::cancel_request: return "CancelRequest";
    case StartupKind::startup: return "StartupMessage";
    case StartupKind::direct_tls: return "direct TLS";
  }
  return "unknown";
}

std::string_view StartupPacket::param(std::string_view name) const {
  for (const auto& p : params) {
    if (p.name == name) return p.value;
  }
  return {};
}

StartupResult decode_startup(std::span<const std::uint8_t> buf, StartupPhase phase) {
  if (buf.empty()) return NeedMore{1};
  if (buf[0] == kTlsHandshakeRecord) {
    if (phase != StartupPhase::initial) {
      return protocol_violation("a TLS handshake is only accepted as the first bytes of a connection");
    }
    StartupPacket p;
    p.kind = StartupKind::direct_tls;
    return p;
  }
  if (min_possible_length(buf) > kMaxTotalLength) return protocol_violation("invalid length of startup packet");
  if (buf.size() < kHeaderLength) return NeedMore{kHeaderLength};
  const std::size_t len = read_u32(buf, 0);
  if (len < kHeaderLength) return protocol_violation("invalid length of startup packet");
  const std::uint32_t code = read_u32(buf, 4);
  switch (code) {
    case kSslRequestCode:
    case kGssEncRequestCode: {
      const bool ssl = code == kSslRequestCode;
      const char* what = ssl ? "SSLRequest" : "GSSENCRequest";
      if (len != kHeaderLength) return protocol_violation(fmt::format("invalid length of {} packet: {}", what, len));
      if (phase == StartupPhase::in_tls) return protocol_violation(fmt::format("{} received inside TLS", what));
      if (!ssl && phase == StartupPhase::after_gss_no) return protocol_violation("GSSENCRequest received twice");
      StartupPacket p;
      p.kind = ssl ? StartupKind::ssl_request : StartupKind::gssenc_request;
      p.length = kHeaderLength;
      return p;
    }
    case kCancelRequestCode: return decode_cancel(buf, len);
    default: return decode_startup_message(buf, len, code);
  }
}

std::vector<std::uint8_t> encode_startup(const std::vector<StartupParam>& params, std::uint32_t protocol) {
  std::vector<std::uint8_t> out;
  append_u32(out, 0);
  append_u32(out, protocol);
  for (const auto& p : params) {
    out.insert(out.end(), p.name.begin(), p.name.end());
    out.push_back(0);
    out.insert(out.end(), p.value.begin(), p.value.end());
    out.push_back(0);
  }
  out.push_back(0);
  write_u32(out, 0, static_cast<std::uint32_t>(out.size()));
  return out;
}

std::vector<std::uint8_t> encode_request_code(std::uint32_t code) {
  std::vector<std::uint8_t> out;
  append_u32(out, static_cast<std::uint32_t>(kHeaderLength));
  append_u32(out, code);
  return out;
}

std::vector<std::uint8_t> encode_cancel_request(const CancelKey& key) {
  std::vector<std::uint8_t> out;
  append_u32(out, static_cast<std::uint32_t>(kHeaderLength + 4 + key.secret.size()));
  append_u32(out, kCancelRequestCode);
  append_u32(out, key.pid);
  out.insert(out.end(), key.secret.begin(), key.secret.end());
  return out;
}

}  // namespace tandem::portal::wire
