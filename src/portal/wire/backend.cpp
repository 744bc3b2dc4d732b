#include "portal/wire/backend.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "portal/wire/byte_order.hpp"

namespace tandem::portal::wire {

namespace {

constexpr std::uint8_t kErrorResponse = 'E';
constexpr std::uint8_t kBackendKeyData = 'K';
constexpr std::uint8_t kReadyForQuery = 'Z';
// The largest body the scanner keeps for BackendKeyData: pid + the longest secret.
constexpr std::size_t kMaxKeyBody = 4 + kMaxCancelSecretLength;

void append_field(std::vector<std::uint8_t>& out, char code, std::string_view value) {
  out.push_back(static_cast<std::uint8_t>(code));
  // An embedded NUL would end the field early; cut the value there.
  value = value.substr(0, value.find('\0'));
  out.insert(out.end(), value.begin(), value.end());
  out.push_back(0);
}

}  // namespace

std::vector<std::uint8_t> encode_error_response(const ErrorFields& f) {
  std::vector<std::uint8_t> out;
  out.reserve(16 + f.severity.size() * 2 + f.sqlstate.size() + f.message.size() + f.detail.size() + f.hint.size());
  out.push_back(kErrorResponse);
  append_u32(out, 0);
  append_field(out, 'S', f.severity);
  append_field(out, 'V', f.severity);
  append_field(out, 'C', f.sqlstate);
  append_field(out, 'M', f.message);
  if (!f.detail.empty()) append_field(out, 'D', f.detail);
  if (!f.hint.empty()) append_field(out, 'H', f.hint);
  out.push_back(0);
  write_u32(out, 1, static_cast<std::uint32_t>(out.size() - 1));
  return out;
}

const ScanState& BackendScanner::feed(std::span<const std::uint8_t> chunk) {
  std::size_t pos = 0;
  while (pos < chunk.size() && !done()) {
    if (header_have_ < sizeof header_) {
      const std::size_t take = std::min(sizeof header_ - header_have_, chunk.size() - pos);
      std::copy_n(chunk.begin() + static_cast<std::ptrdiff_t>(pos), take, header_ + header_have_);
      header_have_ += take;
      pos += take;
      if (header_have_ == sizeof header_) on_message_start();
      continue;
    }
    const std::size_t take = std::min(payload_left_, chunk.size() - pos);
    on_payload(chunk.subspan(pos, take));
    payload_left_ -= take;
    pos += take;
    if (payload_left_ == 0) on_message_end();
  }
  return state_;
}

void BackendScanner::on_message_start() {
  type_ = header_[0];
  const std::uint32_t len = read_u32(std::span<const std::uint8_t>(header_, sizeof header_), 1);
  if (len < 4) {
    state_.protocol_error = fmt::format("backend message '{}' has invalid length {}", static_cast<char>(type_), len);
    return;
  }
  payload_left_ = len - 4;
  key_.clear();
  if (type_ == kBackendKeyData && (payload_left_ < 4 + kMinCancelSecretLength || payload_left_ > kMaxKeyBody)) {
    state_.protocol_error = fmt::format("BackendKeyData has invalid length {}", len);
    return;
  }
  if (payload_left_ == 0) on_message_end();
}

void BackendScanner::on_payload(std::span<const std::uint8_t> bytes) {
  if (type_ == kBackendKeyData) key_.insert(key_.end(), bytes.begin(), bytes.end());
}

void BackendScanner::on_message_end() {
  switch (type_) {
    case kBackendKeyData: {
      CancelKey key;
      key.pid = read_u32(key_, 0);
      key.secret.assign(key_.begin() + 4, key_.end());
      state_.backend_key = std::move(key);
      break;
    }
    case kReadyForQuery: state_.ready_for_query = true; break;
    case kErrorResponse: state_.error = true; break;
    default: break;
  }
  header_have_ = 0;
}

}  // namespace tandem::portal::wire
