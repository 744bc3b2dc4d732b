#pragma once
// S3ObjectStore: objects in an S3-compatible bucket under an optional prefix, signed with
// SigV4. Path-style addressing by default (virtual-hosted on request), multipart upload for
// streams larger than one part, retries with exponential backoff and jitter on 5xx, 429
// and connection errors, and resumption of an interrupted download with a Range request.
// Keeps one keep-alive connection: use an instance from one thread at a time.
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "storage/http_conn.hpp"
#include "storage/object_store.hpp"
#include "storage/sigv4.hpp"

namespace tandem::storage {

struct S3Config {
  std::string bucket;
  std::string prefix;  // without leading or trailing '/'; may be empty
  std::string host;    // endpoint host name or address
  std::string port = "443";
  bool https = false;
  std::string ca_file;  // https: PEM bundle that verifies the endpoint; empty: the system's trust store
  bool path_style = true;
  std::string region = "us-east-1";
  sigv4::Credentials credentials;
  size_t part_size = 8u << 20;  // S3 requires >= 5 MiB for all parts but the last
  int list_page_size = 1000;    // max-keys per ListObjectsV2 page
  int max_attempts = 5;
  std::chrono::milliseconds retry_base_delay{200};
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds io_timeout{30000};
  // Injected for tests; the signer's clock.
  std::function<std::chrono::system_clock::time_point()> clock = [] { return std::chrono::system_clock::now(); };
};

class S3ObjectStore : public ObjectStore {
 public:
  static Result<std::unique_ptr<S3ObjectStore>> create(S3Config config);

  std::string url() const override;
  Status put(const std::string& key, std::string_view data) override;
  Status put_stream(const std::string& key, const ByteSource& source) override;
  Result<std::string> get(const std::string& key) override;
  Status get_stream(const std::string& key, const ByteSink& sink) override;
  Result<std::optional<ObjectInfo>> head(const std::string& key) override;
  Result<std::vector<ObjectInfo>> list(const std::string& prefix) override;
  Status del(const std::string& key) override;

  // Requests that were retried since creation (for tests and metrics).
  int retries() const { return retries_; }

 private:
  struct Call {
    std::string method;
    std::string key;  // store-relative key; empty for bucket-level requests
    sigv4::HeaderList query;
    sigv4::HeaderList headers;
    std::string_view body;
    bool sign_body = true;  // hash the body into the signature (else UNSIGNED-PAYLOAD)
  };

  explicit S3ObjectStore(S3Config config);
  std::string full_key(const std::string& key) const;
  // One attempt, no retry.
  Result<HttpResponse> attempt(const Call& call, const ByteSink* sink);
  // Retries transport errors and retryable statuses; returns the last response otherwise.
  Result<HttpResponse> execute(const Call& call, const ByteSink* sink = nullptr);
  bool retryable(const Result<HttpResponse>& r) const;
  void backoff(int attempt);
  Error status_error(const Call& call, const HttpResponse& resp) const;

  Status put_multipart(const std::string& key, std::string first_part, const ByteSource& source);

  S3Config config_;
  HttpConnection conn_;
  int retries_ = 0;
};

}  // namespace tandem::storage
