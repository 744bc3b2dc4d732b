// make_object_store(): URL parsing, credential lookup, and the shared key rules.
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>

#include "storage/file_store.hpp"
#include "storage/object_store.hpp"
#include "storage/s3_store.hpp"

namespace tandem::storage {

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string() : std::string(v);
}

std::string trim(std::string s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  size_t e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Decodes %XX in a URL component; an error for a malformed escape.
Result<std::string> percent_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    if (i + 2 >= s.size()) {
      return make_error(Errc::invalid_argument, "malformed %-escape in '{}'", s);
    }
    int hi = hex_digit(s[i + 1]);
    int lo = hex_digit(s[i + 2]);
    if (hi < 0 || lo < 0) return make_error(Errc::invalid_argument, "malformed %-escape in '{}'", s);
    out.push_back(static_cast<char>((hi << 4) | lo));
    i += 2;
  }
  return out;
}

struct Endpoint {
  bool https = false;
  std::string host;
  std::string port;
};

Result<Endpoint> parse_endpoint(const std::string& url) {
  Endpoint ep;
  std::string rest;
  if (url.starts_with("http://")) {
    rest = url.substr(7);
    ep.port = "80";
  } else if (url.starts_with("https://")) {
    rest = url.substr(8);
    ep.https = true;
    ep.port = "443";
  } else {
    return make_error(Errc::invalid_argument, "S3 endpoint '{}' must start with http:// or https://", url);
  }
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  if (rest.find('/') != std::string::npos) {
    return make_error(Errc::invalid_argument, "S3 endpoint '{}' must not have a path", url);
  }
  auto colon = rest.rfind(':');
  if (colon != std::string::npos && rest.find(']') == std::string::npos) {
    ep.port = rest.substr(colon + 1);
    rest = rest.substr(0, colon);
    if (ep.port.empty() || ep.port.find_first_not_of("0123456789") != std::string::npos) {
      return make_error(Errc::invalid_argument, "S3 endpoint '{}' has a bad port", url);
    }
  }
  if (rest.empty()) return make_error(Errc::invalid_argument, "S3 endpoint '{}' has no host", url);
  ep.host = rest;
  return ep;
}

// Reads [profile] aws_access_key_id / aws_secret_access_key / aws_session_token from an
// INI credentials file, which must not be readable by group or others.
Status read_credentials_file(const std::string& path, const std::string& profile, sigv4::Credentials& out) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return make_error(Errc::not_found, "S3 credentials file {} does not exist", path);
  }
  if ((st.st_mode & 077) != 0) {
    return make_error(Errc::permission_denied,
                      "S3 credentials file {} is readable by group or others; run chmod 600 {}", path, path);
  }
  std::ifstream in(path);
  if (!in) return make_error(Errc::io, "cannot read S3 credentials file {}", path);
  std::string line;
  std::string section;
  bool found = false;
  while (std::getline(in, line)) {
    line = trim(line);
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line.front() == '[' && line.back() == ']') {
      section = trim(line.substr(1, line.size() - 2));
      if (section.starts_with("profile ")) section = trim(section.substr(8));
      continue;
    }
    if (section != profile) continue;
    auto eq = line.find('=');
    if (eq == std::string::npos) continue;
    std::string k = trim(line.substr(0, eq));
    std::string v = trim(line.substr(eq + 1));
    if (k == "aws_access_key_id") {
      out.access_key_id = v;
      found = true;
    } else if (k == "aws_secret_access_key") {
      out.secret_access_key = Secret(v);
    } else if (k == "aws_session_token") {
      out.session_token = v;
    }
  }
  if (!found || out.secret_access_key.empty()) {
    return make_error(Errc::invalid_argument, "S3 credentials file {} has no complete [{}] profile", path, profile);
  }
  return {};
}

Result<std::unique_ptr<ObjectStore>> make_s3(const std::string& url, const StoreOptions& options) {
  std::string rest = url.substr(5);
  std::string query;
  if (auto q = rest.find('?'); q != std::string::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  S3Config c;
  auto slash = rest.find('/');
  c.bucket = rest.substr(0, slash);
  if (slash != std::string::npos) c.prefix = rest.substr(slash + 1);
  while (!c.prefix.empty() && c.prefix.back() == '/') c.prefix.pop_back();
  if (c.bucket.empty()) return make_error(Errc::invalid_argument, "'{}' names no bucket", url);
  if (!c.prefix.empty()) {
    if (auto s = validate_key(c.prefix); !s) {
      return make_error(Errc::invalid_argument, "'{}' has a bad prefix: {}", url, s.error().message);
    }
  }

  std::string endpoint = options.endpoint;
  std::string region = options.region;
  std::optional<bool> path_style = options.path_style;
  std::string ca_file = options.ca_file;
  std::string_view q = query;
  while (!q.empty()) {
    auto amp = q.find('&');
    std::string_view item = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
    auto eq = item.find('=');
    std::string k(item.substr(0, eq));
    auto v = percent_decode(eq == std::string_view::npos ? std::string_view() : item.substr(eq + 1));
    if (!v) return v.error();
    if (k == "endpoint") {
      if (endpoint.empty()) endpoint = *v;
    } else if (k == "region") {
      if (region.empty()) region = *v;
    } else if (k == "style") {
      if (*v != "path" && *v != "virtual") {
        return make_error(Errc::invalid_argument, "'{}': style must be path or virtual", url);
      }
      if (!path_style) path_style = *v == "path";
    } else if (k == "ca_file") {
      if (ca_file.empty()) ca_file = *v;
    } else {
      return make_error(Errc::invalid_argument,
                        "'{}': unknown parameter '{}' (known: endpoint, region, style, ca_file)", url, k);
    }
  }
  if (region.empty()) region = env("AWS_REGION");
  if (region.empty()) region = env("AWS_DEFAULT_REGION");
  if (region.empty()) region = "us-east-1";
  if (endpoint.empty()) endpoint = env("AWS_ENDPOINT_URL_S3");
  if (endpoint.empty()) endpoint = env("AWS_ENDPOINT_URL");
  if (endpoint.empty()) endpoint = "https://s3." + region + ".amazonaws.com";
  auto ep = parse_endpoint(endpoint);
  if (!ep) return ep.error();
  c.host = ep->host;
  c.port = ep->port;
  c.https = ep->https;
  if (ca_file.empty()) ca_file = env("AWS_CA_BUNDLE");
  if (c.https) c.ca_file = ca_file;
  c.region = region;
  c.path_style = path_style.value_or(true);

  c.credentials.access_key_id = options.access_key_id;
  c.credentials.secret_access_key = options.secret_access_key;
  c.credentials.session_token = options.session_token;
  if (c.credentials.access_key_id.empty() && !env("AWS_ACCESS_KEY_ID").empty()) {
    c.credentials.access_key_id = env("AWS_ACCESS_KEY_ID");
    c.credentials.secret_access_key = Secret(env("AWS_SECRET_ACCESS_KEY"));
    c.credentials.session_token = env("AWS_SESSION_TOKEN");
  }
  if (c.credentials.access_key_id.empty()) {
    std::string file = options.credentials_file;
    if (file.empty()) file = env("AWS_SHARED_CREDENTIALS_FILE");
    if (!file.empty()) {
      if (auto s = read_credentials_file(file, options.profile, c.credentials); !s) return s.error();
    }
  }
  c.part_size = options.part_size;
  c.list_page_size = options.list_page_size;
  c.max_attempts = options.max_attempts;
  c.retry_base_delay = options.retry_base_delay;
  c.connect_timeout = options.connect_timeout;
  c.io_timeout = options.io_timeout;
  auto store = S3ObjectStore::create(std::move(c));
  if (!store) return store.error();
  return std::unique_ptr<ObjectStore>(std::move(store.value()));
}

}  // namespace

Result<bool> ObjectStore::exists(const std::string& key) {
  auto h = head(key);
  if (!h) return h.error();
  return h->has_value();
}

Status validate_key(std::string_view key) {
  if (key.empty()) return make_error(Errc::invalid_argument, "object key is empty");
  if (key.size() > 1024) return make_error(Errc::invalid_argument, "object key is longer than 1024 bytes");
  for (unsigned char c : key) {
    if (c < 0x20 || c == 0x7F) {
      return make_error(Errc::invalid_argument, "object key '{}' contains a control character", key);
    }
  }
  size_t start = 0;
  while (true) {
    size_t slash = key.find('/', start);
    std::string_view seg = key.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (seg.empty() || seg == "." || seg == "..") {
      return make_error(Errc::invalid_argument,
                        "object key '{}' has an empty, '.' or '..' segment (keys are relative paths like a/b)", key);
    }
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return {};
}

Result<std::unique_ptr<ObjectStore>> make_object_store(const std::string& url, const StoreOptions& options) {
  if (url.starts_with("file://")) {
    auto decoded = percent_decode(url.substr(7));
    if (!decoded) return decoded.error();
    auto store = FileObjectStore::open(*decoded);
    if (!store) return store.error();
    return std::unique_ptr<ObjectStore>(std::move(store.value()));
  }
  if (url.starts_with("s3://")) return make_s3(url, options);
  return make_error(Errc::invalid_argument, "unsupported store URL '{}': use file:///DIR or s3://BUCKET/PREFIX", url);
}

}  // namespace tandem::storage
