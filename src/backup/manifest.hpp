#pragma once
// BackupManifest: what Tandem records about one base backup, stored LAST as the sealed
// object `backups/<id>/tandem.json`; a backup without it is incomplete. Plain values with
// a JSON round trip, plus the small pure helpers the backup code shares: backup ids
// (UTC start time "YYYYMMDDTHHMMSSZ", "-2", "-3" on collision), WAL segment names and
// ISO-8601 times. No I/O here.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "backup/repo.hpp"
#include "base/lsn.hpp"
#include "base/result.hpp"

namespace tandem::backup {

inline constexpr const char* kManifestName = "tandem.json";

// One stored object of a backup.
struct BackupObject {
  std::string key;  // full store key, "backups/<id>/base.tar"
  uint64_t plaintext_bytes = 0;
  uint64_t stored_bytes = 0;  // sealed size in the store
  std::string sha256;         // hex SHA-256 of the plaintext
  // "" when the plaintext is the file itself; "zstd" when PostgreSQL compressed the tar
  // (server-side compression): the plaintext is then a zstd frame of the tar.
  std::string compression;
  bool operator==(const BackupObject&) const = default;
};

// A tablespace other than pg_default/pg_global, stored as its own tar.
struct BackupTablespace {
  uint32_t oid = 0;
  std::string location;  // path on the source server
  std::string key;       // its object's key
  bool operator==(const BackupTablespace&) const = default;
};

struct BackupManifest {
  int format = 1;
  std::string id;
  std::string cluster;
  std::string system_identifier;  // decimal, as IDENTIFY_SYSTEM prints it
  int pg_version = 0;             // server_version_num, e.g. 150005
  uint32_t timeline = 0;
  Lsn start_lsn;
  Lsn stop_lsn;
  std::string start_wal;  // segment holding start_lsn
  std::string stop_wal;   // last segment a restore needs (holds stop_lsn - 1)
  uint64_t wal_segment_size = kDefaultWalSegmentSize;
  std::string start_time;  // ISO-8601 UTC, "2026-11-28T13:05:00Z"
  std::string stop_time;
  uint64_t bytes = 0;  // uncompressed total (tar bytes as PostgreSQL reported them, plus the manifest)
  uint64_t stored_bytes = 0;
  std::vector<BackupObject> objects;  // data objects in upload order (tandem.json not included)
  std::vector<BackupTablespace> tablespaces;
  std::string key_id;  // hex id of the KEK that sealed the objects
  std::string label;
  bool operator==(const BackupManifest&) const = default;
};

std::string manifest_to_json(const BackupManifest& m);
// Errors name the field and the backup ("backup manifest 'X': field 'stop_lsn' ...").
Result<BackupManifest> manifest_from_json(std::string_view text, const std::string& what);

// The id for a backup started at `t` ("20261128T130500Z"); `taken` are ids already in the
// store: a taken id gets "-2", "-3", ...
std::string make_backup_id(std::chrono::system_clock::time_point t, const std::vector<std::string>& taken);
// The start time encoded in an id (suffixes ignored); nullopt when it is not an id.
std::optional<std::chrono::system_clock::time_point> backup_id_time(std::string_view id);

// ISO-8601 UTC with seconds ("2026-11-28T13:05:00Z") and back.
std::string format_utc(std::chrono::system_clock::time_point t);
std::optional<std::chrono::system_clock::time_point> parse_utc(std::string_view text);

// "1.5 GiB", "730 MiB", "12 KiB", "17 B".
std::string human_bytes(uint64_t n);

}  // namespace tandem::backup
