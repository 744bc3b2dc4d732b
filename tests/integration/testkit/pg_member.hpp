#pragma once
// PgMember: one real PostgreSQL 15 member for integration tests, in its own folder of a
// TempDir (data/, run/, postgresql.log) on a free loopback port, driven through the
// tandem::pg module. PgPasswords holds the test cluster's fixed passwords and writes the
// shared pgpass file. Owned by the test body (main thread: Postmaster::start() needs a
// thread that outlives the server).
#include <string>

#include "base/result.hpp"
#include "pg/conn.hpp"
#include "pg/managed_config.hpp"
#include "pg/postmaster.hpp"
#include "pg/settings.hpp"

namespace tandem::testkit {

struct PgPasswords {
  std::string superuser = "postgres";
  std::string replication = "replicator";
  std::string admin = "admin";
  std::string superuser_password = "su-secret:1";
  std::string replication_password = "rep'secret\\2";
  std::string admin_password = "admin secret 3";
  std::string passfile;  // written by write_passfile()

  // Writes a pgpass file (0600, owned by postgres) with the three passwords.
  Status write_passfile(const std::string& path);
};

class PgMember {
 public:
  // Lays out <root>/<name>/{data,run,postgresql.log}; picks a free port.
  PgMember(const std::string& root, const std::string& name, const PgPasswords& pw);
  ~PgMember();  // stops the server (immediate) if it still runs

  // initdb, managed config (primary), start, wait ready, create the roles.
  Status bootstrap_primary();
  // pg_basebackup from `source`, managed config as its standby (with slot `slot`), start.
  Status clone_from(const PgMember& source, const std::string& slot);
  // Writes the managed config and starts the server, waiting until it accepts connections.
  Status configure_and_start(const pg::ManagedConfig& cfg);
  Status start();

  // The standby config following `upstream`.
  pg::ManagedConfig standby_of(const PgMember& upstream, const std::string& slot) const;
  pg::Upstream upstream_params() const;               // how a standby reaches this member
  pg::ConnParams tcp(const std::string& user) const;  // TCP with the passfile

  Result<pg::Connection> local() const;  // unix socket as superuser (peer + ident map)
  Result<pg::Connection> tcp_connect(const std::string& user) const;

  const std::string& name() const { return s_.name; }
  const pg::Settings& settings() const { return s_; }
  int port() const { return s_.port; }
  pg::Postmaster& postmaster() { return pm_; }
  pg::ManagedConfig& config() { return cfg_; }

 private:
  pg::Settings s_;
  const PgPasswords& pw_;
  pg::Postmaster pm_;
  pg::ManagedConfig cfg_;
};

}  // namespace tandem::testkit
