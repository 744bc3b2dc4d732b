#include "portal/wire/backend.hpp"

#include <random>

#include <gtest/gtest.h>

#include "portal/wire/byte_order.hpp"

namespace tandem::portal::wire {
namespace {

using Bytes = std::vector<std::uint8_t>;
using namespace std::string_literals;

Bytes message(char type, const Bytes& body) {
  Bytes out{static_cast<std::uint8_t>(type)};
  append_u32(out, static_cast<std::uint32_t>(body.size() + 4));
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

Bytes text(std::string_view s) {
  return Bytes(s.begin(), s.end());
}

// A realistic start-up answer: AuthenticationOk, ParameterStatus x2, BackendKeyData,
// ReadyForQuery.
Bytes startup_answer() {
  Bytes out;
  auto add = [&](const Bytes& m) { out.insert(out.end(), m.begin(), m.end()); };
  add(message('R', {0, 0, 0, 0}));
  add(message('S', text("server_version\0"
                        "15.18\0"s)));
  add(message('S', text("client_encoding\0"
                        "UTF8\0"s)));
  add(message('K', {0, 0, 0x30, 0x39, 0xca, 0xfe, 0xba, 0xbe}));
  add(message('Z', {'I'}));
  return out;
}

TEST(ErrorResponse, ExactBytes) {
  const Bytes got = encode_error_response({.sqlstate = "28000", .message = "TLS is required"});
  Bytes want = {'E', 0, 0, 0, 0};
  for (auto f :
       {std::string("SFATAL"), std::string("VFATAL"), std::string("C28000"), std::string("MTLS is required")}) {
    want.insert(want.end(), f.begin(), f.end());
    want.push_back(0);
  }
  want.push_back(0);
  write_u32(want, 1, static_cast<std::uint32_t>(want.size() - 1));
  EXPECT_EQ(got, want);
}

TEST(ErrorResponse, OptionalFieldsAndEmbeddedNul) {
  const Bytes got = encode_error_response(
      {.sqlstate = "08P01", .message = std::string_view("bad\0tail", 8), .detail = "d", .hint = "h"});
  const std::string s(got.begin() + 5, got.end());
  EXPECT_EQ(s, std::string("SFATAL\0VFATAL\0C08P01\0Mbad\0Dd\0Hh\0\0", 33));
  EXPECT_EQ(read_u32(got, 1), got.size() - 1);
}

TEST(BackendScanner, FindsKeyAndReadyForQuery) {
  BackendScanner scanner;
  const auto& st = scanner.feed(startup_answer());
  ASSERT_TRUE(st.backend_key.has_value());
  EXPECT_EQ(st.backend_key->pid, 12345u);
  EXPECT_EQ(st.backend_key->secret, (Bytes{0xca, 0xfe, 0xba, 0xbe}));
  EXPECT_TRUE(st.ready_for_query);
  EXPECT_FALSE(st.error);
  EXPECT_TRUE(scanner.done());
}

TEST(BackendScanner, SplitAtEveryBoundary) {
  const Bytes all = startup_answer();
  for (std::size_t cut = 0; cut <= all.size(); ++cut) {
    BackendScanner scanner;
    scanner.feed(std::span(all).first(cut));
    EXPECT_EQ(scanner.state().ready_for_query, cut == all.size()) << cut;
    scanner.feed(std::span(all).subspan(cut));
    ASSERT_TRUE(scanner.state().ready_for_query) << cut;
    ASSERT_TRUE(scanner.state().backend_key.has_value());
    EXPECT_EQ(scanner.state().backend_key->pid, 12345u);
  }
}

TEST(BackendScanner, ByteByByte) {
  const Bytes all = startup_answer();
  BackendScanner scanner;
  for (auto b : all) scanner.feed(std::span(&b, 1));
  EXPECT_TRUE(scanner.state().ready_for_query);
  EXPECT_EQ(scanner.state().backend_key->secret.size(), 4u);
}

TEST(BackendScanner, LongSecretOfProtocol32) {
  Bytes body = {0, 0, 0, 7};
  body.insert(body.end(), 32, 0x5a);
  BackendScanner scanner;
  scanner.feed(message('K', body));
  ASSERT_TRUE(scanner.state().backend_key.has_value());
  EXPECT_EQ(scanner.state().backend_key->secret, Bytes(32, 0x5a));
}

TEST(BackendScanner, ErrorDuringStartup) {
  BackendScanner scanner;
  scanner.feed(encode_error_response({.sqlstate = "28P01", .message = "password authentication failed"}));
  EXPECT_TRUE(scanner.state().error);
  EXPECT_FALSE(scanner.done());
}

TEST(BackendScanner, InvalidLengths) {
  {
    BackendScanner scanner;
    scanner.feed(Bytes{'R', 0, 0, 0, 3});
    ASSERT_TRUE(scanner.state().protocol_error.has_value());
    EXPECT_EQ(*scanner.state().protocol_error, "backend message 'R' has invalid length 3");
    EXPECT_TRUE(scanner.done());
  }
  {
    BackendScanner scanner;
    scanner.feed(message('K', {0, 0, 0, 1}));
    ASSERT_TRUE(scanner.state().protocol_error.has_value());
    EXPECT_FALSE(scanner.state().backend_key.has_value());
  }
}

TEST(BackendScanner, StopsAfterReadyForQuery) {
  Bytes all = startup_answer();
  const Bytes later = message('K', {0, 0, 0, 1, 1, 1, 1, 1});
  all.insert(all.end(), later.begin(), later.end());
  BackendScanner scanner;
  scanner.feed(all);
  EXPECT_EQ(scanner.state().backend_key->pid, 12345u);
}

TEST(BackendScanner, EmptyBodyMessages) {
  BackendScanner scanner;
  Bytes m = message('1', {});  // ParseComplete has an empty body
  scanner.feed(m);
  scanner.feed(message('Z', {'T'}));
  EXPECT_TRUE(scanner.state().ready_for_query);
}

TEST(BackendScanner, GarbageNeverCrashes) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int i = 0; i < 2000; ++i) {
    Bytes b(static_cast<std::size_t>(i % 97));
    for (auto& x : b) x = static_cast<std::uint8_t>(byte(rng));
    BackendScanner scanner;
    scanner.feed(b);
    if (scanner.state().backend_key) {
      EXPECT_GE(scanner.state().backend_key->secret.size(), 4u);
    }
  }
}

}  // namespace
}  // namespace tandem::portal::wire
