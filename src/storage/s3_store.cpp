#include "storage/s3_store.hpp"

#include <charconv>
#include <cstring>
#include <random>
#include <thread>

#include <unistd.h>

#include "storage/digest.hpp"
#include "storage/s3_xml.hpp"

namespace tandem::storage {

namespace {

constexpr size_t kMinPartSize = 5u << 20;

Errc errc_for_status(int status) {
  switch (status) {
    case 400: return Errc::invalid_argument;
    case 401:
    case 403: return Errc::permission_denied;
    case 404: return Errc::not_found;
    case 409:
    case 412: return Errc::conflict;
    default: return status >= 500 || status == 429 ? Errc::unavailable : Errc::protocol;
  }
}

uint64_t parse_u64(const std::string& s) {
  uint64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

// Reads from `source` until `buf` holds `want` bytes or the source ends.
Result<size_t> fill(const ByteSource& source, std::string& buf, size_t want) {
  buf.resize(want);
  size_t have = 0;
  while (have < want) {
    auto n = source(buf.data() + have, want - have);
    if (!n) return n.error();
    if (*n == 0) break;
    have += *n;
  }
  buf.resize(have);
  return have;
}

}  // namespace

S3ObjectStore::S3ObjectStore(S3Config config)
    : config_(std::move(config)),
      conn_(config_.path_style ? config_.host : config_.bucket + "." + config_.host, config_.port,
            config_.connect_timeout, config_.io_timeout, HttpTls{config_.https, config_.ca_file}) {}

Result<std::unique_ptr<S3ObjectStore>> S3ObjectStore::create(S3Config config) {
  if (config.bucket.empty()) return make_error(Errc::invalid_argument, "S3 store needs a bucket name");
  if (config.host.empty()) return make_error(Errc::invalid_argument, "S3 store needs an endpoint host");
  if (!config.ca_file.empty() && ::access(config.ca_file.c_str(), R_OK) != 0) {
    return make_error(Errc::invalid_argument, "S3 endpoint {}: cannot read CA file {}: {}", config.host, config.ca_file,
                      std::strerror(errno));
  }
  if (config.credentials.access_key_id.empty() || config.credentials.secret_access_key.empty()) {
    return make_error(Errc::invalid_argument,
                      "S3 store s3://{}: no credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or give a "
                      "credentials file",
                      config.bucket);
  }
  if (config.part_size < kMinPartSize) {
    return make_error(Errc::invalid_argument, "S3 part size {} is below S3's minimum of {} bytes", config.part_size,
                      kMinPartSize);
  }
  if (config.max_attempts < 1) config.max_attempts = 1;
  if (config.list_page_size < 1 || config.list_page_size > 1000) {
    return make_error(Errc::invalid_argument, "S3 list page size {} is outside [1, 1000]", config.list_page_size);
  }
  return std::unique_ptr<S3ObjectStore>(new S3ObjectStore(std::move(config)));
}

std::string S3ObjectStore::url() const {
  return config_.prefix.empty() ? "s3://" + config_.bucket : "s3://" + config_.bucket + "/" + config_.prefix;
}

std::string S3ObjectStore::full_key(const std::string& key) const {
  return config_.prefix.empty() ? key : config_.prefix + "/" + key;
}

Result<HttpResponse> S3ObjectStore::attempt(const Call& call, const ByteSink* sink) {
  sigv4::Request req;
  req.method = call.method;
  const bool default_port = config_.port == (config_.https ? "443" : "80");
  std::string host = config_.path_style ? config_.host : config_.bucket + "." + config_.host;
  req.host = default_port ? host : host + ":" + config_.port;
  // Bucket-level requests go to "/bucket" without a trailing slash: S3 accepts both, and
  // some S3 imitations verify the signature against the path with the slash dropped.
  if (config_.path_style) {
    req.path = "/" + config_.bucket + (call.key.empty() ? "" : "/" + full_key(call.key));
  } else {
    req.path = "/" + (call.key.empty() ? "" : full_key(call.key));
  }
  req.query = call.query;
  req.headers = call.headers;
  req.payload_hash = call.sign_body ? sha256_hex(call.body) : std::string(sigv4::kUnsignedPayload);
  sigv4::Options opts;
  opts.region = config_.region;
  auto signed_req = sigv4::sign(req, config_.credentials, opts, config_.clock());

  sigv4::HeaderList headers;
  headers.emplace_back("Host", req.host);
  for (const auto& h : call.headers) headers.push_back(h);
  for (const auto& h : signed_req.add_headers) headers.push_back(h);
  return conn_.send(call.method, signed_req.target, headers, call.body, sink);
}

bool S3ObjectStore::retryable(const Result<HttpResponse>& r) const {
  if (!r) return r.error().code == Errc::unavailable || r.error().code == Errc::timeout;
  int s = r->status;
  if (s >= 500 || s == 429) return true;
  return s == 400 && s3xml::first(r->body, "Code") == "RequestTimeout";
}

void S3ObjectStore::backoff(int attempt) {
  ++retries_;
  thread_local std::mt19937 rng(std::random_device{}());
  auto cap = std::chrono::milliseconds(10000);
  auto base = config_.retry_base_delay * (1 << std::min(attempt, 10));
  auto delay = std::min<std::chrono::milliseconds>(base, cap);
  // Full jitter in [delay/2, delay].
  std::uniform_int_distribution<int64_t> dist(delay.count() / 2, delay.count());
  std::this_thread::sleep_for(std::chrono::milliseconds(dist(rng)));
}

Result<HttpResponse> S3ObjectStore::execute(const Call& call, const ByteSink* sink) {
  for (int i = 0;; ++i) {
    auto r = attempt(call, sink);
    if (i + 1 >= config_.max_attempts || !retryable(r)) return r;
    conn_.close();
    backoff(i);
  }
}

Error S3ObjectStore::status_error(const Call& call, const HttpResponse& resp) const {
  std::string code = s3xml::first(resp.body, "Code");
  std::string message = s3xml::first(resp.body, "Message");
  std::string what = call.key.empty() ? url() : url() + "/" + call.key;
  if (resp.status == 404 && call.method != "HEAD") {
    return make_error(Errc::not_found, "object '{}' not found in {} ({} {})", call.key, url(), resp.status,
                      code.empty() ? "Not Found" : code);
  }
  std::string hint;
  if (code == "SignatureDoesNotMatch") hint = "; check the secret access key and the region";
  if (code == "InvalidAccessKeyId") hint = "; check the access key id";
  return make_error(errc_for_status(resp.status), "S3 {} {} failed: HTTP {} {}{}{}{}", call.method, what, resp.status,
                    code.empty() ? "(no error code)" : code, message.empty() ? "" : ": ", message, hint);
}

Status S3ObjectStore::put(const std::string& key, std::string_view data) {
  if (auto s = validate_key(key); !s) return s;
  if (data.size() > config_.part_size) {
    return put_stream(key, [data](char* buf, size_t cap) mutable -> Result<size_t> {
      size_t n = std::min(cap, data.size());
      std::memcpy(buf, data.data(), n);
      data.remove_prefix(n);
      return n;
    });
  }
  Call call{"PUT", key, {}, {{"Content-Type", "application/octet-stream"}}, data};
  auto r = execute(call);
  if (!r) return r.error();
  if (r->status / 100 != 2) return status_error(call, *r);
  return {};
}

Status S3ObjectStore::put_stream(const std::string& key, const ByteSource& source) {
  if (auto s = validate_key(key); !s) return s;
  std::string first;
  // One byte past a part tells whether a single PUT suffices.
  auto n = fill(source, first, config_.part_size + 1);
  if (!n) return n.error();
  if (*n <= config_.part_size) return put(key, first);
  return put_multipart(key, std::move(first), source);
}

Status S3ObjectStore::put_multipart(const std::string& key, std::string first_part, const ByteSource& source) {
  Call create{"POST", key, {{"uploads", ""}}, {{"Content-Type", "application/octet-stream"}}, {}};
  auto created = execute(create);
  if (!created) return created.error();
  if (created->status / 100 != 2) return status_error(create, *created);
  const std::string upload_id = s3xml::first(created->body, "UploadId");
  if (upload_id.empty()) {
    return make_error(Errc::protocol, "S3 {}: CreateMultipartUpload for '{}' returned no UploadId", url(), key);
  }
  auto abort = [&](Error e) -> Status {
    Call del{"DELETE", key, {{"uploadId", upload_id}}, {}, {}};
    (void)execute(del);  // best effort; a lifecycle rule cleans up what this misses
    return e;
  };

  std::string complete = "<CompleteMultipartUpload>";
  std::string part = std::move(first_part);
  std::string carry;  // the byte read past the first part
  carry.push_back(part.back());
  part.pop_back();
  for (int number = 1;; ++number) {
    if (number > 10000)
      return abort(make_error(Errc::invalid_argument, "object '{}' needs more than 10000 parts", key));
    Call up{"PUT", key, {{"partNumber", std::to_string(number)}, {"uploadId", upload_id}}, {}, part};
    auto r = execute(up);
    if (!r) return abort(r.error());
    if (r->status / 100 != 2) return abort(status_error(up, *r));
    std::string etag = r->header("etag");
    if (etag.empty())
      return abort(make_error(Errc::protocol, "S3 {}: part {} of '{}' got no ETag", url(), number, key));
    complete +=
        "<Part><PartNumber>" + std::to_string(number) + "</PartNumber><ETag>" + s3xml::escape(etag) + "</ETag></Part>";
    // Next part: the carried byte plus what the source has.
    std::string next;
    auto got = fill(source, next, config_.part_size - carry.size());
    if (!got) return abort(got.error());
    part = carry + next;
    carry.clear();
    if (part.empty()) break;
  }
  complete += "</CompleteMultipartUpload>";
  Call finish{"POST", key, {{"uploadId", upload_id}}, {{"Content-Type", "application/xml"}}, complete};
  auto r = execute(finish);
  if (!r) return abort(r.error());
  // CompleteMultipartUpload can fail with 200 and an <Error> body.
  if (r->status / 100 != 2 || r->body.find("<Error>") != std::string::npos) return abort(status_error(finish, *r));
  return {};
}

Result<std::string> S3ObjectStore::get(const std::string& key) {
  std::string out;
  auto s = get_stream(key, [&out](std::string_view b) {
    out.append(b);
    return Status{};
  });
  if (!s) return s.error();
  return out;
}

Status S3ObjectStore::get_stream(const std::string& key, const ByteSink& sink) {
  if (auto s = validate_key(key); !s) return s;
  uint64_t delivered = 0;
  ByteSink counting = [&](std::string_view b) {
    delivered += b.size();
    return sink(b);
  };
  for (int i = 0;; ++i) {
    Call call{"GET", key, {}, {}, {}};
    // After a broken transfer, continue where the sink stopped.
    if (delivered > 0) call.headers.emplace_back("Range", "bytes=" + std::to_string(delivered) + "-");
    uint64_t before = delivered;
    auto r = attempt(call, &counting);
    if (r && (r->status == 200 || r->status == 206)) {
      if ((before > 0) != (r->status == 206)) {
        return make_error(
            Errc::protocol,
            "S3 {}: reading '{}' from byte {} got HTTP {}: a server that ignores or invents ranges cannot be resumed",
            url(), key, before, r->status);
      }
      return {};
    }
    if (!r && r.error().code != Errc::unavailable && r.error().code != Errc::timeout) return r.error();  // sink
    if (i + 1 >= config_.max_attempts || !retryable(r)) return r ? status_error(call, *r) : Status(r.error());
    conn_.close();
    backoff(i);
  }
}

Result<std::optional<ObjectInfo>> S3ObjectStore::head(const std::string& key) {
  if (auto s = validate_key(key); !s) return s.error();
  Call call{"HEAD", key, {}, {}, {}};
  auto r = execute(call);
  if (!r) return r.error();
  if (r->status == 404) return std::optional<ObjectInfo>{};
  if (r->status / 100 != 2) return status_error(call, *r);
  return std::optional<ObjectInfo>(ObjectInfo{key, parse_u64(r->header("content-length")), r->header("etag")});
}

Result<std::vector<ObjectInfo>> S3ObjectStore::list(const std::string& prefix) {
  std::vector<ObjectInfo> out;
  const std::string root = config_.prefix.empty() ? "" : config_.prefix + "/";
  std::string token;
  for (int page = 0; page < 1000000; ++page) {
    Call call{"GET",
              "",
              {{"list-type", "2"}, {"max-keys", std::to_string(config_.list_page_size)}, {"prefix", root + prefix}},
              {},
              {}};
    if (!token.empty()) call.query.emplace_back("continuation-token", token);
    auto r = execute(call);
    if (!r) return r.error();
    if (r->status / 100 != 2) return status_error(call, *r);
    for (auto block : s3xml::blocks(r->body, "Contents")) {
      std::string full = s3xml::first(block, "Key");
      if (!full.starts_with(root)) continue;
      out.push_back(
          ObjectInfo{full.substr(root.size()), parse_u64(s3xml::first(block, "Size")), s3xml::first(block, "ETag")});
    }
    if (s3xml::first(r->body, "IsTruncated") != "true") break;
    token = s3xml::first(r->body, "NextContinuationToken");
    if (token.empty()) {
      return make_error(Errc::protocol, "S3 {}: a truncated listing came without a continuation token", url());
    }
  }
  std::sort(out.begin(), out.end(), [](const ObjectInfo& a, const ObjectInfo& b) { return a.key < b.key; });
  return out;
}

Status S3ObjectStore::del(const std::string& key) {
  if (auto s = validate_key(key); !s) return s;
  Call call{"DELETE", key, {}, {}, {}};
  auto r = execute(call);
  if (!r) return r.error();
  if (r->status / 100 != 2 && r->status != 404) return status_error(call, *r);
  return {};
}

}  // namespace tandem::storage
