// The file:// object store end to end with sealed objects: what lands on disk is
// ciphertext only, and damage done on disk (flipped byte, truncation, deletion, a key
// change) is detected and names the object.
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "storage/crypto.hpp"
#include "storage/keyring.hpp"
#include "storage/object_store.hpp"
#include "testkit/testkit.hpp"

namespace tandem {
namespace {

namespace fs = std::filesystem;

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

void spit(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << data;
}

// 16 MiB of WAL-like pages: PG15 page magic 0xD110 and a marker string in each page.
std::string wal_segment_image() {
  std::string seg(16u << 20, '\0');
  for (size_t off = 0; off < seg.size(); off += 8192) {
    const char hdr[8] = {'\x10', '\xD1', '\x02', '\x00', '\x01', '\x00', '\x00', '\x00'};
    std::memcpy(seg.data() + off, hdr, sizeof hdr);
    std::memcpy(seg.data() + off + 100, "TANDEM-PLAINTEXT-MARKER", 23);
  }
  return seg;
}

class FileStorageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto kek = storage::load_or_create_key_file(dir_.sub("kek"));
    ASSERT_TRUE(kek) << kek.error().to_string();
    ring_ = std::make_unique<storage::Keyring>(std::move(kek.value()));
    auto s = storage::make_object_store("file://" + dir_.sub("store"));
    ASSERT_TRUE(s) << s.error().to_string();
    store_ = std::move(s.value());
  }

  Status put_sealed(const std::string& key, const std::string& data) {
    auto sealed = storage::seal(ring_->active(), data, key);
    if (!sealed) return sealed.error();
    return store_->put(key, *sealed);
  }
  Result<std::string> get_sealed(const std::string& key) {
    auto raw = store_->get(key);
    if (!raw) return raw.error();
    return storage::unseal(*ring_, *raw, key);
  }

  testkit::TempDir dir_{"tandem-storage-file"};
  std::unique_ptr<storage::Keyring> ring_;
  std::unique_ptr<storage::ObjectStore> store_;
};

TEST_F(FileStorageTest, SegmentsRoundTripAndNothingOnDiskIsPlaintext) {
  const std::string seg = wal_segment_image();
  for (int i = 1; i <= 3; ++i) {
    ASSERT_TRUE(put_sealed("wal/00000001000000000000000" + std::to_string(i), seg));
  }
  for (int i = 1; i <= 3; ++i) {
    EXPECT_TRUE(get_sealed("wal/00000001000000000000000" + std::to_string(i)).value() == seg);
  }
  const std::string magic("\x10\xD1\x02\x00\x01\x00\x00\x00", 8);
  size_t files = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir_.sub("store"))) {
    if (!e.is_regular_file()) continue;
    ++files;
    std::string bytes = slurp(e.path().string());
    EXPECT_EQ(bytes.find("TANDEM-PLAINTEXT-MARKER"), std::string::npos) << e.path();
    EXPECT_EQ(bytes.find(magic), std::string::npos) << e.path();
    EXPECT_LT(bytes.size(), seg.size() / 10) << "expected zstd to shrink the repetitive image";
  }
  EXPECT_EQ(files, 3u);
}

TEST_F(FileStorageTest, DamageOnDiskIsDetectedAndNamed) {
  const std::string seg = wal_segment_image();
  ASSERT_TRUE(put_sealed("wal/000000010000000000000001", seg));
  ASSERT_TRUE(put_sealed("wal/000000010000000000000002", seg));
  ASSERT_TRUE(put_sealed("wal/000000010000000000000003", seg));
  const std::string p1 = dir_.sub("store/wal/000000010000000000000001");
  const std::string p2 = dir_.sub("store/wal/000000010000000000000002");
  const std::string p3 = dir_.sub("store/wal/000000010000000000000003");

  std::string b = slurp(p1);
  b[b.size() / 3] ^= 1;
  spit(p1, b);
  auto flipped = get_sealed("wal/000000010000000000000001");
  ASSERT_FALSE(flipped);
  EXPECT_NE(flipped.error().message.find("wal/000000010000000000000001"), std::string::npos);

  std::string t = slurp(p2);
  spit(p2, t.substr(0, t.size() - 1));
  auto truncated = get_sealed("wal/000000010000000000000002");
  ASSERT_FALSE(truncated);
  EXPECT_NE(truncated.error().message.find("wal/000000010000000000000002"), std::string::npos);

  fs::remove(p3);
  auto missing = get_sealed("wal/000000010000000000000003");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::not_found);
  EXPECT_NE(missing.error().message.find("wal/000000010000000000000003"), std::string::npos);
}

TEST_F(FileStorageTest, KeyRotationKeepsOldObjectsReadableAndAWrongKeyFailsClosed) {
  ASSERT_TRUE(put_sealed("base/old", "before rotation"));
  // Rotate: a new active key; the old one is kept as retired.
  auto old_key = storage::read_key_file(dir_.sub("kek"));
  ASSERT_TRUE(old_key);
  auto fresh = storage::load_or_create_key_file(dir_.sub("kek2"));
  ASSERT_TRUE(fresh);
  storage::Keyring rotated(std::move(fresh.value()));
  rotated.add_retired(std::move(old_key.value()));
  ASSERT_TRUE(store_->put("base/new", storage::seal(rotated.active(), "after rotation", "base/new").value()));
  EXPECT_EQ(storage::unseal(rotated, store_->get("base/old").value(), "base/old").value(), "before rotation");
  EXPECT_EQ(storage::unseal(rotated, store_->get("base/new").value(), "base/new").value(), "after rotation");

  // Someone with only the new key cannot read the old object, and is told which key it needs.
  storage::Keyring only_new(storage::read_key_file(dir_.sub("kek2")).value());
  auto r = storage::unseal(only_new, store_->get("base/old").value(), "base/old");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::permission_denied);
  EXPECT_NE(r.error().message.find(storage::key_id_hex(ring_->active().id())), std::string::npos);
}

TEST_F(FileStorageTest, StreamingSealIntoTheStore) {
  // Seal while streaming into put_stream: plaintext is produced in 1 MiB pieces, sealed
  // chunks are pulled by the store.
  const std::string seg = wal_segment_image();
  std::string pending;
  auto writer = storage::SealWriter::create(
      ring_->active(),
      [&](std::string_view b) {
        pending.append(b);
        return Status{};
      },
      "base/stream");
  ASSERT_TRUE(writer);
  size_t fed = 0;
  bool finished = false;
  auto s = store_->put_stream("base/stream", [&](char* buf, size_t cap) -> Result<size_t> {
    while (pending.empty() && !finished) {
      if (fed < seg.size()) {
        size_t n = std::min<size_t>(1u << 20, seg.size() - fed);
        if (auto w = (*writer)->write(std::string_view(seg).substr(fed, n)); !w) return w.error();
        fed += n;
      } else {
        if (auto f = (*writer)->finish(); !f) return f.error();
        finished = true;
      }
    }
    size_t n = std::min(cap, pending.size());
    std::memcpy(buf, pending.data(), n);
    pending.erase(0, n);
    return n;
  });
  ASSERT_TRUE(s) << s.error().to_string();
  EXPECT_TRUE(get_sealed("base/stream").value() == seg);
}

}  // namespace
}  // namespace tandem
