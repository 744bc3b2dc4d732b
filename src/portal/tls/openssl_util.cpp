#include "portal/tls/openssl_util.hpp"

#include <openssl/err.h>

namespace tandem::portal::tls {

std::string openssl_errors() {
  std::string out;
  char buf[256];
  while (unsigned long e = ERR_get_error()) {
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "no detail from OpenSSL" : out;
}

void clear_openssl_errors() {
  ERR_clear_error();
}

}  // namespace tandem::portal::tls
