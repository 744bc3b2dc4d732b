#pragma once
// Layout of a local deployment made by `tandem up`: one directory holding the etcd
// members, the data members, their configs, secrets, logs and pid files, with every port
// derived from one base port. The layout is written to DIR/layout.json on first start and
// read back afterwards, so a second `tandem up` restarts the same deployment.
#include <string>
#include <vector>

#include "base/result.hpp"
#include "dcs/cluster.hpp"

namespace tandem::deploy {

struct EtcdNode {
  std::string name;  // e1, e2, e3
  int client_port = 0;
  int peer_port = 0;
  std::string client_url() const;
  std::string peer_url() const;
};

struct DataMember {
  std::string name;  // pg1, pg2
  int pg_port = 0;
  int api_port = 0;
  std::string api_url() const;
};

// A portal of the deployment: read-write and read-only PostgreSQL ports (TLS) and an HTTP
// port for /health and /metrics.
struct PortalNode {
  std::string name;  // portal1, portal2
  int port = 0;
  int ro_port = 0;
  int http_port = 0;
  std::string http_url() const;
};

// Where a deployment made by `tandem up --from-backup` is restored from: another
// deployment's repository, only ever read. The key (and any retired keys) are copied into
// the new deployment's secrets; the first member restores instead of running initdb.
struct BackupSource {
  std::string store;                           // file:///... or s3://...; never this deployment's own
  std::string credentials_file;                // S3 credentials for `store`
  std::vector<std::string> retired_key_files;  // copies in DIR/secrets
  std::string backup_id;                       // empty: the newest that fits the target
  std::string to_time;                         // empty (and no to_lsn): latest
  std::string to_lsn;
  bool enabled() const { return !store.empty(); }
};

struct Layout {
  std::string dir;  // absolute
  std::string cluster = "tandem";
  std::string host = "127.0.0.1";
  int base_port = 0;
  dcs::SyncMode synchronous_mode = dcs::SyncMode::on;
  int ttl = 4;
  std::vector<EtcdNode> etcd;
  std::vector<DataMember> members;
  std::vector<PortalNode> portals;

  std::string etcd_data_dir(const EtcdNode& e) const { return dir + "/etcd/" + e.name; }
  std::string member_dir(const DataMember& m) const { return dir + "/members/" + m.name; }
  std::string agent_config_path(const DataMember& m) const { return dir + "/config/" + m.name + ".yaml"; }
  std::string portal_config_path(const PortalNode& p) const { return dir + "/config/" + p.name + ".yaml"; }
  // The deployment PKI (see portal/pki/deployment_pki.hpp); clients verify with ca_cert_path().
  std::string pki_dir() const { return dir + "/pki"; }
  std::string ca_cert_path() const { return pki_dir() + "/ca.crt"; }
  std::string log_path(const std::string& component) const { return dir + "/logs/" + component + ".log"; }
  std::string pid_path(const std::string& component) const { return dir + "/run/" + component + ".pid"; }
  std::string secret_path(const std::string& name) const { return dir + "/secrets/" + name; }
  // Backups and WAL archive: file://DIR/backups unless `tandem up --backup-store` named
  // another repository. The key and the store are readable by the postgres user (its
  // archive_command runs `tandem wal-push`).
  std::string backup_store;             // empty: the file store under DIR/backups
  std::string backup_credentials_file;  // S3 credentials for backup_store (readable by postgres)
  std::string backup_store_url() const { return backup_store.empty() ? "file://" + dir + "/backups" : backup_store; }
  std::string backup_key_path() const { return secret_path("backup.key"); }
  BackupSource from_backup;  // empty store: a new deployment bootstraps with initdb
  std::string from_backup_key_path() const { return secret_path("source-backup.key"); }
  std::vector<std::string> etcd_endpoints() const;
};

// Ports: etcd i uses base+2i (client) and base+2i+1 (peer); member j uses base+10+j
// (PostgreSQL) and base+20+j (REST API); portal k uses base+30+k (read-write), base+32+k
// (read-only) and base+34+k (HTTP).
Layout make_layout(const std::string& dir, int base_port, const std::string& cluster);

Status save_layout(const Layout& l);
// nullopt-like: Errc::not_found when DIR has no layout yet.
Result<Layout> load_layout(const std::string& dir);

// Creates DIR's folders, secrets (random passwords, 0600) and agent configs. Idempotent:
// existing secrets are kept.
Status prepare(const Layout& l);

// The YAML config of one agent.
std::string agent_config_yaml(const Layout& l, const DataMember& m);

// deployment.json: what clients and later tools need to find the deployment.
Status write_deployment_json(const Layout& l);

// The YAML config of one portal.
std::string portal_config_yaml(const Layout& l, const PortalNode& p);

// The names and addresses the portals' certificate covers: localhost, this host's name,
// 127.0.0.1, ::1 and the deployment's host.
struct PortalNames {
  std::vector<std::string> dns_names;
  std::vector<std::string> ip_addresses;
};
PortalNames portal_names(const Layout& l);

// A libpq URI through both portals with TLS (sslmode=verify-full against the deployment
// CA), reaching the leader through either.
std::string connection_uri(const Layout& l);
// The same in key=value form: host=H1,H2 port=P1,P2 sslmode=verify-full sslrootcert=...
std::string connection_string(const Layout& l);
// A libpq URI listing both members directly (target_session_attrs=read-write), bypassing
// the portals.
std::string direct_uri(const Layout& l);

// Absolute path of a directory; checks that the postgres user can traverse to it.
Result<std::string> usable_dir(const std::string& dir);

}  // namespace tandem::deploy
