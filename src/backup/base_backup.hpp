#pragma once
// Base backups: taking one from a running PostgreSQL 15 server into the repository, and
// reading, verifying and restoring what is stored.
//
// create_backup() runs BASE_BACKUP over a replication connection and streams each tar
// archive straight into the store, pipelined over threads: PostgreSQL compresses (zstd,
// server side) or the sealer does (client side, on zstd worker threads); the calling
// thread reads the COPY stream, hashes it and encrypts (AES-GCM), and an upload thread
// drains sealed chunks into ObjectStore::put_stream (S3 parts go out while reading
// continues). Nothing is written locally. Objects land under backups/<id>/: base.tar, ts-<oid>.tar per tablespace,
// backup_manifest (PostgreSQL's), and last tandem.json (our manifest, see manifest.hpp).
//
// restore_base() verifies while it extracts into a temporary directory beside the target
// and renames it into place only after every object verified, so a damaged backup never
// leaves a partial data directory behind.
//
// All functions block; run them off event loops. The Repo is used by the calling thread;
// extra threads open their own store connections (Repo::open_store()).
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "backup/manifest.hpp"
#include "backup/repo.hpp"
#include "base/result.hpp"
#include "pg/conninfo.hpp"
#include "storage/crypto.hpp"

namespace tandem::backup {

struct CreateOptions {
  pg::ConnParams conn;      // where to back up from (a replication connection is opened)
  pg::ConnParams sql_conn;  // same server, ordinary connection (archive status); defaults to conn
  std::string cluster;
  std::string label;  // default "tandem <id>"
  // After BASE_BACKUP, wait until the stop segment is in the archive (0 = do not wait).
  // Skipped when the server does not archive (archive_mode = off).
  std::chrono::seconds archive_timeout{300};
  // Where the tar streams are compressed. server: PostgreSQL compresses them with zstd
  // (COMPRESSION 'zstd', `server_zstd_workers` extra threads in the walsender) and we only
  // encrypt, so far fewer bytes cross the socket and the client stays light; the stored
  // plaintext is then a zstd frame of the tar. client: PostgreSQL sends plain tar and the
  // sealer compresses (`seal.zstd_level`, `seal.zstd_workers`).
  enum class Compression { server, client };
  Compression compression = Compression::server;
  int server_zstd_level = 1;
  int server_zstd_workers = 0;
  storage::SealOptions seal{.chunk_size = 1u << 20, .compress = true, .zstd_level = 1, .zstd_workers = 1};
  // Called about every `progress_interval` with a one-line status (percent, MB/s).
  std::function<void(const std::string&)> progress;
  std::chrono::milliseconds progress_interval{2000};
};

// Takes a full backup; returns its manifest (already stored as tandem.json).
Result<BackupManifest> create_backup(Repo& repo, const CreateOptions& options);

// One backup directory in the store.
struct BackupEntry {
  std::string id;
  bool complete = false;  // tandem.json present and readable
  std::optional<BackupManifest> manifest;
  std::string problem;        // why tandem.json could not be read (complete = false)
  uint64_t stored_bytes = 0;  // sum of the objects present
  size_t objects = 0;
};

// Every backup directory, complete or not, sorted by id (oldest first).
Result<std::vector<BackupEntry>> list_backup_entries(Repo& repo);
// Complete backups only, oldest first.
Result<std::vector<BackupManifest>> list_backups(Repo& repo);
Result<BackupManifest> read_manifest(Repo& repo, const std::string& id);

// Downloads and opens every object of the backup: all present, authentic, complete, and
// their sizes and SHA-256 match the manifest. The error names the object and the problem.
Status verify_backup(Repo& repo, const std::string& id);
// Every WAL segment from start_wal to stop_wal is archived and opens with our keys.
Status verify_backup_wal(Repo& repo, const BackupManifest& manifest);

// Extracts the backup into `empty_target_dir` (which must not exist or be empty), owned
// by `run_as_user`, mode 0700; tablespaces become in-place directories under pg_tblspc.
// PostgreSQL's backup_manifest is written into the data directory as pg_basebackup does.
Status restore_base(Repo& repo, const std::string& id, const std::string& empty_target_dir,
                    const std::string& run_as_user);

// Deletes every object of a backup, tandem.json first (so it turns incomplete at once).
Status delete_backup(Repo& repo, const std::string& id);

}  // namespace tandem::backup
