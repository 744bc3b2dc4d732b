#include "pg/conninfo.hpp"

namespace tandem::pg {

std::vector<std::pair<std::string, std::string>> ConnParams::keywords() const {
  std::vector<std::pair<std::string, std::string>> kv;
  auto add = [&](const char* k, const std::string& v) {
    if (!v.empty()) kv.emplace_back(k, v);
  };
  add("host", host);
  if (port > 0) add("port", std::to_string(port));
  add("user", user);
  add("dbname", dbname);
  add("passfile", passfile);
  add("application_name", application_name);
  if (connect_timeout_s > 0) add("connect_timeout", std::to_string(connect_timeout_s));
  if (statement_timeout_ms > 0) add("options", "-c statement_timeout=" + std::to_string(statement_timeout_ms));
  if (replication) add("replication", "true");
  // Our pg_hba has no GSSAPI; libpq's default (gssencmode=prefer) would still look for a
  // Kerberos credential cache before every TCP connection, which loads Kerberos and starts
  // OpenSSL's providers (2.4 MiB more resident in an agent that rejoined with pg_rewind).
  add("gssencmode", "disable");
  return kv;
}

std::string quote_conninfo_value(const std::string& v) {
  std::string out = "'";
  for (char c : v) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  out += '\'';
  return out;
}

std::string render_conninfo(const ConnParams& p) {
  std::string out;
  for (const auto& [k, v] : p.keywords()) {
    if (!out.empty()) out += ' ';
    out += k + "=" + quote_conninfo_value(v);
  }
  return out;
}

ConnParams local_superuser(const Settings& s, int statement_timeout_ms) {
  ConnParams p;
  p.host = s.run_dir;
  p.port = s.port;
  p.user = s.superuser;
  p.dbname = "postgres";
  p.application_name = "tandem-agent";
  p.connect_timeout_s = 3;
  p.statement_timeout_ms = statement_timeout_ms;
  return p;
}

}  // namespace tandem::pg
