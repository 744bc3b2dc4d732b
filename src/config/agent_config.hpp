#pragma once
// AgentConfig: the YAML file of one `tandem agent`. Parsing names the key and the
// problem on every error ("postgresql.listen: expected HOST:PORT, got 'x'").
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "dcs/cluster.hpp"

namespace tandem::config {

struct HostPort {
  std::string host;
  int port = 0;
  std::string to_string() const;
};
Result<HostPort> parse_host_port(const std::string& text, const std::string& key);

struct Credentials {
  std::string username;
  std::string password_file;  // read when needed; the password itself never sits in a config struct
};

// Retention of base backups (enforced by the backup module): keep at least `count` full
// backups, drop those older than `max_age` (0 = no age limit), and always keep what a
// point-in-time restore over the last `pitr_window` needs.
struct RetentionConfig {
  int count = 7;
  std::chrono::seconds max_age{30 * 24 * 3600};
  std::chrono::seconds pitr_window{7 * 24 * 3600};
};

// The `backup:` section: where backups and archived WAL live and how they are sealed.
// Empty `store` means backups are not configured (no archiving, no schedule).
struct BackupConfig {
  std::string store;                           // file:///abs/dir or s3://bucket/prefix?endpoint=...
  std::string key_file;                        // KEK, mode 0600
  std::vector<std::string> retired_key_files;  // older KEKs, still used to open old objects
  std::string credentials_file;                // S3 INI credentials, mode 0600; empty = environment
  bool archive = true;                         // WAL archiving (archive_mode=on on every member)
  std::chrono::seconds schedule{24 * 3600};    // full backups by the leader's agent; 0 = off
  RetentionConfig retention;
  bool enabled() const { return !store.empty(); }
};

// The `bootstrap_from_backup:` section: the member that wins the race to initialize a NEW
// cluster restores this backup (another deployment's repository, read only) instead of
// running initdb. Empty `store` means the cluster bootstraps with initdb. The target is
// "latest" unless `to_time` or `to_lsn` is set; `backup_id` empty = the newest that fits.
struct RestoreSourceConfig {
  std::string store;  // file:///abs/dir or s3://bucket/prefix?...; must differ from backup.store
  std::string key_file;
  std::vector<std::string> retired_key_files;
  std::string credentials_file;
  std::string backup_id;
  std::string to_time;  // ISO-8601 / PostgreSQL timestamp
  std::string to_lsn;   // X/Y
  bool enabled() const { return !store.empty(); }
};

// Parses a duration such as "90s", "15m", "24h", "7d", "1w" or a plain number of seconds;
// "0" and "off" give 0. `key` names the setting in errors.
Result<std::chrono::seconds> parse_duration(const std::string& text, const std::string& key);

struct AgentConfig {
  std::string cluster;
  std::string name;
  std::vector<std::string> etcd_endpoints;
  int etcd_call_timeout_ms = 1000;
  std::string data_dir;     // PostgreSQL data directory
  std::string run_dir;      // sockets, pid files; defaults to <data_dir>/../run-<name>
  std::string log_file;     // agent log; stderr when empty
  std::string pg_log_file;  // PostgreSQL server log; <data_dir>/../<name>-postgresql.log
  HostPort api_listen;
  HostPort api_connect;  // what others use to reach the API (defaults to api_listen)
  HostPort pg_listen;
  HostPort pg_connect;  // what others use to reach PostgreSQL (defaults to pg_listen)
  std::string bin_dir = "/usr/lib/postgresql/15/bin";
  std::string run_as = "postgres";                // PostgreSQL runs as this user (root cannot run it)
  std::map<std::string, std::string> parameters;  // local PostgreSQL parameters
  Credentials superuser{"postgres", ""};
  Credentials replication{"replicator", ""};
  Credentials admin{"admin", ""};
  dcs::Tags tags;
  dcs::DynamicConfig bootstrap;  // dynamic config written to the DCS by the first agent
  BackupConfig backup;
  RestoreSourceConfig bootstrap_from_backup;
  std::string source_path;  // the file load_agent_config() read; empty when parsed from text
};

// Parses and validates; exceptions are not used.
Result<AgentConfig> parse_agent_config(const std::string& yaml_text);
Result<AgentConfig> load_agent_config(const std::string& path);

// Reads a secret from a file (trailing newline stripped). Errors never contain the content.
Result<std::string> read_secret_file(const std::string& path);

}  // namespace tandem::config
