// The s3:// object store against @20minutes/s3rver, which verifies SigV4 signatures, and
// the aws CLI as an independent reader of what we wrote.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include <gtest/gtest.h>

#include "base/process.hpp"
#include "storage/crypto.hpp"
#include "storage/object_store.hpp"
#include "storage/s3_store.hpp"
#include "testkit/s3_server.hpp"
#include "testkit/testkit.hpp"

namespace tandem {
namespace {

using storage::ObjectStore;
using storage::StoreOptions;

std::string pseudo_random(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (size_t i = 0; i + 4 <= n; i += 4) {
    uint32_t v = rng();
    std::memcpy(s.data() + i, &v, 4);
  }
  return s;
}

std::string find_aws() {
  std::stringstream ss(std::getenv("PATH") ? std::getenv("PATH") : "");
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    if (!dir.empty() && access((dir + "/aws").c_str(), X_OK) == 0) return dir + "/aws";
  }
  for (const char* p : {"/root/.pyenv/shims/aws", "/usr/local/bin/aws", "/usr/bin/aws"}) {
    if (access(p, X_OK) == 0) return p;
  }
  return {};
}

class S3StoreTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = new testkit::S3Server({"tandem"}); }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }

  StoreOptions options(const std::string& secret = testkit::S3Server::kSecretKey) const {
    StoreOptions o;
    o.access_key_id = testkit::S3Server::kAccessKey;
    o.secret_access_key = Secret(secret);
    o.retry_base_delay = std::chrono::milliseconds(20);
    return o;
  }
  std::string url(const std::string& prefix) const {
    return "s3://tandem/" + prefix + "?endpoint=" + server_->endpoint() + "&region=us-east-1";
  }
  std::unique_ptr<ObjectStore> open(const std::string& prefix, StoreOptions o) const {
    auto s = storage::make_object_store(url(prefix), o);
    EXPECT_TRUE(s) << s.error().to_string();
    return s ? std::move(s.value()) : nullptr;
  }

  // Runs the aws CLI against the test server; credentials go through the environment.
  RunResult aws(std::vector<std::string> args) const {
    std::string bin = find_aws();
    EXPECT_FALSE(bin.empty()) << "the aws CLI is not installed (apt-get install awscli)";
    testkit::TempDir home("tandem-aws");
    {
      std::ofstream cfg(home.sub("config"));
      cfg << "[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n";
    }
    SpawnOptions o;
    o.argv = {bin, "--endpoint-url", server_->endpoint()};
    o.argv.insert(o.argv.end(), args.begin(), args.end());
    o.env = {{"AWS_ACCESS_KEY_ID", testkit::S3Server::kAccessKey},
             {"AWS_SECRET_ACCESS_KEY", testkit::S3Server::kSecretKey},
             {"AWS_CONFIG_FILE", home.sub("config")},
             {"AWS_SHARED_CREDENTIALS_FILE", home.sub("none")},
             {"AWS_EC2_METADATA_DISABLED", "true"},
             {"HOME", home.path()}};
    o.cwd = home.path();
    auto r = run(o, std::chrono::seconds(120));
    EXPECT_TRUE(r) << r.error().to_string();
    return r ? r.value() : RunResult{};
  }

  static testkit::S3Server* server_;
};

testkit::S3Server* S3StoreTest::server_ = nullptr;

TEST_F(S3StoreTest, PutGetHeadListDelete) {
  auto store = open("crud", options());
  ASSERT_TRUE(store);
  EXPECT_EQ(store->url(), "s3://tandem/crud");
  ASSERT_TRUE(store->put("wal/000000010000000000000001", "segment one"));
  ASSERT_TRUE(store->put("wal/000000010000000000000002", "segment two!"));
  // (No '&' here: s3rver escapes it twice in listings, unlike S3.)
  ASSERT_TRUE(store->put("odd name/with+plus=$,;:@.txt", "odd"));
  ASSERT_TRUE(store->put("empty", ""));

  EXPECT_EQ(store->get("wal/000000010000000000000001").value(), "segment one");
  EXPECT_EQ(store->get("odd name/with+plus=$,;:@.txt").value(), "odd");
  EXPECT_EQ(store->get("empty").value(), "");
  auto h = store->head("wal/000000010000000000000002");
  ASSERT_TRUE(h) << h.error().to_string();
  ASSERT_TRUE(h->has_value());
  EXPECT_EQ((*h)->size, 12u);
  EXPECT_FALSE(store->head("wal/none").value().has_value());

  auto all = store->list("");
  ASSERT_TRUE(all) << all.error().to_string();
  std::vector<std::string> keys;
  for (const auto& o : *all) keys.push_back(o.key);
  EXPECT_EQ(keys, (std::vector<std::string>{"empty", "odd name/with+plus=$,;:@.txt", "wal/000000010000000000000001",
                                            "wal/000000010000000000000002"}));
  EXPECT_EQ(store->list("wal/").value().size(), 2u);

  ASSERT_TRUE(store->del("wal/000000010000000000000001"));
  ASSERT_TRUE(store->del("wal/000000010000000000000001"));  // idempotent
  auto gone = store->get("wal/000000010000000000000001");
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, Errc::not_found);
  EXPECT_NE(gone.error().message.find("wal/000000010000000000000001"), std::string::npos) << gone.error().message;
}

TEST_F(S3StoreTest, ListingFollowsContinuationTokens) {
  StoreOptions o = options();
  o.list_page_size = 2;
  auto store = open("paged", o);
  ASSERT_TRUE(store);
  std::vector<std::string> want;
  for (int i = 0; i < 7; ++i) {
    want.push_back("k/" + std::to_string(i));
    ASSERT_TRUE(store->put(want.back(), std::to_string(i)));
  }
  auto listed = store->list("k/");
  ASSERT_TRUE(listed) << listed.error().to_string();
  std::vector<std::string> got;
  for (const auto& i : *listed) got.push_back(i.key);
  EXPECT_EQ(got, want);
}

TEST_F(S3StoreTest, MultipartUploadOf20MiBStreamsAndReadsBack) {
  auto store = open("multi", options());
  ASSERT_TRUE(store);
  const std::string data = pseudo_random(20u << 20, 7);
  size_t off = 0;
  int reads = 0;
  auto s = store->put_stream("base/big.bin", [&](char* buf, size_t cap) -> Result<size_t> {
    ++reads;
    size_t n = std::min({cap, data.size() - off, size_t{1} << 20});
    std::memcpy(buf, data.data() + off, n);
    off += n;
    return n;
  });
  ASSERT_TRUE(s) << s.error().to_string();
  EXPECT_GT(reads, 20);
  auto h = store->head("base/big.bin");
  ASSERT_TRUE(h && h->has_value());
  EXPECT_EQ((*h)->size, data.size());
  std::string got;
  ASSERT_TRUE(store->get_stream("base/big.bin", [&](std::string_view b) {
    got.append(b);
    return Status{};
  }));
  EXPECT_TRUE(got == data) << "size " << got.size();
  // put() of a large buffer takes the multipart path as well.
  ASSERT_TRUE(store->put("base/big2.bin", data));
  EXPECT_TRUE(store->get("base/big2.bin").value() == data);
  // No upload is left half-done in the bucket listing.
  EXPECT_EQ(store->list("base/").value().size(), 2u);
}

TEST_F(S3StoreTest, WrongSecretIsRejectedWithSignatureDoesNotMatch) {
  auto store = open("auth", options("not-the-secret"));
  ASSERT_TRUE(store);
  auto s = store->put("x", "data");
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, Errc::permission_denied);
  EXPECT_NE(s.error().message.find("403"), std::string::npos) << s.error().message;
  EXPECT_NE(s.error().message.find("SignatureDoesNotMatch"), std::string::npos) << s.error().message;
  EXPECT_EQ(s.error().message.find("not-the-secret"), std::string::npos);
  auto* s3 = dynamic_cast<storage::S3ObjectStore*>(store.get());
  ASSERT_NE(s3, nullptr);
  EXPECT_EQ(s3->retries(), 0) << "a 403 must not be retried";
  auto l = store->list("");
  ASSERT_FALSE(l);
  EXPECT_NE(l.error().message.find("SignatureDoesNotMatch"), std::string::npos);
  // The same request with the right secret works, so it was the signature that failed.
  EXPECT_TRUE(open("auth", options())->put("x", "data"));
}

TEST_F(S3StoreTest, AwsCliListsAndDownloadsWhatWeWrote) {
  auto store = open("cli", options());
  ASSERT_TRUE(store);
  const std::string big = pseudo_random((9u << 20) + 12345, 11);  // multipart
  const std::string small = "small object\n";
  ASSERT_TRUE(store->put("backups/one.bin", big));
  ASSERT_TRUE(store->put("backups/two.txt", small));

  auto ls = aws({"s3", "ls", "--recursive", "s3://tandem/cli/"});
  ASSERT_TRUE(ls.status.ok()) << ls.output;
  EXPECT_NE(ls.output.find("cli/backups/one.bin"), std::string::npos) << ls.output;
  EXPECT_NE(ls.output.find("cli/backups/two.txt"), std::string::npos) << ls.output;
  EXPECT_NE(ls.output.find(std::to_string(big.size())), std::string::npos) << ls.output;

  testkit::TempDir out("tandem-aws-out");
  auto cp = aws({"s3", "cp", "s3://tandem/cli/backups/one.bin", out.sub("one.bin")});
  ASSERT_TRUE(cp.status.ok()) << cp.output;
  std::ifstream f(out.sub("one.bin"), std::ios::binary);
  std::string downloaded((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_TRUE(downloaded == big) << "aws s3 cp returned " << downloaded.size() << " bytes";

  // And the other way round: what the aws CLI uploads, we read.
  {
    std::ofstream up(out.sub("up.txt"));
    up << "uploaded by aws";
  }
  auto put = aws({"s3", "cp", out.sub("up.txt"), "s3://tandem/cli/from-aws.txt"});
  ASSERT_TRUE(put.status.ok()) << put.output;
  EXPECT_EQ(store->get("from-aws.txt").value(), "uploaded by aws");
}

TEST_F(S3StoreTest, SealedObjectsRoundTripAndTamperingIsNamed) {
  auto store = open("sealed", options());
  ASSERT_TRUE(store);
  auto kek = storage::Kek::from_bytes(std::string(32, '\x42')).value();
  storage::Keyring ring(storage::Kek::from_bytes(std::string(32, '\x42')).value());
  std::string plain = "BEGIN; INSERT INTO t VALUES ('TANDEM-PLAINTEXT-MARKER'); COMMIT;";
  for (int i = 0; i < 12; ++i) plain += plain;
  auto sealed = storage::seal(kek, plain, "wal/000000010000000000000009").value();
  ASSERT_TRUE(store->put("wal/000000010000000000000009", sealed));

  auto fetched = store->get("wal/000000010000000000000009").value();
  EXPECT_EQ(fetched.find("TANDEM-PLAINTEXT-MARKER"), std::string::npos);
  EXPECT_EQ(storage::unseal(ring, fetched, "wal/000000010000000000000009").value(), plain);

  // Flip one byte on the server side, then read it back.
  fetched[fetched.size() / 2] ^= 0x20;
  ASSERT_TRUE(store->put("wal/000000010000000000000009", fetched));
  auto bad = storage::unseal(ring, store->get("wal/000000010000000000000009").value(), "wal/000000010000000000000009");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("wal/000000010000000000000009"), std::string::npos);
  EXPECT_NE(bad.error().message.find("failed authentication"), std::string::npos);

  // A truncated object.
  ASSERT_TRUE(store->put("wal/00000001000000000000000A", sealed.substr(0, sealed.size() - 5)));
  EXPECT_FALSE(
      storage::unseal(ring, store->get("wal/00000001000000000000000A").value(), "wal/00000001000000000000000A"));
}

TEST_F(S3StoreTest, ConnectionErrorsAreRetriedWithBackoffThenReported) {
  StoreOptions o = options();
  o.max_attempts = 4;
  o.retry_base_delay = std::chrono::milliseconds(10);
  int dead_port = testkit::free_port();
  auto s = storage::make_object_store("s3://tandem/x?endpoint=http://127.0.0.1:" + std::to_string(dead_port), o);
  ASSERT_TRUE(s);
  auto r = (*s)->put("k", "v");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::unavailable) << r.error().to_string();
  EXPECT_NE(r.error().message.find(std::to_string(dead_port)), std::string::npos);
  EXPECT_EQ(dynamic_cast<storage::S3ObjectStore*>(s->get())->retries(), 3);
}

TEST_F(S3StoreTest, SilentServerTimesOut) {
  // A socket that listens but never answers: connect succeeds (backlog), reads time out.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(listen(fd, 16), 0);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  StoreOptions o = options();
  o.max_attempts = 2;
  o.io_timeout = std::chrono::milliseconds(300);
  auto s =
      storage::make_object_store("s3://tandem/x?endpoint=http://127.0.0.1:" + std::to_string(ntohs(a.sin_port)), o);
  ASSERT_TRUE(s);
  auto start = std::chrono::steady_clock::now();
  auto r = (*s)->get("k");
  auto took = std::chrono::steady_clock::now() - start;
  close(fd);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::timeout) << r.error().to_string();
  EXPECT_LT(took, std::chrono::seconds(5));
}

// The same store over HTTPS: s3rver with a certificate for 127.0.0.1 from a CA of its own.
class S3TlsStoreTest : public ::testing::Test {
 protected:
  // An exception in SetUpTestSuite would only mark the tests skipped: keep it and fail each test.
  static void SetUpTestSuite() {
    try {
      server_ = new testkit::S3Server({"tandem"}, /*https=*/true);
    } catch (const std::exception& e) {
      setup_error_ = e.what();
    }
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(server_, nullptr) << setup_error_; }
  static StoreOptions options() {
    StoreOptions o;
    o.access_key_id = testkit::S3Server::kAccessKey;
    o.secret_access_key = Secret(testkit::S3Server::kSecretKey);
    o.retry_base_delay = std::chrono::milliseconds(20);
    return o;
  }
  static std::string url(const std::string& extra = "") {
    return "s3://tandem/tls?endpoint=" + server_->endpoint() + extra;
  }
  static testkit::S3Server* server_;
  static std::string setup_error_;
};

testkit::S3Server* S3TlsStoreTest::server_ = nullptr;
std::string S3TlsStoreTest::setup_error_;

TEST_F(S3TlsStoreTest, HttpsWithTheDeploymentsCaRoundTripsAMultipartObject) {
  ASSERT_EQ(server_->endpoint().rfind("https://", 0), 0u);
  auto s = storage::make_object_store(url("&ca_file=" + server_->ca_file()), options());
  ASSERT_TRUE(s) << s.error().to_string();
  const std::string big = pseudo_random(12u << 20, 7);  // two parts of 8 MiB
  ASSERT_TRUE((*s)->put("big", big));
  auto back = (*s)->get("big");
  ASSERT_TRUE(back) << back.error().to_string();
  EXPECT_TRUE(*back == big);
  auto listed = (*s)->list("");
  ASSERT_TRUE(listed) << listed.error().to_string();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].size, big.size());
  EXPECT_TRUE((*s)->del("big"));
}

TEST_F(S3TlsStoreTest, CaFromAwsCaBundleIsUsedWhenTheUrlNamesNone) {
  ASSERT_EQ(setenv("AWS_CA_BUNDLE", server_->ca_file().c_str(), 1), 0);
  auto s = storage::make_object_store(url(), options());
  unsetenv("AWS_CA_BUNDLE");
  ASSERT_TRUE(s) << s.error().to_string();
  EXPECT_TRUE((*s)->put("k", "v"));
  EXPECT_EQ((*s)->get("k").value_or(""), "v");
}

TEST_F(S3TlsStoreTest, AnUntrustedCertificateFailsClosedWithoutRetries) {
  // The system trust store does not know the test CA: refused, named, not retried.
  auto s = storage::make_object_store(url(), options());
  ASSERT_TRUE(s) << s.error().to_string();
  auto r = (*s)->put("k", "v");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::permission_denied) << r.error().to_string();
  EXPECT_NE(r.error().message.find("certificate verify failed"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find(std::to_string(server_->port())), std::string::npos) << r.error().message;
  EXPECT_EQ(dynamic_cast<storage::S3ObjectStore*>(s->get())->retries(), 0);
  EXPECT_FALSE(storage::make_object_store(url("&ca_file=/nonexistent/ca.pem"), options()));
}

TEST_F(S3TlsStoreTest, ACertificateForAnotherNameIsRefused) {
  // Same CA, but we reach the server as "localhost": the certificate names only 127.0.0.1.
  std::string endpoint = server_->endpoint();
  endpoint.replace(endpoint.find("127.0.0.1"), 9, "localhost");
  auto s =
      storage::make_object_store("s3://tandem/tls?endpoint=" + endpoint + "&ca_file=" + server_->ca_file(), options());
  ASSERT_TRUE(s) << s.error().to_string();
  auto r = (*s)->get("k");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::permission_denied) << r.error().to_string();
}

}  // namespace
}  // namespace tandem
