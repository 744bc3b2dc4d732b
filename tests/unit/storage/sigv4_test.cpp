// SigV4 against AWS's published examples: the generic signature test suite
// (AKIDEXAMPLE, 2015-08-30T12:36:00Z, service "service") and the S3 API reference's
// "Examples: Signature Calculations" (AKIAIOSFODNN7EXAMPLE, 2013-05-24T00:00:00Z).
#include "storage/sigv4.hpp"

#include <gtest/gtest.h>

#include "storage/digest.hpp"

namespace tandem::storage::sigv4 {
namespace {

using std::chrono::seconds;
using std::chrono::system_clock;

// 2015-08-30T12:36:00Z and 2013-05-24T00:00:00Z.
const system_clock::time_point kSuiteTime{seconds(1440938160)};
const system_clock::time_point kS3Time{seconds(1369353600)};

Credentials suite_credentials() {
  return {"AKIDEXAMPLE", Secret("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"), ""};
}
Credentials s3_credentials() {
  return {"AKIAIOSFODNN7EXAMPLE", Secret("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"), ""};
}

Options suite_options() {
  Options o;
  o.region = "us-east-1";
  o.service = "service";
  o.add_content_sha256_header = false;
  return o;
}

Request suite_request(std::string method, std::string path, HeaderList query = {}) {
  Request r;
  r.method = std::move(method);
  r.host = "example.amazonaws.com";
  r.path = std::move(path);
  r.query = std::move(query);
  r.payload_hash = std::string(kEmptyPayloadHash);
  return r;
}

TEST(SigV4Suite, GetVanilla) {
  auto s = sign(suite_request("GET", "/"), suite_credentials(), suite_options(), kSuiteTime);
  EXPECT_EQ(s.canonical_request,
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(s.string_to_sign,
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n"
            "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63");
  EXPECT_EQ(s.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
            "SignedHeaders=host;x-amz-date, "
            "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
  EXPECT_EQ(s.target, "/");
}

TEST(SigV4Suite, GetVanillaQueryOrderKeyCase) {
  auto s = sign(suite_request("GET", "/", {{"Param2", "value2"}, {"Param1", "value1"}}), suite_credentials(),
                suite_options(), kSuiteTime);
  EXPECT_EQ(s.signature, "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
  EXPECT_EQ(s.target, "/?Param1=value1&Param2=value2");
}

TEST(SigV4Suite, PostVanilla) {
  auto s = sign(suite_request("POST", "/"), suite_credentials(), suite_options(), kSuiteTime);
  EXPECT_EQ(s.signature, "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b");
}

TEST(SigV4Suite, GetUtf8PathIsEncodedOnce) {
  auto s = sign(suite_request("GET", "/\xE1\x88\xB4"), suite_credentials(), suite_options(), kSuiteTime);
  EXPECT_EQ(s.target, "/%E1%88%B4");
  EXPECT_EQ(s.signature, "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85");
}

Request s3_request(std::string method, std::string path) {
  Request r;
  r.method = std::move(method);
  r.host = "examplebucket.s3.amazonaws.com";
  r.path = std::move(path);
  r.payload_hash = std::string(kEmptyPayloadHash);
  return r;
}

TEST(SigV4S3Examples, GetObjectWithRange) {
  Request r = s3_request("GET", "/test.txt");
  r.headers = {{"Range", "bytes=0-9"}};
  auto s = sign(r, s3_credentials(), Options{}, kS3Time);
  EXPECT_EQ(s.canonical_request,
            "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
            "x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
            "x-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n"
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(s.string_to_sign,
            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
            "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
  EXPECT_EQ(s.signature, "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
  EXPECT_EQ(s.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
            "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
            "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

TEST(SigV4S3Examples, PutObjectEncodesDollarAndSignsPayloadHash) {
  Request r = s3_request("PUT", "/test$file.text");
  r.headers = {{"Date", "Fri, 24 May 2013 00:00:00 GMT"}, {"x-amz-storage-class", "REDUCED_REDUNDANCY"}};
  r.payload_hash = sha256_hex("Welcome to Amazon S3.");
  ASSERT_EQ(r.payload_hash, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
  auto s = sign(r, s3_credentials(), Options{}, kS3Time);
  EXPECT_EQ(s.target, "/test%24file.text");
  EXPECT_EQ(s.string_to_sign,
            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
            "9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b4158342019d");
  EXPECT_EQ(s.signed_headers, "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class");
  EXPECT_EQ(s.signature, "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
}

TEST(SigV4S3Examples, GetBucketLifecycleFlagParameter) {
  Request r = s3_request("GET", "/");
  r.query = {{"lifecycle", ""}};
  auto s = sign(r, s3_credentials(), Options{}, kS3Time);
  EXPECT_EQ(s.target, "/?lifecycle=");
  EXPECT_EQ(s.signature, "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
}

TEST(SigV4S3Examples, ListObjectsSortsQuery) {
  Request r = s3_request("GET", "/");
  r.query = {{"prefix", "J"}, {"max-keys", "2"}};
  auto s = sign(r, s3_credentials(), Options{}, kS3Time);
  EXPECT_EQ(s.target, "/?max-keys=2&prefix=J");
  EXPECT_EQ(s.signature, "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

TEST(SigV4, UnsignedPayloadIsSignedLiterally) {
  Request r = s3_request("PUT", "/bucket/wal/000000010000000000000001");
  r.payload_hash = std::string(kUnsignedPayload);
  auto s = sign(r, s3_credentials(), Options{}, kS3Time);
  EXPECT_TRUE(s.canonical_request.ends_with("\nUNSIGNED-PAYLOAD"));
  EXPECT_NE(s.canonical_request.find("x-amz-content-sha256:UNSIGNED-PAYLOAD\n"), std::string::npos);
  bool found = false;
  for (const auto& [k, v] : s.add_headers) found |= k == "x-amz-content-sha256" && v == "UNSIGNED-PAYLOAD";
  EXPECT_TRUE(found);
}

TEST(SigV4, SessionTokenIsSentAndSigned) {
  Credentials c = s3_credentials();
  c.session_token = "token/with+chars";
  auto s = sign(s3_request("GET", "/k"), c, Options{}, kS3Time);
  EXPECT_EQ(s.signed_headers, "host;x-amz-content-sha256;x-amz-date;x-amz-security-token");
  auto plain = sign(s3_request("GET", "/k"), s3_credentials(), Options{}, kS3Time);
  EXPECT_NE(s.signature, plain.signature);
}

TEST(SigV4, SecretNeverAppearsInOutput) {
  auto s = sign(s3_request("GET", "/k"), s3_credentials(), Options{}, kS3Time);
  const std::string secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
  EXPECT_EQ(s.canonical_request.find(secret), std::string::npos);
  EXPECT_EQ(s.string_to_sign.find(secret), std::string::npos);
  EXPECT_EQ(s.authorization.find(secret), std::string::npos);
}

TEST(SigV4, ChangingAnySignedInputChangesTheSignature) {
  Request base = s3_request("GET", "/bucket/key");
  auto ref = sign(base, s3_credentials(), Options{}, kS3Time).signature;
  Request r = base;
  r.path = "/bucket/key2";
  EXPECT_NE(sign(r, s3_credentials(), Options{}, kS3Time).signature, ref);
  r = base;
  r.host = "other:9000";
  EXPECT_NE(sign(r, s3_credentials(), Options{}, kS3Time).signature, ref);
  r = base;
  r.payload_hash = std::string(kUnsignedPayload);
  EXPECT_NE(sign(r, s3_credentials(), Options{}, kS3Time).signature, ref);
  EXPECT_NE(sign(base, s3_credentials(), Options{}, kS3Time + seconds(1)).signature, ref);
  Options eu;
  eu.region = "eu-west-1";
  EXPECT_NE(sign(base, s3_credentials(), eu, kS3Time).signature, ref);
}

TEST(SigV4, HeaderValuesAreTrimmedAndRepeatedNamesJoined) {
  Request r = s3_request("GET", "/k");
  r.headers = {{"X-Amz-Meta-A", "  two   words  "}, {"x-amz-meta-b", "1"}, {"X-AMZ-META-B", "2"}};
  auto s = sign(r, s3_credentials(), Options{}, kS3Time);
  EXPECT_NE(s.canonical_request.find("\nx-amz-meta-a:two words\nx-amz-meta-b:1,2\n"), std::string::npos)
      << s.canonical_request;
  EXPECT_EQ(s.signed_headers, "host;x-amz-content-sha256;x-amz-date;x-amz-meta-a;x-amz-meta-b");
}

TEST(SigV4, UriEncodeFollowsS3Rules) {
  EXPECT_EQ(uri_encode("a b", false), "a%20b");
  EXPECT_EQ(uri_encode("a+b", false), "a%2Bb");
  EXPECT_EQ(uri_encode("100%", false), "100%25");  // raw input is encoded once, never decoded first
  EXPECT_EQ(uri_encode("A-z_0.9~", true), "A-z_0.9~");
  EXPECT_EQ(uri_encode("a/b", false), "a/b");
  EXPECT_EQ(uri_encode("a/b", true), "a%2Fb");
  EXPECT_EQ(uri_encode("=&?#*", true), "%3D%26%3F%23%2A");
  EXPECT_EQ(uri_encode("\xD0\xBA", true), "%D0%BA");
}

TEST(SigV4, QueryValuesAreEncodedInTarget) {
  Request r = s3_request("GET", "/bucket");
  r.query = {{"list-type", "2"}, {"prefix", "wal/0000 1/"}, {"continuation-token", "a+b/c=="}};
  auto s = sign(r, s3_credentials(), Options{}, kS3Time);
  EXPECT_EQ(s.target, "/bucket?continuation-token=a%2Bb%2Fc%3D%3D&list-type=2&prefix=wal%2F0000%201%2F");
}

TEST(SigV4, AmzDateFormatsUtc) {
  EXPECT_EQ(amz_date(kSuiteTime), "20150830T123600Z");
  EXPECT_EQ(amz_date(system_clock::time_point{seconds(0)}), "19700101T000000Z");
}

}  // namespace
}  // namespace tandem::storage::sigv4
