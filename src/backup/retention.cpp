#include "backup/retention.hpp"

#include <algorithm>
#include <limits>

#include <fmt/format.h>

namespace tandem::backup {

namespace {

constexpr auto kIncompleteGrace = std::chrono::hours(24);

std::string age_text(std::chrono::seconds s) {
  auto secs = s.count();
  if (secs >= 86400 && secs % 86400 == 0) return fmt::format("{}d", secs / 86400);
  if (secs >= 3600 && secs % 3600 == 0) return fmt::format("{}h", secs / 3600);
  if (secs >= 60 && secs % 60 == 0) return fmt::format("{}m", secs / 60);
  return fmt::format("{}s", secs);
}

}  // namespace

std::vector<std::string> RetentionPlan::delete_backups() const {
  std::vector<std::string> out;
  for (const auto& d : backups) {
    if (!d.keep) out.push_back(d.id);
  }
  return out;
}

RetentionPlan plan_retention(const std::vector<RetentionBackup>& backups, const std::vector<std::string>& wal_files,
                             std::chrono::system_clock::time_point now, const config::RetentionConfig& policy,
                             uint64_t wal_segment_size) {
  std::vector<RetentionBackup> sorted = backups;
  std::stable_sort(sorted.begin(), sorted.end(), [](const RetentionBackup& a, const RetentionBackup& b) {
    return a.start_time != b.start_time ? a.start_time > b.start_time : a.id > b.id;
  });

  // Index of the backup a point-in-time restore over the window needs.
  int pitr_base = -1;
  int oldest_complete = -1;
  int newest_complete = -1;
  for (size_t i = 0; i < sorted.size(); ++i) {
    if (!sorted[i].complete) continue;
    if (newest_complete < 0) newest_complete = static_cast<int>(i);
    oldest_complete = static_cast<int>(i);
    if (pitr_base < 0 && sorted[i].start_time <= now - policy.pitr_window) pitr_base = static_cast<int>(i);
  }
  if (pitr_base < 0) pitr_base = oldest_complete;

  RetentionPlan plan;
  int complete_rank = 0;  // 1 = newest complete backup
  for (size_t i = 0; i < sorted.size(); ++i) {
    const auto& b = sorted[i];
    RetentionDecision d{b.id, true, ""};
    auto age = std::chrono::duration_cast<std::chrono::seconds>(now - b.start_time);
    if (!b.complete) {
      if (age > kIncompleteGrace) {
        d = {b.id, false, "incomplete (no tandem.json) and older than a day"};
      } else {
        d = {b.id, true, "incomplete, younger than a day (it may still be running)"};
      }
      plan.backups.push_back(std::move(d));
      continue;
    }
    ++complete_rank;
    bool within_count = policy.count > 0 && complete_rank <= policy.count;
    bool too_old = policy.max_age.count() > 0 && age > policy.max_age;
    if (static_cast<int>(i) == newest_complete) {
      d.reason = "the newest complete backup";
    } else if (static_cast<int>(i) == pitr_base && policy.pitr_window.count() > 0) {
      d.reason = fmt::format("base of the {} point-in-time window", age_text(policy.pitr_window));
    } else if (policy.max_age.count() > 0) {
      if (!too_old) {
        d.reason = fmt::format("younger than max_age {}", age_text(policy.max_age));
      } else if (within_count) {
        d.reason =
            fmt::format("older than max_age {} but one of the newest {}", age_text(policy.max_age), policy.count);
      } else {
        d = {b.id, false,
             fmt::format("older than max_age {} and not one of the newest {}", age_text(policy.max_age), policy.count)};
      }
    } else if (policy.count > 0) {
      if (within_count) {
        d.reason = fmt::format("one of the newest {}", policy.count);
      } else {
        d = {b.id, false, fmt::format("not one of the newest {}", policy.count)};
      }
    } else {
      d.reason = "no count or age limit";
    }
    plan.backups.push_back(std::move(d));
  }

  // WAL floor: the earliest start segment of any kept complete backup.
  uint64_t floor = std::numeric_limits<uint64_t>::max();
  std::string floor_name;
  for (size_t i = 0; i < sorted.size(); ++i) {
    if (!sorted[i].complete || !plan.backups[i].keep) continue;
    auto seg = parse_segment_name(sorted[i].start_wal);
    if (!seg) return RetentionPlan{plan.backups, {}, {}};  // unreadable start: delete no WAL
    uint64_t n = segment_number(*seg, wal_segment_size);
    if (n < floor) {
      floor = n;
      floor_name = sorted[i].start_wal;
    }
  }
  if (floor_name.empty()) return plan;
  plan.wal_floor = floor_name;
  for (const auto& name : wal_files) {
    auto kind = classify_wal_file(name);
    if (!kind || *kind == WalFileKind::history) continue;
    auto seg = parse_segment_name(std::string_view(name).substr(0, 24));
    if (seg && segment_number(*seg, wal_segment_size) < floor) plan.delete_wal.push_back(name);
  }
  std::sort(plan.delete_wal.begin(), plan.delete_wal.end());
  return plan;
}

}  // namespace tandem::backup
