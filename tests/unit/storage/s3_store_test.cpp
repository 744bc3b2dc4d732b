// S3ObjectStore against a scripted in-process HTTP server: retries on 5xx and connection
// drops, no retry on client errors, ranged resume of a broken download, multipart calls.
#include "storage/s3_store.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <deque>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>

namespace tandem::storage {
namespace {

// One scripted reply. `truncate_body_at` >= 0 sends only that many body bytes, then closes.
struct Reply {
  int status = 200;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  long truncate_body_at = -1;
};

struct Seen {
  std::string method;
  std::string target;
  std::string head;  // request line and headers
  std::string body;
};

// A single-threaded HTTP/1.1 server on 127.0.0.1 that answers requests with the scripted
// replies in order (500 when the script runs out). Owns its listening socket and thread.
class FakeS3 {
 public:
  FakeS3() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(listen(fd_, 16), 0);
    socklen_t len = sizeof a;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeS3() {
    stop_ = true;
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
  }

  void script(std::vector<Reply> replies) {
    std::lock_guard l(mu_);
    for (auto& r : replies) replies_.push_back(std::move(r));
  }
  std::vector<Seen> seen() {
    std::lock_guard l(mu_);
    return seen_;
  }
  int port() const { return port_; }

 private:
  void serve() {
    while (!stop_) {
      int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) return;
      while (handle(c)) {
      }
      close(c);
    }
  }

  // Serves one request; false when the connection should close.
  bool handle(int c) {
    std::string buf;
    char tmp[65536];
    size_t head_end;
    while ((head_end = buf.find("\r\n\r\n")) == std::string::npos) {
      ssize_t n = recv(c, tmp, sizeof tmp, 0);
      if (n <= 0) return false;
      buf.append(tmp, static_cast<size_t>(n));
    }
    Seen s;
    s.head = buf.substr(0, head_end);
    size_t sp1 = s.head.find(' ');
    size_t sp2 = s.head.find(' ', sp1 + 1);
    s.method = s.head.substr(0, sp1);
    s.target = s.head.substr(sp1 + 1, sp2 - sp1 - 1);
    size_t content_length = 0;
    if (auto p = s.head.find("Content-Length: "); p != std::string::npos) {
      content_length = std::stoul(s.head.substr(p + 16));
    }
    s.body = buf.substr(head_end + 4);
    while (s.body.size() < content_length) {
      ssize_t n = recv(c, tmp, sizeof tmp, 0);
      if (n <= 0) return false;
      s.body.append(tmp, static_cast<size_t>(n));
    }
    Reply r;
    {
      std::lock_guard l(mu_);
      seen_.push_back(s);
      if (!replies_.empty()) {
        r = std::move(replies_.front());
        replies_.pop_front();
      } else {
        r.status = 500;
        r.body = "<Error><Code>InternalError</Code></Error>";
      }
    }
    std::string out =
        "HTTP/1.1 " + std::to_string(r.status) + " X\r\nContent-Length: " + std::to_string(r.body.size()) + "\r\n";
    for (const auto& [k, v] : r.headers) out += k + ": " + v + "\r\n";
    out += "\r\n";
    if (s.method != "HEAD") {
      out += r.truncate_body_at >= 0 ? r.body.substr(0, static_cast<size_t>(r.truncate_body_at)) : r.body;
    }
    send(c, out.data(), out.size(), MSG_NOSIGNAL);
    return r.truncate_body_at < 0;
  }

  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::deque<Reply> replies_;
  std::vector<Seen> seen_;
};

std::unique_ptr<S3ObjectStore> make_store(int port, int attempts = 4) {
  S3Config c;
  c.bucket = "b";
  c.prefix = "pre";
  c.host = "127.0.0.1";
  c.port = std::to_string(port);
  c.credentials = {"AK", Secret("SK"), ""};
  c.max_attempts = attempts;
  c.retry_base_delay = std::chrono::milliseconds(1);
  c.io_timeout = std::chrono::milliseconds(2000);
  c.part_size = 5u << 20;
  return S3ObjectStore::create(std::move(c)).value();
}

TEST(S3StoreRetryTest, RetriesServerErrorsThenSucceeds) {
  FakeS3 fake;
  fake.script({{503, "<Error><Code>SlowDown</Code></Error>"}, {500, ""}, {200, ""}});
  auto store = make_store(fake.port());
  ASSERT_TRUE(store->put("k", "value"));
  EXPECT_EQ(store->retries(), 2);
  auto seen = fake.seen();
  ASSERT_EQ(seen.size(), 3u);
  for (const auto& s : seen) {
    EXPECT_EQ(s.method, "PUT");
    EXPECT_EQ(s.target, "/b/pre/k");
    EXPECT_EQ(s.body, "value");
    EXPECT_NE(s.head.find("Authorization: AWS4-HMAC-SHA256 Credential=AK/"), std::string::npos) << s.head;
  }
}

TEST(S3StoreRetryTest, GivesUpAfterMaxAttemptsWithTheLastError) {
  FakeS3 fake;
  fake.script({{503, ""}, {503, ""}, {503, "<Error><Code>SlowDown</Code><Message>Reduce your rate</Message></Error>"}});
  auto store = make_store(fake.port(), 3);
  auto s = store->put("k", "v");
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, Errc::unavailable);
  EXPECT_NE(s.error().message.find("SlowDown: Reduce your rate"), std::string::npos) << s.error().message;
  EXPECT_EQ(fake.seen().size(), 3u);
}

TEST(S3StoreRetryTest, ClientErrorsAreNotRetried) {
  FakeS3 fake;
  fake.script({{403, "<Error><Code>AccessDenied</Code></Error>"}, {404, "<Error><Code>NoSuchKey</Code></Error>"}});
  auto store = make_store(fake.port());
  auto s = store->put("k", "v");
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, Errc::permission_denied);
  auto g = store->get("missing/key");
  ASSERT_FALSE(g);
  EXPECT_EQ(g.error().code, Errc::not_found);
  EXPECT_NE(g.error().message.find("missing/key"), std::string::npos);
  EXPECT_EQ(store->retries(), 0);
}

TEST(S3StoreRetryTest, BrokenDownloadResumesWithARangeRequest) {
  FakeS3 fake;
  std::string body = "0123456789abcdefghijklmnopqrstuvwxyz";
  fake.script({{200, body, {}, 10}, {206, body.substr(10)}});
  auto store = make_store(fake.port());
  auto got = store->get("obj");
  ASSERT_TRUE(got) << got.error().to_string();
  EXPECT_EQ(*got, body);
  auto seen = fake.seen();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].head.find("Range:"), std::string::npos);
  EXPECT_NE(seen[1].head.find("Range: bytes=10-"), std::string::npos) << seen[1].head;
}

TEST(S3StoreRetryTest, ResumeRefusesAFullResponseInsteadOfPartial) {
  FakeS3 fake;
  std::string body = "0123456789abcdefghijklmnopqrstuvwxyz";
  fake.script({{200, body, {}, 10}, {200, body}});
  auto store = make_store(fake.port());
  auto got = store->get("obj");
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, Errc::protocol);
}

TEST(S3StoreRetryTest, MultipartUploadSendsPartsAndCompletes) {
  FakeS3 fake;
  fake.script({{200, "<InitiateMultipartUploadResult><UploadId>up&amp;1</UploadId></InitiateMultipartUploadResult>"},
               {200, "", {{"ETag", "\"e1\""}}},
               {500, ""},  // part 2 fails once and is retried
               {200, "", {{"ETag", "\"e2\""}}},
               {200, "<CompleteMultipartUploadResult></CompleteMultipartUploadResult>"}});
  auto store = make_store(fake.port());
  std::string data((5u << 20) + 100, 'd');
  ASSERT_TRUE(store->put("big", data));
  auto seen = fake.seen();
  ASSERT_EQ(seen.size(), 5u);
  EXPECT_EQ(seen[0].method + " " + seen[0].target, "POST /b/pre/big?uploads=");
  EXPECT_EQ(seen[1].target, "/b/pre/big?partNumber=1&uploadId=up%261");
  EXPECT_EQ(seen[1].body.size(), 5u << 20);
  EXPECT_EQ(seen[3].target, "/b/pre/big?partNumber=2&uploadId=up%261");
  EXPECT_EQ(seen[3].body.size(), 100u);
  EXPECT_EQ(seen[4].target, "/b/pre/big?uploadId=up%261");
  EXPECT_EQ(seen[4].body,
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&quot;e1&quot;</ETag></Part>"
            "<Part><PartNumber>2</PartNumber><ETag>&quot;e2&quot;</ETag></Part></CompleteMultipartUpload>");
}

TEST(S3StoreRetryTest, FailedMultipartIsAborted) {
  FakeS3 fake;
  fake.script({{200, "<UploadId>u</UploadId>"}, {403, "<Error><Code>AccessDenied</Code></Error>"}, {204, ""}});
  auto store = make_store(fake.port());
  auto s = store->put("big", std::string((5u << 20) + 1, 'd'));
  ASSERT_FALSE(s);
  auto seen = fake.seen();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[2].method + " " + seen[2].target, "DELETE /b/pre/big?uploadId=u");
}

TEST(S3StoreRetryTest, CompleteWithAnErrorBodyIsAFailure) {
  FakeS3 fake;
  fake.script({{200, "<UploadId>u</UploadId>"},
               {200, "", {{"ETag", "\"e1\""}}},
               {200, "", {{"ETag", "\"e2\""}}},
               {200, "<Error><Code>InvalidPart</Code></Error>"},
               {204, ""}});
  auto store = make_store(fake.port());
  auto s = store->put("big", std::string((5u << 20) + 1, 'd'));
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("InvalidPart"), std::string::npos) << s.error().message;
}

}  // namespace
}  // namespace tandem::storage
