#pragma once
// The WAL archive: what `tandem wal-push` (archive_command) and `tandem wal-fetch`
// (restore_command) do, plus the listing that restore uses to check the WAL chain.
//
// Guarantees:
//  * push returns success only after the object is durably stored (ObjectStore::put), or
//    when a spool entry (wal_spool.hpp) written after such a store names exactly this
//    content (a keyed MAC of the bytes) and this store;
//  * pushing a file whose archived copy is identical succeeds (PostgreSQL retries after a
//    crash); a different file under the same name is refused with Errc::conflict naming
//    the file and the store;
//  * fetch reports Errc::not_found only when the object does not exist; a wrong key, a
//    tampered, truncated or unreadable object is a different error, so restore_command can
//    make PostgreSQL stop instead of ending recovery early. The destination is written to
//    a temporary file and renamed into place only after the whole object verified.
//
// A push reads the file once, in 1 MiB blocks: each block is fingerprinted (SpoolMac, when
// asked for), compressed and sealed, and the sealed stream goes straight into the store (no whole-file buffers).
// Comparing with an archived copy streams and opens it block by block in the same way.
//
// Ahead of PostgreSQL: an AsyncArchiver (async_archiver.hpp) pushes ready files in the
// background and records spool entries; push_wal_file then acknowledges them at once, and
// waits (bounded) for a file the archiver is pushing right now instead of pushing it too.
// Without a running archiver, read-ahead (optional) pushes up to `parallel - 1` further
// ready segments on threads joined before returning, recorded in the same spool.
//
// All functions block and run on the caller's thread (plus read-ahead threads they join).
#include <chrono>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "backup/repo.hpp"
#include "backup/wal_spool.hpp"
#include "base/result.hpp"
#include "storage/crypto.hpp"

namespace tandem::backup {

// zstd level 1, 1 MiB chunks: WAL compresses ~4x at level 1 and the push stays cheap.
inline constexpr storage::SealOptions kWalSealOptions{
    .chunk_size = 1u << 20, .compress = true, .zstd_level = 1, .zstd_workers = 0};

struct PushOptions {
  std::string spool_dir;  // spool entries and read-ahead; empty disables both
  int parallel = 4;       // files pushed at once when no archiver runs, the requested one included
  std::chrono::milliseconds archiver_wait{60000};  // longest wait for a push the archiver is doing
  storage::SealOptions seal = kWalSealOptions;
};

enum class PushOutcome {
  stored,            // sealed and stored now
  already_archived,  // an identical copy was in the store
  from_spool,        // stored earlier (archiver or read-ahead), content verified against the spool entry
};
const char* to_string(PushOutcome o);

struct PushResult {
  PushOutcome outcome = PushOutcome::stored;
  int read_ahead = 0;  // further files stored by read-ahead during this call
  bool waited_for_archiver = false;
};

// Archives the file at `path` (pg_wal/<name> as PostgreSQL passes %p) under wal/<name>.
Result<PushResult> push_wal_file(Repo& repo, const std::string& path, const PushOptions& options = {});

// A file pushed from disk: what happened, and the spool fingerprint (SpoolMac::finish, with a
// fresh nonce) of the bytes pushed or compared.
struct PushedFile {
  PushOutcome outcome = PushOutcome::stored;
  std::string fingerprint;
};

// Pushes the file at `path` as wal/<its name> on `store` (identical/conflict rules above),
// fingerprinting the bytes on the same pass when `fingerprint` (else it stays empty).
Result<PushedFile> push_wal_path(storage::ObjectStore& store, const storage::Keyring& keyring, const std::string& path,
                                 const storage::SealOptions& seal = kWalSealOptions, bool fingerprint = true);

// Stores `data` as wal/<name> on `store`, with the identical/conflict rules above.
Result<PushOutcome> push_wal_bytes(storage::ObjectStore& store, const storage::Keyring& keyring,
                                   const std::string& name, std::string_view data,
                                   const storage::SealOptions& seal = kWalSealOptions);

// The spool fingerprint of a file under the nonce of an entry (SpoolMac::finish).
Result<std::string> file_fingerprint(const std::string& path, const storage::Kek& kek, const std::string& nonce_hex);

// True when the spool entry for `name` acknowledges the file at `path`: it names
// `store_url` and the MAC of the file's bytes under the entry's nonce is the entry's. What
// wal-push and the archiver's socket check before answering "stored" without a push.
Result<bool> spool_acknowledges(const std::string& spool_dir, const std::string& name, const std::string& path,
                                const storage::Kek& kek, const std::string& store_url);

// Restores wal/<name> to `dest_path` (temporary file + fsync + rename). Errc::not_found
// only when the object does not exist.
Status fetch_wal_file(Repo& repo, const std::string& name, const std::string& dest_path);

// Names of every archived WAL file (segments, history files, ...), without "wal/".
Result<std::set<std::string>> list_archived_wal(storage::ObjectStore& store);

}  // namespace tandem::backup
