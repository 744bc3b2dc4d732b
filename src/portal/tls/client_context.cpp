#include "portal/tls/client_context.hpp"

#include <arpa/inet.h>

#include <fmt/format.h>
#include <openssl/x509v3.h>

#include "portal/tls/openssl_util.hpp"

namespace tandem::portal::tls {

namespace {

constexpr unsigned char kAlpnWire[] = {10, 'p', 'o', 's', 't', 'g', 'r', 'e', 's', 'q', 'l'};

bool is_ip_address(const std::string& host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

}  // namespace

Result<std::shared_ptr<SslContext>> make_client_context(const ClientTlsOptions& opts) {
  clear_openssl_errors();
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) return make_error(Errc::internal, "creating a TLS client context: {}", openssl_errors());
  SSL_CTX* c = ctx.get();
  if (SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION) != 1 || SSL_CTX_set_cipher_list(c, kTls12Ciphers) != 1 ||
      SSL_CTX_set_ciphersuites(c, kTls13Suites) != 1 || SSL_CTX_set1_groups_list(c, kGroups) != 1) {
    return make_error(Errc::internal, "configuring a TLS client context: {}", openssl_errors());
  }
  SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_NO_TICKET);
  if (opts.ca_file.empty()) {
    return make_error(Errc::invalid_argument, "TLS to a member needs a CA file to verify its certificate");
  }
  if (SSL_CTX_load_verify_locations(c, opts.ca_file.c_str(), nullptr) != 1) {
    return make_error(Errc::invalid_argument, "loading CA file {} (expected PEM certificates): {}", opts.ca_file,
                      openssl_errors());
  }
  SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nullptr);
  if (SSL_CTX_set_alpn_protos(c, kAlpnWire, sizeof kAlpnWire) != 0) {
    return make_error(Errc::internal, "setting ALPN: {}", openssl_errors());
  }
  return std::make_shared<SslContext>(ctx.release());
}

Status expect_server_identity(SSL* ssl, const std::string& host) {
  if (host.empty()) return make_error(Errc::invalid_argument, "TLS to a member needs its host name to verify it");
  if (is_ip_address(host)) {
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str()) != 1) {
      return make_error(Errc::invalid_argument, "'{}' is not a usable IP address: {}", host, openssl_errors());
    }
    return {};
  }
  if (SSL_set_tlsext_host_name(ssl, host.c_str()) != 1 || SSL_set1_host(ssl, host.c_str()) != 1) {
    return make_error(Errc::invalid_argument, "'{}' is not a usable host name: {}", host, openssl_errors());
  }
  SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  return {};
}

}  // namespace tandem::portal::tls
