#pragma once
// Creating a new PostgreSQL cluster for the first member of a Tandem cluster.
//
// Bootstrap order: prepare_directories() -> initdb() -> write_managed_config() ->
// Postmaster::start() + wait_ready() -> create_roles() over Connection::open(local_superuser()).
// Free functions; they block (initdb takes a few seconds), so run them off the event loop.
#include <chrono>
#include <string>

#include "base/result.hpp"
#include "base/secret.hpp"
#include "pg/conn.hpp"
#include "pg/settings.hpp"

namespace tandem::pg {

// Creates the data directory (empty or missing is fine) and the socket directory, both
// mode 0700 and owned by s.run_as, and the log file owned by s.run_as.
Status prepare_directories(const Settings& s);

// True when the data directory holds an initialised cluster (PG_VERSION exists).
bool data_dir_initialised(const Settings& s);

// True when the data directory is missing or empty.
bool data_dir_empty(const Settings& s);

// Runs initdb as s.run_as: --data-checksums, UTF8, locale C, peer auth on the socket,
// scram-sha-256 over TCP, superuser s.superuser with `superuser_password` (passed in a
// 0600 file in the socket directory that is removed afterwards, never on the command
// line). The data directory must be empty.
Status initdb(const Settings& s, const Secret& superuser_password,
              std::chrono::milliseconds timeout = std::chrono::minutes(2));

struct RoleSpec {
  std::string name;
  Secret password;
};

// Creates (or updates) the two roles the cluster needs, idempotently, on a primary:
//  - replication: LOGIN REPLICATION, plus what pg_rewind needs on a source (EXECUTE on
//    pg_ls_dir, pg_stat_file, pg_read_binary_file) and pg_checkpoint, so one role serves
//    streaming, pg_basebackup, pg_rewind and the CHECKPOINT before a rewind;
//  - admin: LOGIN CREATEDB CREATEROLE, not SUPERUSER (least privilege for operators and
//    applications; note CREATEROLE can still grant membership in most roles), all rights on
//    schema public, pg_monitor and pg_signal_backend.
// Passwords are sent as SCRAM verifiers computed locally (see set_password).
Status create_roles(Connection& conn, const RoleSpec& replication, const RoleSpec& admin);

// Sets a role's password as a SCRAM-SHA-256 verifier computed by libpq: the clear text
// never leaves this process, and statement logging is switched off for the session
// first so not even the verifier reaches the server log.
Status set_password(Connection& conn, const std::string& role, const Secret& password);

}  // namespace tandem::pg
