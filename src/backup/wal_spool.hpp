#pragma once
// The WAL push spool: a directory (RUN_DIR/wal-push-spool) where whoever pushed a WAL
// file ahead of PostgreSQL's archive_command records that it is durably stored, so that
// `tandem wal-push` (archive_command) can acknowledge it without pushing it again.
//
// Files in the spool:
//   <name>          entry, written only after the object is durably stored:
//                   "v2 <nonce> <tag> <store url>\n" (temporary + rename), where tag is
//                   the SpoolMac of the file's bytes under that nonce
//   <name>.pushing  marker: the archiver is pushing <name> right now
//   archiver.lock   flock()ed (exclusive) by the running AsyncArchiver for its lifetime
//
// An entry acknowledges a file only when both the content MAC and the store URL match, so
// a stale entry (pg_rewind, a restart, another leader, a changed repository) never
// acknowledges different bytes or another store; it only costs a normal push. Markers count
// only while the lock is held, so a crashed archiver never makes wal-push wait.
//
// Stateless functions; safe from any thread and process.
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.hpp"
#include "storage/keyring.hpp"

namespace tandem::backup {

// The fingerprint of a file's bytes in a spool entry: AES-256-GMAC (GCM over the bytes as
// associated data) under a key derived from the repository's active KEK (HMAC-SHA-256),
// with a random 96-bit nonce per entry. A keyed MAC rather than a plain hash: 5x cheaper
// than SHA-256 here (it runs once when the archiver stores a segment and once when
// wal-push acknowledges it), and an entry cannot be made without the key. Different bytes
// match with probability about 2^-108 for a 16 MiB segment. Owned by one caller.
class SpoolMac {
 public:
  // `nonce_hex` empty: a fresh random nonce (for a new entry); else the entry's nonce.
  static Result<std::unique_ptr<SpoolMac>> create(const storage::Kek& kek, const std::string& nonce_hex = {});
  ~SpoolMac();
  SpoolMac(const SpoolMac&) = delete;
  SpoolMac& operator=(const SpoolMac&) = delete;
  void update(std::string_view data);
  // "<nonce hex> <tag hex>", the fingerprint an entry records.
  Result<std::string> finish();

 private:
  SpoolMac() = default;
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
  std::string nonce_hex_;
  bool failed_ = false;
};

inline constexpr const char* kSpoolLockName = "archiver.lock";
inline constexpr const char* kSpoolMarkerSuffix = ".pushing";

// Records that `name` with fingerprint `fingerprint` (SpoolMac::finish) is durably stored
// in `store_url`.
Status write_spool_entry(const std::string& spool_dir, const std::string& name, const std::string& fingerprint,
                         const std::string& store_url);
// The nonce (hex) of the entry for `name` when it exists and names `store_url`.
std::optional<std::string> spool_entry_nonce(const std::string& spool_dir, const std::string& name,
                                             const std::string& store_url);
// True when the entry for `name` names exactly this fingerprint and store.
bool spool_entry_matches(const std::string& spool_dir, const std::string& name, const std::string& fingerprint,
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
