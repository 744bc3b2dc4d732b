#include "deploy/layout.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <openssl/rand.h>
#include <nlohmann/json.hpp>

#include "base/process.hpp"

namespace tandem::deploy {

namespace fs = std::filesystem;
using nlohmann::json;

std::string EtcdNode::client_url() const {
  return fmt::format("http://127.0.0.1:{}", client_port);
}
std::string EtcdNode::peer_url() const {
  return fmt::format("http://127.0.0.1:{}", peer_port);
}
std::string DataMember::api_url() const {
  return fmt::format("http://127.0.0.1:{}", api_port);
}

std::string PortalNode::http_url() const {
  return fmt::format("http://127.0.0.1:{}", http_port);
}

std::vector<std::string> Layout::etcd_endpoints() const {
  std::vector<std::string> out;
  for (const auto& e : etcd) out.push_back(e.client_url());
  return out;
}

Layout make_layout(const std::string& dir, int base_port, const std::string& cluster) {
  Layout l;
  l.dir = dir;
  l.base_port = base_port;
  l.cluster = cluster;
  for (int i = 0; i < 3; ++i) l.etcd.push_back({fmt::format("e{}", i + 1), base_port + 2 * i, base_port + 2 * i + 1});
  for (int j = 0; j < 2; ++j) l.members.push_back({fmt::format("pg{}", j + 1), base_port + 10 + j, base_port + 20 + j});
  for (int k = 0; k < 2; ++k) {
    l.portals.push_back({fmt::format("portal{}", k + 1), base_port + 30 + k, base_port + 32 + k, base_port + 34 + k});
  }
  return l;
}

namespace {

Status write_file(const std::string& path, const std::string& content, mode_t mode) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) return make_error(Errc::io, "cannot write {}", tmp);
    out << content;
    out.flush();
    if (!out) return make_error(Errc::io, "cannot write {}", tmp);
  }
  if (chmod(tmp.c_str(), mode) != 0) return make_error(Errc::io, "chmod {}: {}", tmp, strerror(errno));
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) return make_error(Errc::io, "rename {}: {}", path, ec.message());
  return {};
}

std::string random_password() {
  unsigned char buf[18];
  if (RAND_bytes(buf, sizeof buf) != 1) throw std::runtime_error("RAND_bytes failed");
  static const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::string out;
  for (unsigned char c : buf) out.push_back(alphabet[c % 62]);
  return out;
}

Status ensure_dir(const std::string& path, mode_t mode) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) return make_error(Errc::io, "cannot create {}: {}", path, ec.message());
  if (chmod(path.c_str(), mode) != 0) return make_error(Errc::io, "chmod {}: {}", path, strerror(errno));
  return {};
}

// The backup key (64 hex characters, like storage::load_or_create_key_file writes) and the
// file store's directory, both owned by the postgres user, which archives WAL.
Status prepare_backups(const Layout& l) {
  auto pg = lookup_user("postgres");
  if (!pg) return pg.error();
  std::string key = l.backup_key_path();
  if (!fs::exists(key)) {
    unsigned char raw[32];
    if (RAND_bytes(raw, sizeof raw) != 1) return make_error(Errc::internal, "RAND_bytes failed");
    std::string hex;
    for (unsigned char c : raw) hex += fmt::format("{:02x}", c);
    if (auto s = write_file(key, hex + "\n", 0600); !s) return s;
  }
  if (::chown(key.c_str(), pg->first, pg->second) != 0)
    return make_error(Errc::io, "chown {}: {}", key, strerror(errno));
  if (l.backup_store.empty()) {
    for (std::string d : {l.dir + "/backups", l.dir + "/backups/wal"}) {
      if (auto s = ensure_dir(d, 0700); !s) return s;
      if (::chown(d.c_str(), pg->first, pg->second) != 0)
        return make_error(Errc::io, "chown {}: {}", d, strerror(errno));
    }
  }
  return {};
}

}  // namespace

Status save_layout(const Layout& l) {
  json j{{"cluster", l.cluster},
         {"host", l.host},
         {"base_port", l.base_port},
         {"synchronous_mode", dcs::to_string(l.synchronous_mode)},
         {"ttl", l.ttl}};
  if (!l.backup_store.empty()) j["backup_store"] = l.backup_store;
  if (!l.backup_credentials_file.empty()) j["backup_credentials_file"] = l.backup_credentials_file;
  if (l.from_backup.enabled()) {
    j["from_backup"] = json{{"store", l.from_backup.store},
                            {"credentials_file", l.from_backup.credentials_file},
                            {"retired_key_files", l.from_backup.retired_key_files},
                            {"backup_id", l.from_backup.backup_id},
                            {"to_time", l.from_backup.to_time},
                            {"to_lsn", l.from_backup.to_lsn}};
  }
  return write_file(l.dir + "/layout.json", j.dump(2) + "\n", 0644);
}

Result<Layout> load_layout(const std::string& dir) {
  std::ifstream in(dir + "/layout.json");
  if (!in) return make_error(Errc::not_found, "{} holds no deployment (no layout.json)", dir);
  try {
    json j = json::parse(in);
    Layout l = make_layout(dir, j.at("base_port").get<int>(), j.at("cluster").get<std::string>());
    l.host = j.value("host", "127.0.0.1");
    l.ttl = j.value("ttl", 4);
    l.synchronous_mode = dcs::parse_sync_mode(j.value("synchronous_mode", "on")).value_or(dcs::SyncMode::on);
    l.backup_store = j.value("backup_store", "");
    l.backup_credentials_file = j.value("backup_credentials_file", "");
    if (j.contains("from_backup")) {
      const json& f = j.at("from_backup");
      l.from_backup.store = f.at("store").get<std::string>();
      l.from_backup.credentials_file = f.value("credentials_file", "");
      l.from_backup.retired_key_files = f.value("retired_key_files", std::vector<std::string>{});
      l.from_backup.backup_id = f.value("backup_id", "");
      l.from_backup.to_time = f.value("to_time", "");
      l.from_backup.to_lsn = f.value("to_lsn", "");
    }
    return l;
  } catch (const json::exception& e) {
    return make_error(Errc::invalid_argument, "{}/layout.json is damaged: {}", dir, e.what());
  }
}

std::string agent_config_yaml(const Layout& l, const DataMember& m) {
  std::ostringstream y;
  y << "# Written by `tandem up`; edit and restart the agent to change local settings.\n";
  y << "cluster: " << l.cluster << "\n";
  y << "name: " << m.name << "\n";
  y << "etcd:\n  endpoints:\n";
  for (const auto& e : l.etcd) y << "    - " << e.client_url() << "\n";
  y << "data_dir: " << l.member_dir(m) << "/data\n";
  y << "run_dir: " << l.member_dir(m) << "/run\n";
  y << "log_file: " << l.log_path(m.name) << "\n";
  y << "api:\n  listen: " << l.host << ":" << m.api_port << "\n";
  y << "postgresql:\n  listen: " << l.host << ":" << m.pg_port << "\n";
  y << "  log_file: " << l.log_path(m.name + "-postgresql") << "\n";
  y << "  authentication:\n";
  y << "    superuser: {username: postgres, password_file: " << l.secret_path("superuser.password") << "}\n";
  y << "    replication: {username: replicator, password_file: " << l.secret_path("replication.password") << "}\n";
  y << "    admin: {username: admin, password_file: " << l.secret_path("admin.password") << "}\n";
  y << "ha:\n  ttl: " << l.ttl << "\n  loop_wait: 1\n  retry_timeout: " << (l.ttl >= 4 ? 2 : 1)
    << "\n  synchronous_mode: " << dcs::to_string(l.synchronous_mode) << "\n";
  y << "backup:\n  store: \"" << l.backup_store_url() << "\"\n  key_file: " << l.backup_key_path() << "\n";
  if (!l.backup_credentials_file.empty()) y << "  credentials_file: " << l.backup_credentials_file << "\n";
  y << "  archive: true\n";
  if (l.from_backup.enabled()) {
    const auto& f = l.from_backup;
    y << "# The member that creates the cluster restores this backup instead of running initdb.\n";
    y << "bootstrap_from_backup:\n  store: \"" << f.store << "\"\n  key_file: " << l.from_backup_key_path() << "\n";
    if (!f.retired_key_files.empty()) {
      y << "  retired_key_files:\n";
      for (const auto& k : f.retired_key_files) y << "    - " << k << "\n";
    }
    if (!f.credentials_file.empty()) y << "  credentials_file: " << f.credentials_file << "\n";
    if (!f.backup_id.empty()) y << "  backup_id: \"" << f.backup_id << "\"\n";
    if (!f.to_time.empty()) y << "  to_time: \"" << f.to_time << "\"\n";
    if (!f.to_lsn.empty()) y << "  to_lsn: \"" << f.to_lsn << "\"\n";
  }
  return y.str();
}

std::string portal_config_yaml(const Layout& l, const PortalNode& p) {
  const auto names = portal_names(l);
  const auto pki = l.pki_dir();
  std::ostringstream y;
  y << "# Written by `tandem up`; edit and restart the portal to change settings.\n";
  y << "cluster: " << l.cluster << "\n";
  y << "name: " << p.name << "\n";
  y << "etcd:\n  endpoints:\n";
  for (const auto& e : l.etcd) y << "    - " << e.client_url() << "\n";
  y << "listeners:\n";
  y << "  read_write: " << l.host << ":" << p.port << "\n";
  y << "  read_only: " << l.host << ":" << p.ro_port << "\n";
  y << "  http: " << l.host << ":" << p.http_port << "\n";
  y << "tls:\n  cert: " << pki << "/server.crt\n  key: " << pki << "/server.key\n  ca: " << l.ca_cert_path() << "\n";
  y << "backend:\n  tls: off\n";
  y << "limits:\n  switchover_hold_timeout: 30s\n";
  y << "log_file: " << l.log_path(p.name) << "\n";
  y << "pki:\n  dir: " << pki << "\n  dns_names:\n";
  for (const auto& n : names.dns_names) y << "    - \"" << n << "\"\n";
  y << "  ip_addresses:\n";
  for (const auto& a : names.ip_addresses) y << "    - \"" << a << "\"\n";
  y << "fallback:\n  members:\n";
  for (const auto& m : l.members) {
    y << "    - {name: " << m.name << ", api_url: \"" << m.api_url() << "\", postgresql: \"" << l.host << ":"
      << m.pg_port << "\"}\n";
  }
  return y.str();
}

PortalNames portal_names(const Layout& l) {
  PortalNames n;
  n.dns_names.push_back("localhost");
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) == 0 && host[0] != '\0' && std::string(host) != "localhost") {
    n.dns_names.emplace_back(host);
  }
  n.ip_addresses = {"127.0.0.1", "::1"};
  if (l.host != "127.0.0.1" && l.host != "::1" && l.host != "localhost") {
    const bool is_ip = l.host.find_first_not_of("0123456789.:abcdefABCDEF") == std::string::npos;
    (is_ip ? n.ip_addresses : n.dns_names).push_back(l.host);
  }
  return n;
}

Status prepare(const Layout& l) {
  for (const char* sub : {"etcd", "members", "config", "logs", "run"}) {
    if (auto s = ensure_dir(l.dir + "/" + sub, 0755); !s) return s;
  }
  // 0711: the postgres user reaches secrets/backup.key (its own file) but cannot list or
  // read the others.
  if (auto s = ensure_dir(l.dir + "/secrets", 0711); !s) return s;
  if (auto s = prepare_backups(l); !s) return s;
  for (const char* secret : {"superuser.password", "replication.password", "admin.password"}) {
    std::string path = l.secret_path(secret);
    if (fs::exists(path)) continue;
    if (auto s = write_file(path, random_password() + "\n", 0600); !s) return s;
  }
  for (const auto& m : l.members) {
    if (auto s = ensure_dir(l.member_dir(m), 0755); !s) return s;
    if (auto s = write_file(l.agent_config_path(m), agent_config_yaml(l, m), 0644); !s) return s;
  }
  for (const auto& p : l.portals) {
    if (auto s = write_file(l.portal_config_path(p), portal_config_yaml(l, p), 0644); !s) return s;
  }
  // A pgpass file for the admin role, so clients need not see the password.
  std::ifstream pw_in(l.secret_path("admin.password"));
  std::string pw;
  std::getline(pw_in, pw);
  std::string pgpass;
  for (const auto& m : l.members) pgpass += fmt::format("{}:{}:*:admin:{}\n", l.host, m.pg_port, pw);
  // Through the portals, by address or by name (libpq matches the host as written).
  for (const auto& p : l.portals) {
    for (int port : {p.port, p.ro_port}) {
      pgpass += fmt::format("{}:{}:*:admin:{}\n", l.host, port, pw);
      pgpass += fmt::format("localhost:{}:*:admin:{}\n", port, pw);
    }
  }
  return write_file(l.secret_path("pgpass"), pgpass, 0600);
}

std::string direct_uri(const Layout& l) {
  std::string hosts;
  for (const auto& m : l.members) {
    if (!hosts.empty()) hosts += ",";
    hosts += fmt::format("{}:{}", l.host, m.pg_port);
  }
  return fmt::format("postgresql://admin@{}/postgres?target_session_attrs=read-write&connect_timeout=5", hosts);
}

std::string connection_uri(const Layout& l) {
  std::string hosts;
  for (const auto& p : l.portals) {
    if (!hosts.empty()) hosts += ",";
    hosts += fmt::format("{}:{}", l.host, p.port);
  }
  return fmt::format(
      "postgresql://admin@{}/"
      "postgres?sslmode=verify-full&sslrootcert={}&target_session_attrs=read-write&connect_timeout=5",
      hosts, l.ca_cert_path());
}

std::string connection_string(const Layout& l) {
  std::string hosts, ports;
  for (const auto& p : l.portals) {
    hosts += (hosts.empty() ? "" : ",") + l.host;
    ports += (ports.empty() ? "" : ",") + std::to_string(p.port);
  }
  return fmt::format(
      "host={} port={} user=admin dbname=postgres sslmode=verify-full sslrootcert={} target_session_attrs=read-write "
      "connect_timeout=5",
      hosts, ports, l.ca_cert_path());
}

Status write_deployment_json(const Layout& l) {
  json members = json::array();
  for (const auto& m : l.members) {
    members.push_back(json{{"name", m.name}, {"host", l.host}, {"pg_port", m.pg_port}, {"api_url", m.api_url()}});
  }
  json portals = json::array();
  for (const auto& p : l.portals) {
    portals.push_back(
        json{{"name", p.name}, {"host", l.host}, {"port", p.port}, {"ro_port", p.ro_port}, {"http_url", p.http_url()}});
  }
  json j{{"cluster", l.cluster},
         {"etcd", l.etcd_endpoints()},
         {"members", members},
         {"admin", json{{"user", "admin"}, {"password_file", l.secret_path("admin.password")}}},
         {"pgpass_file", l.secret_path("pgpass")},
         {"connection_uri", connection_uri(l)},
         {"connection_string", connection_string(l)},
         {"direct_uri", direct_uri(l)},
         {"ca_cert", l.ca_cert_path()},
         {"portals", portals}};
  j["backups"] = json{{"store", l.backup_store_url()}};
  if (l.from_backup.enabled()) {
    j["restored_from"] = json{{"store", l.from_backup.store},
                              {"backup_id", l.from_backup.backup_id},
                              {"target", !l.from_backup.to_time.empty()  ? "time " + l.from_backup.to_time
                                         : !l.from_backup.to_lsn.empty() ? "lsn " + l.from_backup.to_lsn
                                                                         : std::string("latest")}};
  }
  return write_file(l.dir + "/deployment.json", j.dump(2) + "\n", 0644);
}

Result<std::string> usable_dir(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return make_error(Errc::io, "cannot create {}: {}", dir, ec.message());
  std::string abs = fs::canonical(dir, ec).string();
  if (ec) return make_error(Errc::io, "cannot resolve {}: {}", dir, ec.message());
  auto ids = lookup_user("postgres");
  if (!ids) return make_error(Errc::not_found, "the postgres user does not exist: install postgresql-15 first");
  // Every parent must be searchable by the postgres user (PostgreSQL runs as postgres).
  for (fs::path p = abs; !p.empty() && p != p.root_path(); p = p.parent_path()) {
    struct stat st {};
    if (stat(p.c_str(), &st) != 0) break;
    bool others_x = st.st_mode & S_IXOTH;
    bool owner_x = st.st_uid == ids->first && (st.st_mode & S_IXUSR);
    if (!others_x && !owner_x) {
      return make_error(Errc::permission_denied,
                        "the postgres user cannot reach {} because {} is not searchable by others (mode {:o}); "
                        "use --dir outside a private home directory, e.g. --dir /var/lib/tandem",
                        abs, p.string(), st.st_mode & 07777);
    }
  }
  return abs;
}

}  // namespace tandem::deploy
