#include "pg/managed_config.hpp"

#include <algorithm>
#include <cctype>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "pg/conninfo.hpp"
#include "pg/files.hpp"
#include "pg/hba.hpp"

namespace tandem::pg {

namespace {

constexpr const char* kIncludeLine = "include_if_exists = 'tandem.conf'";

// Defaults the caller's parameters may override.
const std::map<std::string, std::string>& default_parameters() {
  static const std::map<std::string, std::string> d = {
      {"wal_level", "replica"},
      {"max_wal_senders", "10"},
      {"max_replication_slots", "10"},
      {"wal_keep_size", "256MB"},
      {"hot_standby_feedback", "on"},
      {"log_line_prefix", "%m [%p] %q%u@%d "},
      // A standby whose stream ended (the primary shut down for a switchover) retries
      // after this long; PostgreSQL's 5 s default delays a promotion requested meanwhile.
      {"wal_retrieve_retry_interval", "200ms"},
  };
  return d;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

bool valid_param_name(const std::string& name) {
  if (name.empty() || name.size() > 63) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.';
  });
}

bool is_managed(const std::string& key) {
  const auto& keys = managed_keys();
  return std::find(keys.begin(), keys.end(), lower(key)) != keys.end();
}

// The key a postgresql.conf line sets, lowercased; "" for blank lines and comments.
std::string line_key(const std::string& line) {
  size_t i = 0;
  while (i < line.size() && std::isspace(static_cast<unsigned char>(line[i]))) ++i;
  size_t start = i;
  while (i < line.size() && line[i] != '=' && line[i] != '#' && !std::isspace(static_cast<unsigned char>(line[i]))) ++i;
  return lower(line.substr(start, i - start));
}

}  // namespace

const char* to_string(Role r) {
  return r == Role::primary ? "primary" : "standby";
}

const std::vector<std::string>& managed_keys() {
  static const std::vector<std::string> keys = {
      "listen_addresses",
      "port",
      "unix_socket_directories",
      "cluster_name",
      "hot_standby",
      "wal_log_hints",
      "password_encryption",
      "logging_collector",
      "log_destination",
      "primary_conninfo",
      "primary_slot_name",
      "recovery_target_timeline",
      "synchronous_standby_names",
      "archive_mode",
      "archive_command",
      "archive_library",
      "tandem_archive.socket",
      "tandem_archive.fallback_command",
      "tandem_archive.timeout",
      "restore_command",
      "data_directory",
      "config_file",
      "hba_file",
      "ident_file",
      "external_pid_file",
      "include",
      "include_if_exists",
      "include_dir",
  };
  return keys;
}

std::string quote_conf_value(const std::string& v) {
  std::string out = "'";
  for (char c : v) {
    if (c == '\'') out += '\'';
    if (c == '\\') out += '\\';
    out += c;
  }
  out += '\'';
  return out;
}

std::string render_primary_conninfo(const Settings& s, const Upstream& up) {
  ConnParams p;
  p.host = up.host;
  p.port = up.port;
  p.user = up.user;
  p.dbname.clear();  // the walreceiver makes a replication connection; dbname is unused
  p.passfile = up.passfile;
  p.application_name = s.name;
  p.connect_timeout_s = up.connect_timeout_s;
  return render_conninfo(p);
}

std::string render_sync_standby_names(const std::vector<std::string>& names, int count, bool quorum) {
  if (names.empty() || count <= 0) return "";
  std::string list;
  for (const auto& n : names) {
    if (!list.empty()) list += ", ";
    std::string q = "\"";
    for (char c : n) {
      if (c == '"') q += '"';
      q += c;
    }
    list += q + "\"";
  }
  return fmt::format("{} {} ({})", quorum ? "ANY" : "FIRST", std::min<size_t>(static_cast<size_t>(count), names.size()),
                     list);
}

Result<std::string> render_tandem_conf(const Settings& s, const ManagedConfig& cfg) {
  std::map<std::string, std::string> params = default_parameters();
  for (const auto& [k, v] : cfg.parameters) {
    if (!valid_param_name(k)) return make_error(Errc::invalid_argument, "parameter name '{}' is not valid", k);
    if (is_managed(k)) {
      return make_error(Errc::invalid_argument, "parameter '{}' is managed by tandem and cannot be set", k);
    }
    if (v.find('\n') != std::string::npos || v.find('\r') != std::string::npos) {
      return make_error(Errc::invalid_argument, "parameter '{}': the value contains a line break", k);
    }
    params[lower(k)] = v;
  }
  if (lower(params["wal_level"]) == "minimal") {
    return make_error(Errc::invalid_argument, "parameter 'wal_level': replication needs 'replica' or 'logical'");
  }
  if (cfg.role == Role::primary && cfg.upstream) {
    return make_error(Errc::invalid_argument, "a primary cannot have an upstream");
  }

  std::string out = fmt::format(
      "# Managed by tandem for member '{}': rewritten by the agent, local edits are lost.\n"
      "# Role: {}\n",
      s.name, to_string(cfg.role));
  auto set = [&](const std::string& k, const std::string& v) { out += k + " = " + quote_conf_value(v) + "\n"; };
  out += "\n# Identity and network\n";
  set("listen_addresses", s.listen_host);
  set("port", std::to_string(s.port));
  set("unix_socket_directories", s.run_dir);
  set("cluster_name", s.name);
  out += "\n# Replication and safety\n";
  set("hot_standby", "on");
  set("wal_log_hints", "on");
  set("password_encryption", "scram-sha-256");
  out += "\n# The server log is the postmaster's stderr, captured by the agent\n";
  set("logging_collector", "off");
  set("log_destination", "stderr");
  out += "\n# Role-dependent settings\n";
  if (cfg.role == Role::standby && cfg.upstream) {
    set("primary_conninfo", render_primary_conninfo(s, *cfg.upstream));
    set("primary_slot_name", cfg.upstream->slot);
  } else {
    set("primary_conninfo", "");
    set("primary_slot_name", "");
  }
  set("recovery_target_timeline", "latest");
  set("synchronous_standby_names", cfg.role == Role::primary ? cfg.synchronous_standby_names : "");
  out += "\n# WAL archive\n";
  const bool module = !cfg.archive_library.empty();
  set("archive_mode", cfg.archive_command.empty() && !module ? "off" : "on");
  set("archive_command", module ? "" : cfg.archive_command);
  set("archive_library", cfg.archive_library);
  if (module) {
    set("tandem_archive.socket", cfg.archive_socket);
    set("tandem_archive.fallback_command", cfg.archive_fallback_command);
  }
  set("restore_command", cfg.role == Role::standby ? cfg.restore_command : "");
  out += "\n# Parameters\n";
  for (const auto& [k, v] : params) set(k, v);
  return out;
}

std::string with_include_line(const std::string& conf) {
  std::istringstream in(conf);
  std::string line;
  while (std::getline(in, line)) {
    if (line == kIncludeLine) return conf;
  }
  std::string out = conf;
  if (!out.empty() && out.back() != '\n') out += '\n';
  out += "\n# Added by tandem: our managed settings, read last.\n";
  out += kIncludeLine;
  out += '\n';
  return out;
}

std::string without_managed_keys(const std::string& auto_conf) {
  std::istringstream in(auto_conf);
  std::string line;
  std::string out;
  while (std::getline(in, line)) {
    std::string key = line_key(line);
    if (!key.empty() && is_managed(key)) continue;
    out += line + "\n";
  }
  return out;
}

Result<ConfigChange> write_managed_config(const Settings& s, const ManagedConfig& cfg) {
  ConfigChange change;
  auto conf = render_tandem_conf(s, cfg);
  if (!conf) return conf.error();
  HbaSpec hba_spec{s.superuser, s.run_as, cfg.allowed_networks};
  auto hba = render_pg_hba(hba_spec);
  if (!hba) return hba.error();
  auto ident = render_pg_ident(hba_spec);
  if (!ident) return ident.error();

  auto main_conf = read_file(s.data_file("postgresql.conf"));
  if (!main_conf)
    return make_error(main_conf.error().code, "{} (is the data directory initialised?)", main_conf.error().message);

  auto w = write_file_if_changed(s.data_file("tandem.conf"), *conf, 0600, s.run_as);
  if (!w) return w.error();
  change.conf_changed |= *w;
  w = write_file_if_changed(s.data_file("postgresql.conf"), with_include_line(*main_conf), 0600, s.run_as);
  if (!w) return w.error();
  change.conf_changed |= *w;
  if (auto auto_conf = read_file(s.data_file("postgresql.auto.conf"))) {
    std::string cleaned = without_managed_keys(*auto_conf);
    if (cleaned != *auto_conf) {
      w = write_file_if_changed(s.data_file("postgresql.auto.conf"), cleaned, 0600, s.run_as);
      if (!w) return w.error();
      change.conf_changed |= *w;
    }
  }
  w = write_file_if_changed(s.data_file("pg_hba.conf"), *hba, 0600, s.run_as);
  if (!w) return w.error();
  change.hba_changed |= *w;
  w = write_file_if_changed(s.data_file("pg_ident.conf"), *ident, 0600, s.run_as);
  if (!w) return w.error();
  change.hba_changed |= *w;

  std::string signal = s.data_file("standby.signal");
  if (cfg.role == Role::standby) {
    auto existing = read_file(signal);
    if (!existing) {
      if (auto st = write_file_atomic(signal, "", 0600, s.run_as); !st) return st.error();
      change.standby_signal_changed = true;
    }
  } else {
    auto removed = remove_file(signal);
    if (!removed) return removed.error();
    change.standby_signal_changed = *removed;
  }
  return change;
}

}  // namespace tandem::pg
