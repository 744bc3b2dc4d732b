#pragma once
// Settings: where one local PostgreSQL member lives on disk and on the network, and
// which OS user runs it. A plain value, built once from the agent config and passed
// by const reference to everything in this module.
#include <string>

#include "config/agent_config.hpp"

namespace tandem::pg {

struct Settings {
  std::string name;  // member name: application_name, cluster_name
  std::string bin_dir = "/usr/lib/postgresql/15/bin";
  std::string data_dir;                   // PGDATA, 0700, owned by run_as
  std::string run_dir;                    // unix socket directory, 0700, owned by run_as
  std::string log_file;                   // server log (stderr of the postmaster)
  std::string listen_host = "127.0.0.1";  // listen_addresses
  int port = 5432;
  std::string run_as = "postgres";     // OS user running every PostgreSQL binary
  std::string superuser = "postgres";  // database superuser created by initdb

  // Full path of a PostgreSQL program, e.g. bin("pg_ctl").
  std::string bin(const std::string& program) const { return bin_dir + "/" + program; }
  // A file inside the data directory.
  std::string data_file(const std::string& relative) const { return data_dir + "/" + relative; }
  // The unix socket file the server listens on ("<run_dir>/.s.PGSQL.<port>").
  std::string socket_path() const;
};

// Derives the settings of the local member from the agent configuration; run_dir and
// log_file default to <data_dir>.run and <data_dir>.postgresql.log, as in the config parser.
Settings settings_from_config(const config::AgentConfig& cfg);

}  // namespace tandem::pg
