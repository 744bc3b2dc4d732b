#include "portal/tls/server_context.hpp"

#include <sys/stat.h>

#include <fmt/format.h>
#include <openssl/err.h>

#include "portal/tls/openssl_util.hpp"

namespace tandem::portal::tls {

namespace {

// ALPN protocol list in wire format: length-prefixed names.
constexpr unsigned char kAlpnWire[] = {10, 'p', 'o', 's', 't', 'g', 'r', 'e', 's', 'q', 'l'};

// Accepts "postgresql" when offered; a client that offers ALPN without it gets a fatal
// no_application_protocol alert (as PostgreSQL 17 does). Called by OpenSSL during the
// handshake, on the session's thread.
int select_alpn(SSL* /*ssl*/, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                unsigned int inlen, void* /*arg*/) {
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, kAlpnWire, sizeof kAlpnWire, in, inlen) == OPENSSL_NPN_NEGOTIATED) {
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

Error tls_error(std::string what) {
  return make_error(Errc::invalid_argument, "{}: {}", what, openssl_errors());
}

}  // namespace

Result<std::shared_ptr<SslContext>> make_server_context(const ServerTlsOptions& opts) {
  clear_openssl_errors();
  SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) return tls_error("creating a TLS server context");
  SSL_CTX* c = ctx.get();
  if (SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION) != 1 || SSL_CTX_set_max_proto_version(c, 0) != 1) {
    return tls_error("setting TLS protocol versions");
  }
  SSL_CTX_set_options(
      c, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_TICKET);
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
  if (SSL_CTX_set_cipher_list(c, kTls12Ciphers) != 1) return tls_error("setting TLS 1.2 cipher suites");
  if (SSL_CTX_set_ciphersuites(c, kTls13Suites) != 1) return tls_error("setting TLS 1.3 cipher suites");
  if (SSL_CTX_set1_groups_list(c, kGroups) != 1) return tls_error("setting key exchange groups");
  if (SSL_CTX_use_certificate_chain_file(c, opts.cert_file.c_str()) != 1) {
    return tls_error(
        fmt::format("loading TLS certificate {} (expected a PEM certificate, readable by the portal)", opts.cert_file));
  }
  if (SSL_CTX_use_PrivateKey_file(c, opts.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
      return tls_error(fmt::format("TLS key {} does not match certificate {}", opts.key_file, opts.cert_file));
    }
    return tls_error(fmt::format("loading TLS private key {} (expected an unencrypted PEM key)", opts.key_file));
  }
  if (SSL_CTX_check_private_key(c) != 1) {
    return tls_error(fmt::format("TLS key {} does not match certificate {}", opts.key_file, opts.cert_file));
  }
  SSL_CTX_set_alpn_select_cb(c, select_alpn, nullptr);
  return std::make_shared<SslContext>(ctx.release());
}

bool alpn_is_postgresql(const SSL* ssl) {
  const unsigned char* data = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(ssl, &data, &len);
  return std::string_view(reinterpret_cast<const char*>(data), len) == kAlpnPostgresql;
}

std::string describe_tls(const SSL* ssl) {
  return fmt::format("{} {}", SSL_get_version(ssl), SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)));
}

Result<std::unique_ptr<ServerContextHolder>> ServerContextHolder::create(ServerTlsOptions opts) {
  std::unique_ptr<ServerContextHolder> holder(new ServerContextHolder(std::move(opts)));
  if (auto s = holder->reload(); !s) return s.error();
  return holder;
}

std::pair<FileStamp, FileStamp> ServerContextHolder::stamps() const {
  auto stamp = [](const std::string& path) {
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) return FileStamp{};
    return FileStamp{st.st_ino, st.st_size, std::int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec};
  };
  return {stamp(opts_.cert_file), stamp(opts_.key_file)};
}

Status ServerContextHolder::reload() {
  const auto before = stamps();
  auto ctx = make_server_context(opts_);
  if (!ctx) return ctx.error();
  current_.store(std::move(ctx.value()), std::memory_order_release);
  generation_.fetch_add(1, std::memory_order_acq_rel);
  loaded_stamps_ = before;
  return {};
}

Result<bool> ServerContextHolder::reload_if_changed() {
  if (stamps() == loaded_stamps_) return false;
  if (auto s = reload(); !s) return s.error();
  return true;
}

}  // namespace tandem::portal::tls
