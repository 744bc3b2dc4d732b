// Sealed-object format: round trips, and every kind of damage must fail closed with an
// error that names the object.
#include "storage/crypto.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include <gtest/gtest.h>

#include "storage/digest.hpp"
#include "storage/keyring.hpp"

namespace tandem::storage {
namespace {

constexpr size_t kChunk = 4096;

Kek make_kek(uint8_t fill) {
  return Kek::from_bytes(std::string(kKekBytes, static_cast<char>(fill))).value();
}

std::string random_data(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

SealOptions raw_chunks() {
  SealOptions o;
  o.chunk_size = kChunk;
  o.compress = false;
  return o;
}

Result<std::string> open_with(const Kek& kek, std::string_view sealed, const std::string& name = "obj") {
  Keyring ring(Kek::from_bytes(std::string(reinterpret_cast<const char*>(kek.bytes()), kKekBytes)).value());
  return unseal(ring, sealed, name);
}

TEST(SealTest, RoundTripsEmptySmallAndMultiChunk) {
  Kek kek = make_kek(7);
  std::string compressible;
  for (int i = 0; i < 20000; ++i) compressible += "row " + std::to_string(i) + " of a table\n";
  for (const std::string& data : {std::string(), std::string("x"), std::string("hello, sealed world"),
                                  random_data(10 * kChunk + 123, 1), compressible}) {
    for (bool compress : {true, false}) {
      SealOptions o;
      o.chunk_size = kChunk;
      o.compress = compress;
      auto sealed = seal(kek, data, "obj", o);
      ASSERT_TRUE(sealed) << sealed.error().to_string();
      auto opened = open_with(kek, *sealed);
      ASSERT_TRUE(opened) << opened.error().to_string();
      EXPECT_EQ(*opened, data) << "size " << data.size() << " compress " << compress;
    }
  }
}

TEST(SealTest, ExactChunkMultipleEndsWithEmptyFinalChunk) {
  Kek kek = make_kek(7);
  std::string data = random_data(3 * kChunk, 2);
  auto sealed = seal(kek, data, "obj", raw_chunks());
  ASSERT_TRUE(sealed);
  // header + 3 full chunks + an empty final chunk (tag only)
  EXPECT_EQ(sealed->size(), kSealHeaderBytes + 3 * (kChunk + kSealTagBytes) + kSealTagBytes);
  EXPECT_EQ(open_with(kek, *sealed).value(), data);
}

TEST(SealTest, CompressionShrinksRepetitiveData) {
  Kek kek = make_kek(7);
  std::string data(1 << 20, 'a');
  auto sealed = seal(kek, data, "obj");
  ASSERT_TRUE(sealed);
  EXPECT_LT(sealed->size(), 4096u);
}

TEST(SealTest, StreamingInRandomPiecesMatchesWholeBuffer) {
  Kek kek = make_kek(9);
  Keyring ring(make_kek(9));
  std::string data = random_data(5 * kChunk, 3) + std::string(7 * kChunk, 'z');
  std::mt19937 rng(42);
  std::string sealed;
  SealOptions o;
  o.chunk_size = kChunk;
  auto w = SealWriter::create(
      kek,
      [&](std::string_view b) {
        sealed.append(b);
        return Status{};
      },
      "stream", o);
  ASSERT_TRUE(w);
  for (size_t pos = 0; pos < data.size();) {
    size_t n = std::min<size_t>(data.size() - pos, rng() % 9000);
    ASSERT_TRUE((*w)->write(std::string_view(data).substr(pos, n)));
    pos += n;
  }
  ASSERT_TRUE((*w)->finish());
  EXPECT_EQ((*w)->plaintext_bytes(), data.size());
  EXPECT_EQ((*w)->sealed_bytes(), sealed.size());

  std::string out;
  auto r = UnsealReader::create(
      ring,
      [&](std::string_view b) {
        out.append(b);
        return Status{};
      },
      "stream");
  for (size_t pos = 0; pos < sealed.size();) {
    size_t n = std::min<size_t>(sealed.size() - pos, 1 + rng() % 5000);
    ASSERT_TRUE(r->write(std::string_view(sealed).substr(pos, n)));
    pos += n;
  }
  ASSERT_TRUE(r->finish());
  EXPECT_EQ(out, data);
  EXPECT_EQ(r->plaintext_bytes(), data.size());
}

TEST(SealTest, EverySingleByteFlipIsDetected) {
  Kek kek = make_kek(3);
  for (bool compress : {true, false}) {
    SealOptions o;
    o.chunk_size = kChunk;
    o.compress = compress;
    auto sealed = seal(kek, "a small object, two hundred bytes or so, with some words in it", "small", o).value();
    for (size_t i = 0; i < sealed.size(); ++i) {
      for (uint8_t mask : {0x01, 0x80, 0xFF}) {
        std::string bad = sealed;
        bad[i] = static_cast<char>(bad[i] ^ mask);
        auto r = open_with(kek, bad, "small");
        ASSERT_FALSE(r) << "flip at byte " << i << " went undetected";
        EXPECT_NE(r.error().message.find("'small'"), std::string::npos) << r.error().message;
      }
    }
  }
}

TEST(SealTest, TruncationAnywhereIsDetected) {
  Kek kek = make_kek(3);
  auto sealed = seal(kek, random_data(3 * kChunk + 500, 4), "wal/000000010000000000000003", raw_chunks()).value();
  for (size_t len = 0; len < sealed.size(); ++len) {
    auto r = open_with(kek, std::string_view(sealed).substr(0, len), "wal/000000010000000000000003");
    ASSERT_FALSE(r) << "truncation to " << len << " bytes went undetected";
    EXPECT_NE(r.error().message.find("wal/000000010000000000000003"), std::string::npos);
  }
  // At a chunk boundary the message says what happened.
  size_t boundary = kSealHeaderBytes + 2 * (kChunk + kSealTagBytes);
  auto r = open_with(kek, std::string_view(sealed).substr(0, boundary), "o");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("truncated"), std::string::npos) << r.error().message;
}

TEST(SealTest, ExtensionIsDetected) {
  Kek kek = make_kek(3);
  auto sealed = seal(kek, random_data(2 * kChunk + 10, 5), "o", raw_chunks()).value();
  EXPECT_FALSE(open_with(kek, sealed + "x"));
  EXPECT_FALSE(open_with(kek, sealed + std::string(kSealTagBytes, '\0')));
  // Appending a second copy of the final chunk.
  EXPECT_FALSE(open_with(kek, sealed + sealed.substr(sealed.size() - 10 - kSealTagBytes)));
}

TEST(SealTest, ReorderedDroppedOrDuplicatedChunksAreDetected) {
  Kek kek = make_kek(3);
  auto sealed = seal(kek, random_data(3 * kChunk + 100, 6), "o", raw_chunks()).value();
  const size_t rec = kChunk + kSealTagBytes;
  auto chunk = [&](int i) { return sealed.substr(kSealHeaderBytes + i * rec, rec); };
  std::string header = sealed.substr(0, kSealHeaderBytes);
  std::string tail = sealed.substr(kSealHeaderBytes + 3 * rec);
  ASSERT_TRUE(open_with(kek, header + chunk(0) + chunk(1) + chunk(2) + tail));
  EXPECT_FALSE(open_with(kek, header + chunk(1) + chunk(0) + chunk(2) + tail));  // swap
  EXPECT_FALSE(open_with(kek, header + chunk(0) + chunk(2) + tail));             // drop
  EXPECT_FALSE(open_with(kek, header + chunk(0) + chunk(1) + chunk(1) + chunk(2) + tail));
  // A chunk moved into another object (same key, different header) fails too.
  auto other = seal(kek, random_data(3 * kChunk + 100, 6), "o", raw_chunks()).value();
  EXPECT_FALSE(open_with(kek, other.substr(0, kSealHeaderBytes) + chunk(0) + other.substr(kSealHeaderBytes + rec)));
}

TEST(SealTest, WrongKeyFailsClosedAndNamesKeyAndObject) {
  Kek writer = make_kek(1);
  auto sealed = seal(writer, "secret rows", "base/20250101/data.tar").value();
  Keyring other(make_kek(2));
  auto r = unseal(other, sealed, "base/20250101/data.tar");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::permission_denied);
  EXPECT_NE(r.error().message.find("base/20250101/data.tar"), std::string::npos);
  EXPECT_NE(r.error().message.find(key_id_hex(writer.id())), std::string::npos) << r.error().message;
}

TEST(SealTest, HeaderForgedWithAnotherKeysIdFails) {
  Kek a = make_kek(1);
  Kek b = make_kek(2);
  auto sealed = seal(a, "rows", "o").value();
  // Claim key b: the wrap no longer authenticates.
  std::copy(b.id().begin(), b.id().end(), sealed.begin() + 14);
  Keyring ring(make_kek(2));
  auto r = unseal(ring, sealed, "o");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::protocol);
}

TEST(SealTest, RotatedKeyringReadsOldAndNewObjects) {
  auto old_sealed = seal(make_kek(1), "written before rotation", "old").value();
  Keyring ring(make_kek(2));  // new active key
  EXPECT_FALSE(unseal(ring, old_sealed, "old"));
  ring.add_retired(make_kek(1));
  EXPECT_EQ(unseal(ring, old_sealed, "old").value(), "written before rotation");
  auto new_sealed = seal(ring.active(), "written after rotation", "new").value();
  EXPECT_EQ(sealed_key_id(new_sealed, "new").value(), make_kek(2).id());
  EXPECT_EQ(unseal(ring, new_sealed, "new").value(), "written after rotation");
}

TEST(SealTest, SinkErrorStopsTheReader) {
  Kek kek = make_kek(5);
  Keyring ring(make_kek(5));
  auto sealed = seal(kek, random_data(3 * kChunk, 8), "o", raw_chunks()).value();
  auto r = UnsealReader::create(
      ring, [](std::string_view) -> Status { return make_error(Errc::io, "disk full"); }, "o");
  auto s = r->write(sealed);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().message, "disk full");
  EXPECT_FALSE(r->finish());
}

// PostgreSQL 15 WAL page: XLogPageHeaderData {uint16 magic 0xD110, uint16 info, uint32 tli,
// uint64 pageaddr}, little-endian on x86; and a heap page header whose pd_pagesize_version
// is 8192 | 4.
std::string fake_wal_and_heap_pages() {
  std::string out;
  for (uint64_t page = 0; page < 32; ++page) {
    std::string p(8192, '\0');
    const uint8_t wal_hdr[16] = {0x10, 0xD1, 0x02, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, static_cast<uint8_t>(page << 5),
                                 0x00, 0x03, 0x00, 0x00, 0x00, 0x00};
    std::memcpy(p.data(), wal_hdr, sizeof wal_hdr);
    std::string rec = "INSERT INTO accounts VALUES (42, 'TANDEM-PLAINTEXT-MARKER')";
    for (size_t off = 64; off + rec.size() < 8192; off += 512) std::memcpy(p.data() + off, rec.data(), rec.size());
    out += p;
  }
  for (int page = 0; page < 32; ++page) {
    std::string p(8192, '\0');
    const uint8_t heap_hdr[24] = {0,    0,    0,    0,    0x28, 0x01, 0x00, 0x03, 0x00, 0x00, 0x04, 0x00,
                                  0x1C, 0x00, 0xE0, 0x1F, 0x00, 0x20, 0x04, 0x20, 0,    0,    0,    0};
    std::memcpy(p.data(), heap_hdr, sizeof heap_hdr);
    std::memcpy(p.data() + 8000, "TANDEM-PLAINTEXT-MARKER", 23);
    out += p;
  }
  return out;
}

TEST(SealTest, NoPlaintextInSealedOutput) {
  std::string data = fake_wal_and_heap_pages();
  const std::string wal_magic("\x10\xD1\x02\x00\x01\x00\x00\x00", 8);
  const std::string heap_magic("\x00\x20\x04\x20", 4);
  ASSERT_NE(data.find(wal_magic), std::string::npos);
  for (bool compress : {true, false}) {
    SealOptions o;
    o.compress = compress;
    auto sealed = seal(make_kek(4), data, "o", o).value();
    EXPECT_EQ(sealed.find("TANDEM-PLAINTEXT-MARKER"), std::string::npos);
    EXPECT_EQ(sealed.find("INSERT INTO"), std::string::npos);
    EXPECT_EQ(sealed.find(wal_magic), std::string::npos);
    // 64 pages each had this 4-byte pattern; ciphertext may hold it by chance at most rarely.
    size_t hits = 0;
    for (size_t pos = sealed.find(heap_magic); pos != std::string::npos; pos = sealed.find(heap_magic, pos + 1)) {
      ++hits;
    }
    EXPECT_LE(hits, 1u);
    EXPECT_EQ(unseal(Keyring(make_kek(4)), sealed, "o").value(), data);
  }
}

TEST(SealTest, NonceAndDataKeyDifferPerObject) {
  Kek kek = make_kek(4);
  auto a = seal(kek, "same", "o").value();
  auto b = seal(kek, "same", "o").value();
  EXPECT_NE(a, b);
  EXPECT_NE(a.substr(22, 68), b.substr(22, 68));
}

TEST(SealTest, RejectsBadChunkSize) {
  SealOptions o;
  o.chunk_size = 100;
  EXPECT_FALSE(seal(make_kek(1), "x", "o", o));
}

class KeyFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/tandem-keyfile-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(KeyFileTest, CreatesMode0600AndReloadsTheSameKey) {
  std::string path = dir_ + "/kek";
  auto a = load_or_create_key_file(path);
  ASSERT_TRUE(a) << a.error().to_string();
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(st.st_size, 65);
  auto b = load_or_create_key_file(path);
  ASSERT_TRUE(b);
  EXPECT_EQ(a->id(), b->id());
  auto sealed = seal(*a, "payload", "o").value();
  EXPECT_EQ(unseal(Keyring(std::move(b.value())), sealed, "o").value(), "payload");
}

TEST_F(KeyFileTest, RefusesAGroupReadableFile) {
  std::string path = dir_ + "/kek";
  ASSERT_TRUE(load_or_create_key_file(path));
  chmod(path.c_str(), 0640);
  auto r = read_key_file(path);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::permission_denied);
  EXPECT_NE(r.error().message.find("chmod 600"), std::string::npos);
}

TEST_F(KeyFileTest, RefusesMalformedContentAndReportsMissingFile) {
  std::string path = dir_ + "/kek";
  {
    std::ofstream f(path);
    f << "not a key\n";
  }
  chmod(path.c_str(), 0600);
  auto r = read_key_file(path);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::invalid_argument);
  EXPECT_EQ(r.error().message.find("not a key"), std::string::npos);  // never echo key material
  auto missing = read_key_file(dir_ + "/nope");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::not_found);
}

TEST(KeyringTest, KeyIdIsAStablePrefixOfTheKeyHash) {
  Kek k = make_kek(0xAB);
  auto d = sha256(std::string(kKekBytes, static_cast<char>(0xAB)));
  EXPECT_TRUE(std::equal(k.id().begin(), k.id().end(), d.begin()));
  Keyring ring(make_kek(1));
  ring.add_retired(make_kek(2));
  ring.add_retired(make_kek(2));
  EXPECT_NE(ring.find(make_kek(2).id()), nullptr);
  EXPECT_EQ(ring.find(make_kek(3).id()), nullptr);
  EXPECT_NE(ring.describe_ids().find("(active)"), std::string::npos);
}

}  // namespace
}  // namespace tandem::storage
