// Parsing and validation of the agent's YAML file: every error names the key.
#include "config/agent_config.hpp"

#include <gtest/gtest.h>

namespace tandem::config {
namespace {

const char* kValid = R"(
cluster: demo
name: m1
etcd:
  endpoints: [http://127.0.0.1:2379, http://127.0.0.1:2381]
data_dir: /tmp/x/m1
api:
  listen: 127.0.0.1:8008
postgresql:
  listen: 127.0.0.1:5433
  parameters:
    max_connections: 50
  authentication:
    replication: {username: repl, password_file: /tmp/x/repl.pw}
ha:
  ttl: 6
  synchronous_mode: strict
tags:
  nofailover: true
  zone: a
)";

TEST(AgentConfig, ParsesAValidFile) {
  auto c = parse_agent_config(kValid);
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_EQ(c->cluster, "demo");
  EXPECT_EQ(c->name, "m1");
  EXPECT_EQ(c->etcd_endpoints.size(), 2u);
  EXPECT_EQ(c->pg_listen.port, 5433);
  EXPECT_EQ(c->pg_connect.host, "127.0.0.1");
  EXPECT_EQ(c->parameters.at("max_connections"), "50");
  EXPECT_EQ(c->replication.username, "repl");
  EXPECT_EQ(c->bootstrap.ttl, 6);
  EXPECT_EQ(c->bootstrap.synchronous_mode, dcs::SyncMode::strict);
  EXPECT_TRUE(c->tags.nofailover);
  EXPECT_EQ(c->tags.other.at("zone"), "a");
  EXPECT_EQ(c->run_dir, "/tmp/x/m1.run");
}

struct BadCase {
  std::string from, to, expect;
};

class AgentConfigErrors : public ::testing::TestWithParam<BadCase> {};

TEST_P(AgentConfigErrors, NameTheKeyAndTheProblem) {
  std::string text = kValid;
  auto pos = text.find(GetParam().from);
  ASSERT_NE(pos, std::string::npos) << GetParam().from;
  text.replace(pos, GetParam().from.size(), GetParam().to);
  auto c = parse_agent_config(text);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message.find(GetParam().expect), std::string::npos) << c.error().message;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, AgentConfigErrors,
    ::testing::Values(
        BadCase{"cluster: demo", "", "cluster: required key is missing"},
        BadCase{"name: m1", "name: 'm 1'", "name: 'm 1' is not a valid member name"},
        BadCase{"listen: 127.0.0.1:5433", "listen: 127.0.0.1", "postgresql.listen: expected HOST:PORT"},
        BadCase{"listen: 127.0.0.1:5433", "listen: 127.0.0.1:99999", "postgresql.listen: port 99999 is out of range"},
        BadCase{"listen: 127.0.0.1:8008", "listen: h:x", "api.listen: port in 'h:x' is not a number"},
        BadCase{"ttl: 6", "ttl: six", "ha.ttl: expected an integer"},
        BadCase{"ttl: 6", "ttl: 1", "ha.ttl: 1 is out of range"},
        BadCase{"ttl: 6", "ttl: 2", "ttl: 2 must be at least loop_wait + retry_timeout"},
        BadCase{"synchronous_mode: strict", "synchronous_mode: maybe",
                "ha.synchronous_mode: expected off, on or strict"},
        BadCase{"nofailover: true", "nofailover: perhaps", "tags.nofailover: expected true or false"},
        BadCase{"data_dir: /tmp/x/m1", "data_dir: /tmp/x/m1\ndata_dri: x", "data_dri: unknown key"},
        BadCase{"max_connections: 50", "port: 5", "postgresql.parameters.port: is managed by tandem"},
        BadCase{"endpoints: [http://127.0.0.1:2379, http://127.0.0.1:2381]", "endpoints: []",
                "etcd.endpoints: expected a non-empty list"},
        BadCase{"cluster: demo", "cluster: [demo", "YAML syntax error at line"},
        BadCase{"{username: repl, password_file: /tmp/x/repl.pw}", "{password_file: /tmp/x/repl.pw, user: x}",
                "postgresql.authentication.replication.user: unknown key"}));

TEST(AgentConfig, MissingFileIsAClearError) {
  auto c = load_agent_config("/nonexistent/tandem.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message.find("/nonexistent/tandem.yaml"), std::string::npos);
}

TEST(HostPort, ParsesIpv6) {
  auto hp = parse_host_port("[::1]:5432", "k");
  ASSERT_TRUE(hp.ok());
  EXPECT_EQ(hp->host, "::1");
  EXPECT_EQ(hp->to_string(), "[::1]:5432");
}

}  // namespace
}  // namespace tandem::config
