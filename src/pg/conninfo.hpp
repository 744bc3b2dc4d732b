#pragma once
// ConnParams: how to reach one PostgreSQL server, rendered to a libpq conninfo string
// (for primary_conninfo, pg_rewind --source-server, pg_basebackup -d) or to keyword/value
// arrays (for our own connections). Passwords never appear here: libpq reads them from
// the passfile named in the params.
#include <string>
#include <utility>
#include <vector>

#include "pg/settings.hpp"

namespace tandem::pg {

struct ConnParams {
  std::string host;  // a host name, an IP, or a socket directory (starts with '/')
  int port = 5432;
  std::string user;
  std::string dbname = "postgres";
  std::string passfile;  // pgpass file with the password of `user`; empty: none
  std::string application_name;
  int connect_timeout_s = 5;     // libpq treats 1 as 2
  int statement_timeout_ms = 0;  // 0: server default; sent as options=-c statement_timeout=N
  bool replication = false;      // a physical replication connection (replication=true)

  // Keyword/value pairs in libpq order; empty values are left out. GSSAPI encryption is
  // always off (gssencmode=disable): Tandem's members authenticate with SCRAM.
  std::vector<std::pair<std::string, std::string>> keywords() const;
};

// "key='value' ..." with quotes and backslashes escaped as libpq requires.
std::string render_conninfo(const ConnParams& p);

// Quotes one conninfo value: 'a b' -> 'a b', it's -> 'it\'s'.
std::string quote_conninfo_value(const std::string& v);

// The local member over its unix socket as the database superuser. This works for the
// root agent because pg_hba maps OS users root and run_as to the superuser (see
// hba.hpp); no password is involved.
ConnParams local_superuser(const Settings& s, int statement_timeout_ms = 5000);

}  // namespace tandem::pg
