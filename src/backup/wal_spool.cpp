#include "backup/wal_spool.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include <fmt/format.h>

namespace tandem::backup {

namespace {

std::string entry_path(const std::string& spool_dir, const std::string& name) {
  return spool_dir + "/" + name;
}

std::string marker_path(const std::string& spool_dir, const std::string& name) {
  return spool_dir + "/" + name + kSpoolMarkerSuffix;
}

std::string entry_text(const std::string& sha256_hex, const std::string& store_url) {
  return fmt::format("v1 {} {}\n", sha256_hex, store_url);
}

}  // namespace

Status write_spool_entry(const std::string& spool_dir, const std::string& name, const std::string& sha256_hex,
                         const std::string& store_url) {
  const std::string path = entry_path(spool_dir, name);
  const std::string tmp = path + ".tmp";
  // Readable by everyone: the archiver (the agent, root) writes entries that wal-push
  // (PostgreSQL's user) reads. They hold a hash and the store URL, nothing secret.
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return make_error(Errc::io, "cannot create spool entry {}: {}", tmp, std::strerror(errno));
  const std::string text = entry_text(sha256_hex, store_url);
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

bool spool_entry_matches(const std::string& spool_dir, const std::string& name, const std::string& sha256_hex,
                         const std::string& store_url) {
  const std::string expected = entry_text(sha256_hex, store_url);
  int fd = ::open(entry_path(spool_dir, name).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  std::string got(expected.size() + 1, '\0');
  ssize_t n = ::read(fd, got.data(), got.size());
  ::close(fd);
  return n == static_cast<ssize_t>(expected.size()) && got.compare(0, expected.size(), expected) == 0;
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
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);  // wal-push opens it to test the lock
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
