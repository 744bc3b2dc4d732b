#include "portal/service/portal_config.hpp"

#include <cctype>
#include <fstream>
#include <limits>
#include <sstream>

#include <yaml-cpp/yaml.h>

namespace tandem::portal::service {

namespace {

// A mapping in the YAML document with its key path, for error messages.
class Node {
 public:
  Node(YAML::Node node, std::string path) : node_(std::move(node)), path_(std::move(path)) {}

  std::string key(const std::string& k) const { return path_.empty() ? k : path_ + "." + k; }
  bool present() const { return node_ && !node_.IsNull(); }

  Status check_known(std::initializer_list<const char*> known) const {
    if (!present()) return {};
    if (!node_.IsMap()) {
      return make_error(Errc::invalid_argument, "{}: expected a mapping", path_.empty() ? "(top level)" : path_);
    }
    for (const auto& kv : node_) {
      const auto k = kv.first.as<std::string>();
      bool found = false;
      for (const char* n : known) found = found || k == n;
      if (!found) return make_error(Errc::invalid_argument, "{}: unknown key", key(k));
    }
    return {};
  }

  Node sub(const std::string& k) const { return Node(child(k), key(k)); }
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

  Status strings(const std::string& k, std::vector<std::string>& out) const {
    auto n = child(k);
    if (!n || n.IsNull()) return {};
    if (!n.IsSequence()) return make_error(Errc::invalid_argument, "{}: expected a list of strings", key(k));
    out.clear();
    for (const auto& item : n) {
      if (!item.IsScalar()) return make_error(Errc::invalid_argument, "{}: expected a list of strings", key(k));
      out.push_back(item.as<std::string>());
    }
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
    if (v < min || v > max) {
      return make_error(Errc::invalid_argument, "{}: {} is out of range [{}, {}]", key(k), v, min, max);
    }
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

  Status millis(const std::string& k, std::chrono::milliseconds& out) const {
    std::string text;
    if (auto s = str(k, text); !s) return s;
    if (text.empty()) return {};
    auto v = parse_millis(text, key(k));
    if (!v) return v.error();
    out = *v;
    return {};
  }

  Status host_port(const std::string& k, std::optional<HostPort>& out, bool required) const {
    std::string text;
    if (auto s = str(k, text, required); !s) return s;
    if (text.empty()) return {};
    auto hp = config::parse_host_port(text, key(k));
    if (!hp) return hp.error();
    out = *hp;
    return {};
  }

  const YAML::Node& raw() const { return node_; }
  const std::string& path() const { return path_; }

 private:
  YAML::Node node_;
  std::string path_;
};

#define TRY(expr)                \
  do {                           \
    if (auto s_ = (expr); !s_) { \
      return s_.error();         \
    }                            \
  } while (false)

bool valid_name(const std::string& s) {
  if (s.empty() || s.size() > 63) return false;
  for (char c : s) {
    if (std::isalnum(static_cast<unsigned char>(c)) == 0 && c != '-' && c != '_' && c != '.') return false;
  }
  return std::isalnum(static_cast<unsigned char>(s.front())) != 0;
}

Status parse_fallback(const Node& fallback, PortalConfig& c) {
  TRY(fallback.check_known({"members"}));
  auto list = fallback.child("members");
  if (!list || list.IsNull()) return {};
  const std::string key = fallback.key("members");
  if (!list.IsSequence()) return make_error(Errc::invalid_argument, "{}: expected a list of members", key);
  for (std::size_t i = 0; i < list.size(); ++i) {
    Node m(list[i], fmt::format("{}[{}]", key, i));
    TRY(m.check_known({"name", "api_url", "postgresql"}));
    StaticMember sm;
    TRY(m.str("name", sm.name, true));
    TRY(m.str("api_url", sm.api_url, true));
    if (sm.api_url.rfind("http://", 0) != 0) {
      return make_error(Errc::invalid_argument, "{}: expected http://HOST:PORT, got '{}'", m.key("api_url"),
                        sm.api_url);
    }
    std::optional<HostPort> pg;
    TRY(m.host_port("postgresql", pg, true));
    sm.host = pg->host;
    sm.port = pg->port;
    c.fallback_members.push_back(std::move(sm));
  }
  return {};
}

}  // namespace

Result<std::chrono::milliseconds> parse_millis(const std::string& text, const std::string& key) {
  if (text == "0" || text == "off") return std::chrono::milliseconds(0);
  std::size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits])) != 0) ++digits;
  const std::string unit = text.substr(digits);
  const auto bad = [&] {
    return make_error(Errc::invalid_argument, "{}: expected a duration such as 250ms, 10s, 5m, 2h or 1d, got '{}'", key,
                      text);
  };
  if (digits == 0 || digits > 12) return bad();
  const int64_t n = std::stoll(text.substr(0, digits));
  int64_t scale = 0;
  if (unit.empty() || unit == "s") {
    scale = 1000;
  } else if (unit == "ms") {
    scale = 1;
  } else if (unit == "m") {
    scale = 60'000;
  } else if (unit == "h") {
    scale = 3'600'000;
  } else if (unit == "d") {
    scale = 86'400'000;
  } else {
    return bad();
  }
  return std::chrono::milliseconds(n * scale);
}

Result<PortalConfig> parse_portal_config(const std::string& yaml_text) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return make_error(Errc::invalid_argument, "not valid YAML: {}", e.what());
  }
  if (!root || !root.IsMap()) return make_error(Errc::invalid_argument, "(top level): expected a mapping");
  Node top(root, "");
  TRY(top.check_known({"cluster", "name", "etcd", "listeners", "tls", "backend", "read_only", "limits", "workers",
                       "log_file", "pki", "fallback"}));
  PortalConfig c;
  TRY(top.str("cluster", c.cluster, true));
  TRY(top.str("name", c.name, true));
  if (!valid_name(c.cluster)) {
    return make_error(Errc::invalid_argument, "cluster: '{}' is not a valid name (letters, digits, - _ .)", c.cluster);
  }
  if (!valid_name(c.name)) {
    return make_error(Errc::invalid_argument, "name: '{}' is not a valid name (letters, digits, - _ .)", c.name);
  }

  Node etcd = top.sub("etcd");
  TRY(etcd.check_known({"endpoints", "call_timeout", "unreachable_after"}));
  TRY(etcd.strings("endpoints", c.etcd_endpoints));
  if (c.etcd_endpoints.empty()) return make_error(Errc::invalid_argument, "etcd.endpoints: at least one is required");
  TRY(etcd.millis("call_timeout", c.etcd_call_timeout));
  TRY(etcd.millis("unreachable_after", c.etcd_unreachable_after));
  if (c.etcd_call_timeout.count() < 10) {
    return make_error(Errc::invalid_argument, "etcd.call_timeout: must be at least 10ms");
  }

  Node listeners = top.sub("listeners");
  if (!listeners.present()) return make_error(Errc::invalid_argument, "listeners: required key is missing");
  TRY(listeners.check_known({"read_write", "read_only", "http"}));
  std::optional<HostPort> rw;
  TRY(listeners.host_port("read_write", rw, true));
  c.read_write = *rw;
  TRY(listeners.host_port("read_only", c.read_only, false));
  TRY(listeners.host_port("http", c.http, false));

  Node tls = top.sub("tls");
  TRY(tls.check_known({"cert", "key", "ca", "allow_plaintext"}));
  TRY(tls.str("cert", c.tls_cert));
  TRY(tls.str("key", c.tls_key));
  TRY(tls.str("ca", c.tls_ca));
  TRY(tls.boolean("allow_plaintext", c.allow_plaintext));
  if (c.tls_cert.empty() != c.tls_key.empty()) {
    return make_error(Errc::invalid_argument, "{}: tls.cert and tls.key go together",
                      c.tls_cert.empty() ? "tls.cert" : "tls.key");
  }
  if (c.tls_cert.empty() && !c.allow_plaintext) {
    return make_error(Errc::invalid_argument,
                      "tls.cert: required unless tls.allow_plaintext is true (clients could not connect at all)");
  }

  Node backend = top.sub("backend");
  TRY(backend.check_known({"tls", "ca"}));
  auto bt = backend.child("tls");
  bool backend_tls_on = false;
  if (bt && !bt.IsNull()) {
    // off/on (also true/false, yes/no, as YAML reads them).
    if (!bt.IsScalar() || !YAML::convert<bool>::decode(bt, backend_tls_on)) {
      return make_error(Errc::invalid_argument, "backend.tls: expected off or on, got '{}'",
                        bt.IsScalar() ? bt.Scalar() : std::string("a non-scalar value"));
    }
  }
  c.backend_tls = backend_tls_on ? BackendTls::on : BackendTls::off;
  TRY(backend.str("ca", c.backend_ca));
  if (c.backend_tls == BackendTls::on && c.backend_ca.empty()) {
    return make_error(Errc::invalid_argument, "backend.ca: required when backend.tls is on (to verify members)");
  }

  Node ro = top.sub("read_only");
  TRY(ro.check_known({"max_lag_bytes"}));
  TRY(ro.integer("max_lag_bytes", c.read_only_max_lag_bytes, 0, std::numeric_limits<int64_t>::max()));

  Node limits = top.sub("limits");
  TRY(limits.check_known(
      {"max_connections", "startup_timeout", "connect_timeout", "idle_timeout", "switchover_hold_timeout"}));
  TRY(limits.integer("max_connections", c.max_connections, 1, 1'000'000));
  TRY(limits.millis("startup_timeout", c.startup_timeout));
  TRY(limits.millis("connect_timeout", c.connect_timeout));
  TRY(limits.millis("idle_timeout", c.idle_timeout));
  TRY(limits.millis("switchover_hold_timeout", c.switchover_hold_timeout));
  if (c.startup_timeout.count() == 0) {
    return make_error(Errc::invalid_argument,
                      "limits.startup_timeout: must be more than 0 (slow clients hold sockets)");
  }
  if (c.connect_timeout.count() == 0) {
    return make_error(Errc::invalid_argument, "limits.connect_timeout: must be more than 0");
  }

  TRY(top.integer("workers", c.workers, 1, 64));
  TRY(top.str("log_file", c.log_file));

  Node pki = top.sub("pki");
  TRY(pki.check_known({"dir", "dns_names", "ip_addresses", "check_interval", "renew_before"}));
  TRY(pki.str("dir", c.pki_dir));
  TRY(pki.strings("dns_names", c.pki_dns_names));
  TRY(pki.strings("ip_addresses", c.pki_ip_addresses));
  TRY(pki.millis("check_interval", c.pki_check_interval));
  TRY(pki.millis("renew_before", c.pki_renew_before));
  if (!c.pki_dir.empty() && c.pki_dns_names.empty() && c.pki_ip_addresses.empty()) {
    return make_error(Errc::invalid_argument, "pki.dns_names: renewal needs at least one name or address");
  }
  if (!c.pki_dir.empty() && c.pki_check_interval.count() < 1000) {
    return make_error(Errc::invalid_argument, "pki.check_interval: must be at least 1s");
  }

  TRY(parse_fallback(top.sub("fallback"), c));
  return c;
}

#undef TRY

Result<PortalConfig> load_portal_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) return make_error(Errc::not_found, "cannot read {}", path);
  std::stringstream ss;
  ss << in.rdbuf();
  auto c = parse_portal_config(ss.str());
  if (!c) return make_error(c.error().code, "{}: {}", path, c.error().message);
  return c;
}

}  // namespace tandem::portal::service
