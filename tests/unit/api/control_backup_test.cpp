// POST /reinitialize {"from_backup": true}: routed to reinitialize_from_backup(), its
// errors mapped to HTTP statuses, and agents that do not implement it refuse.
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "api/control.hpp"

namespace tandem::api {
namespace {

using nlohmann::json;

// Implements only what every AgentControl must; reinitialize_from_backup() keeps the default.
class MinimalControl : public AgentControl {
 public:
  Result<std::string> switchover(const std::string&, const std::string&, int64_t) override { return record("sw"); }
  Result<std::string> failover(const std::string&) override { return record("failover"); }
  Result<std::string> cancel_switchover() override { return record("cancel"); }
  Result<std::string> restart() override { return record("restart"); }
  Result<std::string> reinitialize(bool force) override { return record(force ? "reinit(force)" : "reinit"); }
  Result<std::string> pause(bool) override { return record("pause"); }

  Result<std::string> record(const std::string& call) {
    calls.push_back(call);
    return std::string("done");
  }
  std::vector<std::string> calls;
};

// Also rebuilds from backups, answering with `next`.
class BackupControl : public MinimalControl {
 public:
  Result<std::string> reinitialize_from_backup() override {
    calls.push_back("reinit_from_backup");
    return next;
  }
  Result<std::string> next = std::string("reinitializing from backup b1");
};

Request post(const std::string& body) {
  Request r;
  r.method = "POST";
  r.path = "/reinitialize";
  r.body = body;
  return r;
}

std::string field(const Response& r, const char* key) {
  return json::parse(r.body).at(key).get<std::string>();
}

TEST(ControlBackup, FromBackupTrueCallsReinitializeFromBackup) {
  BackupControl c;
  auto r = handle_control(c, post(R"({"from_backup": true})"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(field(r, "message"), "reinitializing from backup b1");
  EXPECT_EQ(c.calls, std::vector<std::string>{"reinit_from_backup"});
}

TEST(ControlBackup, FromBackupFalseOrAbsentClonesFromTheLeader) {
  BackupControl c;
  EXPECT_EQ(handle_control(c, post(R"({"from_backup": false})")).status, 200);
  EXPECT_EQ(handle_control(c, post("")).status, 200);
  EXPECT_EQ(handle_control(c, post(R"({"force": true, "from_backup": false})")).status, 200);
  EXPECT_EQ(c.calls, (std::vector<std::string>{"reinit", "reinit", "reinit(force)"}));
}

TEST(ControlBackup, FromBackupMustBeABoolean) {
  BackupControl c;
  auto r = handle_control(c, post(R"({"from_backup": "yes"})"));
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(field(r, "error").find("'from_backup' must be true or false"), std::string::npos) << r.body;
  EXPECT_TRUE(c.calls.empty());
}

TEST(ControlBackup, NoBackupInTheRepositoryIsNotFound) {
  BackupControl c;
  c.next = make_error(Errc::not_found, "the repository file:///x has no complete backup");
  auto r = handle_control(c, post(R"({"from_backup": true})"));
  EXPECT_EQ(r.status, 404);
  EXPECT_NE(field(r, "error").find("no complete backup"), std::string::npos) << r.body;
}

TEST(ControlBackup, LeaderRefusalIsAConflict) {
  BackupControl c;
  c.next = make_error(Errc::conflict, "pg1 is the leader");
  EXPECT_EQ(handle_control(c, post(R"({"from_backup": true})")).status, 409);
}

TEST(ControlBackup, AgentsWithoutTheFeatureRefuse) {
  MinimalControl c;
  auto r = handle_control(c, post(R"({"from_backup": true})"));
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(field(r, "error").find("cannot reinitialize from a backup"), std::string::npos) << r.body;
  EXPECT_TRUE(c.calls.empty());
}

}  // namespace
}  // namespace tandem::api
