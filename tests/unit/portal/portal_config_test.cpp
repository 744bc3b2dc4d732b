// PortalConfig parsing: a full file, defaults, and errors that name the key.
#include <gtest/gtest.h>

#include "portal/service/portal_config.hpp"

namespace tandem::portal::service {
namespace {

constexpr const char* kFull = R"(
cluster: prod
name: portal1
etcd:
  endpoints: [http://127.0.0.1:2379, http://127.0.0.1:2381]
  call_timeout: 500ms
  unreachable_after: 4s
listeners:
  read_write: 127.0.0.1:5432
  read_only: 127.0.0.1:5433
  http: 127.0.0.1:8080
tls:
  cert: /pki/server.crt
  key: /pki/server.key
  ca: /pki/ca.crt
backend:
  tls: on
  ca: /pki/ca.crt
read_only:
  max_lag_bytes: 16777216
limits:
  max_connections: 200
  startup_timeout: 5s
  connect_timeout: 2s
  idle_timeout: 1h
  switchover_hold_timeout: 45s
workers: 3
log_file: /var/log/portal1.log
pki:
  dir: /pki
  dns_names: [localhost, db.example]
  ip_addresses: [127.0.0.1, "::1"]
  check_interval: 10m
  renew_before: 20d
fallback:
  members:
    - {name: pg1, api_url: "http://127.0.0.1:8008", postgresql: "127.0.0.1:5441"}
    - {name: pg2, api_url: "http://127.0.0.1:8009", postgresql: "127.0.0.1:5442"}
)";

constexpr const char* kMinimal = R"(
cluster: c
name: p
etcd: {endpoints: [127.0.0.1:2379]}
listeners: {read_write: "0.0.0.0:6432"}
tls: {cert: a.crt, key: a.key}
)";

TEST(PortalConfig, ParsesEveryKey) {
  auto c = parse_portal_config(kFull);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->cluster, "prod");
  EXPECT_EQ(c->name, "portal1");
  ASSERT_EQ(c->etcd_endpoints.size(), 2u);
  EXPECT_EQ(c->etcd_call_timeout, std::chrono::milliseconds(500));
  EXPECT_EQ(c->etcd_unreachable_after, std::chrono::seconds(4));
  EXPECT_EQ(c->read_write.host, "127.0.0.1");
  EXPECT_EQ(c->read_write.port, 5432);
  ASSERT_TRUE(c->read_only);
  EXPECT_EQ(c->read_only->port, 5433);
  ASSERT_TRUE(c->http);
  EXPECT_EQ(c->http->port, 8080);
  EXPECT_EQ(c->tls_cert, "/pki/server.crt");
  EXPECT_EQ(c->tls_key, "/pki/server.key");
  EXPECT_EQ(c->tls_ca, "/pki/ca.crt");
  EXPECT_FALSE(c->allow_plaintext);
  EXPECT_EQ(c->backend_tls, BackendTls::on);
  EXPECT_EQ(c->backend_ca, "/pki/ca.crt");
  EXPECT_EQ(c->read_only_max_lag_bytes, 16777216);
  EXPECT_EQ(c->max_connections, 200u);
  EXPECT_EQ(c->startup_timeout, std::chrono::seconds(5));
  EXPECT_EQ(c->connect_timeout, std::chrono::seconds(2));
  EXPECT_EQ(c->idle_timeout, std::chrono::hours(1));
  EXPECT_EQ(c->switchover_hold_timeout, std::chrono::seconds(45));
  EXPECT_EQ(c->workers, 3);
  EXPECT_EQ(c->log_file, "/var/log/portal1.log");
  EXPECT_EQ(c->pki_dir, "/pki");
  EXPECT_EQ(c->pki_dns_names, (std::vector<std::string>{"localhost", "db.example"}));
  EXPECT_EQ(c->pki_ip_addresses, (std::vector<std::string>{"127.0.0.1", "::1"}));
  EXPECT_EQ(c->pki_check_interval, std::chrono::minutes(10));
  EXPECT_EQ(c->pki_renew_before, std::chrono::hours(24 * 20));
  ASSERT_EQ(c->fallback_members.size(), 2u);
  EXPECT_EQ(c->fallback_members[1].name, "pg2");
  EXPECT_EQ(c->fallback_members[1].api_url, "http://127.0.0.1:8009");
  EXPECT_EQ(c->fallback_members[1].host, "127.0.0.1");
  EXPECT_EQ(c->fallback_members[1].port, 5442);
}

TEST(PortalConfig, MinimalFileGetsDefaults) {
  auto c = parse_portal_config(kMinimal);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_FALSE(c->read_only);
  EXPECT_FALSE(c->http);
  EXPECT_EQ(c->backend_tls, BackendTls::off);
  EXPECT_EQ(c->read_only_max_lag_bytes, 1024 * 1024);
  EXPECT_EQ(c->max_connections, 1000u);
  EXPECT_EQ(c->switchover_hold_timeout, std::chrono::seconds(30));
  EXPECT_EQ(c->idle_timeout, std::chrono::milliseconds(0));
  EXPECT_EQ(c->workers, 2);
  EXPECT_TRUE(c->pki_dir.empty());
  EXPECT_TRUE(c->fallback_members.empty());
}

struct BadCase {
  const char* name;
  std::string yaml;
  std::string expected;  // a fragment of the error message
};

std::string minimal_with(const std::string& extra) {
  return std::string(kMinimal) + extra;
}

class PortalConfigErrors : public ::testing::TestWithParam<BadCase> {};

TEST_P(PortalConfigErrors, NameTheKey) {
  auto c = parse_portal_config(GetParam().yaml);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message.find(GetParam().expected), std::string::npos) << c.error().message;
  EXPECT_EQ(c.error().code, Errc::invalid_argument);
}

INSTANTIATE_TEST_SUITE_P(
    Table, PortalConfigErrors,
    ::testing::Values(
        BadCase{"not_yaml", "cluster: [", "not valid YAML"}, BadCase{"scalar_top", "just text", "(top level)"},
        BadCase{"unknown_top", minimal_with("colour: blue\n"), "colour: unknown key"},
        BadCase{"missing_cluster", "name: p\netcd: {endpoints: [a]}\nlisteners: {read_write: 'h:1'}\n",
                "cluster: required key is missing"},
        BadCase{"bad_name", minimal_with("").replace(minimal_with("").find("name: p"), 7, "name: 'a b'"),
                "name: 'a b' is not a valid name"},
        BadCase{"no_endpoints", "cluster: c\nname: p\nlisteners: {read_write: 'h:1'}\ntls: {cert: a, key: b}\n",
                "etcd.endpoints: at least one is required"},
        BadCase{"no_listeners", "cluster: c\nname: p\netcd: {endpoints: [a]}\n", "listeners: required key is missing"},
        BadCase{"bad_rw", "cluster: c\nname: p\netcd: {endpoints: [a]}\nlisteners: {read_write: nope}\n",
                "listeners.read_write: expected HOST:PORT"},
        BadCase{"bad_port", "cluster: c\nname: p\netcd: {endpoints: [a]}\nlisteners: {read_write: 'h:99999'}\n",
                "listeners.read_write: port 99999 is out of range"},
        BadCase{"unknown_listener",
                minimal_with("").replace(minimal_with("").find("{read_write"), 1, "{admin: 'h:1', "),
                "listeners.admin: unknown key"},
        BadCase{"no_tls", "cluster: c\nname: p\netcd: {endpoints: [a]}\nlisteners: {read_write: 'h:1'}\n",
                "tls.cert: required unless tls.allow_plaintext"},
        BadCase{"cert_without_key",
                "cluster: c\nname: p\netcd: {endpoints: [a]}\nlisteners: {read_write: 'h:1'}\ntls: {cert: a}\n",
                "tls.key: tls.cert and tls.key go together"},
        BadCase{"backend_tls_word", minimal_with("backend: {tls: maybe}\n"),
                "backend.tls: expected off or on, got 'maybe'"},
        BadCase{"backend_tls_without_ca", minimal_with("backend: {tls: on}\n"),
                "backend.ca: required when backend.tls"},
        BadCase{"bad_duration", minimal_with("limits: {idle_timeout: soon}\n"),
                "limits.idle_timeout: expected a duration"},
        BadCase{"bad_unit", minimal_with("limits: {switchover_hold_timeout: 10y}\n"),
                "limits.switchover_hold_timeout: expected a duration"},
        BadCase{"zero_startup", minimal_with("limits: {startup_timeout: 0}\n"), "limits.startup_timeout: must be more"},
        BadCase{"max_conn_range", minimal_with("limits: {max_connections: 0}\n"),
                "limits.max_connections: 0 is out of range"},
        BadCase{"workers_type", minimal_with("workers: many\n"), "workers: expected an integer, got 'many'"},
        BadCase{"negative_lag", minimal_with("read_only: {max_lag_bytes: -1}\n"), "read_only.max_lag_bytes: -1 is out"},
        BadCase{"pki_without_names", minimal_with("pki: {dir: /x}\n"), "pki.dns_names: renewal needs"},
        BadCase{"fallback_not_list", minimal_with("fallback: {members: pg1}\n"), "fallback.members: expected a list"},
        BadCase{"fallback_missing_pg", minimal_with("fallback: {members: [{name: pg1, api_url: 'http://h:1'}]}\n"),
                "fallback.members[0].postgresql: required key is missing"},
        BadCase{"fallback_https",
                minimal_with("fallback: {members: [{name: a, api_url: 'https://h:1', postgresql: 'h:2'}]}\n"),
                "fallback.members[0].api_url: expected http://"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(PortalConfig, ParseMillis) {
  EXPECT_EQ(parse_millis("250ms", "k").value(), std::chrono::milliseconds(250));
  EXPECT_EQ(parse_millis("10", "k").value(), std::chrono::seconds(10));
  EXPECT_EQ(parse_millis("3m", "k").value(), std::chrono::minutes(3));
  EXPECT_EQ(parse_millis("off", "k").value(), std::chrono::milliseconds(0));
  EXPECT_FALSE(parse_millis("", "k").ok());
  EXPECT_FALSE(parse_millis("-5s", "k").ok());
  EXPECT_FALSE(parse_millis("5 s", "k").ok());
  EXPECT_FALSE(parse_millis("9999999999999s", "k").ok());
}

TEST(PortalConfig, LoadNamesTheFile) {
  auto c = load_portal_config("/nonexistent/portal.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, Errc::not_found);
  EXPECT_NE(c.error().message.find("/nonexistent/portal.yaml"), std::string::npos);
}

}  // namespace
}  // namespace tandem::portal::service
