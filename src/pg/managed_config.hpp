#pragma once
// ManagedConfig: every PostgreSQL setting the agent controls, and the files it lives in.
//
// One mechanism, used consistently: all our settings go to <data>/tandem.conf, which
// postgresql.conf includes last (include_if_exists), so it overrides initdb's defaults.
// We never use ALTER SYSTEM; write_managed_config() also strips the keys we manage from
// postgresql.auto.conf (which PostgreSQL reads after postgresql.conf) so nothing shadows
// us. To change a setting at run time (synchronous_standby_names, primary_conninfo, ...)
// edit the ManagedConfig and call Postmaster::apply_config(), which rewrites the files
// and reloads (SIGHUP) when they changed.
//
// pg_basebackup and pg_rewind copy the source's configuration files: call
// write_managed_config() after either, before starting the member.
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "pg/settings.hpp"

namespace tandem::pg {

enum class Role { primary, standby };
const char* to_string(Role r);

// Where a standby streams from.
struct Upstream {
  std::string host;
  int port = 5432;
  std::string user;      // replication role
  std::string passfile;  // holds that role's password
  std::string slot;      // primary_slot_name; empty: no slot
  int connect_timeout_s = 5;
};

struct ManagedConfig {
  Role role = Role::primary;
  std::optional<Upstream> upstream;               // standby only; nullopt: a standby waiting without a source
  std::string synchronous_standby_names;          // primary only; see render_sync_standby_names()
  std::map<std::string, std::string> parameters;  // caller's settings; may not name a managed key
  std::vector<std::string> allowed_networks;      // CIDRs allowed over TCP besides loopback
  // WAL archive: archive_mode = on with this archive_command when set (PostgreSQL archives
  // on the primary only), archive_mode = off when empty.
  std::string archive_command;
  // Or through an archive module (PostgreSQL 15 archive_library, an absolute path to
  // tandem_archive.so), which takes precedence: archive_mode = on, archive_command = '',
  // tandem_archive.socket = archive_socket (the WAL archiver it asks) and
  // tandem_archive.fallback_command = archive_fallback_command (run like archive_command
  // when that socket cannot be reached). Changing the library needs only a reload: the
  // archiver process restarts itself to load it.
  std::string archive_library;
  std::string archive_socket;
  std::string archive_fallback_command;
  // Standby only: fetches WAL from the archive when streaming cannot provide it.
  std::string restore_command;
};

// What write_managed_config() changed.
struct ConfigChange {
  bool conf_changed = false;            // tandem.conf, postgresql.conf or postgresql.auto.conf
  bool hba_changed = false;             // pg_hba.conf or pg_ident.conf
  bool standby_signal_changed = false;  // needs a restart to take effect
  bool any() const { return conf_changed || hba_changed || standby_signal_changed; }
};

// Keys the agent owns; ManagedConfig::parameters may not set them.
const std::vector<std::string>& managed_keys();

// The content of tandem.conf. invalid_argument when a parameter is managed or malformed.
Result<std::string> render_tandem_conf(const Settings& s, const ManagedConfig& cfg);

// The primary_conninfo value for a standby of `up`, application_name = member name.
std::string render_primary_conninfo(const Settings& s, const Upstream& up);

// A synchronous_standby_names value: "" for none, else 'FIRST n ("a", "b")' (priority)
// or 'ANY n (...)' (quorum). Names are double-quoted.
std::string render_sync_standby_names(const std::vector<std::string>& names, int count = 1, bool quorum = false);

// Quotes a postgresql.conf value: 'it''s'.
std::string quote_conf_value(const std::string& v);

// postgresql.conf with our include line appended when it is missing.
std::string with_include_line(const std::string& postgresql_conf);

// postgresql.auto.conf without lines setting a managed key.
std::string without_managed_keys(const std::string& auto_conf);

// Writes tandem.conf, the include line, pg_hba.conf, pg_ident.conf, strips managed keys
// from postgresql.auto.conf, and creates (standby) or removes (primary) standby.signal.
// Files belong to s.run_as. The data directory must exist (after initdb or a clone).
Result<ConfigChange> write_managed_config(const Settings& s, const ManagedConfig& cfg);

}  // namespace tandem::pg
