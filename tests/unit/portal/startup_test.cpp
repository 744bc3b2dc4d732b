#include "portal/wire/startup.hpp"

#include <random>

#include <gtest/gtest.h>

#include "portal/wire/byte_order.hpp"

namespace tandem::portal::wire {
namespace {

using Bytes = std::vector<std::uint8_t>;
using namespace std::string_literals;

Bytes raw(std::initializer_list<int> v) {
  Bytes out;
  for (int b : v) out.push_back(static_cast<std::uint8_t>(b));
  return out;
}

Bytes with_length(Bytes body_after_length) {
  Bytes out;
  append_u32(out, static_cast<std::uint32_t>(body_after_length.size() + 4));
  out.insert(out.end(), body_after_length.begin(), body_after_length.end());
  return out;
}

Bytes code_then(std::uint32_t code, const Bytes& rest) {
  Bytes body;
  append_u32(body, code);
  body.insert(body.end(), rest.begin(), rest.end());
  return with_length(body);
}

Bytes str(std::string_view s) {
  return Bytes(s.begin(), s.end());
}

// Both helpers return copies: the result passed in is usually a temporary.
StartupPacket ready(const StartupResult& r) {
  if (const auto* rej = std::get_if<Reject>(&r)) ADD_FAILURE() << "rejected: " << rej->reason;
  if (std::holds_alternative<NeedMore>(r)) ADD_FAILURE() << "needs more";
  const auto* p = std::get_if<StartupPacket>(&r);
  return p != nullptr ? *p : StartupPacket{};
}

Reject rejected(const StartupResult& r) {
  const auto* rej = std::get_if<Reject>(&r);
  EXPECT_NE(rej, nullptr);
  return rej != nullptr ? *rej : Reject{"", "not rejected"};
}

TEST(StartupDecode, EmptyBufferNeedsOneByte) {
  auto r = decode_startup({}, StartupPhase::initial);
  ASSERT_TRUE(std::holds_alternative<NeedMore>(r));
  EXPECT_EQ(std::get<NeedMore>(r).at_least, 1u);
}

TEST(StartupDecode, SslRequest) {
  const Bytes b = raw({0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f});
  const auto p = ready(decode_startup(b, StartupPhase::initial));
  EXPECT_EQ(p.kind, StartupKind::ssl_request);
  EXPECT_EQ(p.length, 8u);
  EXPECT_EQ(b, encode_request_code(kSslRequestCode));
  // After a refused GSSENCRequest the client may still ask for TLS.
  EXPECT_EQ(ready(decode_startup(b, StartupPhase::after_gss_no)).kind, StartupKind::ssl_request);
}

TEST(StartupDecode, GssEncRequest) {
  const Bytes b = raw({0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30});
  const auto p = ready(decode_startup(b, StartupPhase::initial));
  EXPECT_EQ(p.kind, StartupKind::gssenc_request);
  EXPECT_EQ(p.length, 8u);
  EXPECT_EQ(rejected(decode_startup(b, StartupPhase::after_gss_no)).reason, "GSSENCRequest received twice");
}

TEST(StartupDecode, RequestsInsideTlsAreViolations) {
  for (auto code : {kSslRequestCode, kGssEncRequestCode}) {
    const auto rej = rejected(decode_startup(encode_request_code(code), StartupPhase::in_tls));
    EXPECT_EQ(rej.sqlstate, "08P01");
    EXPECT_NE(rej.reason.find("inside TLS"), std::string::npos) << rej.reason;
  }
}

TEST(StartupDecode, SslRequestWithWrongLength) {
  const Bytes b = code_then(kSslRequestCode, raw({0, 0, 0, 0}));
  const auto rej = rejected(decode_startup(b, StartupPhase::initial));
  EXPECT_EQ(rej.sqlstate, "08P01");
  EXPECT_EQ(rej.reason, "invalid length of SSLRequest packet: 12");
}

TEST(StartupDecode, CancelRequest) {
  const Bytes b = raw({0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0x30, 0x39, 0xde, 0xad, 0xbe, 0xef});
  const auto p = ready(decode_startup(b, StartupPhase::initial));
  EXPECT_EQ(p.kind, StartupKind::cancel_request);
  EXPECT_EQ(p.length, 16u);
  EXPECT_EQ(p.cancel.pid, 12345u);
  EXPECT_EQ(p.cancel.secret, raw({0xde, 0xad, 0xbe, 0xef}));
  EXPECT_EQ(encode_cancel_request(p.cancel), b);
  // Cancel is allowed inside TLS too (libpq 17 sends it there).
  EXPECT_EQ(ready(decode_startup(b, StartupPhase::in_tls)).kind, StartupKind::cancel_request);
}

TEST(StartupDecode, CancelRequestWithLongSecret) {
  CancelKey key{7, Bytes(32, 0xab)};
  const auto p = ready(decode_startup(encode_cancel_request(key), StartupPhase::initial));
  EXPECT_EQ(p.cancel, key);
}

TEST(StartupDecode, CancelRequestWithBadLengths) {
  EXPECT_EQ(rejected(decode_startup(code_then(kCancelRequestCode, raw({0, 0, 0, 1})), StartupPhase::initial)).reason,
            "invalid length of cancel request packet: 12 bytes");
  const Bytes too_long = code_then(kCancelRequestCode, Bytes(4 + kMaxCancelSecretLength + 1, 1));
  EXPECT_EQ(rejected(decode_startup(too_long, StartupPhase::initial)).sqlstate, "08P01");
}

TEST(StartupDecode, StartupMessageWithParameters) {
  const std::vector<StartupParam> params = {
      {"user", "alice"}, {"database", "shop"}, {"application_name", "psql"}, {"options", "-c search_path=x"}};
  const Bytes b = encode_startup(params);
  EXPECT_EQ(b[0], 0);
  const auto p = ready(decode_startup(b, StartupPhase::initial));
  EXPECT_EQ(p.kind, StartupKind::startup);
  EXPECT_EQ(p.length, b.size());
  EXPECT_EQ(p.protocol, kProtocol30);
  EXPECT_EQ(p.protocol_major(), 3);
  EXPECT_EQ(p.protocol_minor(), 0);
  EXPECT_EQ(p.params, params);
  EXPECT_EQ(p.param("database"), "shop");
  EXPECT_EQ(p.param("missing"), "");
  EXPECT_EQ(ready(decode_startup(b, StartupPhase::in_tls)).params, params);
}

TEST(StartupDecode, ExactBytesOfAStartupMessage) {
  Bytes body = raw({0, 3, 0, 0});
  for (auto s : {"user", "bob", "database", "db"}) {
    auto v = str(s);
    body.insert(body.end(), v.begin(), v.end());
    body.push_back(0);
  }
  body.push_back(0);
  const Bytes b = with_length(body);
  EXPECT_EQ(encode_startup({{"user", "bob"}, {"database", "db"}}), b);
  EXPECT_EQ(ready(decode_startup(b, StartupPhase::initial)).param("user"), "bob");
}

TEST(StartupDecode, EmptyValueIsAllowed) {
  const auto p = ready(decode_startup(encode_startup({{"user", "u"}, {"options", ""}}), StartupPhase::initial));
  ASSERT_EQ(p.params.size(), 2u);
  EXPECT_EQ(p.params[1].value, "");
}

TEST(StartupDecode, NewerMinorVersionIsLeftToTheBackend) {
  const Bytes b = encode_startup({{"user", "u"}}, (3u << 16) | 2u);
  const auto p = ready(decode_startup(b, StartupPhase::initial));
  EXPECT_EQ(p.protocol_minor(), 2);
}

TEST(StartupDecode, MissingUserIs28000) {
  const auto rej = rejected(decode_startup(encode_startup({{"database", "x"}}), StartupPhase::initial));
  EXPECT_EQ(rej.sqlstate, "28000");
  EXPECT_EQ(rej.reason, "no PostgreSQL user name specified in startup packet");
}

TEST(StartupDecode, UnknownProtocolVersions) {
  struct Case {
    std::uint32_t version;
    std::string reason;
  };
  for (const auto& c : std::vector<Case>{
           {2u << 16, "unsupported frontend protocol 2.0: server supports 3.0 to 3.x"},
           {(4u << 16) | 1u, "unsupported frontend protocol 4.1: server supports 3.0 to 3.x"},
           {(1234u << 16) | 5681u, "unsupported frontend protocol 1234.5681: server supports 3.0 to 3.x"},
           {0, "unsupported frontend protocol 0.0: server supports 3.0 to 3.x"},
       }) {
    const auto rej = rejected(decode_startup(encode_startup({{"user", "u"}}, c.version), StartupPhase::initial));
    EXPECT_EQ(rej.sqlstate, "0A000");
    EXPECT_EQ(rej.reason, c.reason);
  }
}

TEST(StartupDecode, UnknownVersionRejectedBeforeTheBodyArrives) {
  Bytes b = encode_startup({{"user", "u"}}, 2u << 16);
  b.resize(8);
  EXPECT_EQ(rejected(decode_startup(b, StartupPhase::initial)).sqlstate, "0A000");
}

TEST(StartupDecode, LengthLimits) {
  // Too short to hold a code.
  for (std::uint32_t len : {0u, 1u, 4u, 7u}) {
    Bytes b;
    append_u32(b, len);
    append_u32(b, kProtocol30);
    EXPECT_EQ(rejected(decode_startup(b, StartupPhase::initial)).reason, "invalid length of startup packet") << len;
  }
  // The largest allowed packet: 10,000 bytes after the length word.
  Bytes big = encode_startup({{"user", "u"}, {"options", std::string(kMaxStartupPacketLength - 21, 'x')}});
  ASSERT_EQ(big.size(), kMaxStartupPacketLength + 4);
  EXPECT_EQ(ready(decode_startup(big, StartupPhase::initial)).length, big.size());
  Bytes too_big = encode_startup({{"user", "u"}, {"options", std::string(kMaxStartupPacketLength - 20, 'x')}});
  EXPECT_EQ(rejected(decode_startup(too_big, StartupPhase::initial)).reason, "invalid length of startup packet");
}

TEST(StartupDecode, OversizeRejectedFromTheFirstByte) {
  // 0x00 0x01 ... already means at least 65,536 bytes.
  EXPECT_EQ(rejected(decode_startup(raw({0, 1}), StartupPhase::initial)).reason, "invalid length of startup packet");
  EXPECT_EQ(rejected(decode_startup(raw({'G'}), StartupPhase::initial)).sqlstate, "08P01");
  // 0x00 0x00 0x27 0x14 is exactly 10,004: still possible, so wait.
  EXPECT_TRUE(std::holds_alternative<NeedMore>(decode_startup(raw({0, 0, 0x27}), StartupPhase::initial)));
  EXPECT_EQ(rejected(decode_startup(raw({0, 0, 0x27, 0x15}), StartupPhase::initial)).sqlstate, "08P01");
}

TEST(StartupDecode, HttpRequestIsGarbage) {
  const auto rej = rejected(decode_startup(str("GET / HTTP/1.1\r\n\r\n"), StartupPhase::initial));
  EXPECT_EQ(rej.sqlstate, "08P01");
}

TEST(StartupDecode, LayoutErrors) {
  struct Case {
    Bytes after_version;
    std::string reason;
  };
  const std::string term = "invalid startup packet layout: expected terminator as last byte";
  for (const auto& c : std::vector<Case>{
           {str("user\0u\0"s), term},      // no final terminator
           {str("user\0u\0\0\0"s), term},  // bytes after the terminator
           {str("user"), "invalid startup packet layout: parameter name is not NUL-terminated"},
           {str("user\0u"s), "invalid startup packet layout: missing value for parameter \"user\""},
           {str("user\0"s), "invalid startup packet layout: missing value for parameter \"user\""},
           {{}, term},  // nothing at all after the version
       }) {
    const Bytes b = code_then(kProtocol30, c.after_version);
    const auto rej = rejected(decode_startup(b, StartupPhase::initial));
    EXPECT_EQ(rej.sqlstate, "08P01");
    EXPECT_EQ(rej.reason, c.reason);
  }
}

TEST(StartupDecode, DirectTls) {
  const Bytes hello = raw({0x16, 0x03, 0x01, 0x02, 0x00});
  const auto p = ready(decode_startup(hello, StartupPhase::initial));
  EXPECT_EQ(p.kind, StartupKind::direct_tls);
  EXPECT_EQ(p.length, 0u);  // the TLS layer consumes the bytes
  EXPECT_EQ(ready(decode_startup(raw({0x16}), StartupPhase::initial)).kind, StartupKind::direct_tls);
  EXPECT_EQ(rejected(decode_startup(hello, StartupPhase::after_gss_no)).sqlstate, "08P01");
  EXPECT_EQ(rejected(decode_startup(hello, StartupPhase::in_tls)).sqlstate, "08P01");
}

// Every valid packet, cut at every byte boundary, needs more until it is whole and then
// decodes to the same packet; the bytes after it are not touched.
TEST(StartupDecode, SplitAtEveryBoundary) {
  const std::vector<Bytes> packets = {
      encode_request_code(kSslRequestCode),
      encode_request_code(kGssEncRequestCode),
      encode_cancel_request({99, {1, 2, 3, 4}}),
      encode_startup({{"user", "postgres"}, {"database", "postgres"}, {"application_name", "a b c"}}),
  };
  for (const auto& whole : packets) {
    const auto full = decode_startup(whole, StartupPhase::initial);
    const auto expect = ready(full);
    for (std::size_t cut = 0; cut < whole.size(); ++cut) {
      auto r = decode_startup(std::span(whole).first(cut), StartupPhase::initial);
      ASSERT_TRUE(std::holds_alternative<NeedMore>(r)) << "cut " << cut;
      EXPECT_GT(std::get<NeedMore>(r).at_least, cut);
      EXPECT_LE(std::get<NeedMore>(r).at_least, whole.size());
    }
    Bytes with_tail = whole;
    with_tail.insert(with_tail.end(), {'X', 'Y'});
    const auto again = ready(decode_startup(with_tail, StartupPhase::initial));
    EXPECT_EQ(again.kind, expect.kind);
    EXPECT_EQ(again.length, whole.size());
    EXPECT_EQ(again.params, expect.params);
  }
}

// Truncations of malformed packets never produce a packet, and never read past the span
// (the span is a copy sized exactly; ASan builds catch any overread).
TEST(StartupDecode, RandomGarbageNeverCrashes) {
  std::mt19937 rng(12345);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_int_distribution<int> size(0, 64);
  int rejected_count = 0;
  for (int i = 0; i < 20000; ++i) {
    Bytes b(static_cast<std::size_t>(size(rng)));
    for (auto& x : b) x = static_cast<std::uint8_t>(byte(rng));
    if (!b.empty() && i % 2 == 0) b[0] = 0;  // plausible lengths half of the time
    const auto r = decode_startup(b, static_cast<StartupPhase>(i % 3));
    if (const auto* p = std::get_if<StartupPacket>(&r)) {
      EXPECT_LE(p->length, b.size());
    } else if (std::holds_alternative<Reject>(r)) {
      ++rejected_count;
    } else {
      EXPECT_GT(std::get<NeedMore>(r).at_least, b.size());
    }
  }
  EXPECT_GT(rejected_count, 10000);
}

TEST(StartupDecode, KindNames) {
  EXPECT_STREQ(startup_kind_name(StartupKind::ssl_request), "SSLRequest");
  EXPECT_STREQ(startup_kind_name(StartupKind::direct_tls), "direct TLS");
}

}  // namespace
}  // namespace tandem::portal::wire
