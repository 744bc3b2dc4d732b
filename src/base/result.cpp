#include "base/result.hpp"

namespace tandem {

const char* errc_name(Errc c) {
  switch (c) {
    case Errc::ok: return "ok";
    case Errc::invalid_argument: return "invalid argument";
    case Errc::not_found: return "not found";
    case Errc::conflict: return "conflict";
    case Errc::timeout: return "timeout";
    case Errc::unavailable: return "unavailable";
    case Errc::io: return "i/o error";
    case Errc::protocol: return "protocol error";
    case Errc::permission_denied: return "permission denied";
    case Errc::internal: return "internal error";
  }
  return "unknown";
}

}  // namespace tandem
