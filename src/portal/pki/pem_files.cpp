#include "portal/pki/pem_files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <openssl/bio.h>
#include <openssl/pem.h>

namespace tandem::portal::pki {

namespace {

using tls::openssl_errors;

struct BioFree {
  void operator()(BIO* p) const { BIO_free(p); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;

// Writes `data` to `path` through a temporary file created with `mode`, fsync and rename.
Status write_atomically(const std::string& path, std::string_view data, mode_t mode) {
  std::string tmp = path + ".tmp-XXXXXX";
  const int fd = mkstemp(tmp.data());  // created 0600: never readable by others, even briefly
  if (fd < 0) return make_error(Errc::io, "creating a temporary file next to {}: {}", path, strerror(errno));
  auto fail = [&](const char* what) {
    const int e = errno;
    close(fd);
    unlink(tmp.c_str());
    return make_error(Errc::io, "{} {}: {}", what, path, strerror(e));
  };
  if (fchmod(fd, mode) != 0) return fail("setting the mode of");
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail("writing");
    done += static_cast<std::size_t>(n);
  }
  if (fsync(fd) != 0) return fail("syncing");
  if (close(fd) != 0) {
    unlink(tmp.c_str());
    return make_error(Errc::io, "closing {}: {}", path, strerror(errno));
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    unlink(tmp.c_str());
    return make_error(Errc::io, "renaming into {}: {}", path, strerror(e));
  }
  return {};
}

template <typename WriteFn>
Result<std::string> to_pem(WriteFn&& write_fn, const char* what) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || write_fn(bio.get()) != 1) return make_error(Errc::internal, "encoding {}: {}", what, openssl_errors());
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}

Result<BioPtr> open_for_read(const std::string& path, const char* what) {
  tls::clear_openssl_errors();
  BioPtr bio(BIO_new_file(path.c_str(), "r"));
  if (!bio) {
    const int e = errno;
    tls::clear_openssl_errors();
    return make_error(e == ENOENT ? Errc::not_found : Errc::io, "cannot open {} file {}: {}", what, path, strerror(e));
  }
  return bio;
}

}  // namespace

Status write_cert_pem(const X509* cert, const std::string& path) {
  auto pem = to_pem([&](BIO* b) { return PEM_write_bio_X509(b, const_cast<X509*>(cert)); }, "a certificate");
  if (!pem) return pem.error();
  return write_atomically(path, *pem, 0644);
}

Status write_key_pem(const EVP_PKEY* key, const std::string& path) {
  auto pem =
      to_pem([&](BIO* b) { return PEM_write_bio_PrivateKey(b, key, nullptr, nullptr, 0, nullptr, nullptr); }, "a key");
  if (!pem) return pem.error();
  auto s = write_atomically(path, *pem, 0600);
  OPENSSL_cleanse(pem->data(), pem->size());
  return s;
}

Status write_certified_key(const CertifiedKey& ck, const std::string& cert_path, const std::string& key_path) {
  if (auto s = write_key_pem(ck.key.get(), key_path); !s) return s;
  return write_cert_pem(ck.cert.get(), cert_path);
}

Result<X509Ptr> load_cert_pem(const std::string& path) {
  auto bio = open_for_read(path, "certificate");
  if (!bio) return bio.error();
  X509Ptr cert(PEM_read_bio_X509(bio->get(), nullptr, nullptr, nullptr));
  if (!cert) return make_error(Errc::invalid_argument, "{} is not a PEM certificate: {}", path, openssl_errors());
  return cert;
}

Result<EvpPkeyPtr> load_key_pem(const std::string& path) {
  auto bio = open_for_read(path, "private key");
  if (!bio) return bio.error();
  // An empty passphrase callback: an encrypted key fails instead of prompting on a tty.
  auto no_passphrase = [](char*, int, int, void*) { return 0; };
  EvpPkeyPtr key(PEM_read_bio_PrivateKey(bio->get(), nullptr, no_passphrase, nullptr));
  if (!key) {
    return make_error(Errc::invalid_argument, "{} is not an unencrypted PEM private key: {}", path, openssl_errors());
  }
  return key;
}

Result<CertifiedKey> load_certified_key(const std::string& cert_path, const std::string& key_path) {
  auto cert = load_cert_pem(cert_path);
  if (!cert) return cert.error();
  auto key = load_key_pem(key_path);
  if (!key) return key.error();
  if (X509_check_private_key(cert->get(), key->get()) != 1) {
    return make_error(Errc::invalid_argument, "the key in {} does not belong to the certificate in {}: {}", key_path,
                      cert_path, openssl_errors());
  }
  return CertifiedKey{std::move(cert.value()), std::move(key.value())};
}

}  // namespace tandem::portal::pki
