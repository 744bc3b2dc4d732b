// The file:// backend and the URL/key rules shared by every backend.
#include "storage/file_store.hpp"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "storage/object_store.hpp"

namespace tandem::storage {
namespace {

namespace fs = std::filesystem;

class FileStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/tandem-filestore-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto s = make_object_store("file://" + dir_ + "/root");
    ASSERT_TRUE(s) << s.error().to_string();
    store_ = std::move(s.value());
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string dir_;
  std::unique_ptr<ObjectStore> store_;
};

TEST_F(FileStoreTest, PutGetHeadListDelete) {
  ASSERT_TRUE(store_->put("wal/000000010000000000000001", "segment one"));
  ASSERT_TRUE(store_->put("wal/000000010000000000000002", "segment two!"));
  ASSERT_TRUE(store_->put("base/2025/manifest.json", "{}"));
  ASSERT_TRUE(store_->put("top", ""));
  EXPECT_EQ(store_->get("wal/000000010000000000000001").value(), "segment one");
  EXPECT_EQ(store_->get("top").value(), "");

  auto h = store_->head("wal/000000010000000000000002");
  ASSERT_TRUE(h && h->has_value());
  EXPECT_EQ((*h)->size, 12u);
  EXPECT_FALSE(store_->head("wal/nope").value().has_value());
  EXPECT_TRUE(store_->exists("top").value());

  auto all = store_->list("");
  ASSERT_TRUE(all);
  std::vector<std::string> keys;
  for (const auto& o : *all) keys.push_back(o.key);
  EXPECT_EQ(keys, (std::vector<std::string>{"base/2025/manifest.json", "top", "wal/000000010000000000000001",
                                            "wal/000000010000000000000002"}));
  auto partial = store_->list("wal/00000001000000000000000");
  ASSERT_TRUE(partial);
  EXPECT_EQ(partial->size(), 2u);
  EXPECT_EQ(store_->list("wa").value().size(), 2u);
  EXPECT_TRUE(store_->list("nothing/here").value().empty());

  ASSERT_TRUE(store_->del("wal/000000010000000000000001"));
  ASSERT_TRUE(store_->del("wal/000000010000000000000001"));  // idempotent
  auto gone = store_->get("wal/000000010000000000000001");
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, Errc::not_found);
  EXPECT_NE(gone.error().message.find("wal/000000010000000000000001"), std::string::npos);
  EXPECT_NE(gone.error().message.find(dir_), std::string::npos);
}

TEST_F(FileStoreTest, OverwriteReplacesWholeObject) {
  ASSERT_TRUE(store_->put("k", std::string(100000, 'a')));
  ASSERT_TRUE(store_->put("k", "short"));
  EXPECT_EQ(store_->get("k").value(), "short");
}

TEST_F(FileStoreTest, StreamedPutIsInvisibleUntilCompleteAndCleansUpOnFailure) {
  int calls = 0;
  auto s = store_->put_stream("big/obj", [&](char* buf, size_t cap) -> Result<size_t> {
    if (++calls == 3) {
      // Mid-stream: nothing is visible under the key yet, and no temp file is listed.
      EXPECT_FALSE(store_->exists("big/obj").value());
      EXPECT_TRUE(store_->list("big/").value().empty());
      return make_error(Errc::io, "source failed");
    }
    std::memset(buf, 'x', std::min<size_t>(cap, 1000));
    return std::min<size_t>(cap, 1000);
  });
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().message, "source failed");
  EXPECT_FALSE(store_->exists("big/obj").value());
  size_t files = 0;
  for (auto& e : fs::recursive_directory_iterator(dir_)) files += e.is_regular_file();
  EXPECT_EQ(files, 0u) << "temporary file left behind";

  std::string data(3u << 20, 'y');
  size_t off = 0;
  ASSERT_TRUE(store_->put_stream("big/obj", [&](char* buf, size_t cap) -> Result<size_t> {
    size_t n = std::min(cap, data.size() - off);
    std::memcpy(buf, data.data() + off, n);
    off += n;
    return n;
  }));
  std::string got;
  ASSERT_TRUE(store_->get_stream("big/obj", [&](std::string_view b) {
    got.append(b);
    return Status{};
  }));
  EXPECT_EQ(got, data);
  struct stat st {};
  ASSERT_EQ(stat((dir_ + "/root/big/obj").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(FileStoreTest, RejectsKeysThatEscapeTheRoot) {
  for (const char* bad : {"", "/abs", "a/../b", "../x", "a//b", "a/./b", "trailing/", "ctl\x01"}) {
    auto s = store_->put(bad, "x");
    ASSERT_FALSE(s) << bad;
    EXPECT_EQ(s.error().code, Errc::invalid_argument);
    EXPECT_FALSE(store_->get(bad));
  }
  EXPECT_FALSE(fs::exists(dir_ + "/x"));
}

TEST(ValidateKeyTest, AcceptsOrdinaryKeys) {
  EXPECT_TRUE(validate_key("wal/000000010000000000000001"));
  EXPECT_TRUE(validate_key("base/20250101T000000Z/data.tar.zst.sealed"));
  EXPECT_TRUE(validate_key("00000002.history"));
  EXPECT_TRUE(validate_key("with space/and+plus"));
  EXPECT_FALSE(validate_key(std::string(1025, 'a')));
}

TEST(StoreUrlTest, RejectsUnknownSchemesAndBadS3Urls) {
  auto r = make_object_store("ftp://x");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("file:///DIR or s3://BUCKET/PREFIX"), std::string::npos);
  EXPECT_FALSE(make_object_store("file://relative/dir"));
  StoreOptions o;
  o.access_key_id = "AK";
  o.secret_access_key = Secret("SK");
  EXPECT_FALSE(make_object_store("s3://", o));
  EXPECT_FALSE(make_object_store("s3://b/p?endpoint=ftp://h", o));
  EXPECT_FALSE(make_object_store("s3://b/p?endpoint=http://h/path", o));
  EXPECT_FALSE(make_object_store("s3://b/p?endpoint=http://h:port", o));
  EXPECT_FALSE(make_object_store("s3://b/p?endpoint=http://h:9000&style=sideways", o));
  EXPECT_FALSE(make_object_store("s3://b/p?endpoint=http://h:9000&colour=blue", o));
  EXPECT_FALSE(make_object_store("s3://b/../p?endpoint=http://h:9000", o));
  // https endpoints are built without touching the network; a CA file must be readable.
  EXPECT_TRUE(make_object_store("s3://b/p?endpoint=https://h", o));
  auto bad_ca = make_object_store("s3://b/p?endpoint=https://h&ca_file=/nonexistent/ca.pem", o);
  ASSERT_FALSE(bad_ca);
  EXPECT_NE(bad_ca.error().message.find("/nonexistent/ca.pem"), std::string::npos) << bad_ca.error().message;
}

TEST(StoreUrlTest, BuildsAnS3StoreWithoutTouchingTheNetwork) {
  StoreOptions o;
  o.access_key_id = "AK";
  o.secret_access_key = Secret("SK");
  auto s = make_object_store("s3://bucket/some/prefix/?endpoint=http%3A%2F%2F127.0.0.1%3A9&region=eu-west-1", o);
  ASSERT_TRUE(s) << s.error().to_string();
  EXPECT_EQ((*s)->url(), "s3://bucket/some/prefix");
}

TEST(StoreUrlTest, CredentialsFileMustBePrivateAndComplete) {
  char tmpl[] = "/tmp/tandem-creds-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string path = std::string(tmpl) + "/credentials";
  {
    std::ofstream f(path);
    f << "[default]\naws_access_key_id = AKID\naws_secret_access_key = SECRETKEY\n[other]\naws_access_key_id=X\n";
  }
  ::chmod(path.c_str(), 0644);
  ::unsetenv("AWS_ACCESS_KEY_ID");
  StoreOptions o;
  o.credentials_file = path;
  auto loose = make_object_store("s3://b?endpoint=http://127.0.0.1:9", o);
  ASSERT_FALSE(loose);
  EXPECT_EQ(loose.error().code, Errc::permission_denied);
  ::chmod(path.c_str(), 0600);
  EXPECT_TRUE(make_object_store("s3://b?endpoint=http://127.0.0.1:9", o));
  o.profile = "other";
  auto incomplete = make_object_store("s3://b?endpoint=http://127.0.0.1:9", o);
  ASSERT_FALSE(incomplete);
  EXPECT_EQ(incomplete.error().message.find("SECRETKEY"), std::string::npos);
  fs::remove_all(tmpl);
}

}  // namespace
}  // namespace tandem::storage
