#pragma once
// The pgpass file of the local member: the passwords libpq needs for primary_conninfo,
// pg_basebackup, pg_rewind and the agent's own TCP connections. Mode 0600, owned by the
// PostgreSQL OS user (libpq ignores a passfile readable by others); root reads it too.
#include <string>
#include <vector>

#include "base/result.hpp"
#include "base/secret.hpp"

namespace tandem::pg {

struct PassEntry {
  std::string host = "*";
  std::string port = "*";
  std::string database = "*";  // "replication" matches physical replication connections
  std::string user;
  Secret password;
};

// The file content: one "host:port:database:user:password" line per entry, ':' and '\'
// escaped with a backslash. The result holds passwords: never log it.
std::string render_pgpass(const std::vector<PassEntry>& entries);

// Writes the passfile atomically with mode 0600, owned by `owner`.
Status write_passfile(const std::string& path, const std::vector<PassEntry>& entries, const std::string& owner);

}  // namespace tandem::pg
