#pragma once
// The WAL archive: what `tandem wal-push` (archive_command) and `tandem wal-fetch`
// (restore_command) do, plus the listing that restore uses to check the WAL chain.
//
// Guarantees:
//  * push returns success only after the object is durably stored (ObjectStore::put);
//  * pushing a file whose archived copy is identical succeeds (PostgreSQL retries after a
//    crash); a different file under the same name is refused with Errc::conflict naming
//    the file and the store;
//  * fetch reports Errc::not_found only when the object does not exist; a wrong key, a
//    tampered, truncated or unreadable object is a different error, so restore_command can
//    make PostgreSQL stop instead of ending recovery early. The destination is written to
//    a temporary file and renamed into place only after the whole object verified.
//
// Read-ahead (optional): while pushing the segment PostgreSQL asked for, push up to
// `parallel - 1` further segments that PostgreSQL already marked ready
// (pg_wal/archive_status/*.ready), each on its own thread and store connection, and
// record each in a spool directory as "<name>" containing the SHA-256 of what was stored.
// When PostgreSQL later asks for such a segment, push succeeds at once if the file still
// has that hash. A lost or stale spool entry only costs a normal (idempotent) push.
//
// All functions block and run on the caller's thread (plus read-ahead threads they join).
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "backup/repo.hpp"
#include "base/result.hpp"
#include "storage/crypto.hpp"

namespace tandem::backup {

struct PushOptions {
  std::string spool_dir;  // where read-ahead results are recorded; empty disables read-ahead
  int parallel = 4;       // files pushed at once, the requested one included
  storage::SealOptions seal{.chunk_size = 1u << 20, .compress = true, .zstd_level = 1, .zstd_workers = 0};
};

enum class PushOutcome {
  stored,            // sealed and stored now
  already_archived,  // an identical copy was in the store
  from_spool,        // stored earlier by read-ahead, content verified against the spool entry
};
const char* to_string(PushOutcome o);

struct PushResult {
  PushOutcome outcome = PushOutcome::stored;
  int read_ahead = 0;  // further files stored by read-ahead during this call
};

// Archives the file at `path` (pg_wal/<name> as PostgreSQL passes %p) under wal/<name>.
Result<PushResult> push_wal_file(Repo& repo, const std::string& path, const PushOptions& options = {});

// Stores `data` as wal/<name> on `store`, with the identical/conflict rules above.
Result<PushOutcome> push_wal_bytes(storage::ObjectStore& store, const storage::Keyring& keyring,
                                   const std::string& name, std::string_view data,
                                   const storage::SealOptions& seal = {});

// Restores wal/<name> to `dest_path` (temporary file + fsync + rename). Errc::not_found
// only when the object does not exist.
Status fetch_wal_file(Repo& repo, const std::string& name, const std::string& dest_path);

// Names of every archived WAL file (segments, history files, ...), without "wal/".
Result<std::set<std::string>> list_archived_wal(storage::ObjectStore& store);

}  // namespace tandem::backup
