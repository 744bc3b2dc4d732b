#include "pg/controldata.hpp"

#include <boost/crc.hpp>

#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>

namespace tandem::pg {

namespace {

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return {};
  size_t e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

template <typename T>
bool to_number(const std::string& s, T& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

const char* to_string(ClusterState s) {
  switch (s) {
    case ClusterState::starting_up: return "starting up";
    case ClusterState::shut_down: return "shut down";
    case ClusterState::shut_down_in_recovery: return "shut down in recovery";
    case ClusterState::shutting_down: return "shutting down";
    case ClusterState::in_crash_recovery: return "in crash recovery";
    case ClusterState::in_archive_recovery: return "in archive recovery";
    case ClusterState::in_production: return "in production";
    case ClusterState::unknown: return "unknown";
  }
  return "unknown";
}

ClusterState parse_cluster_state(const std::string& text) {
  for (auto s : {ClusterState::starting_up, ClusterState::shut_down, ClusterState::shut_down_in_recovery,
                 ClusterState::shutting_down, ClusterState::in_crash_recovery, ClusterState::in_archive_recovery,
                 ClusterState::in_production}) {
    if (text == to_string(s)) return s;
  }
  return ClusterState::unknown;
}

Result<ControlData> parse_controldata(const std::string& text) {
  ControlData cd;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    // Keys never contain ':'; values may ("0:724", times).
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    cd.fields[trim(line.substr(0, colon))] = trim(line.substr(colon + 1));
  }

  auto field = [&](const char* key) -> Result<std::string> {
    auto it = cd.fields.find(key);
    if (it == cd.fields.end()) return make_error(Errc::invalid_argument, "pg_controldata: missing '{}'", key);
    return it->second;
  };
  auto lsn = [&](const char* key, Lsn& out) -> Status {
    auto v = field(key);
    if (!v) return v.error();
    auto parsed = Lsn::parse(*v);
    if (!parsed) return make_error(Errc::invalid_argument, "pg_controldata: '{}' is not an LSN: '{}'", key, *v);
    out = *parsed;
    return {};
  };
  auto number = [&](const char* key, auto& out) -> Status {
    auto v = field(key);
    if (!v) return v.error();
    if (!to_number(*v, out))
      return make_error(Errc::invalid_argument, "pg_controldata: '{}' is not a number: '{}'", key, *v);
    return {};
  };

  auto state = field("Database cluster state");
  if (!state) return state.error();
  cd.state_text = *state;
  cd.state = parse_cluster_state(*state);
  if (auto st = number("Database system identifier", cd.system_identifier); !st) return st.error();
  if (auto st = lsn("Latest checkpoint location", cd.checkpoint_lsn); !st) return st.error();
  if (auto st = lsn("Latest checkpoint's REDO location", cd.redo_lsn); !st) return st.error();
  if (auto st = number("Latest checkpoint's TimeLineID", cd.timeline); !st) return st.error();
  if (auto st = number("Latest checkpoint's PrevTimeLineID", cd.prev_timeline); !st) return st.error();
  if (auto st = lsn("Minimum recovery ending location", cd.min_recovery_end_lsn); !st) return st.error();
  if (auto st = number("Min recovery ending loc's timeline", cd.min_recovery_end_timeline); !st) return st.error();
  if (auto st = number("Data page checksum version", cd.checksum_version); !st) return st.error();
  if (auto f = cd.fields.find("Latest checkpoint's REDO WAL file"); f != cd.fields.end()) cd.redo_wal_file = f->second;
  if (auto f = cd.fields.find("wal_log_hints setting"); f != cd.fields.end()) cd.wal_log_hints = f->second == "on";
  return cd;
}

namespace {
// PostgreSQL 15 (PG_CONTROL_VERSION 1300): system_identifier (u64, offset 0),
// pg_control_version (u32, 8), catalog_version_no (u32, 12), state (enum, 16), time
// (i64, 24), checkPoint (XLogRecPtr, 32), ... and the CRC-32C of bytes [0, 288) at 288.
constexpr uint32_t kControlVersion = 1300;
constexpr size_t kCrcOffset = 288;

template <typename T>
T load(std::string_view bytes, size_t offset) {
  T v;
  std::memcpy(&v, bytes.data() + offset, sizeof v);
  return v;
}
}  // namespace

Result<ControlFileState> parse_control_file(std::string_view bytes) {
  if (bytes.size() < kCrcOffset + 4) {
    return make_error(Errc::invalid_argument, "pg_control: {} bytes, expected at least {}", bytes.size(),
                      kCrcOffset + 4);
  }
  const auto version = load<uint32_t>(bytes, 8);
  if (version != kControlVersion) {
    return make_error(Errc::invalid_argument, "pg_control: version {} is not PostgreSQL 15's ({})", version,
                      kControlVersion);
  }
  boost::crc_optimal<32, 0x1EDC6F41, 0xFFFFFFFF, 0xFFFFFFFF, true, true> crc;  // CRC-32C
  crc.process_bytes(bytes.data(), kCrcOffset);
  if (crc.checksum() != load<uint32_t>(bytes, kCrcOffset)) {
    return make_error(Errc::invalid_argument, "pg_control: CRC mismatch (torn read or damaged file)");
  }
  static constexpr ClusterState kStates[] = {
      ClusterState::starting_up,   ClusterState::shut_down,         ClusterState::shut_down_in_recovery,
      ClusterState::shutting_down, ClusterState::in_crash_recovery, ClusterState::in_archive_recovery,
      ClusterState::in_production,
  };
  const auto state = load<int32_t>(bytes, 16);
  ControlFileState out;
  out.state = state >= 0 && state < 7 ? kStates[state] : ClusterState::unknown;
  out.checkpoint_lsn = Lsn(load<uint64_t>(bytes, 32));
  return out;
}

Result<ControlFileState> read_control_file(const std::string& data_dir) {
  const std::string path = data_dir + "/global/pg_control";
  std::ifstream in(path, std::ios::binary);
  std::string bytes(kCrcOffset + 4, '\0');
  if (!in || !in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()))) {
    return make_error(Errc::io, "cannot read {}", path);
  }
  auto r = parse_control_file(bytes);
  if (!r) return make_error(r.error().code, "{}: {}", path, r.error().message);
  return r;
}

}  // namespace tandem::pg
