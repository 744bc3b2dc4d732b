// The REST API over real sockets: our client, raw bytes (malformed, oversize, slow,
// pipelined requests) and curl against an HttpServer serving make_handler().
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "api/handler.hpp"
#include "api/http_client.hpp"
#include "api/http_server.hpp"
#include "base/clock.hpp"
#include "testkit/testkit.hpp"

namespace tandem::api {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

class FakeControl : public AgentControl {
 public:
  Result<std::string> switchover(const std::string& leader, const std::string& candidate, int64_t at) override {
    return record(fmt::format("switchover({},{},{})", leader, candidate, at));
  }
  Result<std::string> failover(const std::string& candidate) override {
    return record(fmt::format("failover({})", candidate));
  }
  Result<std::string> cancel_switchover() override { return record("cancel_switchover()"); }
  Result<std::string> restart() override { return make_error(Errc::conflict, "a restart is already running"); }
  Result<std::string> reinitialize(bool force) override { return record(fmt::format("reinitialize({})", force)); }
  Result<std::string> pause(bool paused) override { return record(fmt::format("pause({})", paused)); }

  std::vector<std::string> calls() {
    std::lock_guard lock(mu_);
    return calls_;
  }

 private:
  Result<std::string> record(std::string call) {
    std::lock_guard lock(mu_);
    calls_.push_back(call);
    return "accepted: " + call;
  }
  std::mutex mu_;
  std::vector<std::string> calls_;
};

MemberView leader_view() {
  MemberView v;
  v.member = "n1";
  v.cluster = "pg-main";
  v.role = "leader";
  v.pg_state = "running";
  v.holds_leader_lease = true;
  v.pg_running = true;
  v.timeline = 2;
  v.published_ms = unix_millis_now();
  v.snapshot.leader = dcs::Leader{"n1", 1, 1};
  dcs::Member m;
  m.name = "n1";
  m.role = "leader";
  m.state = "running";
  v.snapshot.members["n1"] = m;
  return v;
}

MemberView replica_view() {
  auto v = leader_view();
  v.member = "n2";
  v.role = "replica";
  v.pg_state = "streaming";
  v.holds_leader_lease = false;
  v.in_recovery = true;
  v.streaming = true;
  v.lag_bytes = 2048;
  return v;
}

// A blocking TCP connection for sending hand-written bytes.
class RawConn {
 public:
  explicit RawConn(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~RawConn() { ::close(fd_); }
  bool connected() const { return connected_; }
  bool send(const std::string& data) {
    size_t off = 0;
    while (off < data.size()) {
      auto n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }
  // Whatever arrives first.
  std::string read_some() {
    char buf[4096];
    auto n = ::recv(fd_, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
  }
  // Everything until the server closes the connection (or 5 s pass).
  std::string read_all() {
    std::string out;
    char buf[4096];
    for (;;) {
      auto n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

size_t count(const std::string& haystack, const std::string& needle) {
  size_t n = 0;
  for (auto pos = haystack.find(needle); pos != std::string::npos; pos = haystack.find(needle, pos + 1)) ++n;
  return n;
}

// Runs a shell command (no secrets involved) and returns its stdout.
std::string run(const std::string& cmd) {
  std::string out;
  FILE* f = ::popen(cmd.c_str(), "r");
  if (!f) return out;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, f)) out.append(buf, n);
  ::pclose(f);
  return out;
}

class ApiHttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    publisher_.publish(leader_view());
    HttpServerOptions o;
    o.host = "127.0.0.1";
    o.port = testkit::free_port();
    o.read_timeout = 1500ms;
    o.max_body_bytes = 64 * 1024;
    server_ = std::make_unique<HttpServer>(o, make_handler(publisher_, control_));
    auto st = server_->start();
    ASSERT_TRUE(st.ok()) << st.error().to_string();
    base_ = fmt::format("http://127.0.0.1:{}", server_->port());
  }
  void TearDown() override {
    if (server_) server_->stop();
  }

  HttpClientResponse must(const Result<HttpClientResponse>& r) {
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().to_string());
    return r.ok() ? r.value() : HttpClientResponse{};
  }
  int get_status(const std::string& path) { return must(http_get(base_ + path)).status; }

  ViewPublisher publisher_;
  FakeControl control_;
  std::unique_ptr<HttpServer> server_;
  std::string base_;
};

TEST_F(ApiHttpTest, HealthEndpointsFollowThePublishedView) {
  auto r = must(http_get(base_ + "/primary"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("content-type"), "application/json");
  auto body = json::parse(r.body);
  EXPECT_EQ(body.at("role"), "leader");
  EXPECT_EQ(body.at("state"), "running");
  EXPECT_EQ(get_status("/replica"), 503);
  EXPECT_EQ(get_status("/health"), 200);

  publisher_.publish(replica_view());
  EXPECT_EQ(get_status("/primary"), 503);
  EXPECT_EQ(get_status("/replica"), 200);
  EXPECT_EQ(get_status("/replica?lag=1kB"), 503);
  EXPECT_EQ(get_status("/replica?lag=1MB"), 200);
  EXPECT_EQ(get_status("/read-only"), 200);
  EXPECT_EQ(get_status("/replica?lag=bogus"), 400);
  EXPECT_EQ(get_status("/nope"), 404);
  auto metrics = must(http_get(base_ + "/metrics"));
  EXPECT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.body.find("tandem_is_leader{cluster=\"pg-main\",member=\"n2\"} 0\n"), std::string::npos);
  auto cluster = json::parse(must(http_get(base_ + "/cluster")).body);
  EXPECT_EQ(cluster.at("leader"), "n1");
}

TEST_F(ApiHttpTest, HeadHasTheStatusOfGetAndNoBody) {
  for (const char* path : {"/primary", "/replica", "/metrics", "/nope"}) {
    auto got = must(http_get(base_ + path));
    HttpClientRequest head;
    head.method = "HEAD";
    head.url = base_ + path;
    auto h = must(http_request(head));
    EXPECT_EQ(h.status, got.status) << path;
    EXPECT_TRUE(h.body.empty()) << path;
    EXPECT_EQ(h.header("content-length"), std::to_string(got.body.size())) << path;
  }
}

TEST_F(ApiHttpTest, PostEndpoints) {
  auto ok = must(http_post(base_ + "/switchover", R"({"leader":"n1","candidate":"n2"})"));
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(json::parse(ok.body).at("message"), "accepted: switchover(n1,n2,0)");
  auto scheduled = must(http_post(base_ + "/switchover", R"({"leader":"n1","scheduled_at":"2030-01-01T00:00:00Z"})"));
  EXPECT_EQ(scheduled.status, 202);
  auto bad = must(http_post(base_ + "/switchover", "{\"leader\":"));
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(json::parse(bad.body).at("error").get<std::string>().find("not valid JSON"), std::string::npos);
  auto conflict = must(http_post(base_ + "/restart", ""));
  EXPECT_EQ(conflict.status, 409);
  EXPECT_EQ(json::parse(conflict.body).at("error"), "a restart is already running");
  HttpClientRequest del;
  del.method = "DELETE";
  del.url = base_ + "/switchover";
  EXPECT_EQ(must(http_request(del)).status, 200);
  auto wrong = must(http_post(base_ + "/primary", "{}"));
  EXPECT_EQ(wrong.status, 405);
  EXPECT_EQ(wrong.header("allow"), "GET, HEAD");
  EXPECT_EQ(control_.calls(),
            (std::vector<std::string>{"switchover(n1,n2,0)", "switchover(n1,,1893456000000)", "cancel_switchover()"}));
}

TEST_F(ApiHttpTest, KeepAliveServesPipelinedRequestsOnOneConnection) {
  RawConn c(server_->port());
  ASSERT_TRUE(c.connected());
  const std::string body = R"({"candidate":"n3"})";
  ASSERT_TRUE(
      c.send("GET /primary HTTP/1.1\r\nHost: x\r\n\r\n"
             "GET /replica HTTP/1.1\r\nHost: x\r\n\r\n" +
             fmt::format("POST /failover HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{}", body.size(), body) +
             "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  auto all = c.read_all();
  EXPECT_EQ(count(all, "HTTP/1.1 200 OK\r\n"), 3u) << all;
  EXPECT_EQ(count(all, "HTTP/1.1 503 Service Unavailable\r\n"), 1u) << all;
  EXPECT_EQ(control_.calls(), std::vector<std::string>{"failover(n3)"});
}

TEST_F(ApiHttpTest, MalformedRequestsGet4xxAndTheServerKeepsServing) {
  struct Case {
    std::string bytes;
    std::string status_line;
  };
  std::vector<Case> cases = {
      {"GARBAGE\r\n\r\n", "HTTP/1.1 400"},
      {"GET /primary HTTP/9.9\r\nHost: x\r\n\r\n", "HTTP/1.1 505"},
      {"GET /primary HTTP/1.2\r\nHost: x\r\n\r\n", "HTTP/1.1 505"},
      {"GET /primary HTTP/1.1\r\nHost x\r\n\r\n", "HTTP/1.1 400"},
      {"GET primary HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "HTTP/1.1 400"},
      {"GET /bad%zz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "HTTP/1.1 400"},
      {"POST /switchover HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", "HTTP/1.1 400"},
      {"POST /switchover HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + std::string(100000, 'x'),
       "HTTP/1.1 413"},
      {"POST /switchover HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
           fmt::format("{:x}\r\n{}\r\n", 70000, std::string(70000, 'y')) + "0\r\n\r\n",
       "HTTP/1.1 413"},
      {"GET /primary HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(20000, 'h') + "\r\n\r\n", "HTTP/1.1 431"},
      {std::string("GET /primary HTTP/1.1\r\nHo") + '\0' + "st: x\r\n\r\n", "HTTP/1.1 400"},
  };
  for (const auto& c : cases) {
    RawConn conn(server_->port());
    ASSERT_TRUE(conn.connected());
    conn.send(c.bytes);
    auto answer = conn.read_all();
    EXPECT_EQ(answer.substr(0, c.status_line.size()), c.status_line)
        << "request: " << c.bytes.substr(0, 80) << "\nanswer: " << answer;
    if (answer.find("\r\n\r\n") != std::string::npos) {
      auto body = answer.substr(answer.find("\r\n\r\n") + 4);
      EXPECT_TRUE(json::parse(body).contains("error")) << answer;
    }
    EXPECT_EQ(get_status("/primary"), 200) << "after: " << c.bytes.substr(0, 80);
  }
  // Random bytes never crash the server.
  std::mt19937 rng(7);
  for (int i = 0; i < 50; ++i) {
    std::string junk(static_cast<size_t>(rng() % 300 + 1), '\0');
    for (auto& ch : junk) ch = static_cast<char>(rng());
    RawConn conn(server_->port());
    conn.send(junk + "\r\n\r\n");
    conn.read_all();
  }
  EXPECT_EQ(get_status("/primary"), 200);
}

TEST_F(ApiHttpTest, ClientSeesTheEarly413ForAnOversizeBody) {
  auto r = must(http_post(base_ + "/switchover", std::string(4 * 1024 * 1024, ' ')));
  EXPECT_EQ(r.status, 413);
  EXPECT_NE(json::parse(r.body).at("error").get<std::string>().find("65536"), std::string::npos) << r.body;
  EXPECT_EQ(get_status("/primary"), 200);
}

TEST_F(ApiHttpTest, ExpectContinueIsAnswered) {
  RawConn c(server_->port());
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(
      c.send("POST /pause HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n"
             "Connection: close\r\n\r\n"));
  // The interim answer arrives before the body is sent.
  auto interim = c.read_some();
  EXPECT_EQ(interim.rfind("HTTP/1.1 100 Continue\r\n", 0), 0u) << interim;
  ASSERT_TRUE(c.send("{}"));
  auto all = c.read_all();
  EXPECT_NE(all.find("HTTP/1.1 200 OK\r\n"), std::string::npos) << all;
  EXPECT_EQ(control_.calls(), std::vector<std::string>{"pause(true)"});
}

TEST_F(ApiHttpTest, SlowClientsAreTimedOutWithoutBlockingOthers) {
  RawConn slow(server_->port());
  ASSERT_TRUE(slow.connected());
  ASSERT_TRUE(slow.send("GET /primary HTTP/1.1\r\nHost:"));  // never finishes its header
  RawConn idle(server_->port());                             // sends nothing at all
  ASSERT_TRUE(idle.connected());
  for (int i = 0; i < 5; ++i) EXPECT_EQ(get_status("/primary"), 200);
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(slow.read_all(), "");  // closed by the server's read timeout (1.5 s)
  EXPECT_EQ(idle.read_all(), "");
  auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_LT(waited, 4s);
}

TEST_F(ApiHttpTest, ConcurrentClients) {
  publisher_.publish(replica_view());
  std::atomic<int> failures{0};
  std::atomic<bool> run_publisher{true};
  std::thread publisher([&] {
    bool leader = false;
    while (run_publisher) {
      auto v = leader ? leader_view() : replica_view();
      v.holds_leader_lease = false;  // keep /primary stable while other fields change
      v.role = "replica";
      publisher_.publish(v);
      leader = !leader;
      std::this_thread::sleep_for(1ms);
    }
  });
  std::vector<std::thread> clients;
  for (int t = 0; t < 8; ++t) {
    clients.emplace_back([&, t] {
      for (int i = 0; i < 40; ++i) {
        const char* path = (i + t) % 3 == 0 ? "/primary" : (i + t) % 3 == 1 ? "/metrics" : "/cluster";
        auto r = http_get(base_ + path, 5s);
        int want = std::string(path) == "/primary" ? 503 : 200;
        if (!r.ok() || r->status != want || r->body.empty()) ++failures;
      }
    });
  }
  for (auto& c : clients) c.join();
  run_publisher = false;
  publisher.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST_F(ApiHttpTest, HandlerExceptionIs500AndServerContinues) {
  HttpServerOptions o;
  o.port = testkit::free_port();
  HttpServer s(o, [](const Request& r) -> Response {
    if (r.path == "/throw") throw std::runtime_error("boom");
    if (r.path == "/bad-status") return Response{42, "text/plain", "?", {}};
    return json_response(200, json{{"ok", true}});
  });
  ASSERT_TRUE(s.start().ok());
  auto url = fmt::format("http://127.0.0.1:{}", s.port());
  auto r = must(http_get(url + "/throw"));
  EXPECT_EQ(r.status, 500);
  EXPECT_NE(r.body.find("boom"), std::string::npos);
  EXPECT_EQ(must(http_get(url + "/bad-status")).status, 500);
  EXPECT_EQ(must(http_get(url + "/fine")).status, 200);
  s.stop();
}

TEST_F(ApiHttpTest, PortInUseIsAClearStartError) {
  HttpServerOptions o;
  o.port = server_->port();
  HttpServer second(o, [](const Request&) { return Response{}; });
  auto st = second.start();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, Errc::conflict);
  EXPECT_NE(st.error().message.find(std::to_string(server_->port())), std::string::npos) << st.error().message;
  EXPECT_NE(st.error().message.find("in use"), std::string::npos) << st.error().message;
  EXPECT_FALSE(second.running());
  second.stop();  // harmless when never started
  EXPECT_EQ(get_status("/primary"), 200);

  HttpServerOptions bad_host;
  bad_host.host = "192.0.2.1";  // TEST-NET address, not configured locally
  bad_host.port = testkit::free_port();
  HttpServer third(bad_host, [](const Request&) { return Response{}; });
  auto st3 = third.start();
  ASSERT_FALSE(st3.ok());
  EXPECT_NE(st3.error().message.find("192.0.2.1"), std::string::npos);
}

TEST_F(ApiHttpTest, StopIsCleanWithOpenConnections) {
  RawConn idle(server_->port());
  ASSERT_TRUE(idle.connected());
  RawConn half(server_->port());
  ASSERT_TRUE(half.send("POST /switchover HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"));
  auto start = std::chrono::steady_clock::now();
  server_->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
  EXPECT_FALSE(server_->running());
  EXPECT_EQ(idle.read_all(), "");  // the server closed it
  auto refused = http_get(base_ + "/primary", 2s);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::unavailable);
  EXPECT_NE(refused.error().message.find("refused"), std::string::npos) << refused.error().message;
  server_->stop();  // idempotent
  // The same object can listen again.
  ASSERT_TRUE(server_->start().ok());
  EXPECT_EQ(must(http_get(fmt::format("http://127.0.0.1:{}/primary", server_->port()))).status, 200);
}

TEST_F(ApiHttpTest, ClientTimesOutOnASilentServer) {
  // A listener that accepts (kernel backlog) but never answers.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int port = testkit::free_port();
  addr.sin_port = htons(static_cast<uint16_t>(port));
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(fd, 4), 0);
  auto start = std::chrono::steady_clock::now();
  auto r = http_get(fmt::format("http://127.0.0.1:{}/primary", port), 300ms);
  auto took = std::chrono::steady_clock::now() - start;
  ::close(fd);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::timeout);
  EXPECT_NE(r.error().message.find("300 ms"), std::string::npos) << r.error().message;
  EXPECT_GE(took, 290ms);
  EXPECT_LT(took, 2s);
}

TEST_F(ApiHttpTest, ClientErrors) {
  auto bad = http_get("https://127.0.0.1:1/");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, Errc::invalid_argument);
  auto unresolvable = http_get("http://no-such-host.invalid:8008/", 3s);
  ASSERT_FALSE(unresolvable.ok());
  EXPECT_TRUE(unresolvable.error().code == Errc::unavailable || unresolvable.error().code == Errc::timeout)
      << unresolvable.error().to_string();
}

TEST_F(ApiHttpTest, Ipv6Listener) {
  HttpServerOptions o;
  o.host = "::1";
  o.port = testkit::free_port();
  HttpServer s(o, make_handler(publisher_, control_));
  auto st = s.start();
  if (!st.ok()) GTEST_SKIP() << "no IPv6 loopback: " << st.error().to_string();
  auto r = must(http_get(fmt::format("http://[::1]:{}/primary", s.port())));
  EXPECT_EQ(r.status, 200);
  s.stop();
}

TEST_F(ApiHttpTest, CurlWorks) {
  auto curl = fmt::format("curl -s -m 5 -o /dev/null -w '%{{http_code}}' ");
  EXPECT_EQ(run(curl + base_ + "/primary"), "200");
  EXPECT_EQ(run(curl + base_ + "/replica"), "503");
  EXPECT_EQ(run(curl + "-I " + base_ + "/primary"), "200");
  EXPECT_EQ(run(curl + "-I " + base_ + "/replica"), "503");
  auto head = run("curl -s -m 5 -I " + base_ + "/primary");
  EXPECT_NE(head.find("Content-Type: application/json"), std::string::npos) << head;
  auto body = run("curl -s -m 5 " + base_ + "/status");
  EXPECT_EQ(json::parse(body).at("member"), "n1");
  EXPECT_EQ(
      run(curl + "-X POST -H 'Content-Type: application/json' -d '{\"candidate\":\"n2\"}' " + base_ + "/failover"),
      "200");
  EXPECT_EQ(run(curl + "-X POST -d '{oops' " + base_ + "/failover"), "400");
  // A 2 MB upload: curl sends "Expect: 100-continue" and gets 413 without uploading it all.
  EXPECT_EQ(run("head -c 2000000 /dev/zero | " + curl + "-X POST --data-binary @- " + base_ + "/switchover"), "413");
  auto metrics = run("curl -s -m 5 " + base_ + "/metrics");
  EXPECT_NE(metrics.find("# TYPE tandem_ha_cycles_total counter"), std::string::npos);
  EXPECT_EQ(get_status("/primary"), 200);
  EXPECT_EQ(control_.calls(), std::vector<std::string>{"failover(n2)"});
}

}  // namespace
}  // namespace tandem::api
