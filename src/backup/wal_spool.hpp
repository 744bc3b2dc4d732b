#pragma once
// The WAL push spool: a directory (RUN_DIR/wal-push-spool) where whoever pushed a WAL
// file ahead of PostgreSQL's archive_command records that it is durably stored, so that
// `tandem wal-push` (archive_command) can acknowledge it without pushing it again.
//
// Files in the spool:
//   <name>          entry, written only after the object is durably stored:
//                   "v1 <sha256 of the file's bytes> <store url>\n" (temporary + rename)
//   <name>.pushing  marker: the archiver is pushing <name> right now
//   archiver.lock   flock()ed (exclusive) by the running AsyncArchiver for its lifetime
//
// An entry acknowledges a file only when both the content hash and the store URL match, so
// a stale entry (pg_rewind, a restart, another leader, a changed repository) never
// acknowledges different bytes or another store; it only costs a normal push. Markers count
// only while the lock is held, so a crashed archiver never makes wal-push wait.
//
// Stateless functions; safe from any thread and process.
#include <chrono>
#include <string>

#include "base/result.hpp"

namespace tandem::backup {

inline constexpr const char* kSpoolLockName = "archiver.lock";
inline constexpr const char* kSpoolMarkerSuffix = ".pushing";

// Records that `name` with content hash `sha256_hex` is durably stored in `store_url`.
Status write_spool_entry(const std::string& spool_dir, const std::string& name, const std::string& sha256_hex,
                         const std::string& store_url);
// True when the entry for `name` names exactly this content and store.
bool spool_entry_matches(const std::string& spool_dir, const std::string& name, const std::string& sha256_hex,
                         const std::string& store_url);
void remove_spool_entry(const std::string& spool_dir, const std::string& name);

// In-progress markers (AsyncArchiver only).
void set_spool_marker(const std::string& spool_dir, const std::string& name);
void clear_spool_marker(const std::string& spool_dir, const std::string& name);
bool spool_marker_exists(const std::string& spool_dir, const std::string& name);

// True while an AsyncArchiver holds the spool's lock (a live process).
bool spool_archiver_running(const std::string& spool_dir);

// Waits while a running archiver is pushing `name` (its marker exists), polling every few
// milliseconds, at most `timeout`. Returns true when it stopped pushing (or never was).
bool wait_for_spool_marker(const std::string& spool_dir, const std::string& name, std::chrono::milliseconds timeout);

// The spool's lock, held by one AsyncArchiver: acquire() fails with Errc::conflict when
// another process holds it. Released on destruction (or by the kernel when the process
// dies). Owned by the archiver; not thread-safe.
class SpoolLock {
 public:
  SpoolLock() = default;
  ~SpoolLock();
  SpoolLock(const SpoolLock&) = delete;
  SpoolLock& operator=(const SpoolLock&) = delete;
  Status acquire(const std::string& spool_dir);
  void release();

 private:
  int fd_ = -1;
};

}  // namespace tandem::backup
