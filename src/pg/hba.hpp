#pragma once
// Client authentication files of the local member (pure rendering).
//
// Design: the agent runs as root and talks to its own PostgreSQL over the unix socket as
// the database superuser without a password. pg_ident.conf maps the OS users root and
// run_as to the superuser (map "tandem"), and pg_hba.conf lets exactly that mapping use
// peer authentication on the socket. Root can already read the data directory, so this
// grants it nothing new, and the agent needs no superuser password to manage its member.
// Every TCP connection, local or remote, uses scram-sha-256 (replication included).
#include <string>
#include <vector>

#include "base/result.hpp"

namespace tandem::pg {

struct HbaSpec {
  std::string superuser = "postgres";
  std::string run_as = "postgres";
  std::vector<std::string> networks;  // CIDRs allowed over TCP besides loopback, e.g. "10.0.0.0/8"
};

// pg_hba.conf; invalid_argument when a name or CIDR is malformed.
Result<std::string> render_pg_hba(const HbaSpec& spec);

// pg_ident.conf with the "tandem" map.
Result<std::string> render_pg_ident(const HbaSpec& spec);

// True for names we accept as role or OS user names: [A-Za-z_][A-Za-z0-9_$-]* up to 63 chars.
bool valid_role_name(const std::string& name);

// True for an IPv4 or IPv6 address with a prefix length ("10.0.0.0/8", "fd00::/64").
bool valid_cidr(const std::string& cidr);

}  // namespace tandem::pg
