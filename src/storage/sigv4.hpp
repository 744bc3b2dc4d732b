#pragma once
// AWS Signature Version 4 for S3, header signing. Pure functions: the caller passes the
// time, so signatures are reproducible and testable against AWS's published examples.
//
// Paths and query parameters are given raw (unencoded); the signer encodes them exactly
// once with S3's rules (RFC 3986 unreserved characters kept, '/' kept in the path, all
// else %XX upper-case) and returns the encoded request target, so what is sent on the
// wire is byte-for-byte what was signed. S3 neither normalises nor double-encodes paths.
#include <chrono>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/secret.hpp"

namespace tandem::storage::sigv4 {

inline constexpr std::string_view kUnsignedPayload = "UNSIGNED-PAYLOAD";
inline constexpr std::string_view kEmptyPayloadHash =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

struct Credentials {
  std::string access_key_id;
  Secret secret_access_key;
  std::string session_token;  // optional (temporary credentials); sent as x-amz-security-token
};

using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct Request {
  std::string method;  // "GET", "PUT", ...
  std::string host;    // the Host header: "bucket.s3.amazonaws.com" or "127.0.0.1:9000"
  std::string path;    // raw path starting with '/', e.g. "/bucket/wal/0001 a"
  HeaderList query;    // raw names and values; a flag parameter has an empty value
  HeaderList headers;  // extra headers to sign and send (range, content-type, ...)
  std::string payload_hash = std::string(kUnsignedPayload);  // hex SHA-256 or UNSIGNED-PAYLOAD
};

struct Options {
  std::string region = "us-east-1";
  std::string service = "s3";
  // S3 requires x-amz-content-sha256; AWS's generic test suite signs without it.
  bool add_content_sha256_header = true;
};

struct Signed {
  std::string amz_date;           // YYYYMMDD'T'HHMMSS'Z'
  std::string canonical_request;  // for debugging a SignatureDoesNotMatch
  std::string string_to_sign;
  std::string signed_headers;  // "host;x-amz-content-sha256;x-amz-date"
  std::string signature;       // lower-case hex
  std::string authorization;   // the Authorization header value
  std::string target;          // encoded path + ("?" + canonical query) to put on the request line
  // Headers to send in addition to the request's own: x-amz-date, x-amz-content-sha256,
  // x-amz-security-token when present, and Authorization.
  HeaderList add_headers;
};

Signed sign(const Request& request, const Credentials& credentials, const Options& options,
            std::chrono::system_clock::time_point now);

// S3 URI encoding of one string. encode_slash=false for paths, true for query parts.
std::string uri_encode(std::string_view s, bool encode_slash);

// "20130524T000000Z" for the given UTC time.
std::string amz_date(std::chrono::system_clock::time_point t);

// The derived signing key HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date), region), service),
// "aws4_request"), raw bytes.
std::string signing_key(const Secret& secret, std::string_view date, std::string_view region, std::string_view service);

}  // namespace tandem::storage::sigv4
