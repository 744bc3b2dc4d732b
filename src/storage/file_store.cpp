#include "storage/file_store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "storage/digest.hpp"

namespace tandem::storage {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kTempPrefix = ".tandem-tmp.";
constexpr size_t kIoBlock = 1u << 20;

Error errno_error(Errc code, const std::string& what, const std::string& path, int err) {
  return make_error(code, "{} {}: {}", what, path, std::strerror(err));
}

Status fsync_path(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) return errno_error(Errc::io, "cannot open for fsync", path, errno);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return errno_error(Errc::io, "fsync failed on", path, err);
  return {};
}

// mkdir -p that fsyncs the parent of every directory it creates, so a new object's
// directory entry survives a crash.
Status make_dirs_durable(const fs::path& dir) {
  if (dir.empty()) return {};
  std::error_code ec;
  if (fs::is_directory(dir, ec)) return {};
  if (auto s = make_dirs_durable(dir.parent_path()); !s) return s;
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return errno_error(Errc::io, "cannot create directory", dir.string(), errno);
  }
  return fsync_path(dir.parent_path().string(), true);
}

Status write_all(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error(Errc::io, "cannot write", path, errno);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return {};
}

}  // namespace

Result<std::unique_ptr<FileObjectStore>> FileObjectStore::open(const std::string& root) {
  if (root.empty() || root[0] != '/') {
    return make_error(Errc::invalid_argument, "file store root must be an absolute path, got '{}'", root);
  }
  std::string clean = root;
  while (clean.size() > 1 && clean.back() == '/') clean.pop_back();
  if (auto s = make_dirs_durable(clean); !s) return s.error();
  return std::unique_ptr<FileObjectStore>(new FileObjectStore(clean));
}

Status FileObjectStore::put(const std::string& key, std::string_view data) {
  return put_stream(key, [data](char* buf, size_t cap) mutable -> Result<size_t> {
    size_t n = std::min(cap, data.size());
    std::memcpy(buf, data.data(), n);
    data.remove_prefix(n);
    return n;
  });
}

Status FileObjectStore::put_stream(const std::string& key, const ByteSource& source) {
  if (auto s = validate_key(key); !s) return s;
  const fs::path target = path_of(key);
  if (auto s = make_dirs_durable(target.parent_path()); !s) return s;
  auto suffix = random_bytes(8);
  if (!suffix) return suffix.error();
  const std::string tmp =
      (target.parent_path() / (std::string(kTempPrefix) + target.filename().string() + "." + to_hex(*suffix))).string();
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return errno_error(Errc::io, "cannot create", tmp, errno);

  auto fail = [&](Error e) -> Status {
    ::close(fd);
    ::unlink(tmp.c_str());
    return e;
  };
  std::string buf(kIoBlock, '\0');
  while (true) {
    auto n = source(buf.data(), buf.size());
    if (!n) return fail(n.error());
    if (*n == 0) break;
    if (auto s = write_all(fd, std::string_view(buf.data(), *n), tmp); !s) return fail(s.error());
  }
  if (::fsync(fd) != 0) return fail(errno_error(Errc::io, "fsync failed on", tmp, errno));
  if (::close(fd) != 0) {
    ::unlink(tmp.c_str());
    return errno_error(Errc::io, "close failed on", tmp, errno);
  }
  if (::rename(tmp.c_str(), target.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return errno_error(Errc::io, "cannot rename into place", target.string(), err);
  }
  return fsync_path(target.parent_path().string(), true);
}

Result<std::string> FileObjectStore::get(const std::string& key) {
  std::string out;
  auto s = get_stream(key, [&out](std::string_view b) {
    out.append(b);
    return Status{};
  });
  if (!s) return s.error();
  return out;
}

Status FileObjectStore::get_stream(const std::string& key, const ByteSink& sink) {
  if (auto s = validate_key(key); !s) return s;
  const std::string path = path_of(key);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT || errno == ENOTDIR) {
      return make_error(Errc::not_found, "object '{}' not found in {}", key, url());
    }
    return errno_error(Errc::io, "cannot open", path, errno);
  }
  std::string buf(kIoBlock, '\0');
  Status result;
  while (true) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      result = errno_error(Errc::io, "cannot read", path, errno);
      break;
    }
    if (n == 0) break;
    if (result = sink(std::string_view(buf.data(), static_cast<size_t>(n))); !result) break;
  }
  ::close(fd);
  return result;
}

Result<std::optional<ObjectInfo>> FileObjectStore::head(const std::string& key) {
  if (auto s = validate_key(key); !s) return s.error();
  struct stat st {};
  const std::string path = path_of(key);
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) return std::optional<ObjectInfo>{};
    return errno_error(Errc::io, "cannot stat", path, errno);
  }
  if (!S_ISREG(st.st_mode)) return std::optional<ObjectInfo>{};
  return std::optional<ObjectInfo>(ObjectInfo{key, static_cast<uint64_t>(st.st_size), {}});
}

Result<std::vector<ObjectInfo>> FileObjectStore::list(const std::string& prefix) {
  std::vector<ObjectInfo> out;
  // Walk only the deepest directory the prefix names in full.
  const auto slash = prefix.rfind('/');
  const std::string dir_part = slash == std::string::npos ? "" : prefix.substr(0, slash);
  const fs::path start = dir_part.empty() ? fs::path(root_) : fs::path(root_) / dir_part;
  std::error_code ec;
  if (!fs::is_directory(start, ec)) return out;
  fs::recursive_directory_iterator it(start, fs::directory_options::skip_permission_denied, ec);
  if (ec) return make_error(Errc::io, "cannot list {}: {}", start.string(), ec.message());
  for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) return make_error(Errc::io, "cannot list {}: {}", start.string(), ec.message());
    if (!it->is_regular_file(ec)) continue;
    const std::string name = it->path().filename().string();
    if (name.starts_with(kTempPrefix)) continue;
    std::string key = it->path().string().substr(root_.size() + 1);
    if (!key.starts_with(prefix)) continue;
    auto size = it->file_size(ec);
    if (ec) continue;  // removed while we walked
    out.push_back(ObjectInfo{std::move(key), size, {}});
  }
  std::sort(out.begin(), out.end(), [](const ObjectInfo& a, const ObjectInfo& b) { return a.key < b.key; });
  return out;
}

Status FileObjectStore::del(const std::string& key) {
  if (auto s = validate_key(key); !s) return s;
  const fs::path path = path_of(key);
  if (::unlink(path.c_str()) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) return {};
    return errno_error(Errc::io, "cannot delete", path.string(), errno);
  }
  return fsync_path(path.parent_path().string(), true);
}

}  // namespace tandem::storage
