#include "pg/archiver.hpp"

#include <filesystem>

namespace tandem::pg {

namespace {

int64_t to_int(const Value& v) {
  if (!v || v->empty()) return 0;
  try {
    return std::stoll(*v);
  } catch (const std::exception&) {
    return 0;
  }
}

// (timeline, segment number) of a 24-hex segment name.
std::optional<std::pair<uint32_t, uint64_t>> parse_segment(const std::string& name, uint64_t segment_size) {
  if (name.size() != 24 || name.find_first_not_of("0123456789ABCDEF") != std::string::npos) return std::nullopt;
  uint32_t tli = static_cast<uint32_t>(std::stoul(name.substr(0, 8), nullptr, 16));
  uint64_t log = std::stoull(name.substr(8, 8), nullptr, 16);
  uint64_t seg = std::stoull(name.substr(16, 8), nullptr, 16);
  return std::make_pair(tli, log * ((uint64_t{1} << 32) / segment_size) + seg);
}

}  // namespace

std::optional<int64_t> ArchiverStatus::lag_segments(uint64_t segment_size) const {
  auto cur = parse_segment(current_wal, segment_size);
  if (!cur) return std::nullopt;
  auto last = parse_segment(last_archived_wal, segment_size);
  if (!last || last->first != cur->first) return std::nullopt;
  return std::max<int64_t>(0, static_cast<int64_t>(cur->second) - static_cast<int64_t>(last->second) - 1);
}

Result<ArchiverStatus> query_archiver(Connection& conn, const std::string& data_dir) {
  auto rows = conn.exec(
      "SELECT archived_count, coalesce(last_archived_wal, ''), "
      "coalesce(extract(epoch from last_archived_time)::bigint, 0), failed_count, coalesce(last_failed_wal, ''), "
      "coalesce(extract(epoch from last_failed_time)::bigint, 0), "
      "CASE WHEN pg_is_in_recovery() THEN '' ELSE pg_walfile_name(pg_current_wal_lsn()) END "
      "FROM pg_stat_archiver");
  if (!rows) return rows.error();
  if (rows->rows.size() != 1 || rows->rows[0].size() != 7)
    return make_error(Errc::protocol, "pg_stat_archiver returned an unexpected result");
  const Row& r = rows->rows[0];
  ArchiverStatus st;
  st.archived_count = to_int(r[0]);
  st.last_archived_wal = r[1].value_or("");
  st.last_archived_unix = to_int(r[2]);
  st.failed_count = to_int(r[3]);
  st.last_failed_wal = r[4].value_or("");
  st.last_failed_unix = to_int(r[5]);
  st.current_wal = r[6].value_or("");
  if (!data_dir.empty()) {
    std::error_code ec;
    int n = 0;
    for (const auto& e : std::filesystem::directory_iterator(data_dir + "/pg_wal/archive_status", ec)) {
      if (e.path().extension() == ".ready") ++n;
    }
    if (!ec) st.ready_files = n;
  }
  return st;
}

}  // namespace tandem::pg
