#pragma once
// The backup repository: one object store plus the keyring that seals and opens what is
// stored there, and the naming rules for its objects.
//
// Layout (every object sealed with storage::seal, object name = key):
//   wal/<24-hex segment>         archived WAL segment (timeline, log, segment in the name)
//   wal/<8-hex tli>.history      timeline history file
//   wal/<segment>.<offset>.backup, wal/<segment>.partial   other files PostgreSQL archives
//   backups/<id>/...             one base backup; backups/<id>/tandem.json is written last
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.hpp"
#include "config/agent_config.hpp"
#include "storage/keyring.hpp"
#include "storage/object_store.hpp"

namespace tandem::backup {

// Where a repository is and how to open it.
struct RepoConfig {
  std::string store_url;  // file:///abs/dir or s3://bucket/prefix?endpoint=...&region=...
  std::string key_file;   // active KEK, mode 0600
  std::vector<std::string> retired_key_files;
  std::string credentials_file;         // S3 INI credentials; empty = environment
  bool create_key = false;              // create key_file when missing (only `tandem up` does this)
  storage::StoreOptions store_options;  // credentials_file is copied in by open_repo()
};

RepoConfig repo_config_from(const config::BackupConfig& backup);

// An open repository. Owned by one command or by the agent; store() is for the owning
// thread only (object stores are single-threaded) — other threads call open_store() for
// their own connection. The keyring is immutable and may be shared by every thread.
class Repo {
 public:
  Repo(RepoConfig config, std::unique_ptr<storage::ObjectStore> store, storage::Keyring keyring);

  storage::ObjectStore& store() { return *store_; }
  const storage::Keyring& keyring() const { return keyring_; }
  const RepoConfig& config() const { return config_; }
  std::string url() const { return store_->url(); }

  // A second, independent connection to the same store, for a parallel thread.
  Result<std::unique_ptr<storage::ObjectStore>> open_store() const;

  // Seals `plaintext` under the active key and stores it under `key` (durable on success).
  Status put_sealed(const std::string& key, std::string_view plaintext, const storage::SealOptions& options = {});
  // Fetches and opens an object; Errc::not_found only when the object does not exist,
  // any other failure (wrong key, tampering, truncation) keeps its own code.
  Result<std::string> get_unsealed(const std::string& key);

 private:
  RepoConfig config_;
  std::unique_ptr<storage::ObjectStore> store_;
  storage::Keyring keyring_;
};

// Opens the store and loads the keys. Fails when a key file is missing (unless
// create_key), readable by group/others, or malformed.
Result<std::unique_ptr<Repo>> open_repo(const RepoConfig& config);

// ---- object names ----

inline constexpr uint64_t kDefaultWalSegmentSize = 16u << 20;

std::string wal_key(std::string_view file_name);  // "wal/" + name
inline constexpr std::string_view kWalPrefix = "wal/";
inline constexpr std::string_view kBackupsPrefix = "backups/";
std::string backup_prefix(std::string_view id);                             // "backups/<id>/"
std::string backup_object_key(std::string_view id, std::string_view name);  // "backups/<id>/<name>"
std::string backup_manifest_key(std::string_view id);                       // "backups/<id>/tandem.json"

// A WAL segment name: 24 upper-case hex digits = timeline, log, segment.
struct SegmentName {
  uint32_t timeline = 0;
  uint32_t log = 0;
  uint32_t seg = 0;
  std::string to_string() const;
  auto operator<=>(const SegmentName&) const = default;
};
std::optional<SegmentName> parse_segment_name(std::string_view name);

// Segment number across logs (log * segments_per_log + seg) and back.
uint64_t segment_number(const SegmentName& s, uint64_t segment_size = kDefaultWalSegmentSize);
SegmentName segment_from_number(uint32_t timeline, uint64_t number, uint64_t segment_size = kDefaultWalSegmentSize);
// The segment that holds `lsn` on `timeline`.
SegmentName segment_for_lsn(uint32_t timeline, uint64_t lsn, uint64_t segment_size = kDefaultWalSegmentSize);
// The segment after `s` on the same timeline.
SegmentName next_segment(const SegmentName& s, uint64_t segment_size = kDefaultWalSegmentSize);

// "00000002.history" -> 2.
std::optional<uint32_t> parse_history_name(std::string_view name);
std::string history_name(uint32_t timeline);

enum class WalFileKind { segment, history, backup_label, partial };
// The kind of a file PostgreSQL hands to archive_command / restore_command, or nullopt
// for a name we do not archive (which also rejects anything path-like).
std::optional<WalFileKind> classify_wal_file(std::string_view name);

}  // namespace tandem::backup
