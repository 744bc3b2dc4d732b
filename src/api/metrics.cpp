#include "api/metrics.hpp"

#include <fmt/format.h>

#include "api/health.hpp"

namespace tandem::api {

std::string escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '"': out += "\\\""; break;
      case '\n': out += "\\n"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

namespace {

// Writes HELP/TYPE once per family and samples with the member's base labels.
class Exposition {
 public:
  Exposition(const MemberView& v)
      : base_(
            fmt::format("cluster=\"{}\",member=\"{}\"", escape_label_value(v.cluster), escape_label_value(v.member))) {}

  void family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  }
  // `extra` is a pre-escaped label list without braces, or empty.
  template <typename T>
  void sample(std::string_view name, T value, std::string_view extra = {}) {
    out_ += fmt::format("{}{{{}{}{}}} {}\n", name, base_, extra.empty() ? "" : ",", extra, value);
  }
  template <typename T>
  void gauge(std::string_view name, std::string_view help, T value) {
    family(name, "gauge", help);
    sample(name, value);
  }
  std::string take() { return std::move(out_); }

 private:
  std::string base_;
  std::string out_;
};

std::string seconds(int64_t ms) {
  return fmt::format("{:.3f}", static_cast<double>(ms) / 1000.0);
}

}  // namespace

std::string render_metrics(const MemberView& v, int64_t now_ms) {
  Exposition e(v);
  e.family("tandem_member_info", "gauge", "Member identity and role; always 1.");
  e.sample(
      "tandem_member_info", 1,
      fmt::format("role=\"{}\",state=\"{}\",version=\"{}\",server_version=\"{}\"", escape_label_value(v.role),
                  escape_label_value(v.pg_state), escape_label_value(v.version), escape_label_value(v.server_version)));
  e.gauge("tandem_is_leader", "1 when this member holds the leader lease and runs a writable primary.",
          v.holds_leader_lease ? 1 : 0);
  e.gauge("tandem_pg_running", "1 when PostgreSQL is running.", v.pg_running ? 1 : 0);
  e.gauge("tandem_in_recovery", "1 when PostgreSQL runs in recovery (as a replica).", v.in_recovery ? 1 : 0);
  e.gauge("tandem_streaming", "1 when the WAL receiver streams from the leader.", v.streaming ? 1 : 0);
  if (auto lag = effective_lag(v)) {
    e.gauge("tandem_replication_lag_bytes", "Bytes of WAL this member is behind the leader.", *lag);
  }
  e.gauge("tandem_timeline", "PostgreSQL timeline.", v.timeline);
  e.gauge("tandem_wal_position_bytes", "Leader: current WAL write position; replica: last received position, in bytes.",
          v.wal_position.value());
  e.gauge("tandem_replay_position_bytes", "Replica: last replayed WAL position, in bytes.", v.replay_position.value());
  if (v.lease_remaining_ms) {
    // The view was built at published_ms; the lease kept running since.
    int64_t remaining = *v.lease_remaining_ms - std::max<int64_t>(0, now_ms - v.published_ms);
    e.gauge("tandem_lease_remaining_seconds", "Seconds until this member's leader lease expires.",
            seconds(std::max<int64_t>(0, remaining)));
  }
  if (v.lease_age_ms) {
    int64_t age = *v.lease_age_ms + std::max<int64_t>(0, now_ms - v.published_ms);
    e.gauge("tandem_lease_age_seconds", "Seconds since this member last renewed its leader lease.", seconds(age));
  }
  e.gauge("tandem_is_sync_standby", "1 when this member is the recorded synchronous standby.",
          v.is_sync_standby ? 1 : 0);
  e.gauge("tandem_paused", "1 when the cluster is in maintenance mode (no automatic HA actions).", v.paused ? 1 : 0);
  e.gauge("tandem_pending_restart", "1 when PostgreSQL needs a restart to apply a setting.", v.pending_restart ? 1 : 0);
  e.gauge("tandem_dcs_reachable", "1 when the last DCS call of the HA cycle succeeded.", v.dcs_reachable ? 1 : 0);
  e.gauge("tandem_cluster_has_leader", "1 when the cluster has a leader key.", v.snapshot.leader ? 1 : 0);
  e.gauge("tandem_cluster_members", "Members registered in the DCS.", v.snapshot.members.size());
  if (v.pg_start_time_ms > 0) {
    e.gauge("tandem_postmaster_start_time_seconds", "Unix time PostgreSQL started.", seconds(v.pg_start_time_ms));
  }
  if (v.published_ms > 0) {
    e.gauge("tandem_last_cycle_age_seconds", "Seconds since the last completed HA cycle.",
            seconds(std::max<int64_t>(0, now_ms - v.published_ms)));
  }
  if (v.archive) {
    const ArchiveView& a = *v.archive;
    e.family("tandem_archive_archived_total", "counter", "WAL files archived (pg_stat_archiver.archived_count).");
    e.sample("tandem_archive_archived_total", a.archived_count);
    e.family("tandem_archive_failed_total", "counter", "Failed archive_command runs (pg_stat_archiver.failed_count).");
    e.sample("tandem_archive_failed_total", a.failed_count);
    if (a.ready_files >= 0)
      e.gauge("tandem_archive_ready_files", "WAL files waiting to be archived (archive_status/*.ready).",
              a.ready_files);
    if (a.lag_segments)
      e.gauge("tandem_archive_lag_segments", "Complete WAL segments written but not yet archived.", *a.lag_segments);
    if (a.last_archived_unix > 0)
      e.gauge("tandem_archive_last_success_age_seconds", "Seconds since the last WAL file was archived.",
              seconds(std::max<int64_t>(0, now_ms - a.last_archived_unix * 1000)));
    if (a.last_failed_unix > 0)
      e.gauge("tandem_archive_last_failure_age_seconds", "Seconds since archive_command last failed.",
              seconds(std::max<int64_t>(0, now_ms - a.last_failed_unix * 1000)));
  }
  e.family("tandem_ha_cycles_total", "counter", "HA cycles run since the agent started.");
  e.sample("tandem_ha_cycles_total", v.ha_cycles);
  return e.take();
}

}  // namespace tandem::api
