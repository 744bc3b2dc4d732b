// libFuzzer target for the portal's wire codec: the client start-up decoder in every
// phase, and the server-message scanner fed in random-sized chunks. Besides crashes and
// sanitizer reports, it checks the decoder's promises: a packet never claims more bytes
// than it was given, and "need more" always asks for more than it has.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <variant>

#include "portal/wire/backend.hpp"
#include "portal/wire/startup.hpp"

namespace wire = tandem::portal::wire;

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

void fuzz_startup(std::span<const std::uint8_t> data, wire::StartupPhase phase) {
  const auto result = wire::decode_startup(data, phase);
  if (const auto* p = std::get_if<wire::StartupPacket>(&result)) {
    check(p->length <= data.size());
    check(p->length <= wire::kMaxStartupPacketLength + 4);
    if (p->kind == wire::StartupKind::startup) {
      check(!p->param("user").empty());
      // Re-encoding a decoded StartupMessage gives back the same bytes.
      const auto again = wire::encode_startup(p->params, p->protocol);
      check(again.size() == p->length);
      check(std::equal(again.begin(), again.end(), data.begin()));
    }
    if (p->kind == wire::StartupKind::cancel_request) {
      const auto again = wire::encode_cancel_request(p->cancel);
      check(std::equal(again.begin(), again.end(), data.begin()));
    }
  } else if (const auto* more = std::get_if<wire::NeedMore>(&result)) {
    check(more->at_least > data.size());
    check(more->at_least <= wire::kMaxStartupPacketLength + 4);
  } else {
    check(!std::get<wire::Reject>(result).reason.empty());
  }
}

void fuzz_scanner(std::span<const std::uint8_t> data) {
  if (data.empty()) return;
  // The first byte picks the chunk size, so message boundaries fall everywhere.
  const std::size_t chunk = 1 + data[0] % 17;
  data = data.subspan(1);
  wire::BackendScanner scanner;
  for (std::size_t at = 0; at < data.size(); at += chunk) {
    scanner.feed(data.subspan(at, std::min(chunk, data.size() - at)));
  }
  if (const auto& key = scanner.state().backend_key) {
    check(key->secret.size() >= wire::kMinCancelSecretLength && key->secret.size() <= wire::kMaxCancelSecretLength);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> bytes(data, size);
  for (auto phase : {wire::StartupPhase::initial, wire::StartupPhase::after_gss_no, wire::StartupPhase::in_tls}) {
    fuzz_startup(bytes, phase);
  }
  fuzz_scanner(bytes);
  return 0;
}
