// Reading stored base backups: list, manifest, verify, restore, delete.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <thread>

#include <fmt/format.h>
#include <zstd.h>

#include "backup/base_backup.hpp"
#include "backup/pipe.hpp"
#include "backup/tar.hpp"
#include "base/process.hpp"
#include "storage/digest.hpp"

namespace tandem::backup {

namespace fs = std::filesystem;

namespace {

// Receives an object's verified plaintext on the calling thread.
using PlainSink = std::function<Status(std::string_view)>;

// Downloads and unseals `key` on a helper thread (its own store connection) while the
// calling thread hashes the plaintext and hands it to `sink`. Checks the stored size,
// the plaintext size and SHA-256 against `expected`; every error names the object.
Status stream_object(Repo& repo, const BackupObject& expected, const PlainSink& sink) {
  auto store = repo.open_store();
  if (!store) return store.error();
  BlockPipe pipe(16u << 20);
  uint64_t stored = 0;
  Status fetch_status;
  std::thread fetcher([&] {
    auto reader = storage::UnsealReader::create(
        repo.keyring(),
        [&](std::string_view plain) -> Status {
          if (!pipe.push(plain)) return make_error(Errc::io, "restore of '{}' stopped", expected.key);
          return {};
        },
        expected.key);
    fetch_status = (*store)->get_stream(expected.key, [&](std::string_view sealed) -> Status {
      stored += sealed.size();
      return reader->write(sealed);
    });
    if (fetch_status) fetch_status = reader->finish();
    if (fetch_status) {
      pipe.close();
    } else {
      pipe.abort();
    }
  });
  storage::Sha256Stream sha;
  uint64_t plain_bytes = 0;
  Status consume_status;
  std::string block;
  while (true) {
    auto got = pipe.pop(block);
    if (!got || !*got) break;
    plain_bytes += block.size();
    sha.update(block);
    if (consume_status = sink(block); !consume_status) {
      pipe.abort();
      break;
    }
  }
  fetcher.join();
  if (!consume_status) return consume_status;
  if (!fetch_status) {
    if (fetch_status.error().code == Errc::not_found) {
      return make_error(Errc::not_found, "backup object '{}' is missing from {}", expected.key, repo.url());
    }
    return make_error(fetch_status.error().code, "backup object '{}' in {}: {}", expected.key, repo.url(),
                      fetch_status.error().message);
  }
  if (stored != expected.stored_bytes) {
    return make_error(Errc::protocol, "backup object '{}' has {} stored bytes, the manifest says {}", expected.key,
                      stored, expected.stored_bytes);
  }
  if (plain_bytes != expected.plaintext_bytes) {
    return make_error(Errc::protocol, "backup object '{}' holds {} bytes, the manifest says {}", expected.key,
                      plain_bytes, expected.plaintext_bytes);
  }
  std::string digest = storage::to_hex(sha.finish());
  if (digest != expected.sha256) {
    return make_error(Errc::protocol, "backup object '{}' has SHA-256 {}, the manifest says {}", expected.key, digest,
                      expected.sha256);
  }
  return {};
}

std::string object_name(const std::string& key) {
  return key.substr(key.rfind('/') + 1);
}

// Decompresses a zstd frame (server-side compressed tar) on its way to `next`.
class ZstdSink {
 public:
  ZstdSink(std::string object, PlainSink next)
      : object_(std::move(object)),
        next_(std::move(next)),
        dctx_(ZSTD_createDCtx()),
        out_(ZSTD_DStreamOutSize(), '\0') {}
  ~ZstdSink() { ZSTD_freeDCtx(dctx_); }
  ZstdSink(const ZstdSink&) = delete;
  ZstdSink& operator=(const ZstdSink&) = delete;

  Status write(std::string_view in) {
    ZSTD_inBuffer input{in.data(), in.size(), 0};
    while (input.pos < input.size) {
      ZSTD_outBuffer output{out_.data(), out_.size(), 0};
      last_ = ZSTD_decompressStream(dctx_, &output, &input);
      if (ZSTD_isError(last_)) {
        return make_error(Errc::protocol, "backup object '{}': zstd: {}", object_, ZSTD_getErrorName(last_));
      }
      if (output.pos > 0) {
        if (auto st = next_(std::string_view(out_.data(), output.pos)); !st) return st;
      }
    }
    return {};
  }
  // Drains what the decoder still holds; the frame must have ended.
  Status finish() {
    while (last_ != 0) {
      ZSTD_inBuffer input{nullptr, 0, 0};
      ZSTD_outBuffer output{out_.data(), out_.size(), 0};
      last_ = ZSTD_decompressStream(dctx_, &output, &input);
      if (ZSTD_isError(last_)) {
        return make_error(Errc::protocol, "backup object '{}': zstd: {}", object_, ZSTD_getErrorName(last_));
      }
      if (output.pos == 0) break;
      if (auto st = next_(std::string_view(out_.data(), output.pos)); !st) return st;
    }
    if (last_ != 0) return make_error(Errc::protocol, "backup object '{}': the zstd frame is incomplete", object_);
    return {};
  }

 private:
  std::string object_;
  PlainSink next_;
  ZSTD_DCtx* dctx_;
  std::string out_;
  size_t last_ = 1;
};

// Ignores every entry: verify only checks that the tar parses to its end.
class NullVisitor : public TarVisitor {
 public:
  Status begin_entry(const TarEntry&) override { return {}; }
  Status data(std::string_view) override { return {}; }
  Status end_entry() override { return {}; }
};

// Streams a tar object (decompressing when needed) through `visitor` and checks that it
// is a complete archive.
Status read_tar_object(Repo& repo, const BackupObject& obj, TarVisitor& visitor) {
  TarReader reader(visitor, obj.key);
  Status st;
  if (obj.compression == "zstd") {
    ZstdSink unzstd(obj.key, [&](std::string_view b) { return reader.feed(b); });
    st = stream_object(repo, obj, [&](std::string_view b) { return unzstd.write(b); });
    if (st) st = unzstd.finish();
  } else {
    st = stream_object(repo, obj, [&](std::string_view b) { return reader.feed(b); });
  }
  if (st) st = reader.finish();
  return st;
}

Status write_file(const std::string& path, std::string_view data, uid_t uid, gid_t gid) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return make_error(Errc::io, "create {}: {}", path, std::strerror(errno));
  bool ok = ::fchown(fd, uid, gid) == 0;
  while (ok && !data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) data.remove_prefix(static_cast<size_t>(n));
  }
  int err = errno;
  ::close(fd);
  if (!ok) return make_error(Errc::io, "write {}: {}", path, std::strerror(err));
  return {};
}

}  // namespace

Result<BackupManifest> read_manifest(Repo& repo, const std::string& id) {
  if (id.empty() || id.find('/') != std::string::npos || !backup_id_time(id)) {
    return make_error(Errc::invalid_argument, "'{}' is not a backup id (expected e.g. 20261128T130500Z)", id);
  }
  std::string key = backup_manifest_key(id);
  auto text = repo.get_unsealed(key);
  if (!text) {
    if (text.error().code == Errc::not_found) {
      auto present = repo.store().list(backup_prefix(id));
      if (present && !present->empty()) {
        return make_error(Errc::not_found, "backup {} in {} is incomplete: it has no tandem.json", id, repo.url());
      }
      return make_error(Errc::not_found, "no backup {} in {}", id, repo.url());
    }
    return text.error();
  }
  auto m = manifest_from_json(*text, "'" + key + "'");
  if (!m) return m.error();
  if (m->id != id) {
    return make_error(Errc::protocol, "backup manifest '{}' names backup '{}' instead", key, m->id);
  }
  return m;
}

Result<std::vector<BackupEntry>> list_backup_entries(Repo& repo) {
  auto objects = repo.store().list(std::string(kBackupsPrefix));
  if (!objects) return objects.error();
  std::map<std::string, BackupEntry> by_id;
  for (const auto& o : *objects) {
    std::string rest = o.key.substr(kBackupsPrefix.size());
    auto slash = rest.find('/');
    if (slash == std::string::npos) continue;
    std::string id = rest.substr(0, slash);
    auto& e = by_id[id];
    e.id = id;
    e.stored_bytes += o.size;
    ++e.objects;
    if (rest.substr(slash + 1) == kManifestName) e.complete = true;
  }
  std::vector<BackupEntry> out;
  for (auto& [id, e] : by_id) {
    if (e.complete) {
      auto m = read_manifest(repo, id);
      if (m) {
        e.manifest = std::move(*m);
      } else {
        e.complete = false;
        e.problem = m.error().message;
      }
    } else {
      e.problem = "no tandem.json";
    }
    out.push_back(std::move(e));
  }
  return out;
}

Result<std::vector<BackupManifest>> list_backups(Repo& repo) {
  auto entries = list_backup_entries(repo);
  if (!entries) return entries.error();
  std::vector<BackupManifest> out;
  for (auto& e : *entries) {
    if (e.complete) out.push_back(std::move(*e.manifest));
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const BackupManifest& a, const BackupManifest& b) { return a.start_time < b.start_time; });
  return out;
}

Status verify_backup(Repo& repo, const std::string& id) {
  auto m = read_manifest(repo, id);
  if (!m) return m.error();
  if (m->objects.empty()) return make_error(Errc::protocol, "backup {} lists no objects", id);
  for (const auto& obj : m->objects) {
    if (obj.key.rfind(backup_prefix(id), 0) != 0) {
      return make_error(Errc::protocol, "backup {} lists object '{}' outside its directory", id, obj.key);
    }
    Status st;
    if (object_name(obj.key) == "backup_manifest") {
      st = stream_object(repo, obj, [](std::string_view) -> Status { return {}; });
    } else {
      NullVisitor nothing;
      st = read_tar_object(repo, obj, nothing);
    }
    if (!st) return st;
  }
  return {};
}

Status verify_backup_wal(Repo& repo, const BackupManifest& m) {
  auto first = parse_segment_name(m.start_wal);
  auto last = parse_segment_name(m.stop_wal);
  if (!first || !last || first->timeline != last->timeline || *last < *first) {
    return make_error(Errc::protocol, "backup {}: odd WAL range {}..{}", m.id, m.start_wal, m.stop_wal);
  }
  for (auto seg = *first; !(*last < seg); seg = next_segment(seg, m.wal_segment_size)) {
    std::string name = seg.to_string();
    auto data = repo.get_unsealed(wal_key(name));
    if (!data) {
      if (data.error().code == Errc::not_found) {
        return make_error(Errc::not_found, "backup {} needs WAL segment {}, which is not in the archive {}", m.id, name,
                          repo.url());
      }
      return make_error(data.error().code, "backup {}: WAL segment {}: {}", m.id, name, data.error().message);
    }
    if (data->size() != m.wal_segment_size) {
      return make_error(Errc::protocol, "backup {}: WAL segment {} holds {} bytes, expected {}", m.id, name,
                        data->size(), m.wal_segment_size);
    }
  }
  return {};
}

Status restore_base(Repo& repo, const std::string& id, const std::string& empty_target_dir,
                    const std::string& run_as_user) {
  auto m = read_manifest(repo, id);
  if (!m) return m.error();
  auto user = lookup_user(run_as_user);
  if (!user) return user.error();
  auto [uid, gid] = *user;

  fs::path target = fs::absolute(empty_target_dir).lexically_normal();
  if (target.filename().empty()) target = target.parent_path();
  std::error_code ec;
  bool target_exists = fs::exists(target, ec);
  if (target_exists && (!fs::is_directory(target, ec) || !fs::is_empty(target, ec))) {
    return make_error(Errc::conflict, "restore target {} exists and is not an empty directory", target.string());
  }
  if (!fs::is_directory(target.parent_path(), ec)) {
    return make_error(Errc::not_found, "the parent of restore target {} does not exist", target.string());
  }
  fs::path tmp = target.parent_path() / fmt::format(".{}.restore-{}", target.filename().string(), ::getpid());
  fs::remove_all(tmp, ec);
  if (::mkdir(tmp.c_str(), 0700) != 0) return make_error(Errc::io, "mkdir {}: {}", tmp.string(), std::strerror(errno));
  auto fail = [&](Error e) -> Status {
    std::error_code ignore;
    fs::remove_all(tmp, ignore);
    return e;
  };
  if (::chown(tmp.c_str(), uid, gid) != 0) {
    return fail(make_error(Errc::io, "chown {}: {}", tmp.string(), std::strerror(errno)));
  }

  std::vector<std::string> in_place;
  std::map<std::string, uint32_t> ts_by_key;
  for (const auto& t : m->tablespaces) {
    in_place.push_back(fmt::format("pg_tblspc/{}", t.oid));
    ts_by_key[t.key] = t.oid;
  }
  for (const auto& obj : m->objects) {
    std::string name = object_name(obj.key);
    Status st;
    if (name == "backup_manifest") {
      std::string text;
      st = stream_object(repo, obj, [&](std::string_view b) -> Status {
        text.append(b);
        return {};
      });
      if (st) st = write_file((tmp / "backup_manifest").string(), text, uid, gid);
    } else {
      fs::path root = tmp;
      if (auto it = ts_by_key.find(obj.key); it != ts_by_key.end()) {
        root = tmp / "pg_tblspc" / std::to_string(it->second);
        if (::mkdir(root.c_str(), 0700) != 0 && errno != EEXIST) {
          return fail(make_error(Errc::io, "mkdir {}: {}", root.string(), std::strerror(errno)));
        }
        if (::chown(root.c_str(), uid, gid) != 0) {
          return fail(make_error(Errc::io, "chown {}: {}", root.string(), std::strerror(errno)));
        }
      } else if (name != "base.tar") {
        return fail(make_error(Errc::protocol, "backup {} lists an unknown object '{}'", id, obj.key));
      }
      TarExtractor extractor(root.string(), uid, gid, root == tmp ? in_place : std::vector<std::string>{});
      st = read_tar_object(repo, obj, extractor);
    }
    if (!st) return fail(st.error());
  }
  // Make the files durable before the directory appears under its final name.
  int dfd = ::open(tmp.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0 || ::syncfs(dfd) != 0) {
    int err = errno;
    if (dfd >= 0) ::close(dfd);
    return fail(make_error(Errc::io, "sync {}: {}", tmp.string(), std::strerror(err)));
  }
  ::close(dfd);
  if (target_exists && ::rmdir(target.c_str()) != 0) {
    return fail(make_error(Errc::io, "rmdir {}: {}", target.string(), std::strerror(errno)));
  }
  if (::rename(tmp.c_str(), target.c_str()) != 0) {
    return fail(make_error(Errc::io, "rename {} to {}: {}", tmp.string(), target.string(), std::strerror(errno)));
  }
  int pfd = ::open(target.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (pfd >= 0) {
    (void)::fsync(pfd);
    ::close(pfd);
  }
  return {};
}

Status delete_backup(Repo& repo, const std::string& id) {
  if (id.empty() || id.find('/') != std::string::npos || !backup_id_time(id)) {
    return make_error(Errc::invalid_argument, "'{}' is not a backup id", id);
  }
  auto objects = repo.store().list(backup_prefix(id));
  if (!objects) return objects.error();
  if (objects->empty()) return make_error(Errc::not_found, "no backup {} in {}", id, repo.url());
  if (auto st = repo.store().del(backup_manifest_key(id)); !st) return st;
  for (const auto& o : *objects) {
    if (auto st = repo.store().del(o.key); !st) return st;
  }
  return {};
}

}  // namespace tandem::backup
