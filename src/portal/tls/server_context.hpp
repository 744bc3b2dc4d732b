#pragma once
// The portal's TLS server side: an OpenSSL 3 context with TLS 1.2 as the minimum (1.3
// negotiated whenever the client can), AEAD cipher suites only (ECDHE with AES-GCM or
// ChaCha20-Poly1305 for 1.2), no renegotiation, no session tickets, and an ALPN callback
// that accepts only "postgresql" when the client offers ALPN at all. Whether ALPN is
// *required* depends on how TLS started (direct TLS: yes; after SSLRequest: no), so the
// session checks alpn_is_postgresql() after the handshake.
//
// ServerContextHolder keeps the current context behind an atomic shared_ptr: a reload
// (SIGHUP or a renewed certificate) swaps in a new one while sessions that already took
// the old one keep it until they end.
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <boost/asio/ssl/context.hpp>

#include "base/result.hpp"

namespace tandem::portal::tls {

using SslContext = boost::asio::ssl::context;

inline constexpr std::string_view kAlpnPostgresql = "postgresql";

// Cipher settings, exposed so tests and docs state exactly what is offered.
inline constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
inline constexpr const char* kTls13Suites =
    "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256";
inline constexpr const char* kGroups = "X25519:P-256:P-384";

struct ServerTlsOptions {
  std::string cert_file;  // PEM: the server certificate, optionally followed by intermediates
  std::string key_file;   // PEM: its unencrypted private key
};

// Builds a server context; the error names the file and OpenSSL's reason.
[[nodiscard]] Result<std::shared_ptr<SslContext>> make_server_context(const ServerTlsOptions& opts);

// True when the handshake on `ssl` selected ALPN "postgresql".
bool alpn_is_postgresql(const SSL* ssl);

// "TLSv1.3 TLS_AES_256_GCM_SHA384", for log lines.
std::string describe_tls(const SSL* ssl);

// Identity of a file's content as far as reloading is concerned.
struct FileStamp {
  ino_t inode = 0;
  off_t size = 0;
  std::int64_t mtime_ns = 0;
  bool operator==(const FileStamp&) const = default;
};

// Owns the current server context. Thread-safe: current() from any worker thread,
// reload() from the thread that handles SIGHUP or the renewal timer.
class ServerContextHolder {
 public:
  // Loads the files once; fails like make_server_context().
  [[nodiscard]] static Result<std::unique_ptr<ServerContextHolder>> create(ServerTlsOptions opts);

  // The context new sessions should use; sessions keep the pointer for their lifetime.
  std::shared_ptr<SslContext> current() const { return current_.load(std::memory_order_acquire); }

  // Re-reads the files. On failure the current context stays in place and the error says why.
  [[nodiscard]] Status reload();
  // Reloads only when the certificate or key file changed (inode, size or mtime); returns
  // whether it did. Called periodically so renewed certificates are picked up automatically.
  [[nodiscard]] Result<bool> reload_if_changed();
  // How many contexts have been installed (1 after create()).
  std::uint64_t generation() const { return generation_.load(std::memory_order_acquire); }

 private:
  explicit ServerContextHolder(ServerTlsOptions opts) : opts_(std::move(opts)) {}
  std::pair<FileStamp, FileStamp> stamps() const;

  const ServerTlsOptions opts_;
  std::atomic<std::shared_ptr<SslContext>> current_;
  std::atomic<std::uint64_t> generation_{0};
  std::pair<FileStamp, FileStamp> loaded_stamps_;  // touched only by reload callers
};

}  // namespace tandem::portal::tls
