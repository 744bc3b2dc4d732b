// create_backup(): BASE_BACKUP over libpq, streamed and sealed into the store.
#include "backup/base_backup.hpp"

#include <libpq-fe.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include <fmt/format.h>

#include "backup/pipe.hpp"
#include "pg/conn.hpp"
#include "storage/digest.hpp"

namespace tandem::backup {

namespace {

using Clock = std::chrono::steady_clock;

// One object being sealed on the calling thread and uploaded on its own thread.
class ObjectUpload {
 public:
  ObjectUpload(std::string key, std::unique_ptr<storage::ObjectStore> store, std::string compression = "")
      : key_(std::move(key)), compression_(std::move(compression)), store_(std::move(store)), pipe_(32u << 20) {}
  ~ObjectUpload() {
    pipe_.abort();
    if (thread_.joinable()) thread_.join();
  }

  Status start(const storage::Kek& kek, const storage::SealOptions& options) {
    auto w = storage::SealWriter::create(
        kek,
        [this](std::string_view bytes) -> Status {
          if (!pipe_.push(bytes)) {
            return make_error(Errc::io, "upload of '{}' to {} stopped", key_, store_->url());
          }
          return {};
        },
        key_, options);
    if (!w) return w.error();
    writer_ = std::move(*w);
    thread_ = std::thread([this] {
      upload_status_ = store_->put_stream(key_, [this](char* buf, size_t cap) { return pipe_.read(buf, cap); });
      if (!upload_status_) pipe_.abort();
    });
    return {};
  }

  Status write(std::string_view plaintext) {
    sha_.update(plaintext);
    auto st = writer_->write(plaintext);
    return st ? st : upload_error_or(st);
  }

  // Seals the rest, waits for the upload and returns the finished object's entry.
  Result<BackupObject> finish() {
    auto st = writer_->finish();
    if (!st) return upload_error_or(st).error();
    pipe_.close();
    thread_.join();
    if (!upload_status_) return upload_status_.error();
    return BackupObject{key_, writer_->plaintext_bytes(), writer_->sealed_bytes(), storage::to_hex(sha_.finish()),
                        compression_};
  }

  uint64_t sealed_bytes() const { return writer_ ? writer_->sealed_bytes() : 0; }

 private:
  // When the upload thread failed, its error explains a stalled write better.
  Status upload_error_or(Status st) {
    pipe_.abort();
    if (thread_.joinable()) thread_.join();
    if (!upload_status_) return upload_status_;
    return st;
  }

  std::string key_;
  std::string compression_;
  std::unique_ptr<storage::ObjectStore> store_;
  BlockPipe pipe_;
  std::unique_ptr<storage::SealWriter> writer_;
  storage::Sha256Stream sha_;
  std::thread thread_;
  Status upload_status_;
};

struct PgResult {
  PGresult* r = nullptr;
  explicit PgResult(PGresult* res) : r(res) {}
  ~PgResult() {
    if (r) PQclear(r);
  }
  PgResult(const PgResult&) = delete;
  PgResult& operator=(const PgResult&) = delete;
  ExecStatusType status() const { return r ? PQresultStatus(r) : PGRES_FATAL_ERROR; }
  std::string value(int row, int col) const {
    if (!r || row >= PQntuples(r) || col >= PQnfields(r) || PQgetisnull(r, row, col)) return {};
    return PQgetvalue(r, row, col);
  }
};

std::string pg_error(pg_conn* c) {
  std::string msg = PQerrorMessage(c);
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  return msg;
}

// "16MB" / "1GB" / "16384kB" -> bytes.
uint64_t parse_pg_size(const std::string& text) {
  size_t i = 0;
  uint64_t v = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') v = v * 10 + static_cast<uint64_t>(text[i++] - '0');
  std::string unit = text.substr(i);
  if (unit == "kB") return v << 10;
  if (unit == "MB") return v << 20;
  if (unit == "GB") return v << 30;
  return v;
}

std::string quote_label(const std::string& label) {
  std::string out = "'";
  for (char c : label) {
    if (c == '\'') out += '\'';
    out += c;
  }
  return out + "'";
}

uint64_t read_be64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

// Tracks the stream's tail to tell whether the server terminated the tar archive.
class TarTail {
 public:
  void add(std::string_view b) {
    if (b.size() >= 1024) {
      tail_.assign(b.substr(b.size() - 1024));
    } else {
      tail_.append(b);
      if (tail_.size() > 1024) tail_.erase(0, tail_.size() - 1024);
    }
  }
  bool terminated() const {
    return tail_.size() == 1024 && std::all_of(tail_.begin(), tail_.end(), [](char c) { return c == '\0'; });
  }

 private:
  std::string tail_;
};

class BackupRun {
 public:
  BackupRun(Repo& repo, const CreateOptions& opts) : repo_(repo), opts_(opts) {}

  Result<BackupManifest> run();

 private:
  Status connect_and_identify();
  Status start_archive(const std::string& name, const std::string& location);
  Status finish_archive();
  Status stream();
  Status wait_for_archive();
  void report_progress(bool force);
  void cleanup();

  Repo& repo_;
  const CreateOptions& opts_;
  std::optional<pg::Connection> conn_;
  BackupManifest m_;
  std::unique_ptr<ObjectUpload> current_;
  TarTail tail_;
  bool in_tar_ = false;
  uint64_t total_estimate_ = 0;
  uint64_t done_ = 0;
  uint64_t stored_done_ = 0;
  Clock::time_point started_ = Clock::now();
  Clock::time_point last_report_ = Clock::now();
  std::vector<std::string> written_;  // keys, for cleanup after a failure
};

Status BackupRun::connect_and_identify() {
  pg::ConnParams p = opts_.conn;
  p.replication = true;
  p.statement_timeout_ms = 0;
  if (p.application_name.empty()) p.application_name = "tandem-backup";
  auto c = pg::Connection::open(p);
  if (!c) return c.error();
  conn_.emplace(std::move(*c));
  pg_conn* raw = conn_->raw();
  PgResult id(PQexec(raw, "IDENTIFY_SYSTEM"));
  if (id.status() != PGRES_TUPLES_OK) {
    return make_error(Errc::protocol, "IDENTIFY_SYSTEM on {}:{} failed: {}", p.host, p.port, pg_error(raw));
  }
  m_.system_identifier = id.value(0, 0);
  m_.pg_version = PQserverVersion(raw);
  if (m_.pg_version < 150000) {
    return make_error(Errc::invalid_argument, "server {}:{} runs PostgreSQL {}; base backups need 15 or later", p.host,
                      p.port, m_.pg_version);
  }
  PgResult seg(PQexec(raw, "SHOW wal_segment_size"));
  if (seg.status() != PGRES_TUPLES_OK) {
    return make_error(Errc::protocol, "SHOW wal_segment_size failed: {}", pg_error(raw));
  }
  m_.wal_segment_size = parse_pg_size(seg.value(0, 0));
  if (m_.wal_segment_size == 0) return make_error(Errc::protocol, "odd wal_segment_size '{}'", seg.value(0, 0));
  return {};
}

Status BackupRun::start_archive(const std::string& name, const std::string& location) {
  if (auto st = finish_archive(); !st) return st;
  std::string object = name;
  if (object.ends_with(".zst")) object.resize(object.size() - 4);  // server-side compression names it so
  if (!location.empty()) {
    // "<oid>.tar" for a tablespace: stored as ts-<oid>.tar
    std::string oid = object.substr(0, object.find('.'));
    if (oid.empty() || !std::all_of(oid.begin(), oid.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return make_error(Errc::protocol, "unexpected archive name '{}' for tablespace {}", name, location);
    }
    object = "ts-" + oid + ".tar";
    m_.tablespaces.push_back({static_cast<uint32_t>(std::stoul(oid)), location, backup_object_key(m_.id, object)});
  } else if (object != "base.tar") {
    return make_error(Errc::protocol, "unexpected archive name '{}' (expected base.tar)", name);
  }
  auto store = repo_.open_store();
  if (!store) return store.error();
  std::string key = backup_object_key(m_.id, object);
  bool server = opts_.compression == CreateOptions::Compression::server;
  current_ = std::make_unique<ObjectUpload>(key, std::move(*store), server ? "zstd" : "");
  written_.push_back(key);
  tail_ = TarTail{};
  in_tar_ = true;
  storage::SealOptions seal = opts_.seal;
  if (server) seal.compress = false;  // already a zstd frame
  return current_->start(repo_.keyring().active(), seal);
}

Status BackupRun::finish_archive() {
  if (!current_) return {};
  bool server = opts_.compression == CreateOptions::Compression::server;
  if (in_tar_ && !server && !tail_.terminated()) {
    // PostgreSQL may leave out the two zero blocks that end a tar archive.
    std::string trailer(1024, '\0');
    if (auto st = current_->write(trailer); !st) return st;
  }
  auto obj = current_->finish();
  if (!obj) return obj.error();
  stored_done_ += obj->stored_bytes;
  m_.objects.push_back(std::move(*obj));
  current_.reset();
  return {};
}

void BackupRun::report_progress(bool force) {
  if (!opts_.progress) return;
  auto now = Clock::now();
  if (!force && now - last_report_ < opts_.progress_interval) return;
  last_report_ = now;
  double secs = std::chrono::duration<double>(now - started_).count();
  double mbs = secs > 0 ? static_cast<double>(done_) / 1e6 / secs : 0;
  uint64_t stored = stored_done_ + (current_ ? current_->sealed_bytes() : 0);
  std::string pct = total_estimate_ > 0
                        ? fmt::format("{:3.0f}%", std::min(100.0, 100.0 * static_cast<double>(done_) /
                                                                      static_cast<double>(total_estimate_)))
                        : "   ?";
  opts_.progress(fmt::format("backup {}: {} {} of ~{}, {:.0f} MB/s, stored {}", m_.id, pct, human_bytes(done_),
                             human_bytes(total_estimate_), mbs, human_bytes(stored)));
}

Status BackupRun::stream() {
  pg_conn* raw = conn_->raw();
  std::string label = opts_.label.empty() ? "tandem " + m_.id : opts_.label;
  m_.label = label;
  if (label.size() > 200) return make_error(Errc::invalid_argument, "backup label longer than 200 bytes");
  std::string compression;
  if (opts_.compression == CreateOptions::Compression::server) {
    compression =
        fmt::format(", COMPRESSION 'zstd', COMPRESSION_DETAIL 'level={}{}'", opts_.server_zstd_level,
                    opts_.server_zstd_workers > 0 ? fmt::format(",workers={}", opts_.server_zstd_workers) : "");
  }
  std::string cmd =
      fmt::format("BASE_BACKUP (LABEL {}, PROGRESS, CHECKPOINT 'fast', WAIT false, MANIFEST 'yes', TARGET 'client'{})",
                  quote_label(label), compression);
  if (PQsendQuery(raw, cmd.c_str()) != 1) return make_error(Errc::io, "BASE_BACKUP: {}", pg_error(raw));

  PgResult start(PQgetResult(raw));
  if (start.status() != PGRES_TUPLES_OK) return make_error(Errc::protocol, "BASE_BACKUP failed: {}", pg_error(raw));
  auto lsn = Lsn::parse(start.value(0, 0));
  if (!lsn) return make_error(Errc::protocol, "BASE_BACKUP sent an odd start position '{}'", start.value(0, 0));
  m_.start_lsn = *lsn;
  m_.timeline = static_cast<uint32_t>(std::stoul(start.value(0, 1)));
  m_.start_wal = segment_for_lsn(m_.timeline, m_.start_lsn.value(), m_.wal_segment_size).to_string();

  PgResult spaces(PQgetResult(raw));
  if (spaces.status() != PGRES_TUPLES_OK) {
    return make_error(Errc::protocol, "BASE_BACKUP tablespace list failed: {}", pg_error(raw));
  }
  for (int i = 0; i < PQntuples(spaces.r); ++i) {
    std::string kb = spaces.value(i, 2);
    if (!kb.empty()) total_estimate_ += std::stoull(kb) * 1024;
  }
  PgResult copy(PQgetResult(raw));
  if (copy.status() != PGRES_COPY_OUT)
    return make_error(Errc::protocol, "BASE_BACKUP did not start COPY: {}", pg_error(raw));

  bool in_manifest = false;
  std::string pg_manifest;
  while (true) {
    char* buf = nullptr;
    int n = PQgetCopyData(raw, &buf, 0);
    if (n == -1) break;
    if (n == -2) return make_error(Errc::io, "reading the backup stream failed: {}", pg_error(raw));
    std::unique_ptr<char, void (*)(void*)> hold(buf, PQfreemem);
    if (n < 1) continue;
    std::string_view msg(buf, static_cast<size_t>(n));
    char type = msg.front();
    msg.remove_prefix(1);
    switch (type) {
      case 'n': {
        std::string name(msg.data(), strnlen(msg.data(), msg.size()));
        std::string_view rest = msg.substr(std::min(msg.size(), name.size() + 1));
        std::string location(rest.data(), strnlen(rest.data(), rest.size()));
        if (auto st = start_archive(name, location); !st) return st;
        break;
      }
      case 'd':
        if (in_manifest) {
          pg_manifest.append(msg);
        } else {
          if (!current_) return make_error(Errc::protocol, "backup stream sent data before an archive");
          tail_.add(msg);
          if (auto st = current_->write(msg); !st) return st;
        }
        break;
      case 'p':
        if (msg.size() >= 8) done_ = read_be64(msg.data());
        report_progress(false);
        break;
      case 'm':
        if (auto st = finish_archive(); !st) return st;
        in_manifest = true;
        break;
      default: return make_error(Errc::protocol, "backup stream sent an unknown message type '{}'", type);
    }
  }
  if (auto st = finish_archive(); !st) return st;
  // libpq reports the end of the COPY (COMMAND_OK), then the stop position (one row),
  // then the command's completion.
  std::optional<Lsn> stop;
  uint32_t stop_tli = 0;
  while (PGresult* r = PQgetResult(raw)) {
    PgResult res(r);
    if (res.status() == PGRES_TUPLES_OK && !stop) {
      stop = Lsn::parse(res.value(0, 0));
      if (!stop) return make_error(Errc::protocol, "BASE_BACKUP sent an odd stop position '{}'", res.value(0, 0));
      stop_tli = static_cast<uint32_t>(std::stoul(res.value(0, 1)));
    } else if (res.status() != PGRES_COMMAND_OK && res.status() != PGRES_TUPLES_OK) {
      return make_error(Errc::protocol, "BASE_BACKUP failed at the end: {}", pg_error(raw));
    }
  }
  if (!stop) return make_error(Errc::protocol, "BASE_BACKUP ended without a stop position");
  m_.stop_lsn = *stop;
  if (stop_tli != m_.timeline) {
    return make_error(Errc::conflict, "the timeline changed during the backup ({} -> {}); take it again", m_.timeline,
                      stop_tli);
  }
  m_.stop_wal = segment_for_lsn(m_.timeline, m_.stop_lsn.value() - 1, m_.wal_segment_size).to_string();
  if (pg_manifest.empty()) return make_error(Errc::protocol, "the server sent no backup_manifest");
  std::string key = backup_object_key(m_.id, "backup_manifest");
  written_.push_back(key);
  auto store = repo_.open_store();
  if (!store) return store.error();
  ObjectUpload up(key, std::move(*store));
  if (auto st = up.start(repo_.keyring().active(), opts_.seal); !st) return st;
  if (auto st = up.write(pg_manifest); !st) return st;
  auto obj = up.finish();
  if (!obj) return obj.error();
  m_.objects.push_back(std::move(*obj));
  return {};
}

Status BackupRun::wait_for_archive() {
  if (opts_.archive_timeout.count() == 0) return {};
  pg::ConnParams p = opts_.sql_conn.host.empty() ? opts_.conn : opts_.sql_conn;
  p.replication = false;
  auto mode = pg::query_once(p, "SELECT current_setting('archive_mode')");
  if (!mode) return mode.error();
  if (!mode->rows.empty() && mode->rows[0][0].value_or("off") == "off") return {};
  std::string key = wal_key(m_.stop_wal);
  auto deadline = Clock::now() + opts_.archive_timeout;
  while (true) {
    auto present = repo_.store().exists(key);
    if (!present) return present.error();
    if (*present) return {};
    if (Clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  std::string why;
  auto st =
      pg::query_once(p, "SELECT coalesce(last_failed_wal, ''), coalesce(last_archived_wal, '') FROM pg_stat_archiver");
  if (st && !st->rows.empty()) {
    why = fmt::format(" (pg_stat_archiver: last archived '{}', last failed '{}')", st->rows[0][1].value_or(""),
                      st->rows[0][0].value_or(""));
  }
  return make_error(Errc::timeout, "WAL segment {} (end of backup {}) did not reach {} within {}s{}", m_.stop_wal,
                    m_.id, repo_.url(), opts_.archive_timeout.count(), why);
}

void BackupRun::cleanup() {
  current_.reset();
  for (const auto& key : written_) (void)repo_.store().del(key);
}

Result<BackupManifest> BackupRun::run() {
  auto now = std::chrono::system_clock::now();
  auto existing = repo_.store().list(kBackupsPrefix.data());
  if (!existing) return existing.error();
  std::vector<std::string> taken;
  for (const auto& o : *existing) {
    std::string rest = o.key.substr(kBackupsPrefix.size());
    taken.push_back(rest.substr(0, rest.find('/')));
  }
  m_.id = make_backup_id(now, taken);
  m_.cluster = opts_.cluster;
  m_.label = opts_.label;
  m_.start_time = format_utc(now);
  m_.key_id = storage::key_id_hex(repo_.keyring().active().id());
  started_ = Clock::now();

  if (auto st = connect_and_identify(); !st) return st.error();
  if (auto st = stream(); !st) {
    cleanup();
    return st.error();
  }
  conn_.reset();
  report_progress(true);
  if (auto st = wait_for_archive(); !st) {
    cleanup();
    return st.error();
  }
  m_.stop_time = format_utc(std::chrono::system_clock::now());
  uint64_t plain = 0;
  for (const auto& o : m_.objects) {
    plain += o.plaintext_bytes;
    m_.stored_bytes += o.stored_bytes;
  }
  // With server-side compression the tar objects hold zstd frames; PostgreSQL's progress
  // counter is the uncompressed tar size (the manifest object is stored uncompressed).
  m_.bytes =
      opts_.compression == CreateOptions::Compression::server ? done_ + m_.objects.back().plaintext_bytes : plain;
  if (auto st = repo_.put_sealed(backup_manifest_key(m_.id), manifest_to_json(m_)); !st) {
    cleanup();
    return st.error();
  }
  return m_;
}

}  // namespace

Result<BackupManifest> create_backup(Repo& repo, const CreateOptions& options) {
  BackupRun run(repo, options);
  return run.run();
}

}  // namespace tandem::backup
