#pragma once
// The per-deployment certificate authority: a self-signed CA (EC P-256, 10 years) and
// the server certificates it issues to the portals (SANs for every DNS name and IP
// address clients use, serverAuth, 90 days by default). Pure OpenSSL 3 calls, no files:
// see pem_files.hpp for reading and writing them. The current time is always passed in.
#include <chrono>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "portal/tls/openssl_util.hpp"

namespace tandem::portal::pki {

using SystemTime = std::chrono::system_clock::time_point;
using tls::EvpPkeyPtr;
using tls::X509Ptr;

// A certificate and its private key.
struct CertifiedKey {
  X509Ptr cert;
  EvpPkeyPtr key;
};

struct CaSpec {
  std::string common_name = "Tandem deployment CA";
  std::string organization = "Tandem";
  SystemTime now;
  std::chrono::days validity{3650};
};

struct ServerCertSpec {
  std::string common_name;                // defaults to the first DNS name
  std::vector<std::string> dns_names;     // e.g. "localhost", "db.example.com", "*.portals.example"
  std::vector<std::string> ip_addresses;  // e.g. "127.0.0.1", "::1"
  SystemTime now;
  std::chrono::days validity{90};
};

// Certificates start this long before `now`, so a peer whose clock is slightly behind
// still accepts them.
inline constexpr std::chrono::minutes kBackdate{5};

// Creates a self-signed CA: basicConstraints CA:TRUE (critical), keyUsage keyCertSign and
// cRLSign (critical), subject and authority key identifiers.
[[nodiscard]] Result<CertifiedKey> create_ca(const CaSpec& spec);

// Issues a server certificate signed by `ca` for a fresh P-256 key.
[[nodiscard]] Result<CertifiedKey> issue_server_cert(const CertifiedKey& ca, const ServerCertSpec& spec);

// Validity bounds of a certificate.
[[nodiscard]] Result<SystemTime> not_before(const X509* cert);
[[nodiscard]] Result<SystemTime> not_after(const X509* cert);

// True when the certificate expires within `threshold` of `now` (or already has, or its
// dates cannot be read).
bool needs_renewal(const X509* cert, SystemTime now, std::chrono::seconds threshold);

// The DNS and IP subject alternative names of a certificate (IPs in text form).
struct SubjectAltNames {
  std::vector<std::string> dns_names;
  std::vector<std::string> ip_addresses;
};
SubjectAltNames subject_alt_names(const X509* cert);

// True when the certificate's SANs include every name and address of `spec`.
bool covers(const X509* cert, const ServerCertSpec& spec);

// Verifies `cert` against the trust anchor `ca_cert` as a TLS server certificate for
// `host` (a DNS name or an IP address) at time `now`. The error names OpenSSL's reason.
[[nodiscard]] Status verify_server_cert(const X509* ca_cert, const X509* cert, const std::string& host, SystemTime now);

}  // namespace tandem::portal::pki
