#pragma once
// Reading and writing certificates and keys as PEM files. Keys are written with mode
// 0600, certificates 0644; every write goes to a temporary file in the same directory
// that is then renamed over the target, so a reader never sees half a file.
#include <string>

#include "base/result.hpp"
#include "portal/pki/certificates.hpp"

namespace tandem::portal::pki {

[[nodiscard]] Status write_cert_pem(const X509* cert, const std::string& path);
[[nodiscard]] Status write_key_pem(const EVP_PKEY* key, const std::string& path);
// Writes both files (the key first, so a certificate never points at a missing key).
[[nodiscard]] Status write_certified_key(const CertifiedKey& ck, const std::string& cert_path,
                                         const std::string& key_path);

[[nodiscard]] Result<X509Ptr> load_cert_pem(const std::string& path);
[[nodiscard]] Result<EvpPkeyPtr> load_key_pem(const std::string& path);
// Loads both files and checks that the key belongs to the certificate.
[[nodiscard]] Result<CertifiedKey> load_certified_key(const std::string& cert_path, const std::string& key_path);

}  // namespace tandem::portal::pki
