#include "backup/wal_spool.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include <fmt/format.h>

#include "storage/digest.hpp"

namespace tandem::backup {

namespace {

std::string entry_path(const std::string& spool_dir, const std::string& name) {
  return spool_dir + "/" + name;
}

std::string marker_path(const std::string& spool_dir, const std::string& name) {
  return spool_dir + "/" + name + kSpoolMarkerSuffix;
}

std::string entry_text(const std::string& fingerprint, const std::string& store_url) {
  return fmt::format("v2 {} {}\n", fingerprint, store_url);
}

constexpr size_t kNonceBytes = 12;
constexpr size_t kTagBytes = 16;
constexpr std::string_view kSpoolKeyLabel = "tandem wal-push spool v2";

}  // namespace

struct SpoolMac::Ctx {
  EVP_CIPHER_CTX* c = nullptr;
  ~Ctx() { EVP_CIPHER_CTX_free(c); }
};

SpoolMac::~SpoolMac() = default;

Result<std::unique_ptr<SpoolMac>> SpoolMac::create(const storage::Kek& kek, const std::string& nonce_hex) {
  std::string nonce;
  if (nonce_hex.empty()) {
    auto r = storage::random_bytes(kNonceBytes);
    if (!r) return r.error();
    nonce = std::move(*r);
  } else {
    auto r = storage::from_hex(nonce_hex);
    if (!r || r->size() != kNonceBytes) return make_error(Errc::invalid_argument, "bad spool entry nonce");
    nonce = std::move(*r);
  }
  auto key = storage::hmac_sha256(std::string_view(reinterpret_cast<const char*>(kek.bytes()), storage::kKekBytes),
                                  kSpoolKeyLabel);
  std::unique_ptr<SpoolMac> mac(new SpoolMac());
  mac->ctx_ = std::make_unique<Ctx>();
  mac->ctx_->c = EVP_CIPHER_CTX_new();
  bool ok = mac->ctx_->c != nullptr && EVP_EncryptInit_ex(mac->ctx_->c, EVP_aes_256_gcm(), nullptr, key.data(),
                                                          reinterpret_cast<const unsigned char*>(nonce.data())) == 1;
  OPENSSL_cleanse(key.data(), key.size());
  if (!ok) return make_error(Errc::internal, "AES-256-GMAC set-up failed (OpenSSL)");
  mac->nonce_hex_ = storage::to_hex(nonce);
  return mac;
}

void SpoolMac::update(std::string_view data) {
  while (!data.empty() && !failed_) {
    size_t n = std::min(data.size(), size_t{1} << 30);
    int out = 0;
    failed_ = EVP_EncryptUpdate(ctx_->c, nullptr, &out, reinterpret_cast<const unsigned char*>(data.data()),
                                static_cast<int>(n)) != 1;
    data.remove_prefix(n);
  }
}

Result<std::string> SpoolMac::finish() {
  unsigned char tag[kTagBytes];
  int out = 0;
  if (failed_ || EVP_EncryptFinal_ex(ctx_->c, tag, &out) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx_->c, EVP_CTRL_GCM_GET_TAG, kTagBytes, tag) != 1)
    return make_error(Errc::internal, "AES-256-GMAC failed (OpenSSL)");
  return nonce_hex_ + " " + storage::to_hex(std::string_view(reinterpret_cast<const char*>(tag), kTagBytes));
}

Status write_spool_entry(const std::string& spool_dir, const std::string& name, const std::string& fingerprint,
                         const std::string& store_url) {
  const std::string path = entry_path(spool_dir, name);
  const std::string tmp = path + ".tmp";
  // Readable by everyone: whoever runs the archiver writes entries that wal-push
  // (PostgreSQL's user) reads. They hold a nonce, a MAC and the store URL, nothing secret.
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return make_error(Errc::io, "cannot create spool entry {}: {}", tmp, std::strerror(errno));
  const std::string text = entry_text(fingerprint, store_url);
  ssize_t n = ::write(fd, text.data(), text.size());
  int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(text.size())) {
    ::unlink(tmp.c_str());
    return make_error(Errc::io, "cannot write spool entry {}: {}", tmp, n < 0 ? std::strerror(err) : "short write");
  }
  // No fsync: a lost entry only costs a normal (idempotent) push; rename keeps it whole.
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    err = errno;
    ::unlink(tmp.c_str());
    return make_error(Errc::io, "cannot rename spool entry into place {}: {}", path, std::strerror(err));
  }
  return {};
}

std::optional<std::string> spool_entry_nonce(const std::string& spool_dir, const std::string& name,
                                             const std::string& store_url) {
  int fd = ::open(entry_path(spool_dir, name).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  char buf[4096];
  ssize_t n = ::read(fd, buf, sizeof buf);
  ::close(fd);
  if (n <= 0) return std::nullopt;
  std::string_view text(buf, static_cast<size_t>(n));
  // "v2 " + 24 hex nonce + " " + 32 hex tag + " " + url + "\n"
  constexpr size_t kUrlAt = 3 + 2 * kNonceBytes + 1 + 2 * kTagBytes + 1;
  if (!text.starts_with("v2 ") || text.size() != kUrlAt + store_url.size() + 1 ||
      text.substr(kUrlAt, store_url.size()) != store_url || text.back() != '\n')
    return std::nullopt;
  return std::string(text.substr(3, 2 * kNonceBytes));
}

bool spool_entry_matches(const std::string& spool_dir, const std::string& name, const std::string& fingerprint,
                         const std::string& store_url) {
  const std::string expected = entry_text(fingerprint, store_url);
  int fd = ::open(entry_path(spool_dir, name).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  std::string got(expected.size() + 1, '\0');
  ssize_t n = ::read(fd, got.data(), got.size());
  ::close(fd);
  return n == static_cast<ssize_t>(expected.size()) && CRYPTO_memcmp(got.data(), expected.data(), expected.size()) == 0;
}

void remove_spool_entry(const std::string& spool_dir, const std::string& name) {
  ::unlink(entry_path(spool_dir, name).c_str());
}

void set_spool_marker(const std::string& spool_dir, const std::string& name) {
  int fd = ::open(marker_path(spool_dir, name).c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd >= 0) ::close(fd);
}

void clear_spool_marker(const std::string& spool_dir, const std::string& name) {
  ::unlink(marker_path(spool_dir, name).c_str());
}

bool spool_marker_exists(const std::string& spool_dir, const std::string& name) {
  struct stat st {};
  return ::stat(marker_path(spool_dir, name).c_str(), &st) == 0;
}

bool spool_archiver_running(const std::string& spool_dir) {
  const std::string path = spool_dir + "/" + kSpoolLockName;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool held = ::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  ::close(fd);  // also drops our shared lock when we got one
  return held;
}

bool wait_for_spool_marker(const std::string& spool_dir, const std::string& name, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto check_alive = std::chrono::steady_clock::now();
  while (spool_marker_exists(spool_dir, name)) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return false;
    if (now >= check_alive) {
      if (!spool_archiver_running(spool_dir)) return true;  // a crashed archiver's marker
      check_alive = now + std::chrono::milliseconds(200);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(3));
  }
  return true;
}

SpoolLock::~SpoolLock() {
  release();
}

void SpoolLock::release() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

Status SpoolLock::acquire(const std::string& spool_dir) {
  if (fd_ >= 0) return {};
  const std::string path = spool_dir + "/" + kSpoolLockName;
  // Read-only is enough for flock(), and works whoever created the file; 0644 so that
  // wal-push (PostgreSQL's user) can open it to test the lock.
  int fd = ::open(path.c_str(), O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return make_error(Errc::io, "cannot open {}: {}", path, std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK)
      return make_error(Errc::conflict, "another WAL archiver is running on spool {} (it holds {})", spool_dir, path);
    return make_error(Errc::io, "cannot lock {}: {}", path, std::strerror(err));
  }
  fd_ = fd;
  return {};
}

}  // namespace tandem::backup
