#pragma once
// ObjectStore: where backups and archived WAL live. Keys are relative paths such as
// "wal/000000010000000000000001"; the store maps them under its root (a directory or an
// S3 bucket + prefix). A put is all-or-nothing and durable when it returns success;
// readers never see a partly written object.
//
// Backends: FileObjectStore ("file:///var/lib/tandem/backups") and S3ObjectStore
// ("s3://bucket/prefix"). A store instance is used by one thread at a time (the S3 store
// keeps one pooled connection); create one per thread for parallel transfers.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.hpp"
#include "base/secret.hpp"
#include "storage/crypto.hpp"

namespace tandem::storage {

struct ObjectInfo {
  std::string key;  // relative to the store's root
  uint64_t size = 0;
  std::string etag;  // backend-specific; empty for the file store
};

// Produces the bytes of a streamed put: fills `buf` with up to `cap` bytes and returns how
// many, 0 at the end.
using ByteSource = std::function<Result<size_t>(char* buf, size_t cap)>;

class ObjectStore {
 public:
  virtual ~ObjectStore() = default;

  // The store's URL for messages (never contains credentials).
  virtual std::string url() const = 0;

  virtual Status put(const std::string& key, std::string_view data) = 0;
  // Streams a (possibly large) object; nothing is visible under `key` until it all arrived.
  virtual Status put_stream(const std::string& key, const ByteSource& source) = 0;

  // Errc::not_found names the key and the store when the object does not exist.
  virtual Result<std::string> get(const std::string& key) = 0;
  // Streams the object into `sink`. On error the sink may have received a prefix.
  virtual Status get_stream(const std::string& key, const ByteSink& sink) = 0;

  // nullopt when the object does not exist.
  virtual Result<std::optional<ObjectInfo>> head(const std::string& key) = 0;
  Result<bool> exists(const std::string& key);

  // All objects whose key starts with `prefix`, sorted by key.
  virtual Result<std::vector<ObjectInfo>> list(const std::string& prefix) = 0;

  // Deleting a missing object succeeds.
  virtual Status del(const std::string& key) = 0;
};

// Checks a key: non-empty, relative, no "." or ".." segments, no empty segments, no NUL
// or control characters, at most 1024 bytes.
Status validate_key(std::string_view key);

struct StoreOptions {
  // S3 only. Unset fields come from the URL's query (?endpoint=...&region=...&style=path)
  // and then from the environment (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID,
  // AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) or the credentials file.
  std::string endpoint;  // "http://127.0.0.1:9000"; default https://s3.<region>.amazonaws.com
  std::string ca_file;   // https endpoints: PEM CA bundle (also ?ca_file= or AWS_CA_BUNDLE); default: system store
  std::string region;    // default us-east-1
  std::string access_key_id;
  Secret secret_access_key;
  std::string session_token;
  std::string credentials_file;     // INI like ~/.aws/credentials, [default] or `profile`; mode 0600
  std::string profile = "default";  // section of credentials_file
  std::optional<bool> path_style;   // default true (path-style addressing)
  size_t part_size = 8u << 20;      // multipart above this size, parts of this size
  int list_page_size = 1000;        // keys per listing request (1..1000)
  int max_attempts = 5;             // per request, first try included
  std::chrono::milliseconds retry_base_delay{200};
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds io_timeout{30000};  // per read/write on the socket
};

// "file:///abs/dir" or "s3://bucket[/prefix][?endpoint=URL&region=R&style=path|virtual&ca_file=PATH]".
Result<std::unique_ptr<ObjectStore>> make_object_store(const std::string& url, const StoreOptions& options = {});

}  // namespace tandem::storage
