#include "backup/wal_archive.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <thread>

#include "backup/wal_spool.hpp"

namespace tandem::backup {

namespace fs = std::filesystem;

namespace {

constexpr size_t kBlock = 1u << 20;

// Hands out a file's or a buffer's bytes in blocks of up to kBlock, from the start again
// after rewind(). Owned by one push; not thread-safe.
class BlockReader {
 public:
  virtual ~BlockReader() = default;
  // The next block; empty at the end.
  virtual Result<std::string_view> next() = 0;
  virtual Status rewind() = 0;
};

class FileReader final : public BlockReader {
 public:
  ~FileReader() override {
    if (fd_ >= 0) ::close(fd_);
  }
  Status open(const std::string& path) {
    path_ = path;
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) {
      Errc code = errno == ENOENT ? Errc::not_found : Errc::io;
      return make_error(code, "cannot open {}: {}", path, std::strerror(errno));
    }
    ::posix_fadvise(fd_, 0, 0, POSIX_FADV_SEQUENTIAL);
    buf_.resize(kBlock);
    return {};
  }
  Result<std::string_view> next() override {
    size_t have = 0;
    while (have < buf_.size()) {
      ssize_t n = ::read(fd_, buf_.data() + have, buf_.size() - have);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return make_error(Errc::io, "cannot read {}: {}", path_, std::strerror(errno));
      if (n == 0) break;
      have += static_cast<size_t>(n);
    }
    return std::string_view(buf_.data(), have);
  }
  Status rewind() override {
    if (::lseek(fd_, 0, SEEK_SET) != 0) return make_error(Errc::io, "cannot seek {}: {}", path_, std::strerror(errno));
    return {};
  }

 private:
  std::string path_;
  int fd_ = -1;
  std::string buf_;
};

class BytesReader final : public BlockReader {
 public:
  explicit BytesReader(std::string_view data) : data_(data) {}
  Result<std::string_view> next() override {
    auto b = data_.substr(pos_, std::min(kBlock, data_.size() - pos_));
    pos_ += b.size();
    return b;
  }
  Status rewind() override {
    pos_ = 0;
    return {};
  }

 private:
  std::string_view data_;
  size_t pos_ = 0;
};

// Compares the archived object `key` with the reader's bytes, streaming both; hashes the
// local bytes into `mac` on the way when given. True when identical.
Result<bool> same_as_stored(storage::ObjectStore& store, const storage::Keyring& keyring, const std::string& name,
                            const std::string& key, BlockReader& reader, SpoolMac* mac) {
  if (auto s = reader.rewind(); !s) return s.error();
  std::string_view cur;
  bool differs = false;
  std::optional<Error> read_error;
  auto next_block = [&]() -> bool {
    auto b = reader.next();
    if (!b) {
      read_error = b.error();
      return false;
    }
    cur = *b;
    if (mac != nullptr) mac->update(cur);
    return true;
  };
  auto unseal = storage::UnsealReader::create(
      keyring,
      [&](std::string_view b) -> Status {
        while (!b.empty()) {
          if (cur.empty()) {
            if (!next_block()) return *read_error;
            if (cur.empty()) differs = true;  // the stored copy is longer
          }
          size_t k = std::min(cur.size(), b.size());
          if (differs || std::memcmp(cur.data(), b.data(), k) != 0) {
            differs = true;
            return make_error(Errc::conflict, "differs");
          }
          cur.remove_prefix(k);
          b.remove_prefix(k);
        }
        return {};
      },
      key);
  Status s = store.get_stream(key, [&](std::string_view b) { return unseal->write(b); });
  if (s) s = unseal->finish();  // opens the final chunk, which also reaches the sink
  if (read_error) return *read_error;
  if (differs) return false;
  if (!s)
    return make_error(s.error().code,
                      "WAL file {} is already in {} but cannot be opened to compare ({}); not overwriting it", name,
                      store.url(), s.error().message);
  if (!cur.empty()) return false;  // the local file is longer
  if (!next_block()) return *read_error;
  return cur.empty();
}

// Seals the reader's bytes into `key` as one streamed put; feeds them to `mac` when given.
Status seal_into_store(storage::ObjectStore& store, const storage::Kek& kek, const std::string& key,
                       BlockReader& reader, const storage::SealOptions& seal, SpoolMac* mac) {
  if (auto s = reader.rewind(); !s) return s;
  std::string pending;  // sealed bytes not yet handed to the store
  size_t pos = 0;
  bool done = false;
  auto writer = storage::SealWriter::create(
      kek,
      [&pending](std::string_view b) {
        pending.append(b);
        return Status{};
      },
      key, seal);
  if (!writer) return writer.error();
  auto& w = **writer;
  auto source = [&](char* buf, size_t cap) -> Result<size_t> {
    while (pos == pending.size() && !done) {
      pending.clear();
      pos = 0;
      auto block = reader.next();
      if (!block) return block.error();
      if (block->empty()) {
        if (auto s = w.finish(); !s) return s.error();
        done = true;
      } else {
        if (mac != nullptr) mac->update(*block);
        if (auto s = w.write(*block); !s) return s.error();
      }
    }
    size_t n = std::min(cap, pending.size() - pos);
    std::memcpy(buf, pending.data() + pos, n);
    pos += n;
    return n;
  };
  return store.put_stream(key, source);
}

// The archive rules for one file: compare with an archived copy, or seal and store.
Result<PushOutcome> push_from(storage::ObjectStore& store, const storage::Keyring& keyring, const std::string& name,
                              BlockReader& reader, const storage::SealOptions& seal, SpoolMac* mac) {
  if (!classify_wal_file(name))
    return make_error(Errc::invalid_argument, "'{}' is not the name of a WAL segment or history file", name);
  std::string key = wal_key(name);
  auto existing = store.head(key);
  if (!existing) return existing.error();
  if (existing->has_value()) {
    auto same = same_as_stored(store, keyring, name, key, reader, mac);
    if (!same) return same.error();
    if (*same) return PushOutcome::already_archived;
    return make_error(Errc::conflict,
                      "WAL file {} is already archived in {} with different content ({} bytes stored, sealed); "
                      "refusing to overwrite it: is another cluster archiving into the same store?",
                      name, store.url(), (*existing)->size);
  }
  if (auto s = seal_into_store(store, keyring.active(), key, reader, seal, mac); !s)
    return make_error(s.error().code, "archiving WAL file {} to {} failed: {}", name, store.url(), s.error().message);
  return PushOutcome::stored;
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

// Writes `data` to `path` through a temporary in the same directory, fsynced.
Status write_file_durable(const std::string& path, std::string_view data) {
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
  if (::fsync(fd) != 0) {
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
  return fsync_dir(fs::path(path).parent_path().string());
}

std::string base_name(const std::string& path) {
  return fs::path(path).filename().string();
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
    if (!classify_wal_file(name)) continue;  // the lock, markers, temporaries
    if (fs::exists(wal_dir + "/archive_status/" + name + ".ready", ec)) continue;
    fs::remove(e.path(), ec);
  }
}

}  // namespace

const char* to_string(PushOutcome o) {
  switch (o) {
    case PushOutcome::stored: return "stored";
    case PushOutcome::already_archived: return "already archived (identical)";
    case PushOutcome::from_spool: return "stored earlier by the archiver or read-ahead";
  }
  return "?";
}

Result<std::string> file_fingerprint(const std::string& path, const storage::Kek& kek, const std::string& nonce_hex) {
  auto mac = SpoolMac::create(kek, nonce_hex);
  if (!mac) return mac.error();
  // Mapped (pages populated in one go): no copy and no per-page faults on a fresh buffer.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    Errc code = errno == ENOENT ? Errc::not_found : Errc::io;
    return make_error(code, "cannot open {}: {}", path, std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return make_error(Errc::io, "cannot stat {}: {}", path, std::strerror(err));
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size > 0) {
    void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    int err = errno;
    if (map == MAP_FAILED) {
      ::close(fd);
      return make_error(Errc::io, "cannot map {}: {}", path, std::strerror(err));
    }
    (*mac)->update(std::string_view(static_cast<const char*>(map), size));
    ::munmap(map, size);
  }
  ::close(fd);
  return (*mac)->finish();
}

Result<bool> spool_acknowledges(const std::string& spool_dir, const std::string& name, const std::string& path,
                                const storage::Kek& kek, const std::string& store_url) {
  auto nonce = spool_entry_nonce(spool_dir, name, store_url);
  if (!nonce) return false;
  auto fp = file_fingerprint(path, kek, *nonce);
  if (!fp) return fp.error();
  return spool_entry_matches(spool_dir, name, *fp, store_url);
}

Result<PushedFile> push_wal_path(storage::ObjectStore& store, const storage::Keyring& keyring, const std::string& path,
                                 const storage::SealOptions& seal, bool fingerprint) {
  FileReader reader;
  if (auto s = reader.open(path); !s) return s.error();
  std::unique_ptr<SpoolMac> mac;
  if (fingerprint) {
    auto m = SpoolMac::create(keyring.active());
    if (!m) return m.error();
    mac = std::move(*m);
  }
  auto outcome = push_from(store, keyring, base_name(path), reader, seal, mac.get());
  if (!outcome) return outcome.error();
  PushedFile pushed{*outcome, {}};
  if (mac) {
    auto fp = mac->finish();
    if (!fp) return fp.error();
    pushed.fingerprint = std::move(*fp);
  }
  return pushed;
}

Result<PushOutcome> push_wal_bytes(storage::ObjectStore& store, const storage::Keyring& keyring,
                                   const std::string& name, std::string_view data, const storage::SealOptions& seal) {
  BytesReader reader(data);
  return push_from(store, keyring, name, reader, seal, nullptr);
}

Result<PushResult> push_wal_file(Repo& repo, const std::string& path, const PushOptions& options) {
  std::string name = base_name(path);
  if (!classify_wal_file(name))
    return make_error(Errc::invalid_argument, "'{}' is not the name of a WAL segment or history file", name);
  const fs::path parent = fs::path(path).parent_path();
  const std::string wal_dir = parent.empty() ? std::string(".") : parent.string();
  const std::string& spool = options.spool_dir;
  const std::string& url = repo.config().store_url;
  PushResult result;

  // Stored ahead of us (archiver or read-ahead)? Only an entry naming this store whose
  // MAC matches the file's bytes counts.
  auto acknowledged = [&]() -> Result<bool> {
    auto ack = spool_acknowledges(spool, name, path, repo.keyring().active(), url);
    if (!ack || !*ack) return ack;
    // A running archiver drops the entry once PostgreSQL marked the file done; dropping it
    // here, before PostgreSQL does, would make the archiver push the file once more.
    if (!spool_archiver_running(spool)) remove_spool_entry(spool, name);
    return true;
  };
  bool archiver = false;
  if (!spool.empty()) {
    auto ack = acknowledged();
    if (!ack) return ack.error();
    if (*ack) {
      result.outcome = PushOutcome::from_spool;
      return result;
    }
    archiver = spool_archiver_running(spool);
    if (archiver && spool_marker_exists(spool, name)) {
      result.waited_for_archiver = true;
      wait_for_spool_marker(spool, name, options.archiver_wait);
      ack = acknowledged();
      if (!ack) return ack.error();
      if (*ack) {
        result.outcome = PushOutcome::from_spool;
        return result;
      }
    }
  }

  // Read-ahead only without an archiver, and only inside a real pg_wal.
  std::error_code status_ec;
  bool read_ahead = !spool.empty() && !archiver && options.parallel > 1 && parse_segment_name(name).has_value() &&
                    fs::is_directory(wal_dir + "/archive_status", status_ec);
  std::vector<std::string> extra;
  if (read_ahead) {
    std::error_code ec;
    fs::create_directories(spool, ec);
    if (!ec) {
      prune_spool(spool, wal_dir);
      for (auto& n : ready_after(wal_dir, name, static_cast<size_t>(options.parallel) * 2)) {
        if (extra.size() + 1 >= static_cast<size_t>(options.parallel)) break;
        if (!fs::exists(spool + "/" + n, ec)) extra.push_back(n);
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
      auto pushed = push_wal_path(**store, repo.keyring(), wal_dir + "/" + extra[i], options.seal);
      if (!pushed) return;
      done[i] = write_spool_entry(spool, extra[i], pushed->fingerprint, url).ok();
    });
  }
  auto pushed = push_wal_path(repo.store(), repo.keyring(), path, options.seal, false);
  for (auto& t : threads) t.join();
  if (!pushed) return pushed.error();
  result.outcome = pushed->outcome;
  result.read_ahead = static_cast<int>(std::count(done.begin(), done.end(), 1));
  return result;
}

Status fetch_wal_file(Repo& repo, const std::string& name, const std::string& dest_path) {
  if (!classify_wal_file(name))
    return make_error(Errc::invalid_argument, "'{}' is not the name of a WAL segment or history file", name);
  auto plain = repo.get_unsealed(wal_key(name));
  if (!plain) return plain.error();
  return write_file_durable(dest_path, *plain);
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
