#include "backup/tar.hpp"

#include <gtest/gtest.h>

#include <cstring>

#include <fmt/format.h>

namespace tandem::backup {
namespace {

// One ustar header block, checksum filled in.
std::string header(const std::string& name, char type, uint64_t size, const std::string& link = "") {
  std::string h(512, '\0');
  std::memcpy(h.data(), name.data(), std::min<size_t>(name.size(), 100));
  std::string mode = "0000600";
  std::memcpy(h.data() + 100, mode.c_str(), mode.size() + 1);
  std::string sz = fmt::format("{:011o}", size);
  std::memcpy(h.data() + 124, sz.c_str(), sz.size() + 1);
  h[156] = type;
  std::memcpy(h.data() + 157, link.data(), std::min<size_t>(link.size(), 100));
  std::memcpy(h.data() + 257,
              "ustar\0"
              "00",
              8);
  std::memset(h.data() + 148, ' ', 8);
  unsigned sum = 0;
  for (unsigned char c : h) sum += c;
  std::string ck = fmt::format("{:06o}", sum);
  std::memcpy(h.data() + 148, ck.c_str(), ck.size() + 1);
  return h;
}

std::string file_entry(const std::string& name, const std::string& data) {
  std::string out = header(name, '0', data.size()) + data;
  out.append((512 - data.size() % 512) % 512, '\0');
  return out;
}

// Records what the reader reports.
class Recorder : public TarVisitor {
 public:
  Status begin_entry(const TarEntry& e) override {
    log += fmt::format("[{} {} {}{}]",
                       e.type == TarEntryType::file        ? "f"
                       : e.type == TarEntryType::directory ? "d"
                                                           : "l",
                       e.name, e.size, e.link_target.empty() ? "" : "->" + e.link_target);
    return {};
  }
  Status data(std::string_view b) override {
    log.append(b);
    return {};
  }
  Status end_entry() override {
    log += "|";
    return {};
  }
  std::string log;
};

std::string sample_archive() {
  return header("./base/", '5', 0) + file_entry("base/1/PG_VERSION", "15\n") +
         header("pg_tblspc/16400", '2', 0, "/srv/ts") + file_entry("global/big", std::string(1300, 'z')) +
         std::string(1024, '\0');
}

const std::string kExpected =
    "[d base 0]|[f base/1/PG_VERSION 3]15\n|[l pg_tblspc/16400 0->/srv/ts]|[f global/big 1300]" +
    std::string(1300, 'z') + "|";

TEST(TarReader, ParsesEntriesInAnySplit) {
  const std::string tar = sample_archive();
  for (size_t step : {size_t{1}, size_t{7}, size_t{511}, size_t{512}, size_t{513}, size_t{4096}}) {
    Recorder rec;
    TarReader reader(rec, "t.tar");
    for (size_t i = 0; i < tar.size(); i += step) {
      ASSERT_TRUE(reader.feed(std::string_view(tar).substr(i, step)).ok()) << step;
    }
    ASSERT_TRUE(reader.finish().ok()) << step;
    EXPECT_EQ(rec.log, kExpected) << step;
    EXPECT_EQ(reader.entries(), 4u);
  }
}

TEST(TarReader, AcceptsAMissingTrailer) {
  std::string tar = sample_archive();
  tar.resize(tar.size() - 1024);
  Recorder rec;
  TarReader reader(rec, "t.tar");
  ASSERT_TRUE(reader.feed(tar).ok());
  EXPECT_TRUE(reader.finish().ok());
  EXPECT_EQ(rec.log, kExpected);
}

TEST(TarReader, TruncationIsAnError) {
  std::string tar = sample_archive();
  for (size_t cut : {size_t{100}, size_t{513}, tar.size() - 1024 - 100}) {
    Recorder rec;
    TarReader reader(rec, "t.tar");
    ASSERT_TRUE(reader.feed(std::string_view(tar).substr(0, cut)).ok());
    auto st = reader.finish();
    ASSERT_FALSE(st.ok()) << cut;
    EXPECT_NE(st.error().message.find("t.tar"), std::string::npos);
    EXPECT_NE(st.error().message.find("truncated"), std::string::npos);
  }
}

TEST(TarReader, RejectsBadChecksumsUnsafeNamesAndTrailingData) {
  std::string tar = sample_archive();
  tar[10] ^= 1;  // inside the first header's name
  Recorder rec;
  TarReader bad(rec, "t.tar");
  auto st = bad.feed(tar);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("checksum"), std::string::npos);

  for (const char* name : {"../etc/passwd", "/etc/passwd", "a/../../b", "a//b"}) {
    Recorder r2;
    TarReader reader(r2, "t.tar");
    EXPECT_FALSE(reader.feed(file_entry(name, "x")).ok()) << name;
  }

  Recorder r3;
  TarReader reader(r3, "t.tar");
  std::string extra = sample_archive() + file_entry("late", "x");
  EXPECT_FALSE(reader.feed(extra).ok());
}

TEST(TarReader, BigSizesInBase256) {
  std::string h = header("huge", '0', 0);
  // 9 GiB in GNU base-256: first byte 0x80, value big-endian in the remaining bytes.
  uint64_t size = 9ull << 30;
  h[124] = static_cast<char>(0x80);
  for (int i = 0; i < 11; ++i) h[135 - i] = static_cast<char>(i < 8 ? (size >> (8 * i)) & 0xff : 0);
  std::memset(h.data() + 148, ' ', 8);
  unsigned sum = 0;
  for (unsigned char c : h) sum += c;
  std::string ck = fmt::format("{:06o}", sum);
  std::memcpy(h.data() + 148, ck.c_str(), ck.size() + 1);
  Recorder rec;
  TarReader reader(rec, "t.tar");
  ASSERT_TRUE(reader.feed(h).ok());
  EXPECT_EQ(rec.log, fmt::format("[f huge {}]", size));
}

}  // namespace
}  // namespace tandem::backup
