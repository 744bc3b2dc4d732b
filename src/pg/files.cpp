#include "pg/files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "base/process.hpp"

namespace tandem::pg {

namespace {

Result<std::optional<std::pair<uid_t, gid_t>>> owner_ids(const std::string& owner) {
  if (owner.empty()) return std::optional<std::pair<uid_t, gid_t>>{};
  auto ids = lookup_user(owner);
  if (!ids) return ids.error();
  return std::optional<std::pair<uid_t, gid_t>>{*ids};
}

Status write_all(int fd, const std::string& content, const std::string& path) {
  const char* p = content.data();
  size_t left = content.size();
  while (left > 0) {
    ssize_t n = write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return make_error(Errc::io, "writing {}: {}", path, strerror(errno));
    p += n;
    left -= static_cast<size_t>(n);
  }
  return {};
}

}  // namespace

Status write_file_atomic(const std::string& path, const std::string& content, unsigned mode, const std::string& owner) {
  auto ids = owner_ids(owner);
  if (!ids) return ids.error();
  std::string tmp = path + ".tandem-tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return make_error(Errc::io, "cannot create {}: {}", tmp, strerror(errno));
  Status st = write_all(fd, content, tmp);
  if (st && fchmod(fd, mode) != 0) st = make_error(Errc::io, "chmod {}: {}", tmp, strerror(errno));
  if (st && *ids && fchown(fd, (*ids)->first, (*ids)->second) != 0) {
    st = make_error(Errc::io, "chown {}: {}", tmp, strerror(errno));
  }
  if (st && fsync(fd) != 0) st = make_error(Errc::io, "fsync {}: {}", tmp, strerror(errno));
  close(fd);
  if (st && rename(tmp.c_str(), path.c_str()) != 0) {
    st = make_error(Errc::io, "rename {} to {}: {}", tmp, path, strerror(errno));
  }
  if (!st) unlink(tmp.c_str());
  return st;
}

Result<bool> write_file_if_changed(const std::string& path, const std::string& content, unsigned mode,
                                   const std::string& owner) {
  auto ids = owner_ids(owner);
  if (!ids) return ids.error();
  struct stat sb {};
  if (lstat(path.c_str(), &sb) == 0 && S_ISREG(sb.st_mode) && (sb.st_mode & 07777) == mode &&
      (!*ids || (sb.st_uid == (*ids)->first && sb.st_gid == (*ids)->second))) {
    auto old = read_file(path);
    if (old && *old == content) return false;
  }
  Status st = write_file_atomic(path, content, mode, owner);
  if (!st) return st.error();
  return true;
}

Result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (errno == ENOENT) return make_error(Errc::not_found, "{} does not exist", path);
    return make_error(Errc::io, "cannot read {}: {}", path, strerror(errno));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return make_error(Errc::io, "cannot read {}", path);
  return ss.str();
}

std::string tail_lines(const std::string& text, int max_lines) {
  if (max_lines <= 0 || text.empty()) return {};
  size_t end = text.size();
  while (end > 0 && text[end - 1] == '\n') --end;
  size_t pos = end;
  int lines = 0;
  while (pos > 0) {
    if (text[pos - 1] == '\n' && ++lines == max_lines) break;
    --pos;
  }
  return text.substr(pos, end - pos);
}

std::string tail_file(const std::string& path, int max_lines) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  // Only the end of a long log matters.
  constexpr std::streamoff kWindow = 64 * 1024;
  in.seekg(0, std::ios::end);
  std::streamoff size = in.tellg();
  in.seekg(size > kWindow ? size - kWindow : 0);
  std::ostringstream ss;
  ss << in.rdbuf();
  return tail_lines(ss.str(), max_lines);
}

Status ensure_dir(const std::string& path, unsigned mode, const std::string& owner) {
  auto ids = owner_ids(owner);
  if (!ids) return ids.error();
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) return make_error(Errc::io, "cannot create directory {}: {}", path, ec.message());
  struct stat sb {};
  if (lstat(path.c_str(), &sb) != 0 || !S_ISDIR(sb.st_mode)) {
    return make_error(Errc::io, "{} is not a directory", path);
  }
  if (chmod(path.c_str(), mode) != 0) return make_error(Errc::io, "chmod {}: {}", path, strerror(errno));
  if (*ids && chown(path.c_str(), (*ids)->first, (*ids)->second) != 0) {
    return make_error(Errc::io, "chown {}: {}", path, strerror(errno));
  }
  return {};
}

Result<bool> remove_file(const std::string& path) {
  if (unlink(path.c_str()) == 0) return true;
  if (errno == ENOENT) return false;
  return make_error(Errc::io, "cannot remove {}: {}", path, strerror(errno));
}

}  // namespace tandem::pg
