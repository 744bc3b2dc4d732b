#include "base/lsn.hpp"

#include <gtest/gtest.h>

namespace tandem {
namespace {

TEST(Lsn, RoundTrips) {
  auto l = Lsn::parse("16/B374D848");
  ASSERT_TRUE(l);
  EXPECT_EQ(l->value(), (uint64_t{0x16} << 32) | 0xB374D848u);
  EXPECT_EQ(l->to_string(), "16/B374D848");
  EXPECT_EQ(Lsn(0).to_string(), "0/0");
}

TEST(Lsn, RejectsGarbage) {
  for (const char* bad : {"", "/", "1/", "/1", "x/1", "1/1/1", "1/ 2", "100000000/0"}) {
    EXPECT_FALSE(Lsn::parse(bad)) << bad;
  }
}

}  // namespace
}  // namespace tandem
