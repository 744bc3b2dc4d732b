#include "backup/wal_archive.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>

#include "storage/digest.hpp"

namespace tandem::backup {

namespace fs = std::filesystem;

namespace {

Result<std::string> read_whole_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    Errc code = errno == ENOENT ? Errc::not_found : Errc::io;
    return make_error(code, "cannot open {}: {}", path, std::strerror(errno));
  }
  std::string out;
  struct stat st {};
  if (::fstat(fd, &st) == 0 && st.st_size > 0) out.reserve(static_cast<size_t>(st.st_size));
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return make_error(Errc::io, "cannot read {}: {}", path, std::strerror(err));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

Status fsync_dir(const std::string& dir) {
  int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return make_error(Errc::io, "cannot open directory {}: {}", dir, std::strerror(errno));
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return make_error(Errc::io, "fsync of directory {} failed: {}", dir, std::strerror(err));
  return {};
}

// Writes `data` to `path` through a temporary in the same directory; fsyncs when asked.
Status write_file_atomic(const std::string& path, std::string_view data, bool durable) {
  std::string tmp = path + ".tandem-tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return make_error(Errc::io, "cannot create {}: {}", tmp, std::strerror(errno));
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return make_error(Errc::io, "cannot write {}: {}", tmp, std::strerror(err));
    }
    off += static_cast<size_t>(n);
  }
  if (durable && ::fsync(fd) != 0) {
    int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return make_error(Errc::io, "fsync of {} failed: {}", tmp, std::strerror(err));
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return make_error(Errc::io, "cannot rename {} to {}: {}", tmp, path, std::strerror(err));
  }
  if (durable) return fsync_dir(fs::path(path).parent_path().string());
  return {};
}

std::string base_name(const std::string& path) {
  return fs::path(path).filename().string();
}

// The spool entry for `name` holds the SHA-256 (hex) of the bytes read-ahead stored.
std::string spool_entry(const std::string& spool_dir, const std::string& name) {
  return spool_dir + "/" + name;
}

// Segments PostgreSQL marked ready after `current`, oldest first, at most `limit`.
std::vector<std::string> ready_after(const std::string& wal_dir, const std::string& current, size_t limit) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(wal_dir + "/archive_status", ec)) {
    std::string f = e.path().filename().string();
    if (!f.ends_with(".ready")) continue;
    std::string name = f.substr(0, f.size() - 6);
    if (!parse_segment_name(name) || name <= current) continue;
    names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  if (names.size() > limit) names.resize(limit);
  return names;
}

// Drops spool entries whose file PostgreSQL no longer waits to archive.
void prune_spool(const std::string& spool_dir, const std::string& wal_dir) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(spool_dir, ec)) {
    std::string name = e.path().filename().string();
    if (fs::exists(wal_dir + "/archive_status/" + name + ".ready", ec)) continue;
    fs::remove(e.path(), ec);
  }
}

}  // namespace

const char* to_string(PushOutcome o) {
  switch (o) {
    case PushOutcome::stored: return "stored";
    case PushOutcome::already_archived: return "already archived (identical)";
    case PushOutcome::from_spool: return "stored earlier by read-ahead";
  }
  return "?";
}

Result<PushOutcome> push_wal_bytes(storage::ObjectStore& store, const storage::Keyring& keyring,
                                   const std::string& name, std::string_view data, const storage::SealOptions& seal) {
  if (!classify_wal_file(name))
    return make_error(Errc::invalid_argument, "'{}' is not the name of a WAL segment or history file", name);
  std::string key = wal_key(name);
  auto existing = store.head(key);
  if (!existing) return existing.error();
  if (existing->has_value()) {
    auto sealed = store.get(key);
    if (!sealed) return sealed.error();
    auto plain = storage::unseal(keyring, *sealed, key);
    if (!plain)
      return make_error(plain.error().code,
                        "WAL file {} is already in {} but cannot be opened to compare ({}); not overwriting it", name,
                        store.url(), plain.error().message);
    if (*plain == data) return PushOutcome::already_archived;
    return make_error(Errc::conflict,
                      "WAL file {} is already archived in {} with different content ({} bytes stored, {} bytes "
                      "local); refusing to overwrite it: is another cluster archiving into the same store?",
                      name, store.url(), plain->size(), data.size());
  }
  auto sealed = storage::seal(keyring.active(), data, key, seal);
  if (!sealed) return sealed.error();
  if (auto s = store.put(key, *sealed); !s)
    return make_error(s.error().code, "archiving WAL file {} to {} failed: {}", name, store.url(), s.error().message);
  return PushOutcome::stored;
}

Result<PushResult> push_wal_file(Repo& repo, const std::string& path, const PushOptions& options) {
  std::string name = base_name(path);
  if (!classify_wal_file(name))
    return make_error(Errc::invalid_argument, "'{}' is not the name of a WAL segment or history file", name);
  const fs::path parent = fs::path(path).parent_path();
  const std::string wal_dir = parent.empty() ? std::string(".") : parent.string();
  // Read-ahead only inside a real pg_wal (with archive_status), never for a file elsewhere.
  std::error_code status_ec;
  bool read_ahead = !options.spool_dir.empty() && options.parallel > 1 && parse_segment_name(name).has_value() &&
                    fs::is_directory(wal_dir + "/archive_status", status_ec);

  auto data = read_whole_file(path);
  if (!data) return data.error();

  PushResult result;
  if (read_ahead) {
    auto recorded = read_whole_file(spool_entry(options.spool_dir, name));
    if (recorded && *recorded == storage::sha256_hex(*data)) {
      std::error_code ec;
      fs::remove(spool_entry(options.spool_dir, name), ec);
      result.outcome = PushOutcome::from_spool;
      return result;
    }
  }

  std::vector<std::string> extra;
  if (read_ahead) {
    std::error_code ec;
    fs::create_directories(options.spool_dir, ec);
    if (!ec) {
      prune_spool(options.spool_dir, wal_dir);
      for (auto& n : ready_after(wal_dir, name, static_cast<size_t>(options.parallel) * 2)) {
        if (extra.size() + 1 >= static_cast<size_t>(options.parallel)) break;
        if (!fs::exists(spool_entry(options.spool_dir, n), ec)) extra.push_back(n);
      }
    }
  }

  // Read-ahead threads: each on its own store connection; failures only mean PostgreSQL
  // will push that file itself later.
  std::vector<std::thread> threads;
  std::vector<char> done(extra.size(), 0);
  for (size_t i = 0; i < extra.size(); ++i) {
    threads.emplace_back([&, i] {
      auto store = repo.open_store();
      if (!store) return;
      auto bytes = read_whole_file(wal_dir + "/" + extra[i]);
      if (!bytes) return;
      auto pushed = push_wal_bytes(**store, repo.keyring(), extra[i], *bytes, options.seal);
      if (!pushed) return;
      done[i] = write_file_atomic(spool_entry(options.spool_dir, extra[i]), storage::sha256_hex(*bytes), false).ok();
    });
  }
  auto pushed = push_wal_bytes(repo.store(), repo.keyring(), name, *data, options.seal);
  for (auto& t : threads) t.join();
  if (!pushed) return pushed.error();
  result.outcome = *pushed;
  result.read_ahead = static_cast<int>(std::count(done.begin(), done.end(), 1));
  return result;
}

Status fetch_wal_file(Repo& repo, const std::string& name, const std::string& dest_path) {
  if (!classify_wal_file(name))
    return make_error(Errc::invalid_argument, "'{}' is not the name of a WAL segment or history file", name);
  auto plain = repo.get_unsealed(wal_key(name));
  if (!plain) return plain.error();
  return write_file_atomic(dest_path, *plain, true);
}

Result<std::set<std::string>> list_archived_wal(storage::ObjectStore& store) {
  auto objects = store.list(std::string(kWalPrefix));
  if (!objects) return objects.error();
  std::set<std::string> names;
  for (const auto& o : *objects) {
    std::string n = o.key.substr(kWalPrefix.size());
    if (classify_wal_file(n)) names.insert(n);
  }
  return names;
}

}  // namespace tandem::backup
