#include "storage/s3_xml.hpp"

#include <gtest/gtest.h>

namespace tandem::storage::s3xml {
namespace {

constexpr std::string_view kListing = R"(<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>bucket</Name><Prefix>p/</Prefix><KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys>
  <IsTruncated>true</IsTruncated>
  <Contents><Key>p/a&amp;b</Key><LastModified>2025-01-01T00:00:00.000Z</LastModified>
    <ETag>&quot;abc&quot;</ETag><Size>12</Size><StorageClass>STANDARD</StorageClass></Contents>
  <Contents><Key>p/&#x4E2D;&#20013;</Key><ETag>"def"</ETag><Size>0</Size></Contents>
  <NextContinuationToken>tok+/=</NextContinuationToken>
</ListBucketResult>)";

TEST(S3XmlTest, ParsesListObjectsV2) {
  auto contents = blocks(kListing, "Contents");
  ASSERT_EQ(contents.size(), 2u);
  EXPECT_EQ(first(contents[0], "Key"), "p/a&b");
  EXPECT_EQ(first(contents[0], "ETag"), "\"abc\"");
  EXPECT_EQ(first(contents[0], "Size"), "12");
  EXPECT_EQ(first(contents[1], "Key"), "p/\xE4\xB8\xAD\xE4\xB8\xAD");
  EXPECT_EQ(first(kListing, "IsTruncated"), "true");
  EXPECT_EQ(first(kListing, "NextContinuationToken"), "tok+/=");
  // <Key> must not match <KeyCount>.
  EXPECT_EQ(all(kListing, "Key").size(), 2u);
}

TEST(S3XmlTest, ParsesErrors) {
  std::string_view err =
      "<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match the "
      "signature you provided.</Message></Error>";
  EXPECT_EQ(first(err, "Code"), "SignatureDoesNotMatch");
  EXPECT_EQ(first(err, "Missing"), "");
  EXPECT_EQ(first("<A><Code/></A>", "Code"), "");
  EXPECT_EQ(first("<A><Code>unterminated", "Code"), "");
}

TEST(S3XmlTest, EscapesAndDecodesRoundTrip) {
  std::string raw = "a<b>&\"c'";
  EXPECT_EQ(escape(raw), "a&lt;b&gt;&amp;&quot;c&apos;");
  EXPECT_EQ(decode_entities(escape(raw)), raw);
  EXPECT_EQ(decode_entities("&bogus; & &#xZZ;"), "&bogus; & &#xZZ;");
}

}  // namespace
}  // namespace tandem::storage::s3xml
