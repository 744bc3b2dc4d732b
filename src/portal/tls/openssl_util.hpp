#pragma once
// Small helpers shared by the portal's TLS and PKI code: owning pointers for OpenSSL
// objects and the text of OpenSSL's error queue, so every failure can say why.
#include <memory>
#include <string>

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

namespace tandem::portal::tls {

struct X509Free {
  void operator()(X509* p) const { X509_free(p); }
};
struct EvpPkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct SslCtxFree {
  void operator()(SSL_CTX* p) const { SSL_CTX_free(p); }
};

using X509Ptr = std::unique_ptr<X509, X509Free>;
using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, EvpPkeyFree>;
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;

// Drains OpenSSL's per-thread error queue into one line ("error:...; error:..."), or
// "no detail from OpenSSL" when it is empty. Call it right after the failing call.
std::string openssl_errors();

// Empties the per-thread error queue (before a call whose failure we want to explain).
void clear_openssl_errors();

}  // namespace tandem::portal::tls
