#include "storage/sigv4.hpp"

#include <openssl/crypto.h>

#include <algorithm>
#include <ctime>

#include <fmt/format.h>

#include "storage/digest.hpp"

namespace tandem::storage::sigv4 {

namespace {

bool unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
         c == '.' || c == '~';
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

// Trims both ends and collapses runs of spaces/tabs into one space.
std::string canonical_value(std::string_view v) {
  std::string out;
  bool pending_space = false;
  for (char c : v) {
    if (c == ' ' || c == '\t') {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out.push_back(' ');
    pending_space = false;
    out.push_back(c);
  }
  return out;
}

std::string as_string(const Sha256Digest& d) {
  return std::string(reinterpret_cast<const char*>(d.data()), d.size());
}

}  // namespace

std::string uri_encode(std::string_view s, bool encode_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size() * 3);
  for (unsigned char c : s) {
    if (unreserved(c) || (c == '/' && !encode_slash)) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xF]);
    }
  }
  return out;
}

std::string amz_date(std::chrono::system_clock::time_point t) {
  std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  return fmt::format("{:04}{:02}{:02}T{:02}{:02}{:02}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec);
}

std::string signing_key(const Secret& secret, std::string_view date, std::string_view region,
                        std::string_view service) {
  std::string k = "AWS4" + secret.reveal();
  std::string k_date = as_string(hmac_sha256(k, date));
  OPENSSL_cleanse(k.data(), k.size());
  std::string k_region = as_string(hmac_sha256(k_date, region));
  std::string k_service = as_string(hmac_sha256(k_region, service));
  std::string key = as_string(hmac_sha256(k_service, "aws4_request"));
  OPENSSL_cleanse(k_date.data(), k_date.size());
  OPENSSL_cleanse(k_region.data(), k_region.size());
  OPENSSL_cleanse(k_service.data(), k_service.size());
  return key;
}

Signed sign(const Request& request, const Credentials& credentials, const Options& options,
            std::chrono::system_clock::time_point now) {
  Signed out;
  out.amz_date = amz_date(now);
  const std::string date = out.amz_date.substr(0, 8);

  // Canonical URI and query string.
  std::string path = request.path.empty() ? "/" : request.path;
  std::string canonical_uri = uri_encode(path, false);
  std::vector<std::pair<std::string, std::string>> query;
  query.reserve(request.query.size());
  for (const auto& [k, v] : request.query) query.emplace_back(uri_encode(k, true), uri_encode(v, true));
  std::sort(query.begin(), query.end());
  std::string canonical_query;
  for (const auto& [k, v] : query) {
    if (!canonical_query.empty()) canonical_query.push_back('&');
    canonical_query += k + "=" + v;
  }
  out.target = canonical_query.empty() ? canonical_uri : canonical_uri + "?" + canonical_query;

  // Headers: ours plus the request's, lower-cased, sorted, repeated names joined by ','.
  out.add_headers.emplace_back("x-amz-date", out.amz_date);
  if (options.add_content_sha256_header) out.add_headers.emplace_back("x-amz-content-sha256", request.payload_hash);
  if (!credentials.session_token.empty()) {
    out.add_headers.emplace_back("x-amz-security-token", credentials.session_token);
  }
  std::vector<std::pair<std::string, std::string>> headers;
  headers.emplace_back("host", canonical_value(request.host));
  for (const auto& [k, v] : request.headers) headers.emplace_back(lower(k), canonical_value(v));
  for (const auto& [k, v] : out.add_headers) headers.emplace_back(k, v);
  std::stable_sort(headers.begin(), headers.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::string canonical_headers;
  for (size_t i = 0; i < headers.size(); ++i) {
    if (i > 0 && headers[i].first == headers[i - 1].first) {
      canonical_headers.pop_back();  // the '\n' of the previous line
      canonical_headers += "," + headers[i].second + "\n";
      continue;
    }
    if (!out.signed_headers.empty()) out.signed_headers.push_back(';');
    out.signed_headers += headers[i].first;
    canonical_headers += headers[i].first + ":" + headers[i].second + "\n";
  }

  out.canonical_request = fmt::format("{}\n{}\n{}\n{}\n{}\n{}", request.method, canonical_uri, canonical_query,
                                      canonical_headers, out.signed_headers, request.payload_hash);
  const std::string scope = fmt::format("{}/{}/{}/aws4_request", date, options.region, options.service);
  out.string_to_sign =
      fmt::format("AWS4-HMAC-SHA256\n{}\n{}\n{}", out.amz_date, scope, sha256_hex(out.canonical_request));
  std::string key = signing_key(credentials.secret_access_key, date, options.region, options.service);
  out.signature = to_hex(hmac_sha256(key, out.string_to_sign));
  OPENSSL_cleanse(key.data(), key.size());
  out.authorization = fmt::format("AWS4-HMAC-SHA256 Credential={}/{}, SignedHeaders={}, Signature={}",
                                  credentials.access_key_id, scope, out.signed_headers, out.signature);
  out.add_headers.emplace_back("Authorization", out.authorization);
  return out;
}

}  // namespace tandem::storage::sigv4
