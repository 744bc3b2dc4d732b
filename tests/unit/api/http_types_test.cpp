// Pure helpers: request targets, URLs, base64, ISO-8601 times.
#include "api/http_types.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "api/basic_auth.hpp"
#include "api/control.hpp"
#include "api/http_client.hpp"
#include "api/time_format.hpp"

namespace tandem::api {
namespace {

TEST(Target, PathAndQuery) {
  auto t = parse_target("/replica?lag=10MB&tag_zone=eu%2Dwest&flag&=x&a=1&a=2");
  ASSERT_TRUE(t.ok()) << t.error().to_string();
  EXPECT_EQ(t->path, "/replica");
  EXPECT_EQ(t->query.at("lag"), "10MB");
  EXPECT_EQ(t->query.at("tag_zone"), "eu-west");
  EXPECT_EQ(t->query.at("flag"), "");
  EXPECT_EQ(t->query.at(""), "x");
  EXPECT_EQ(t->query.at("a"), "2");  // last value wins
  auto plus = parse_target("/x%20y?q=a+b%2Bc");
  ASSERT_TRUE(plus.ok());
  EXPECT_EQ(plus->path, "/x y");
  EXPECT_EQ(plus->query.at("q"), "a b+c");
  EXPECT_TRUE(parse_target("/").ok());
  EXPECT_EQ(parse_target("/a?#frag")->query.size(), 0u);
}

TEST(Target, Rejects) {
  EXPECT_FALSE(parse_target("").ok());
  EXPECT_FALSE(parse_target("*").ok());
  EXPECT_FALSE(parse_target("http://host/primary").ok());
  EXPECT_FALSE(parse_target("/bad%zz").ok());
  EXPECT_FALSE(parse_target("/bad%4").ok());
  EXPECT_FALSE(parse_target("/ok?x=%").ok());
  EXPECT_EQ(parse_target("relative").error().code, Errc::invalid_argument);
}

TEST(PercentDecode, Cases) {
  EXPECT_EQ(percent_decode("%41%62c", false), "Abc");
  EXPECT_EQ(percent_decode("a+b", false), "a+b");
  EXPECT_EQ(percent_decode("a+b", true), "a b");
  EXPECT_FALSE(percent_decode("%", false));
  EXPECT_FALSE(percent_decode("%1", false));
  EXPECT_FALSE(percent_decode("%g1", false));
}

TEST(ErrorResponse, JsonErrorBody) {
  auto r = error_response(make_error(Errc::not_found, "member \"n9\" is not in the cluster"));
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.content_type, "application/json");
  EXPECT_EQ(nlohmann::json::parse(r.body).at("error"), "member \"n9\" is not in the cluster");
  EXPECT_STREQ(reason_phrase(503), "Service Unavailable");
  EXPECT_STREQ(reason_phrase(299), "Unknown");
}

TEST(Url, Parse) {
  auto u = parse_http_url("http://127.0.0.1:8008/replica?lag=1MB");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->host, "127.0.0.1");
  EXPECT_EQ(u->port, 8008);
  EXPECT_EQ(u->target, "/replica?lag=1MB");
  EXPECT_EQ(u->host_header(), "127.0.0.1:8008");

  auto v6 = parse_http_url("http://[::1]:9000");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 9000);
  EXPECT_EQ(v6->target, "/");
  EXPECT_EQ(v6->host_header(), "[::1]:9000");

  auto noport = parse_http_url("http://localhost?x=1");
  ASSERT_TRUE(noport.ok());
  EXPECT_EQ(noport->port, 80);
  EXPECT_EQ(noport->target, "/?x=1");
}

TEST(Url, Rejects) {
  auto https = parse_http_url("https://h:1/");
  ASSERT_FALSE(https.ok());
  EXPECT_NE(https.error().message.find("https"), std::string::npos);
  EXPECT_FALSE(parse_http_url("ftp://h/").ok());
  EXPECT_FALSE(parse_http_url("127.0.0.1:8008").ok());
  EXPECT_FALSE(parse_http_url("http://:80/").ok());
  EXPECT_FALSE(parse_http_url("http://h:0/").ok());
  EXPECT_FALSE(parse_http_url("http://h:65536/").ok());
  EXPECT_FALSE(parse_http_url("http://h:8x/").ok());
  EXPECT_FALSE(parse_http_url("http://[::1/").ok());
  EXPECT_FALSE(parse_http_url("http://user:pw@h/").ok());
}

TEST(Base64, RoundTripAndRfc4648Vectors) {
  const std::pair<const char*, const char*> vectors[] = {{"", ""},
                                                         {"f", "Zg=="},
                                                         {"fo", "Zm8="},
                                                         {"foo", "Zm9v"},
                                                         {"foob", "Zm9vYg=="},
                                                         {"fooba", "Zm9vYmE="},
                                                         {"foobar", "Zm9vYmFy"}};
  for (const auto& [plain, encoded] : vectors) {
    EXPECT_EQ(base64_encode(plain), encoded);
    EXPECT_EQ(base64_decode(encoded), plain);
  }
  std::string binary;
  for (int i = 0; i < 256; ++i) binary.push_back(static_cast<char>(i));
  EXPECT_EQ(base64_decode(base64_encode(binary)), binary);
  EXPECT_FALSE(base64_decode("Zm9"));
  EXPECT_FALSE(base64_decode("Zm=v"));
  EXPECT_FALSE(base64_decode("Zg==Zg=="));
  EXPECT_FALSE(base64_decode("Z!=="));
  EXPECT_EQ(basic_auth_header("Aladdin", Secret("open sesame")), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
}

TEST(Iso8601, ParseAndFormat) {
  EXPECT_EQ(parse_iso8601("1970-01-01T00:00:00Z").value(), 0);
  EXPECT_EQ(parse_iso8601("2023-11-14T22:13:20Z").value(), 1'700'000'000'000);
  EXPECT_EQ(parse_iso8601("2023-11-14T22:13:20.5Z").value(), 1'700'000'000'500);
  EXPECT_EQ(parse_iso8601("2023-11-14T22:13:20.123456Z").value(), 1'700'000'000'123);
  EXPECT_EQ(parse_iso8601("2023-11-15T00:13:20+02:00").value(), 1'700'000'000'000);
  EXPECT_EQ(parse_iso8601("2023-11-14 17:13:20-0500").value(), 1'700'000'000'000);
  EXPECT_EQ(parse_iso8601("2023-11-14T22:13Z").value(), 1'699'999'980'000);
  EXPECT_EQ(parse_iso8601("2024-02-29T00:00:00Z").value(), 1'709'164'800'000);
  EXPECT_FALSE(parse_iso8601("2023-02-29T00:00:00Z").ok());
  EXPECT_FALSE(parse_iso8601("2023-11-14T22:13:20").ok());
  EXPECT_FALSE(parse_iso8601("2023-11-14").ok());
  EXPECT_FALSE(parse_iso8601("2023-13-01T00:00:00Z").ok());
  EXPECT_FALSE(parse_iso8601("2023-11-14T24:00:00Z").ok());
  EXPECT_FALSE(parse_iso8601("2023-11-14T22:13:20Zjunk").ok());
  EXPECT_FALSE(parse_iso8601("yesterday").ok());
  EXPECT_EQ(format_iso8601(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(format_iso8601(1'700'000'000'123), "2023-11-14T22:13:20.123Z");
  for (int64_t ms : {int64_t{0}, int64_t{951'782'400'000}, int64_t{1'709'164'800'999}}) {
    EXPECT_EQ(parse_iso8601(format_iso8601(ms)).value(), ms);
  }
}

TEST(Schedule, IsoOrMillis) {
  EXPECT_EQ(parse_schedule(nlohmann::json(1'700'000'000'000)).value(), 1'700'000'000'000);
  EXPECT_EQ(parse_schedule(nlohmann::json("1700000000000")).value(), 1'700'000'000'000);
  EXPECT_EQ(parse_schedule(nlohmann::json("2023-11-14T22:13:20Z")).value(), 1'700'000'000'000);
  EXPECT_FALSE(parse_schedule(nlohmann::json(-1)).ok());
  EXPECT_FALSE(parse_schedule(nlohmann::json(1.5)).ok());
  EXPECT_FALSE(parse_schedule(nlohmann::json::array()).ok());
}

}  // namespace
}  // namespace tandem::api
