#include "backup/recovery.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <filesystem>
#include <sstream>

#include <fmt/format.h>

#include "base/process.hpp"

namespace tandem::backup {

namespace {

using Clock = std::chrono::system_clock;

std::string trim(std::string_view s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  size_t e = s.find_last_not_of(" \t\r\n");
  return b == std::string_view::npos ? std::string() : std::string(s.substr(b, e - b + 1));
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// "YYYY-MM-DD[T ]HH:MM:SS[.frac][Z|+HH|+HH:MM|-HH...]" -> time point.
std::optional<Clock::time_point> parse_timestamp(std::string_view s) {
  if (s.size() < 19 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != ' ') || s[13] != ':' || s[16] != ':')
    return std::nullopt;
  for (size_t i : {0, 5, 8, 11, 14, 17}) {
    size_t len = i == 0 ? 4 : 2;
    if (!all_digits(s.substr(i, len))) return std::nullopt;
  }
  std::tm tm{};
  tm.tm_year = std::stoi(std::string(s.substr(0, 4))) - 1900;
  tm.tm_mon = std::stoi(std::string(s.substr(5, 2))) - 1;
  tm.tm_mday = std::stoi(std::string(s.substr(8, 2)));
  tm.tm_hour = std::stoi(std::string(s.substr(11, 2)));
  tm.tm_min = std::stoi(std::string(s.substr(14, 2)));
  tm.tm_sec = std::stoi(std::string(s.substr(17, 2)));
  if (tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
    return std::nullopt;
  std::string_view rest = s.substr(19);
  int64_t micros = 0;
  if (!rest.empty() && rest[0] == '.') {
    size_t n = 1;
    while (n < rest.size() && rest[n] >= '0' && rest[n] <= '9') ++n;
    std::string frac(rest.substr(1, n - 1));
    if (frac.empty() || frac.size() > 9) return std::nullopt;
    frac.resize(6, '0');
    micros = std::stoll(frac.substr(0, 6));
    rest = rest.substr(n);
  }
  int64_t offset_s = 0;
  if (rest == "Z" || rest == "z" || rest.empty()) {
    if (rest.empty()) return std::nullopt;  // a time without a zone is ambiguous
  } else if (rest[0] == '+' || rest[0] == '-') {
    std::string_view z = rest.substr(1);
    int hh = 0, mm = 0;
    if (z.size() == 2 && all_digits(z)) {
      hh = std::stoi(std::string(z));
    } else if (z.size() == 5 && z[2] == ':' && all_digits(z.substr(0, 2)) && all_digits(z.substr(3, 2))) {
      hh = std::stoi(std::string(z.substr(0, 2)));
      mm = std::stoi(std::string(z.substr(3, 2)));
    } else if (z.size() == 4 && all_digits(z)) {
      hh = std::stoi(std::string(z.substr(0, 2)));
      mm = std::stoi(std::string(z.substr(2, 2)));
    } else {
      return std::nullopt;
    }
    offset_s = (hh * 3600 + mm * 60) * (rest[0] == '+' ? 1 : -1);
  } else {
    return std::nullopt;
  }
  std::time_t secs = timegm(&tm) - offset_s;
  return Clock::from_time_t(secs) + std::chrono::microseconds(micros);
}

std::string describe_time(Clock::time_point t) {
  return pg_timestamp(t);
}

}  // namespace

Result<std::vector<HistoryEntry>> parse_history(std::string_view text, const std::string& what) {
  std::vector<HistoryEntry> out;
  std::istringstream in{std::string(text)};
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    std::string t = trim(line);
    if (t.empty() || t[0] == '#') continue;
    std::istringstream fields(t);
    std::string tli, lsn;
    fields >> tli >> lsn;
    auto parsed = Lsn::parse(lsn);
    if (!all_digits(tli) || !parsed)
      return make_error(Errc::protocol, "{}: line {} is not '<timeline> <LSN> <reason>': '{}'", what, n, t);
    uint32_t parent = static_cast<uint32_t>(std::stoul(tli));
    if (!out.empty() && (parent <= out.back().parent || *parsed < out.back().switchpoint))
      return make_error(Errc::protocol, "{}: line {} is out of order", what, n);
    out.push_back({parent, *parsed});
  }
  return out;
}

std::vector<TimelineSpan> timeline_path(uint32_t target, const std::vector<HistoryEntry>& history) {
  std::vector<TimelineSpan> path;
  Lsn begin{0};
  for (const auto& h : history) {
    path.push_back({h.parent, begin, h.switchpoint});
    begin = h.switchpoint;
  }
  path.push_back({target, begin, std::nullopt});
  return path;
}

const TimelineSpan* span_for_lsn(const std::vector<TimelineSpan>& path, Lsn lsn) {
  for (const auto& s : path) {
    if (lsn >= s.begin && (!s.end || lsn < *s.end)) return &s;
  }
  return nullptr;
}

std::string segment_on_path(const std::vector<TimelineSpan>& path, uint64_t segno, uint64_t segment_size) {
  uint32_t tli = path.front().tli;
  for (const auto& s : path) {
    if (s.begin.value() / segment_size <= segno) tli = s.tli;
  }
  return segment_from_number(tli, segno, segment_size).to_string();
}

WalChain walk_wal_chain(const std::vector<TimelineSpan>& path, Lsn start, const std::set<std::string>& archived,
                        uint64_t segment_size) {
  WalChain c;
  uint64_t segno = start.value() / segment_size;
  c.first = segment_on_path(path, segno, segment_size);
  // The newest archived segment number on the path bounds the walk.
  uint64_t max_segno = segno;
  for (const auto& name : archived) {
    auto s = parse_segment_name(name);
    if (!s) continue;
    uint64_t n = segment_number(*s, segment_size);
    if (n > max_segno && segment_on_path(path, n, segment_size) == name) max_segno = n;
  }
  for (; segno <= max_segno; ++segno) {
    std::string name = segment_on_path(path, segno, segment_size);
    if (!archived.count(name)) break;
    c.last = name;
    c.end = Lsn((segno + 1) * segment_size);
    ++c.segments;
  }
  if (segno <= max_segno) {
    c.missing = segment_on_path(path, segno, segment_size);
    for (uint64_t n = segno + 1; n <= max_segno; ++n) {
      std::string name = segment_on_path(path, n, segment_size);
      if (archived.count(name)) {
        c.after_gap = name;
        break;
      }
    }
  }
  return c;
}

uint32_t newest_timeline(const std::set<std::string>& archived) {
  uint32_t newest = 1;
  for (const auto& name : archived) {
    if (auto h = parse_history_name(name)) newest = std::max(newest, *h);
    if (auto s = parse_segment_name(name)) newest = std::max(newest, s->timeline);
  }
  return newest;
}

std::string RecoveryTarget::describe() const {
  switch (kind) {
    case TargetKind::latest: return "the end of the archived WAL";
    case TargetKind::time: return "time " + describe_time(time);
    case TargetKind::lsn: return "LSN " + lsn.to_string();
  }
  return "?";
}

Result<RecoveryTarget> parse_target(const std::string& to, const std::string& to_time, const std::string& to_lsn) {
  int given = (!to.empty() ? 1 : 0) + (!to_time.empty() ? 1 : 0) + (!to_lsn.empty() ? 1 : 0);
  if (given != 1)
    return make_error(Errc::invalid_argument, "give exactly one of --to latest, --to-time TIME, --to-lsn LSN");
  RecoveryTarget t;
  if (!to.empty()) {
    if (to != "latest")
      return make_error(Errc::invalid_argument, "--to: expected 'latest' (or use --to-time / --to-lsn), got '{}'", to);
    return t;
  }
  if (!to_lsn.empty()) {
    auto l = Lsn::parse(to_lsn);
    if (!l) return make_error(Errc::invalid_argument, "--to-lsn: '{}' is not an LSN such as 0/3000060", to_lsn);
    t.kind = TargetKind::lsn;
    t.lsn = *l;
    return t;
  }
  auto tp = parse_timestamp(to_time);
  if (!tp)
    return make_error(Errc::invalid_argument,
                      "--to-time: '{}' is not a time with a zone such as 2026-11-28T13:05:00Z or "
                      "'2026-11-28 13:05:00.5+00'",
                      to_time);
  t.kind = TargetKind::time;
  t.time = *tp;
  return t;
}

Result<BackupManifest> choose_backup(const std::vector<BackupManifest>& backups, const RecoveryTarget& target,
                                     const std::vector<TimelineSpan>& path, const std::string& wanted_id) {
  std::vector<const BackupManifest*> on_path;
  for (const auto& b : backups) {
    const TimelineSpan* span = span_for_lsn(path, b.stop_lsn);
    const TimelineSpan* start_span = span_for_lsn(path, b.start_lsn);
    if (span != nullptr && start_span != nullptr && start_span->tli == b.timeline) on_path.push_back(&b);
  }
  if (on_path.empty()) {
    if (backups.empty()) return make_error(Errc::not_found, "the repository holds no complete base backup");
    return make_error(Errc::not_found,
                      "no complete base backup lies on the timeline path to timeline {} ({} backups in the "
                      "repository)",
                      path.back().tli, backups.size());
  }
  std::sort(on_path.begin(), on_path.end(),
            [](const BackupManifest* a, const BackupManifest* b) { return a->stop_lsn < b->stop_lsn; });
  auto range = [&] {
    const auto* first = on_path.front();
    return fmt::format("the earliest restorable point is the end of backup {} (time {}, LSN {})", first->id,
                       first->stop_time, first->stop_lsn.to_string());
  };
  auto ends_before = [&](const BackupManifest& b) {
    switch (target.kind) {
      case TargetKind::latest: return true;
      case TargetKind::lsn: return b.stop_lsn <= target.lsn;
      case TargetKind::time: {
        auto stop = parse_utc(b.stop_time);
        return stop.has_value() && *stop <= target.time;
      }
    }
    return false;
  };
  if (!wanted_id.empty()) {
    auto it = std::find_if(on_path.begin(), on_path.end(), [&](const auto* b) { return b->id == wanted_id; });
    if (it == on_path.end())
      return make_error(Errc::not_found, "backup {} is not a complete backup on the restore's timeline path",
                        wanted_id);
    if (!ends_before(**it))
      return make_error(Errc::invalid_argument,
                        "backup {} ends at {} (LSN {}), after the target {}; choose an older backup or a later "
                        "target",
                        wanted_id, (*it)->stop_time, (*it)->stop_lsn.to_string(), target.describe());
    return **it;
  }
  for (auto it = on_path.rbegin(); it != on_path.rend(); ++it) {
    if (ends_before(**it)) return **it;
  }
  return make_error(Errc::invalid_argument, "target {} is before the restorable range: {}", target.describe(), range());
}

std::vector<std::pair<std::string, std::string>> recovery_settings(const RecoveryTarget& target,
                                                                   const std::string& restore_command) {
  std::vector<std::pair<std::string, std::string>> s = {
      {"restore_command", restore_command},
      {"recovery_target_timeline", "latest"},
  };
  switch (target.kind) {
    case TargetKind::latest: break;
    case TargetKind::time:
      s.emplace_back("recovery_target_time", pg_timestamp(target.time));
      s.emplace_back("recovery_target_action", "promote");
      break;
    case TargetKind::lsn:
      s.emplace_back("recovery_target_lsn", target.lsn.to_string());
      s.emplace_back("recovery_target_action", "promote");
      break;
  }
  return s;
}

std::string pg_timestamp(Clock::time_point t) {
  auto micros = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(micros / 1000000);
  int64_t frac = micros % 1000000;
  if (frac < 0) {
    frac += 1000000;
    --secs;
  }
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}+00", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

namespace fs = std::filesystem;

Result<RepoConfig> copy_repo_secrets(const RepoConfig& rc, const std::string& dir, const std::string& user) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return make_error(Errc::io, "cannot create {}: {}", dir, ec.message());
  ::chmod(dir.c_str(), 0700);
  RepoConfig out = rc;
  int n = 0;
  auto copy = [&](const std::string& from) -> Result<std::string> {
    std::string to = fmt::format("{}/{}-{}", dir, n++, fs::path(from).filename().string());
    fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
    if (ec) return make_error(Errc::io, "cannot copy {}: {}", from, ec.message());
    ::chmod(to.c_str(), 0600);
    return to;
  };
  auto k = copy(rc.key_file);
  if (!k) return k.error();
  out.key_file = *k;
  out.retired_key_files.clear();
  for (const auto& f : rc.retired_key_files) {
    auto r = copy(f);
    if (!r) return r.error();
    out.retired_key_files.push_back(*r);
  }
  if (!rc.credentials_file.empty()) {
    auto c = copy(rc.credentials_file);
    if (!c) return c.error();
    out.credentials_file = *c;
  }
  if (auto s = chown_recursive(dir, user); !s) return s.error();
  return out;
}

std::string wal_fetch_command(const RepoConfig& rc) {
  std::string cmd = fmt::format("{} wal-fetch --store {} --key-file {}", shell_quote(self_binary()),
                                shell_quote(rc.store_url), shell_quote(rc.key_file));
  for (const auto& f : rc.retired_key_files) cmd += " --retired-key-file " + shell_quote(f);
  if (!rc.credentials_file.empty()) cmd += " --credentials-file " + shell_quote(rc.credentials_file);
  return cmd + " %f %p";
}

}  // namespace tandem::backup
