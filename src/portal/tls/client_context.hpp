#pragma once
// The portal's TLS client side, for portal → member connections when the member is
// remote: verifies the member's certificate against a CA file and checks that it was
// issued for the host name (or IP address) the portal dialled. TLS 1.2 minimum, offers
// ALPN "postgresql" (PostgreSQL 17 rejects other ALPN values, older servers ignore it).
#include <memory>
#include <string>

#include "base/result.hpp"
#include "portal/tls/server_context.hpp"

namespace tandem::portal::tls {

struct ClientTlsOptions {
  std::string ca_file;  // PEM bundle of trusted CAs (the deployment CA)
};

[[nodiscard]] Result<std::shared_ptr<SslContext>> make_client_context(const ClientTlsOptions& opts);

// Per connection, before the handshake: sends SNI (for DNS names) and makes the
// handshake fail unless the certificate matches `host` (a DNS name or an IP address).
[[nodiscard]] Status expect_server_identity(SSL* ssl, const std::string& host);

}  // namespace tandem::portal::tls
