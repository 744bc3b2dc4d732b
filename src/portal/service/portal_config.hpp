#pragma once
// PortalConfig: the YAML file of one `tandem portal`. Parsing names the key and the
// problem on every error ("limits.idle_timeout: expected a duration such as 30s, got 'x'").
// A plain value: built once at start-up and read by the service that owns it.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "config/agent_config.hpp"

namespace tandem::portal::service {

using config::HostPort;

enum class BackendTls { off, on };

// A data member the portal may probe (GET <api_url>/primary) when etcd cannot be reached,
// and where its PostgreSQL listens.
struct StaticMember {
  std::string name;
  std::string api_url;  // http://host:port of the member's agent
  std::string host;     // PostgreSQL host
  int port = 0;         // PostgreSQL port
};

struct PortalConfig {
  std::string cluster;
  std::string name;  // this portal's name, in logs and metrics ("portal1")
  std::vector<std::string> etcd_endpoints;
  std::chrono::milliseconds etcd_call_timeout{1000};
  // How long the etcd watch may be broken (and reads fail) before routing falls back to
  // probing the agents' /primary endpoints.
  std::chrono::milliseconds etcd_unreachable_after{3000};

  HostPort read_write;                // listeners.read_write (required)
  std::optional<HostPort> read_only;  // listeners.read_only
  std::optional<HostPort> http;       // listeners.http: /health and /metrics

  std::string tls_cert;  // tls.cert: PEM certificate the portal presents
  std::string tls_key;   // tls.key: its private key (0600)
  std::string tls_ca;    // tls.ca: the CA clients verify against (only reported)
  bool allow_plaintext = false;

  BackendTls backend_tls = BackendTls::off;
  std::string backend_ca;  // backend.ca: CA for members' certificates (backend.tls: on)

  int64_t read_only_max_lag_bytes = 1024 * 1024;

  std::size_t max_connections = 1000;  // per listener
  std::chrono::milliseconds startup_timeout{10'000};
  std::chrono::milliseconds connect_timeout{5'000};
  std::chrono::milliseconds idle_timeout{0};  // 0: no idle limit
  std::chrono::milliseconds switchover_hold_timeout{30'000};

  int workers = 2;
  std::string log_file;  // stderr when empty

  // pki.dir: when set, the portal renews its certificate in this deployment PKI
  // directory before it expires (tls.cert/tls.key then usually point into it).
  std::string pki_dir;
  std::vector<std::string> pki_dns_names;
  std::vector<std::string> pki_ip_addresses;
  std::chrono::milliseconds pki_check_interval{3'600'000};
  std::chrono::milliseconds pki_renew_before{30LL * 24 * 3'600'000};

  std::vector<StaticMember> fallback_members;  // fallback.members
};

// Parses "250ms", "10s", "5m", "2h", "1d" or a plain number of seconds; "0" and "off"
// give zero. `key` names the setting in errors.
[[nodiscard]] Result<std::chrono::milliseconds> parse_millis(const std::string& text, const std::string& key);

// Parses and validates; exceptions are not used.
[[nodiscard]] Result<PortalConfig> parse_portal_config(const std::string& yaml_text);
[[nodiscard]] Result<PortalConfig> load_portal_config(const std::string& path);

}  // namespace tandem::portal::service
