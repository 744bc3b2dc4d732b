#include "config/agent_config.hpp"

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include <yaml-cpp/yaml.h>

namespace tandem::config {

namespace {

const std::regex kNameRe("^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$");

// Walks a YAML mapping, reporting unknown keys and type errors with the full key path.
class Reader {
 public:
  Reader(YAML::Node node, std::string path) : node_(std::move(node)), path_(std::move(path)) {}

  std::string key(const std::string& k) const { return path_.empty() ? k : path_ + "." + k; }

  Status check_known(std::initializer_list<const char*> known) const {
    if (!node_ || node_.IsNull()) return {};
    if (!node_.IsMap())
      return make_error(Errc::invalid_argument, "{}: expected a mapping", path_.empty() ? "(top level)" : path_);
    for (const auto& kv : node_) {
      auto k = kv.first.as<std::string>();
      bool found = false;
      for (const char* n : known) found = found || k == n;
      if (!found) return make_error(Errc::invalid_argument, "{}: unknown key", key(k));
    }
    return {};
  }

  YAML::Node child(const std::string& k) const { return node_ && node_.IsMap() ? node_[k] : YAML::Node(); }

  Status str(const std::string& k, std::string& out, bool required = false) const {
    auto n = child(k);
    if (!n || n.IsNull()) {
      if (required) return make_error(Errc::invalid_argument, "{}: required key is missing", key(k));
      return {};
    }
    if (!n.IsScalar()) return make_error(Errc::invalid_argument, "{}: expected a string", key(k));
    out = n.as<std::string>();
    if (required && out.empty()) return make_error(Errc::invalid_argument, "{}: must not be empty", key(k));
    return {};
  }

  template <typename Int>
  Status integer(const std::string& k, Int& out, int64_t min, int64_t max) const {
    auto n = child(k);
    if (!n || n.IsNull()) return {};
    int64_t v = 0;
    try {
      v = n.as<int64_t>();
    } catch (const YAML::Exception&) {
      return make_error(Errc::invalid_argument, "{}: expected an integer, got '{}'", key(k), n.Scalar());
    }
    if (v < min || v > max)
      return make_error(Errc::invalid_argument, "{}: {} is out of range [{}, {}]", key(k), v, min, max);
    out = static_cast<Int>(v);
    return {};
  }

  Status boolean(const std::string& k, bool& out) const {
    auto n = child(k);
    if (!n || n.IsNull()) return {};
    try {
      out = n.as<bool>();
    } catch (const YAML::Exception&) {
      return make_error(Errc::invalid_argument, "{}: expected true or false, got '{}'", key(k), n.Scalar());
    }
    return {};
  }

  Status string_map(const std::string& k, std::map<std::string, std::string>& out) const {
    auto n = child(k);
    if (!n || n.IsNull()) return {};
    if (!n.IsMap()) return make_error(Errc::invalid_argument, "{}: expected a mapping", key(k));
    for (const auto& kv : n) {
      if (!kv.second.IsScalar())
        return make_error(Errc::invalid_argument, "{}.{}: expected a scalar", key(k), kv.first.as<std::string>());
      out[kv.first.as<std::string>()] = kv.second.as<std::string>();
    }
    return {};
  }

  Reader sub(const std::string& k) const { return Reader(child(k), key(k)); }

 private:
  YAML::Node node_;
  std::string path_;
};

#define TRY(expr)                                 \
  do {                                            \
    if (auto s_ = (expr); !s_) return s_.error(); \
  } while (0)

Status parse_credentials(const Reader& r, Credentials& c) {
  TRY(r.check_known({"username", "password_file"}));
  TRY(r.str("username", c.username));
  TRY(r.str("password_file", c.password_file));
  if (c.username.empty()) return make_error(Errc::invalid_argument, "{}: must not be empty", r.key("username"));
  return {};
}

Status parse_backup(const Reader& r, BackupConfig& b) {
  TRY(r.check_known(
      {"store", "key_file", "retired_key_files", "credentials_file", "archive", "schedule", "retention"}));
  TRY(r.str("store", b.store, true));
  if (b.store.rfind("file:///", 0) != 0 && b.store.rfind("s3://", 0) != 0)
    return make_error(Errc::invalid_argument, "{}: expected file:///ABS/DIR or s3://BUCKET[/PREFIX], got '{}'",
                      r.key("store"), b.store);
  TRY(r.str("key_file", b.key_file, true));
  if (b.key_file.front() != '/')
    return make_error(Errc::invalid_argument, "{}: must be an absolute path, got '{}'", r.key("key_file"), b.key_file);
  auto retired = r.child("retired_key_files");
  if (retired && !retired.IsNull()) {
    if (!retired.IsSequence())
      return make_error(Errc::invalid_argument, "{}: expected a list of paths", r.key("retired_key_files"));
    for (const auto& f : retired) {
      if (!f.IsScalar() || f.as<std::string>().empty() || f.as<std::string>().front() != '/')
        return make_error(Errc::invalid_argument, "{}: expected absolute paths", r.key("retired_key_files"));
      b.retired_key_files.push_back(f.as<std::string>());
    }
  }
  TRY(r.str("credentials_file", b.credentials_file));
  TRY(r.boolean("archive", b.archive));
  std::string schedule;
  TRY(r.str("schedule", schedule));
  if (!schedule.empty()) {
    auto d = parse_duration(schedule, r.key("schedule"));
    if (!d) return d.error();
    b.schedule = *d;
  }
  Reader ret = r.sub("retention");
  TRY(ret.check_known({"count", "max_age", "pitr_window"}));
  TRY(ret.integer("count", b.retention.count, 1, 100000));
  for (auto [k, out] : {std::pair<const char*, std::chrono::seconds*>{"max_age", &b.retention.max_age},
                        {"pitr_window", &b.retention.pitr_window}}) {
    std::string text;
    TRY(ret.str(k, text));
    if (text.empty()) continue;
    auto d = parse_duration(text, ret.key(k));
    if (!d) return d.error();
    *out = *d;
  }
  return {};
}

Status parse_restore_source(const Reader& r, RestoreSourceConfig& src) {
  TRY(r.check_known({"store", "key_file", "retired_key_files", "credentials_file", "backup_id", "to_time", "to_lsn"}));
  TRY(r.str("store", src.store, true));
  if (src.store.rfind("file:///", 0) != 0 && src.store.rfind("s3://", 0) != 0)
    return make_error(Errc::invalid_argument, "{}: expected file:///ABS/DIR or s3://BUCKET[/PREFIX], got '{}'",
                      r.key("store"), src.store);
  TRY(r.str("key_file", src.key_file, true));
  if (src.key_file.front() != '/')
    return make_error(Errc::invalid_argument, "{}: must be an absolute path, got '{}'", r.key("key_file"),
                      src.key_file);
  auto retired = r.child("retired_key_files");
  if (retired && !retired.IsNull()) {
    if (!retired.IsSequence())
      return make_error(Errc::invalid_argument, "{}: expected a list of paths", r.key("retired_key_files"));
    for (const auto& f : retired) {
      if (!f.IsScalar() || f.as<std::string>().empty() || f.as<std::string>().front() != '/')
        return make_error(Errc::invalid_argument, "{}: expected absolute paths", r.key("retired_key_files"));
      src.retired_key_files.push_back(f.as<std::string>());
    }
  }
  TRY(r.str("credentials_file", src.credentials_file));
  TRY(r.str("backup_id", src.backup_id));
  TRY(r.str("to_time", src.to_time));
  TRY(r.str("to_lsn", src.to_lsn));
  if (!src.to_time.empty() && !src.to_lsn.empty())
    return make_error(Errc::invalid_argument, "{}: give to_time or to_lsn, not both", r.key("to_time"));
  return {};
}

}  // namespace

Result<std::chrono::seconds> parse_duration(const std::string& text, const std::string& key) {
  if (text == "off" || text == "0") return std::chrono::seconds{0};
  size_t used = 0;
  int64_t n = 0;
  try {
    n = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  static const std::map<std::string, int64_t> kUnits = {{"", 1},     {"s", 1},     {"m", 60},
                                                        {"h", 3600}, {"d", 86400}, {"w", 7 * 86400}};
  auto unit = kUnits.find(used == 0 ? "?" : text.substr(used));
  if (used == 0 || unit == kUnits.end() || n < 0 || text.front() == '-' || text.front() == '+')
    return make_error(Errc::invalid_argument, "{}: expected a duration such as 90s, 15m, 24h or 7d, got '{}'", key,
                      text);
  if (n > (int64_t{1} << 40) / unit->second)
    return make_error(Errc::invalid_argument, "{}: duration '{}' is too large", key, text);
  return std::chrono::seconds{n * unit->second};
}

std::string HostPort::to_string() const {
  if (host.find(':') != std::string::npos) return fmt::format("[{}]:{}", host, port);
  return fmt::format("{}:{}", host, port);
}

Result<HostPort> parse_host_port(const std::string& text, const std::string& key) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) {
    return make_error(Errc::invalid_argument, "{}: expected HOST:PORT, got '{}'", key, text);
  }
  HostPort hp;
  hp.host = text.substr(0, colon);
  if (hp.host.size() > 2 && hp.host.front() == '[' && hp.host.back() == ']')
    hp.host = hp.host.substr(1, hp.host.size() - 2);
  try {
    size_t used = 0;
    hp.port = std::stoi(text.substr(colon + 1), &used);
    if (used != text.size() - colon - 1) throw std::invalid_argument("trailing");
  } catch (const std::exception&) {
    return make_error(Errc::invalid_argument, "{}: port in '{}' is not a number", key, text);
  }
  if (hp.port < 1 || hp.port > 65535)
    return make_error(Errc::invalid_argument, "{}: port {} is out of range [1, 65535]", key, hp.port);
  return hp;
}

Result<AgentConfig> parse_agent_config(const std::string& yaml_text) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return make_error(Errc::invalid_argument, "YAML syntax error at line {}, column {}: {}", e.mark.line + 1,
                      e.mark.column + 1, e.msg);
  }
  AgentConfig c;
  Reader top(root, "");
  TRY(top.check_known({"cluster", "name", "etcd", "data_dir", "run_dir", "log_file", "api", "postgresql", "ha", "tags",
                       "backup", "bootstrap_from_backup"}));
  TRY(top.str("cluster", c.cluster, true));
  TRY(top.str("name", c.name, true));
  if (!std::regex_match(c.cluster, kNameRe))
    return make_error(Errc::invalid_argument,
                      "cluster: '{}' is not a valid name (letters, digits, '_', '.', '-'; at most 63)", c.cluster);
  if (!std::regex_match(c.name, kNameRe))
    return make_error(Errc::invalid_argument,
                      "name: '{}' is not a valid member name (letters, digits, '_', '.', '-'; at most 63)", c.name);
  TRY(top.str("data_dir", c.data_dir, true));
  TRY(top.str("run_dir", c.run_dir));
  TRY(top.str("log_file", c.log_file));

  Reader etcd = top.sub("etcd");
  if (!top.child("etcd")) return make_error(Errc::invalid_argument, "etcd: required key is missing");
  TRY(etcd.check_known({"endpoints", "call_timeout_ms"}));
  auto eps = etcd.child("endpoints");
  if (!eps || !eps.IsSequence() || eps.size() == 0)
    return make_error(Errc::invalid_argument, "etcd.endpoints: expected a non-empty list of URLs");
  for (const auto& e : eps) c.etcd_endpoints.push_back(e.as<std::string>());
  TRY(etcd.integer("call_timeout_ms", c.etcd_call_timeout_ms, 50, 60000));

  Reader api = top.sub("api");
  TRY(api.check_known({"listen", "connect_address"}));
  std::string api_listen, api_connect;
  TRY(api.str("listen", api_listen, true));
  TRY(api.str("connect_address", api_connect));
  auto al = parse_host_port(api_listen, "api.listen");
  if (!al) return al.error();
  c.api_listen = *al;
  c.api_connect = c.api_listen;
  if (!api_connect.empty()) {
    auto ac = parse_host_port(api_connect, "api.connect_address");
    if (!ac) return ac.error();
    c.api_connect = *ac;
  }

  Reader pg = top.sub("postgresql");
  TRY(pg.check_known({"listen", "connect_address", "bin_dir", "run_as", "log_file", "parameters", "authentication"}));
  std::string pg_listen, pg_connect;
  TRY(pg.str("listen", pg_listen, true));
  TRY(pg.str("connect_address", pg_connect));
  auto pl = parse_host_port(pg_listen, "postgresql.listen");
  if (!pl) return pl.error();
  c.pg_listen = *pl;
  c.pg_connect = c.pg_listen;
  if (!pg_connect.empty()) {
    auto pc = parse_host_port(pg_connect, "postgresql.connect_address");
    if (!pc) return pc.error();
    c.pg_connect = *pc;
  }
  TRY(pg.str("bin_dir", c.bin_dir));
  TRY(pg.str("run_as", c.run_as));
  TRY(pg.str("log_file", c.pg_log_file));
  TRY(pg.string_map("parameters", c.parameters));
  for (const char* reserved : {"port", "listen_addresses", "hba_file", "data_directory", "unix_socket_directories",
                               "synchronous_standby_names", "primary_conninfo", "primary_slot_name"}) {
    if (c.parameters.count(reserved))
      return make_error(Errc::invalid_argument, "postgresql.parameters.{}: is managed by tandem and cannot be set",
                        reserved);
  }
  Reader auth = pg.sub("authentication");
  TRY(auth.check_known({"superuser", "replication", "admin"}));
  if (auth.child("superuser")) TRY(parse_credentials(auth.sub("superuser"), c.superuser));
  if (auth.child("replication")) TRY(parse_credentials(auth.sub("replication"), c.replication));
  if (auth.child("admin")) TRY(parse_credentials(auth.sub("admin"), c.admin));

  Reader ha = top.sub("ha");
  TRY(ha.check_known(
      {"ttl", "loop_wait", "retry_timeout", "maximum_lag_on_failover", "synchronous_mode", "primary_start_timeout"}));
  TRY(ha.integer("ttl", c.bootstrap.ttl, 2, 3600));
  TRY(ha.integer("loop_wait", c.bootstrap.loop_wait, 1, 3600));
  TRY(ha.integer("retry_timeout", c.bootstrap.retry_timeout, 1, 3600));
  TRY(ha.integer("maximum_lag_on_failover", c.bootstrap.maximum_lag_on_failover, 0, int64_t{1} << 50));
  TRY(ha.integer("primary_start_timeout", c.bootstrap.primary_start_timeout, 0, 3600));
  std::string mode;
  TRY(ha.str("synchronous_mode", mode));
  if (!mode.empty()) {
    auto m = dcs::parse_sync_mode(mode);
    if (!m)
      return make_error(Errc::invalid_argument, "ha.synchronous_mode: expected off, on or strict, got '{}'", mode);
    c.bootstrap.synchronous_mode = *m;
  }
  TRY(dcs::validate(c.bootstrap));

  Reader tags = top.sub("tags");
  if (top.child("tags")) {
    auto n = top.child("tags");
    if (!n.IsMap()) return make_error(Errc::invalid_argument, "tags: expected a mapping");
    for (const auto& kv : n) {
      auto k = kv.first.as<std::string>();
      if (k == "nofailover")
        TRY(tags.boolean("nofailover", c.tags.nofailover));
      else if (k == "nosync")
        TRY(tags.boolean("nosync", c.tags.nosync));
      else if (kv.second.IsScalar())
        c.tags.other[k] = kv.second.as<std::string>();
      else
        return make_error(Errc::invalid_argument, "tags.{}: expected a scalar", k);
    }
  }

  if (top.child("backup") && !top.child("backup").IsNull()) TRY(parse_backup(top.sub("backup"), c.backup));
  if (top.child("bootstrap_from_backup") && !top.child("bootstrap_from_backup").IsNull()) {
    TRY(parse_restore_source(top.sub("bootstrap_from_backup"), c.bootstrap_from_backup));
    // The new cluster archives into its own repository; the source stays read only.
    if (c.bootstrap_from_backup.store == c.backup.store)
      return make_error(Errc::invalid_argument,
                        "bootstrap_from_backup.store: must differ from backup.store ({}): a restored cluster "
                        "archives into its own repository, never into the one it was restored from",
                        c.backup.store);
  }

  if (c.run_dir.empty()) c.run_dir = c.data_dir + ".run";
  if (c.pg_log_file.empty()) c.pg_log_file = c.data_dir + ".postgresql.log";
  return c;
}

Result<AgentConfig> load_agent_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) return make_error(Errc::not_found, "cannot read config file {}", path);
  std::stringstream ss;
  ss << in.rdbuf();
  auto r = parse_agent_config(ss.str());
  if (!r) return make_error(r.error().code, "{}: {}", path, r.error().message);
  std::error_code ec;
  auto abs = std::filesystem::absolute(path, ec);
  r->source_path = ec ? path : abs.lexically_normal().string();
  return r;
}

Result<std::string> read_secret_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return make_error(Errc::not_found, "cannot read secret file {}", path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  if (s.empty()) return make_error(Errc::invalid_argument, "secret file {} is empty", path);
  return s;
}

}  // namespace tandem::config
