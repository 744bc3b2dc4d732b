// POST/DELETE endpoints against a fake AgentControl: body validation, the Errc -> HTTP
// status mapping, method checks, authentication and the not-yet-started state.
#include "api/control.hpp"

#include <atomic>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "api/handler.hpp"
#include "views.hpp"

namespace tandem::api {
namespace {

using nlohmann::json;

// Records every call and answers with `next` (a message or an error).
class FakeControl : public AgentControl {
 public:
  Result<std::string> switchover(const std::string& leader, const std::string& candidate, int64_t at) override {
    calls.push_back(fmt::format("switchover({},{},{})", leader, candidate, at));
    return next;
  }
  Result<std::string> failover(const std::string& candidate) override {
    calls.push_back(fmt::format("failover({})", candidate));
    return next;
  }
  Result<std::string> cancel_switchover() override {
    calls.push_back("cancel_switchover()");
    return next;
  }
  Result<std::string> restart() override {
    calls.push_back("restart()");
    return next;
  }
  Result<std::string> reinitialize(bool force) override {
    calls.push_back(fmt::format("reinitialize({})", force));
    return next;
  }
  Result<std::string> pause(bool paused) override {
    calls.push_back(fmt::format("pause({})", paused));
    return next;
  }

  std::vector<std::string> calls;
  Result<std::string> next = std::string("done");
};

Request req(const std::string& method, const std::string& path, const std::string& body = {}) {
  Request r;
  r.method = method;
  r.path = path;
  r.body = body;
  return r;
}

class ControlTest : public ::testing::Test {
 protected:
  Response call(const std::string& method, const std::string& path, const std::string& body = {}) {
    auto view = testing::leader_with_lease();
    return route(&view, control_, auth_, req(method, path, body), view.published_ms);
  }
  std::string error_of(const Response& r) { return json::parse(r.body).at("error").get<std::string>(); }

  FakeControl control_;
  ApiAuth auth_;
};

TEST_F(ControlTest, SwitchoverNow) {
  auto r = call("POST", "/switchover", R"({"leader":"n1","candidate":"n2"})");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(json::parse(r.body).at("message"), "done");
  EXPECT_EQ(control_.calls, std::vector<std::string>{"switchover(n1,n2,0)"});
}

TEST_F(ControlTest, SwitchoverScheduled) {
  EXPECT_EQ(call("POST", "/switchover", R"({"leader":"n1","scheduled_at":"2023-11-14T22:13:20Z"})").status, 202);
  EXPECT_EQ(call("POST", "/switchover", R"({"leader":"n1","scheduled_at":"2023-11-14T23:13:20.250+01:00"})").status,
            202);
  EXPECT_EQ(call("POST", "/switchover", R"({"leader":"n1","scheduled_at":1700000000000})").status, 202);
  EXPECT_EQ(call("POST", "/switchover", R"({"leader":"n1","scheduled_at":"1700000000000"})").status, 202);
  EXPECT_EQ(control_.calls,
            (std::vector<std::string>{"switchover(n1,,1700000000000)", "switchover(n1,,1700000000250)",
                                      "switchover(n1,,1700000000000)", "switchover(n1,,1700000000000)"}));
}

TEST_F(ControlTest, SwitchoverValidation) {
  struct Case {
    const char* body;
    const char* error_part;
  };
  for (const Case& c : {Case{R"({"candidate":"n2"})", "'leader'"}, Case{"{not json", "not valid JSON"},
                        Case{"[1,2]", "JSON object"}, Case{R"({"leader":5})", "'leader' must be a string"},
                        Case{R"({"leader":"n1","candidat":"n2"})", "unknown field 'candidat'"},
                        Case{R"({"leader":"n1","scheduled_at":"tomorrow"})", "scheduled_at"},
                        Case{R"({"leader":"n1","scheduled_at":"2024-01-01T10:00:00"})", "time zone"},
                        Case{R"({"leader":"n1","scheduled_at":-5})", "negative"},
                        Case{R"({"leader":"n1","scheduled_at":true})", "ISO-8601"}}) {
    auto r = call("POST", "/switchover", c.body);
    EXPECT_EQ(r.status, 400) << c.body;
    EXPECT_NE(error_of(r).find(c.error_part), std::string::npos) << c.body << " -> " << error_of(r);
  }
  EXPECT_TRUE(control_.calls.empty());
}

TEST_F(ControlTest, Failover) {
  EXPECT_EQ(call("POST", "/failover", R"({"candidate":"n3"})").status, 200);
  EXPECT_EQ(call("POST", "/failover", R"({"leader":"n1","candidate":"n2"})").status, 200);
  EXPECT_EQ(call("POST", "/failover", "{}").status, 400);
  EXPECT_EQ(call("POST", "/failover", "").status, 400);
  EXPECT_EQ(control_.calls, (std::vector<std::string>{"failover(n3)", "switchover(n1,n2,0)"}));
}

TEST_F(ControlTest, RestartReinitializePauseResumeCancel) {
  EXPECT_EQ(call("POST", "/restart").status, 200);
  EXPECT_EQ(call("POST", "/restart", " {} ").status, 200);
  EXPECT_EQ(call("POST", "/reinitialize").status, 200);
  EXPECT_EQ(call("POST", "/reinitialize", R"({"force":true})").status, 200);
  EXPECT_EQ(call("POST", "/reinitialize", R"({"force":"yes"})").status, 400);
  EXPECT_EQ(call("POST", "/pause").status, 200);
  EXPECT_EQ(call("POST", "/resume").status, 200);
  EXPECT_EQ(call("DELETE", "/switchover").status, 200);
  EXPECT_EQ(call("POST", "/restart", R"({"when":"now"})").status, 400);
  EXPECT_EQ(control_.calls,
            (std::vector<std::string>{"restart()", "restart()", "reinitialize(false)", "reinitialize(true)",
                                      "pause(true)", "pause(false)", "cancel_switchover()"}));
}

TEST_F(ControlTest, ErrcToHttpStatusInOnePlace) {
  struct Case {
    Errc code;
    int status;
  };
  for (const Case& c :
       {Case{Errc::invalid_argument, 400}, Case{Errc::permission_denied, 403}, Case{Errc::not_found, 404},
        Case{Errc::conflict, 409}, Case{Errc::unavailable, 503}, Case{Errc::timeout, 504}, Case{Errc::io, 500},
        Case{Errc::protocol, 500}, Case{Errc::internal, 500}}) {
    EXPECT_EQ(http_status_for(c.code), c.status) << errc_name(c.code);
    control_.next = make_error(c.code, "candidate n9 said {}", errc_name(c.code));
    auto r = call("POST", "/switchover", R"({"leader":"n1","candidate":"n9"})");
    EXPECT_EQ(r.status, c.status) << errc_name(c.code);
    EXPECT_EQ(r.content_type, "application/json");
    EXPECT_EQ(error_of(r), fmt::format("candidate n9 said {}", errc_name(c.code)));
  }
}

TEST_F(ControlTest, MethodsAndPaths) {
  auto r = call("GET", "/switchover");
  EXPECT_EQ(r.status, 405);
  ASSERT_EQ(r.headers.size(), 1u);
  EXPECT_EQ(r.headers[0].first, "Allow");
  EXPECT_EQ(r.headers[0].second, "POST, DELETE");
  EXPECT_EQ(call("POST", "/primary").status, 405);
  EXPECT_EQ(call("DELETE", "/restart").status, 405);
  EXPECT_EQ(call("PUT", "/failover").status, 405);
  EXPECT_EQ(call("POST", "/nope").status, 404);
  EXPECT_EQ(call("GET", "/nope").status, 404);
  EXPECT_EQ(call("POST", "/restart/").status, 200);
  EXPECT_EQ(call("GET", "/primary").status, 200);
  EXPECT_EQ(control_.calls, std::vector<std::string>{"restart()"});
}

TEST_F(ControlTest, BasicAuthGuardsUnsafeMethods) {
  auth_ = ApiAuth{"admin", Secret("s3cret:with colon")};
  auto denied = call("POST", "/restart");
  EXPECT_EQ(denied.status, 401);
  EXPECT_EQ(denied.headers.at(0).first, "WWW-Authenticate");
  EXPECT_EQ(denied.body.find("s3cret"), std::string::npos);
  EXPECT_EQ(call("GET", "/primary").status, 200);  // health checks need no credentials

  auto view = testing::leader_with_lease();
  auto with = [&](const std::string& header) {
    auto r = req("POST", "/restart");
    r.headers["authorization"] = header;
    return route(&view, control_, auth_, r, 0).status;
  };
  EXPECT_EQ(with(basic_auth_header("admin", Secret("s3cret:with colon"))), 200);
  EXPECT_EQ(with(basic_auth_header("admin", Secret("wrong"))), 401);
  EXPECT_EQ(with(basic_auth_header("root", Secret("s3cret:with colon"))), 401);
  EXPECT_EQ(with("Bearer abc"), 401);
  EXPECT_EQ(with("Basic !!!"), 401);
  EXPECT_EQ(control_.calls, std::vector<std::string>{"restart()"});
}

TEST_F(ControlTest, BeforeTheFirstViewHealthIsUnavailable) {
  auto r = route(nullptr, control_, auth_, req("GET", "/replica"), 0);
  EXPECT_EQ(r.status, 503);
  auto j = json::parse(r.body);
  EXPECT_EQ(j.at("role"), "uninitialized");
  EXPECT_EQ(j.at("state"), "starting");
  EXPECT_EQ(route(nullptr, control_, auth_, req("GET", "/nope"), 0).status, 404);
  EXPECT_EQ(route(nullptr, control_, auth_, req("POST", "/restart"), 0).status, 200);
}

TEST(ViewPublisherTest, PublishesImmutableSnapshots) {
  ViewPublisher p;
  EXPECT_EQ(p.current(), nullptr);
  p.publish(testing::leader_with_lease());
  auto first = p.current();
  ASSERT_NE(first, nullptr);
  p.publish(testing::streaming_replica());
  EXPECT_EQ(first->role, "leader");  // a reader's snapshot never changes under it
  EXPECT_EQ(p.current()->role, "replica");
}

TEST(ViewPublisherTest, ConcurrentPublishAndRead) {
  ViewPublisher p;
  p.publish(testing::leader_with_lease());
  std::atomic<bool> stop{false};
  std::thread reader([&] {
    while (!stop) {
      auto v = p.current();
      ASSERT_TRUE(v->role == "leader" || v->role == "replica");
      ASSERT_EQ(v->member.empty(), false);
    }
  });
  for (int i = 0; i < 2000; ++i) {
    p.publish(i % 2 ? testing::leader_with_lease() : testing::streaming_replica());
  }
  stop = true;
  reader.join();
}

}  // namespace
}  // namespace tandem::api
