#include "backup/manifest.hpp"

#include <algorithm>
#include <ctime>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace tandem::backup {

namespace {

using json = nlohmann::json;

bool all_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f'); });
}

json object_json(const BackupObject& o) {
  json j = {
      {"key", o.key}, {"plaintext_bytes", o.plaintext_bytes}, {"stored_bytes", o.stored_bytes}, {"sha256", o.sha256}};
  if (!o.compression.empty()) j["compression"] = o.compression;
  return j;
}

// Reads fields with messages that name the field; collects the first error.
class Reader {
 public:
  explicit Reader(std::string what) : what_(std::move(what)) {}

  template <typename T>
  T get(const json& obj, const char* field, bool required = true) {
    auto it = obj.find(field);
    if (it == obj.end() || it->is_null()) {
      if (required) fail(field, "is missing");
      return T{};
    }
    try {
      return it->get<T>();
    } catch (const json::exception&) {
      fail(field, fmt::format("has the wrong type ({})", it->type_name()));
      return T{};
    }
  }
  Lsn lsn(const json& obj, const char* field) {
    auto text = get<std::string>(obj, field);
    if (!err_ && !text.empty()) {
      auto v = Lsn::parse(text);
      if (v) return *v;
      fail(field, fmt::format("is not an LSN: '{}'", text));
    }
    return Lsn{};
  }
  void fail(const char* field, const std::string& why) {
    if (!err_) err_ = make_error(Errc::protocol, "backup manifest {}: field '{}' {}", what_, field, why);
  }
  const std::optional<Error>& error() const { return err_; }

 private:
  std::string what_;
  std::optional<Error> err_;
};

}  // namespace

std::string manifest_to_json(const BackupManifest& m) {
  json objects = json::array();
  for (const auto& o : m.objects) objects.push_back(object_json(o));
  json tablespaces = json::array();
  for (const auto& t : m.tablespaces) tablespaces.push_back({{"oid", t.oid}, {"location", t.location}, {"key", t.key}});
  json j = {{"format", m.format},
            {"id", m.id},
            {"cluster", m.cluster},
            {"system_identifier", m.system_identifier},
            {"pg_version", m.pg_version},
            {"timeline", m.timeline},
            {"start_lsn", m.start_lsn.to_string()},
            {"stop_lsn", m.stop_lsn.to_string()},
            {"start_wal", m.start_wal},
            {"stop_wal", m.stop_wal},
            {"wal_segment_size", m.wal_segment_size},
            {"start_time", m.start_time},
            {"stop_time", m.stop_time},
            {"bytes", m.bytes},
            {"stored_bytes", m.stored_bytes},
            {"objects", objects},
            {"tablespaces", tablespaces},
            {"key_id", m.key_id},
            {"label", m.label}};
  return j.dump(2) + "\n";
}

Result<BackupManifest> manifest_from_json(std::string_view text, const std::string& what) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return make_error(Errc::protocol, "backup manifest {}: not a JSON object", what);
  }
  Reader r(what);
  BackupManifest m;
  m.format = r.get<int>(j, "format");
  if (!r.error() && m.format != 1) r.fail("format", fmt::format("is {}, this tandem reads format 1", m.format));
  m.id = r.get<std::string>(j, "id");
  m.cluster = r.get<std::string>(j, "cluster", false);
  m.system_identifier = r.get<std::string>(j, "system_identifier");
  m.pg_version = r.get<int>(j, "pg_version");
  m.timeline = r.get<uint32_t>(j, "timeline");
  m.start_lsn = r.lsn(j, "start_lsn");
  m.stop_lsn = r.lsn(j, "stop_lsn");
  m.start_wal = r.get<std::string>(j, "start_wal");
  m.stop_wal = r.get<std::string>(j, "stop_wal");
  m.wal_segment_size = r.get<uint64_t>(j, "wal_segment_size");
  m.start_time = r.get<std::string>(j, "start_time");
  m.stop_time = r.get<std::string>(j, "stop_time");
  m.bytes = r.get<uint64_t>(j, "bytes");
  m.stored_bytes = r.get<uint64_t>(j, "stored_bytes");
  m.key_id = r.get<std::string>(j, "key_id", false);
  m.label = r.get<std::string>(j, "label", false);
  if (!r.error()) {
    if (!j.contains("objects") || !j["objects"].is_array()) r.fail("objects", "is not a list");
  }
  if (!r.error()) {
    for (const auto& o : j["objects"]) {
      if (!o.is_object()) {
        r.fail("objects", "has an entry that is not an object");
        break;
      }
      BackupObject obj;
      obj.key = r.get<std::string>(o, "key");
      obj.plaintext_bytes = r.get<uint64_t>(o, "plaintext_bytes");
      obj.stored_bytes = r.get<uint64_t>(o, "stored_bytes");
      obj.sha256 = r.get<std::string>(o, "sha256");
      obj.compression = r.get<std::string>(o, "compression", false);
      if (!r.error() && !obj.compression.empty() && obj.compression != "zstd") {
        r.fail("compression", fmt::format("is '{}', this tandem reads zstd", obj.compression));
      }
      if (!r.error() && (obj.sha256.size() != 64 || !all_hex(obj.sha256))) r.fail("sha256", "is not 64 hex digits");
      m.objects.push_back(std::move(obj));
    }
  }
  if (!r.error() && j.contains("tablespaces")) {
    for (const auto& t : j["tablespaces"]) {
      BackupTablespace ts;
      ts.oid = r.get<uint32_t>(t, "oid");
      ts.location = r.get<std::string>(t, "location");
      ts.key = r.get<std::string>(t, "key");
      m.tablespaces.push_back(std::move(ts));
    }
  }
  if (!r.error() && m.wal_segment_size == 0) r.fail("wal_segment_size", "is 0");
  if (r.error()) return *r.error();
  return m;
}

std::string make_backup_id(std::chrono::system_clock::time_point t, const std::vector<std::string>& taken) {
  std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  std::string base = fmt::format("{:04}{:02}{:02}T{:02}{:02}{:02}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                                 tm.tm_hour, tm.tm_min, tm.tm_sec);
  auto is_taken = [&](const std::string& id) { return std::find(taken.begin(), taken.end(), id) != taken.end(); };
  if (!is_taken(base)) return base;
  for (int n = 2;; ++n) {
    std::string id = fmt::format("{}-{}", base, n);
    if (!is_taken(id)) return id;
  }
}

namespace {

// Parses "YYYYMMDDTHHMMSSZ" (digits at fixed positions).
std::optional<std::chrono::system_clock::time_point> parse_compact(std::string_view s) {
  if (s.size() != 16 || s[8] != 'T' || s[15] != 'Z') return std::nullopt;
  auto num = [&](size_t pos, size_t len) -> int {
    int v = 0;
    for (size_t i = pos; i < pos + len; ++i) {
      if (s[i] < '0' || s[i] > '9') return -1;
      v = v * 10 + (s[i] - '0');
    }
    return v;
  };
  std::tm tm{};
  tm.tm_year = num(0, 4) - 1900;
  tm.tm_mon = num(4, 2) - 1;
  tm.tm_mday = num(6, 2);
  tm.tm_hour = num(9, 2);
  tm.tm_min = num(11, 2);
  tm.tm_sec = num(13, 2);
  if (tm.tm_year < 0 || tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour < 0 ||
      tm.tm_hour > 23 || tm.tm_min < 0 || tm.tm_min > 59 || tm.tm_sec < 0 || tm.tm_sec > 60) {
    return std::nullopt;
  }
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

}  // namespace

std::optional<std::chrono::system_clock::time_point> backup_id_time(std::string_view id) {
  auto dash = id.find('-');
  std::string_view base = id.substr(0, dash);
  if (dash != std::string_view::npos) {
    std::string_view n = id.substr(dash + 1);
    if (n.empty() || !std::all_of(n.begin(), n.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return std::nullopt;
    }
  }
  return parse_compact(base);
}

std::string format_utc(std::chrono::system_clock::time_point t) {
  std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec);
}

std::optional<std::chrono::system_clock::time_point> parse_utc(std::string_view text) {
  // "YYYY-MM-DDTHH:MM:SSZ" -> "YYYYMMDDTHHMMSSZ"
  if (text.size() != 20 || text[4] != '-' || text[7] != '-' || text[10] != 'T' || text[13] != ':' || text[16] != ':') {
    return std::nullopt;
  }
  std::string compact;
  for (char c : text) {
    if (c != '-' && c != ':') compact += c;
  }
  return parse_compact(compact);
}

std::string human_bytes(uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  if (u == 0) return fmt::format("{} B", n);
  if (v < 10) return fmt::format("{:.1f} {}", v, units[u]);
  return fmt::format("{:.0f} {}", v, units[u]);
}

}  // namespace tandem::backup
