// The /metrics text must parse as Prometheus exposition format 0.0.4: HELP and TYPE once
// per family before its samples, well-formed label sets, numeric values.
#include "api/metrics.hpp"

#include <cstdlib>
#include <map>
#include <set>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "api/health.hpp"
#include "views.hpp"

namespace tandem::api {
namespace {

using namespace testing;  // NOLINT: fixtures from views.hpp

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;  // unescaped values
  double value = 0;
};

// Parses `{a="x",b="y\"z"}`; returns false on any syntax error.
bool parse_labels(const std::string& s, size_t& pos, std::map<std::string, std::string>& out) {
  if (pos >= s.size() || s[pos] != '{') return true;
  ++pos;
  while (pos < s.size() && s[pos] != '}') {
    size_t eq = s.find('=', pos);
    if (eq == std::string::npos) return false;
    std::string name = s.substr(pos, eq - pos);
    if (name.empty() || !(std::isalpha(static_cast<unsigned char>(name[0])) || name[0] == '_')) return false;
    pos = eq + 1;
    if (pos >= s.size() || s[pos] != '"') return false;
    ++pos;
    std::string value;
    for (;;) {
      if (pos >= s.size()) return false;
      char c = s[pos++];
      if (c == '"') break;
      if (c == '\n') return false;
      if (c == '\\') {
        if (pos >= s.size()) return false;
        char e = s[pos++];
        if (e == 'n')
          value += '\n';
        else if (e == '\\' || e == '"')
          value += e;
        else
          return false;
      } else {
        value += c;
      }
    }
    out[name] = value;
    if (pos < s.size() && s[pos] == ',') ++pos;
  }
  if (pos >= s.size()) return false;
  ++pos;  // '}'
  return true;
}

// Parses the whole exposition; fails the test on any malformed line.
std::vector<Sample> parse_exposition(const std::string& text) {
  std::vector<Sample> samples;
  std::set<std::string> help, type;
  std::istringstream in(text);
  std::string line;
  EXPECT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  while (std::getline(in, line)) {
    if (line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0) {
      std::istringstream words(line.substr(7));
      std::string family, rest;
      words >> family >> rest;
      EXPECT_FALSE(rest.empty()) << line;
      auto& seen = line[2] == 'H' ? help : type;
      EXPECT_TRUE(seen.insert(family).second) << "duplicate: " << line;
      if (line[2] == 'T') {
        EXPECT_TRUE(rest == "gauge" || rest == "counter") << line;
      }
      continue;
    }
    EXPECT_NE(line.front(), '#') << line;
    Sample s;
    size_t pos = 0;
    while (pos < line.size() &&
           (std::isalnum(static_cast<unsigned char>(line[pos])) || line[pos] == '_' || line[pos] == ':')) {
      ++pos;
    }
    s.name = line.substr(0, pos);
    EXPECT_FALSE(s.name.empty()) << line;
    EXPECT_TRUE(parse_labels(line, pos, s.labels)) << line;
    EXPECT_TRUE(pos < line.size() && line[pos] == ' ') << line;
    std::string value = line.substr(pos + 1);
    char* end = nullptr;
    s.value = std::strtod(value.c_str(), &end);
    EXPECT_TRUE(!value.empty() && end && *end == '\0') << "bad value in: " << line;
    EXPECT_TRUE(help.count(s.name)) << "sample before HELP: " << line;
    EXPECT_TRUE(type.count(s.name)) << "sample before TYPE: " << line;
    samples.push_back(std::move(s));
  }
  return samples;
}

const Sample* find(const std::vector<Sample>& samples, const std::string& name) {
  for (const auto& s : samples) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

TEST(Metrics, LeaderExposition) {
  auto v = leader_with_lease();
  auto samples = parse_exposition(render_metrics(v, v.published_ms + 600));
  const auto* info = find(samples, "tandem_member_info");
  ASSERT_NE(info, nullptr);
  EXPECT_EQ(info->labels.at("cluster"), "pg-main");
  EXPECT_EQ(info->labels.at("member"), "n1");
  EXPECT_EQ(info->labels.at("role"), "leader");
  EXPECT_EQ(info->value, 1);
  for (const auto& s : samples) {
    EXPECT_EQ(s.labels.at("cluster"), "pg-main") << s.name;
    EXPECT_EQ(s.labels.at("member"), "n1") << s.name;
  }
  EXPECT_EQ(find(samples, "tandem_is_leader")->value, 1);
  EXPECT_EQ(find(samples, "tandem_pg_running")->value, 1);
  EXPECT_EQ(find(samples, "tandem_replication_lag_bytes")->value, 0);
  EXPECT_EQ(find(samples, "tandem_timeline")->value, 3);
  EXPECT_EQ(find(samples, "tandem_wal_position_bytes")->value, 0x5000000);
  // The view is 600 ms old: the lease has 3.6 - 0.6 s left and is 0.4 + 0.6 s old.
  EXPECT_DOUBLE_EQ(find(samples, "tandem_lease_remaining_seconds")->value, 3.0);
  EXPECT_DOUBLE_EQ(find(samples, "tandem_lease_age_seconds")->value, 1.0);
  EXPECT_EQ(find(samples, "tandem_is_sync_standby")->value, 0);
  EXPECT_EQ(find(samples, "tandem_paused")->value, 0);
  EXPECT_EQ(find(samples, "tandem_ha_cycles_total")->value, 17);
  EXPECT_EQ(find(samples, "tandem_cluster_members")->value, 3);
  EXPECT_NE(render_metrics(v, v.published_ms).find("# TYPE tandem_ha_cycles_total counter\n"), std::string::npos);
}

TEST(Metrics, ReplicaExposition) {
  auto v = streaming_replica("n3", 4096);
  v.paused = true;
  auto samples = parse_exposition(render_metrics(v, v.published_ms));
  EXPECT_EQ(find(samples, "tandem_is_leader")->value, 0);
  EXPECT_EQ(find(samples, "tandem_replication_lag_bytes")->value, 4096);
  EXPECT_EQ(find(samples, "tandem_paused")->value, 1);
  EXPECT_EQ(find(samples, "tandem_member_info")->labels.at("role"), "replica");
  EXPECT_EQ(find(samples, "tandem_lease_remaining_seconds"), nullptr);  // not the leader
  EXPECT_EQ(find(samples, "tandem_is_sync_standby")->value, 0);
  EXPECT_EQ(find(parse_exposition(render_metrics(sync_replica(), 0)), "tandem_is_sync_standby")->value, 1);
}

TEST(Metrics, UnknownLagIsOmitted) {
  auto v = detached_replica();
  v.snapshot.leader.reset();
  auto samples = parse_exposition(render_metrics(v, v.published_ms));
  EXPECT_EQ(find(samples, "tandem_replication_lag_bytes"), nullptr);
  EXPECT_EQ(find(samples, "tandem_cluster_has_leader")->value, 0);
}

TEST(Metrics, LabelValuesAreEscaped) {
  EXPECT_EQ(escape_label_value(R"(a"b\c)"), R"(a\"b\\c)");
  EXPECT_EQ(escape_label_value("line\nbreak"), "line\\nbreak");
  auto v = stopped_member();
  v.cluster = "we\"ird\\na\nme";
  v.member = "m\"1";
  auto samples = parse_exposition(render_metrics(v, v.published_ms));
  ASSERT_FALSE(samples.empty());
  for (const auto& s : samples) {
    EXPECT_EQ(s.labels.at("cluster"), "we\"ird\\na\nme");
    EXPECT_EQ(s.labels.at("member"), "m\"1");
  }
}

TEST(Metrics, ServedAsPrometheusText) {
  Request r;
  r.method = "GET";
  r.path = "/metrics";
  auto res = handle_get(leader_with_lease(), r, 0);
  EXPECT_EQ(res.status, 200);
  EXPECT_EQ(res.content_type, "text/plain; version=0.0.4; charset=utf-8");
  parse_exposition(res.body);
}

}  // namespace
}  // namespace tandem::api
