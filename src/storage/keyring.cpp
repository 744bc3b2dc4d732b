#include "storage/keyring.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "storage/digest.hpp"

namespace tandem::storage {

namespace {

Status fsync_dir_of(const std::string& path) {
  auto dir = std::filesystem::path(path).parent_path();
  if (dir.empty()) dir = ".";
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return make_error(Errc::io, "cannot open directory {}: {}", dir.string(), std::strerror(errno));
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return make_error(Errc::io, "fsync of directory {} failed: {}", dir.string(), std::strerror(err));
  return {};
}

}  // namespace

std::string key_id_hex(const KeyId& id) {
  return to_hex(std::string_view(reinterpret_cast<const char*>(id.data()), id.size()));
}

Kek::Kek(std::string raw) : raw_(std::move(raw)) {
  auto d = sha256(raw_);
  std::copy_n(d.begin(), id_.size(), id_.begin());
}

Result<Kek> Kek::from_bytes(std::string raw) {
  if (raw.size() != kKekBytes) {
    OPENSSL_cleanse(raw.data(), raw.size());
    return make_error(Errc::invalid_argument, "a key-encryption key must be {} bytes, got {}", kKekBytes, raw.size());
  }
  return Kek(std::move(raw));
}

Result<Kek> Kek::generate() {
  auto raw = random_bytes(kKekBytes);
  if (!raw) return raw.error();
  return Kek(std::move(raw.value()));
}

Kek::Kek(Kek&& other) noexcept : raw_(std::move(other.raw_)), id_(other.id_) {
  other.wipe();
}

Kek& Kek::operator=(Kek&& other) noexcept {
  if (this != &other) {
    wipe();
    raw_ = std::move(other.raw_);
    id_ = other.id_;
    other.wipe();
  }
  return *this;
}

Kek::~Kek() {
  wipe();
}

void Kek::wipe() {
  if (!raw_.empty()) OPENSSL_cleanse(raw_.data(), raw_.size());
  raw_.clear();
}

Result<Kek> read_key_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    Errc code = errno == ENOENT ? Errc::not_found : Errc::io;
    return make_error(code, "cannot open key file {}: {}", path, std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return make_error(Errc::io, "cannot stat key file {}: {}", path, std::strerror(err));
  }
  if ((st.st_mode & 077) != 0) {
    ::close(fd);
    return make_error(Errc::permission_denied,
                      "key file {} is readable by group or others (mode {:o}); run chmod 600 {} and retry", path,
                      st.st_mode & 0777, path);
  }
  std::string text(256, '\0');
  ssize_t n = ::read(fd, text.data(), text.size());
  int err = errno;
  ::close(fd);
  if (n < 0) return make_error(Errc::io, "cannot read key file {}: {}", path, std::strerror(err));
  text.resize(static_cast<size_t>(n));
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.pop_back();
  auto raw = from_hex(text);
  OPENSSL_cleanse(text.data(), text.size());
  if (!raw || raw->size() != kKekBytes) {
    if (raw) OPENSSL_cleanse(raw->data(), raw->size());
    return make_error(Errc::invalid_argument, "key file {} must hold {} hex characters (a 256-bit key)", path,
                      kKekBytes * 2);
  }
  return Kek::from_bytes(std::move(raw.value()));
}

Result<Kek> load_or_create_key_file(const std::string& path) {
  auto existing = read_key_file(path);
  if (existing || existing.error().code != Errc::not_found) return existing;

  auto raw = random_bytes(kKekBytes);
  if (!raw) return raw.error();
  std::string text = to_hex(raw.value()) + "\n";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    OPENSSL_cleanse(text.data(), text.size());
    if (errno == EEXIST) return read_key_file(path);  // another process created it first
    return make_error(Errc::io, "cannot create key file {}: {}", path, std::strerror(errno));
  }
  ssize_t n = ::write(fd, text.data(), text.size());
  int werr = errno;
  int sync_rc = ::fsync(fd);
  ::close(fd);
  OPENSSL_cleanse(text.data(), text.size());
  if (n != static_cast<ssize_t>(text.size()) || sync_rc != 0) {
    ::unlink(path.c_str());
    return make_error(Errc::io, "cannot write key file {}: {}", path, std::strerror(werr));
  }
  if (auto s = fsync_dir_of(path); !s) return s.error();
  return Kek::from_bytes(std::move(raw.value()));
}

Keyring::Keyring(Kek active) {
  keys_.push_back(std::move(active));
}

void Keyring::add_retired(Kek key) {
  if (find(key.id()) != nullptr) return;
  keys_.push_back(std::move(key));
}

const Kek* Keyring::find(const KeyId& id) const {
  for (const auto& k : keys_) {
    if (k.id() == id) return &k;
  }
  return nullptr;
}

std::string Keyring::describe_ids() const {
  std::string out;
  for (size_t i = 0; i < keys_.size(); ++i) {
    if (i > 0) out += ", ";
    out += key_id_hex(keys_[i].id());
    if (i == 0) out += " (active)";
  }
  return out;
}

}  // namespace tandem::storage
