#include "ha/decide.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace tandem::ha {

const char* to_string(Action a) {
  switch (a) {
    case Action::none: return "none";
    case Action::bootstrap: return "bootstrap";
    case Action::clone: return "clone";
    case Action::start_replica: return "start_replica";
    case Action::start_primary: return "start_primary";
    case Action::restart: return "restart";
    case Action::follow: return "follow";
    case Action::rewind: return "rewind";
    case Action::reinitialize: return "reinitialize";
    case Action::acquire_leader: return "acquire_leader";
    case Action::promote: return "promote";
    case Action::keep_leader: return "keep_leader";
    case Action::demote: return "demote";
    case Action::fence: return "fence";
    case Action::release_leader: return "release_leader";
    case Action::switchover: return "switchover";
    case Action::clear_switchover: return "clear_switchover";
    case Action::bootstrap_from_backup: return "bootstrap_from_backup";
    case Action::reinitialize_from_backup: return "reinitialize_from_backup";
  }
  return "?";
}

Millis fence_margin(const dcs::DynamicConfig& cfg) {
  // A fifth of the ttl, at least 500 ms and at most 2 s: an immediate shutdown takes
  // ~100-200 ms on this kind of machine, so the margin leaves room for a slow one.
  Millis fifth(cfg.ttl * 200);
  return std::clamp(fifth, Millis(500), Millis(2000));
}

bool must_fence(const LocalState& local, const dcs::DynamicConfig& cfg, TimePoint now) {
  if (local.pg != PgRun::running || local.in_recovery) return false;  // nothing writable to fence
  if (!local.lease_deadline) return true;                             // a primary without any lease
  return now >= *local.lease_deadline - fence_margin(cfg);
}

namespace {

Decision make(Action a, std::string target, std::string reason) {
  Decision d;
  d.action = a;
  d.target = std::move(target);
  d.reason = std::move(reason);
  return d;
}

bool is_running_member(const dcs::Member* m) {
  return m != nullptr && (m->state == "running" || m->state == "streaming");
}

bool switchover_due(const dcs::Switchover& s, int64_t now_ms) {
  return s.scheduled_at_ms <= now_ms;
}

// Why this member may not take the leader key automatically; empty when it may.
std::string ineligible_reason(const dcs::ClusterSnapshot& c, const LocalState& l, const dcs::DynamicConfig& cfg,
                              int64_t now_ms) {
  if (c.switchover && switchover_due(*c.switchover, now_ms) && !c.switchover->candidate.empty()) {
    if (c.switchover->candidate != l.name) {
      return fmt::format("a switchover/failover to {} is pending", c.switchover->candidate);
    }
    return {};  // the operator named us
  }
  if (l.tags.nofailover) return "I am tagged nofailover";
  if (cfg.synchronous_mode != dcs::SyncMode::off) {
    if (!c.sync)
      return fmt::format("synchronous_mode is {} and no synchronous standby was ever recorded",
                         to_string(cfg.synchronous_mode));
    bool named = c.sync->leader == l.name || (c.sync->sync_standby && *c.sync->sync_standby == l.name);
    if (!named) {
      return fmt::format("synchronous_mode is {} and I am not the recorded synchronous standby of {} (recorded: {})",
                         to_string(cfg.synchronous_mode), c.sync->leader, c.sync->sync_standby.value_or("none"));
    }
  } else if (l.last_leader_position.value() > l.wal_position.value() &&
             static_cast<int64_t>(l.last_leader_position.value() - l.wal_position.value()) >
                 cfg.maximum_lag_on_failover) {
    return fmt::format("my lag of {} bytes behind the last leader position exceeds maximum_lag_on_failover ({})",
                       l.last_leader_position.value() - l.wal_position.value(), cfg.maximum_lag_on_failover);
  }
  // Defer to a healthier member: one further ahead, or equally far and the former leader.
  for (const auto& [name, m] : c.members) {
    if (name == l.name || !is_running_member(&m) || m.tags.nofailover) continue;
    if (cfg.synchronous_mode != dcs::SyncMode::off && c.sync) {
      bool other_named = c.sync->leader == name || (c.sync->sync_standby && *c.sync->sync_standby == name);
      if (!other_named) continue;
    }
    if (m.timeline > l.timeline || (m.timeline == l.timeline && m.wal_position > l.wal_position)) {
      return fmt::format("{} is further ahead ({} on timeline {}, mine {} on timeline {})", name,
                         m.wal_position.to_string(), m.timeline, l.wal_position.to_string(), l.timeline);
    }
    if (m.wal_position == l.wal_position && m.timeline == l.timeline && c.sync && c.sync->leader == name) {
      return fmt::format("{} is as far ahead and was the leader", name);
    }
  }
  return {};
}

// The leader's synchronous-replication step for this cycle.
SyncPlan plan_sync(const dcs::ClusterSnapshot& c, const LocalState& l, const dcs::DynamicConfig& cfg) {
  SyncPlan p;
  const auto recorded = (c.sync && c.sync->leader == l.name) ? c.sync->sync_standby : std::nullopt;
  const bool sync_key_mine = c.sync && c.sync->leader == l.name;
  auto peer = [&](const std::string& name) -> const ReplicaPeer* {
    for (const auto& r : l.replicas) {
      if (r.name == name) return &r;
    }
    return nullptr;
  };
  if (cfg.synchronous_mode == dcs::SyncMode::off) {
    if (recorded || !sync_key_mine) {
      p.step = SyncPlan::Step::unrecord_standby;
    } else if (!l.synchronous_standby_names.empty()) {
      p.step = SyncPlan::Step::set_standby_names;
    }
    return p;
  }
  const bool strict = cfg.synchronous_mode == dcs::SyncMode::strict;
  // 1. A recorded standby stays while it streams (strict: stays regardless).
  if (recorded) {
    const ReplicaPeer* r = peer(*recorded);
    bool healthy = r != nullptr && r->streaming;
    if (healthy || strict) {
      if (l.synchronous_standby_names != *recorded) {
        p.step = SyncPlan::Step::set_standby_names;
        p.standby_names = *recorded;
      }
      return p;
    }
    // Not streaming: stop it being promotable first, PostgreSQL stops waiting next cycle.
    p.step = SyncPlan::Step::unrecord_standby;
    return p;
  }
  // 2. No recorded standby. Pick a streaming member that may be synchronous.
  const ReplicaPeer* best = nullptr;
  for (const auto& r : l.replicas) {
    if (!r.streaming) continue;
    const dcs::Member* m = c.member(r.name);
    if (m == nullptr || m->tags.nosync) continue;
    if (best == nullptr || r.flush > best->flush) best = &r;
  }
  if (best == nullptr) {
    std::string want = strict ? "*" : "";
    if (!sync_key_mine) {
      p.step = SyncPlan::Step::unrecord_standby;  // claim the sync key for this leader, with no standby
    } else if (l.synchronous_standby_names != want) {
      p.step = SyncPlan::Step::set_standby_names;
      p.standby_names = want;
    }
    return p;
  }
  if (l.synchronous_standby_names != best->name) {
    p.step = SyncPlan::Step::set_standby_names;
    p.standby_names = best->name;
    return p;
  }
  // PostgreSQL already waits for it; record it once it has everything acknowledged before.
  if (best->sync && best->flush >= l.sync_requested_at) {
    p.step = SyncPlan::Step::record_standby;
    p.standby = best->name;
  } else if (!sync_key_mine) {
    p.step = SyncPlan::Step::unrecord_standby;
  }
  return p;
}

Decision decide_leader(const dcs::ClusterSnapshot& c, const LocalState& l, const dcs::DynamicConfig& cfg,
                       int64_t now_ms) {
  if (l.in_recovery)
    return make(Action::promote, "", "promoting: I hold the leader key but PostgreSQL is still a standby");

  if (c.switchover && switchover_due(*c.switchover, now_ms) &&
      (c.switchover->leader.empty() || c.switchover->leader == l.name) && c.switchover->candidate != l.name) {
    const auto& sw = *c.switchover;
    if (now_ms - std::max(sw.scheduled_at_ms, int64_t{0}) > kSwitchoverTimeoutSeconds * 1000 &&
        sw.scheduled_at_ms > 0) {
      return make(
          Action::clear_switchover, sw.candidate,
          fmt::format("abandoning the switchover: no candidate caught up within {} s", kSwitchoverTimeoutSeconds));
    }
    // Candidate: the named one, else the most advanced streaming replica.
    const ReplicaPeer* cand = nullptr;
    for (const auto& r : l.replicas) {
      if (!sw.candidate.empty() && r.name != sw.candidate) continue;
      const dcs::Member* m = c.member(r.name);
      if (m == nullptr || (sw.candidate.empty() && m->tags.nofailover)) continue;
      if (cand == nullptr || r.flush > cand->flush) cand = &r;
    }
    if (cand == nullptr || !cand->streaming) {
      std::string who = sw.candidate.empty() ? "no eligible member is" : sw.candidate + " is not";
      return make(Action::clear_switchover, sw.candidate,
                  fmt::format("abandoning the switchover: {} streaming from me", who));
    }
    Lsn behind_from = cand->flush;
    int64_t lag = l.wal_position > behind_from ? static_cast<int64_t>(l.wal_position.value() - behind_from.value()) : 0;
    if (lag > cfg.maximum_lag_on_failover) {
      Decision d = make(Action::keep_leader, cand->name,
                        fmt::format("switchover to {}: waiting for it to catch up ({} bytes behind)", cand->name, lag));
      return d;
    }
    return make(Action::switchover, cand->name,
                fmt::format("switchover: handing the leader key to {} ({} bytes behind, will catch up during shutdown)",
                            cand->name, lag));
  }

  Decision d = make(Action::keep_leader, "", "no action: I am the leader with the lock");
  d.sync = plan_sync(c, l, cfg);
  switch (d.sync.step) {
    case SyncPlan::Step::none: break;
    case SyncPlan::Step::set_standby_names:
      d.reason = d.sync.standby_names.empty()
                     ? "I am the leader; replication is now asynchronous"
                     : fmt::format("I am the leader; setting synchronous_standby_names to {}", d.sync.standby_names);
      break;
    case SyncPlan::Step::record_standby:
      d.reason = fmt::format("I am the leader; {} is synchronous and caught up, recording it as sync standby",
                             *d.sync.standby);
      break;
    case SyncPlan::Step::unrecord_standby:
      d.reason = "I am the leader; no healthy synchronous standby, recording none";
      break;
  }
  return d;
}

}  // namespace

Decision decide(const dcs::ClusterSnapshot& c, const LocalState& l, const dcs::DynamicConfig& cfg, TimePoint now,
                int64_t now_ms) {
  const bool primary_running = l.pg == PgRun::running && !l.in_recovery;

  // Safety first: a writable primary whose lease may expire stops taking writes.
  if (!cfg.paused && must_fence(l, cfg, now)) {
    return make(Action::fence, "", "fencing: my leader lease may expire before I can renew it; stopping writes now");
  }

  if (!l.dcs_ok) {
    if (l.pg != PgRun::running && l.data_initialized && !cfg.paused) {
      std::string upstream = l.last_leader == l.name ? "" : l.last_leader;
      return make(Action::start_replica, upstream, "cannot reach the DCS; starting PostgreSQL read-only");
    }
    return make(Action::none, "", "no action: cannot reach the DCS; keeping the current state");
  }

  const bool i_lead = c.leader && c.leader->name == l.name;
  const std::string leader = c.leader ? c.leader->name : "";
  const dcs::Member* leader_member = c.leader_member();

  if (cfg.paused) {
    if (i_lead) return make(Action::keep_leader, "", "paused: I am the leader, keeping the lock; no other HA action");
    return make(Action::none, "", "paused: maintenance mode, no HA action");
  }

  // Bootstrap and clone.
  if (!l.data_initialized) {
    if (!c.initialize) {
      if (l.bootstrap_from_backup)
        return make(Action::bootstrap_from_backup, "",
                    "the cluster is not initialized; trying to bootstrap it from a backup");
      return make(Action::bootstrap, "", "the cluster is not initialized; trying to bootstrap it");
    }
    if (!leader.empty() && leader != l.name && is_running_member(leader_member)) {
      return make(Action::clone, leader, fmt::format("no data directory; cloning from the leader {}", leader));
    }
    return make(Action::none, "", "no data directory and no running leader to clone from; waiting");
  }

  // Operator requests.
  if (l.reinit_requested) {
    if (i_lead) return make(Action::none, "", "refusing to reinitialize: I am the leader");
    if (leader.empty() || !is_running_member(leader_member))
      return make(Action::none, "",
                  l.reinit_from_backup ? "cannot reinitialize from a backup: no running leader to stream from after"
                                       : "cannot reinitialize: no running leader to clone from");
    if (l.reinit_from_backup)
      return make(Action::reinitialize_from_backup, leader,
                  fmt::format("reinitializing from the latest backup plus archived WAL as requested, then "
                              "streaming from {}",
                              leader));
    return make(Action::reinitialize, leader, fmt::format("reinitializing from {} as requested", leader));
  }
  if (l.restart_requested && l.pg == PgRun::running) {
    return make(Action::restart, i_lead ? "" : leader, "restarting PostgreSQL as requested");
  }

  if (l.pg == PgRun::starting) return make(Action::none, "", "waiting for PostgreSQL to accept connections");

  // PostgreSQL is not running.
  if (l.pg != PgRun::running) {
    if (i_lead) {
      bool crashed_long = l.pg_down_since && now - *l.pg_down_since > Seconds(cfg.primary_start_timeout);
      if (crashed_long) {
        return make(
            Action::release_leader, "",
            fmt::format("PostgreSQL did not come back within primary_start_timeout ({} s); giving up the leader key",
                        cfg.primary_start_timeout));
      }
      if (l.was_primary)
        return make(Action::start_primary, "", "starting PostgreSQL as primary: I hold the leader key");
      return make(Action::start_replica, "", "starting PostgreSQL read-only before promoting: I hold the leader key");
    }
    if (!leader.empty()) {
      if (l.was_primary)
        return make(Action::rewind, leader,
                    fmt::format("rejoining as a standby of {}: rewinding my former primary data first", leader));
      return make(Action::start_replica, leader, fmt::format("starting PostgreSQL as a standby of {}", leader));
    }
    return make(Action::start_replica, "", "starting PostgreSQL read-only: there is no leader");
  }

  // PostgreSQL is running.
  if (i_lead) return decide_leader(c, l, cfg, now_ms);

  if (!leader.empty()) {
    if (primary_running) {
      return make(Action::demote, leader,
                  fmt::format("demoting: {} holds the leader key and I am running as primary", leader));
    }
    if (l.was_primary)
      return make(Action::rewind, leader,
                  fmt::format("rejoining as a standby of {}: rewinding my former primary data first", leader));
    if (l.following != leader) return make(Action::follow, leader, fmt::format("following the new leader {}", leader));
    // A standby rebuilt from a backup replays the archive before it streams: allow longer.
    const int repair_after_s = l.archive_catchup ? kArchiveCatchupRepairSeconds : kNotStreamingRepairSeconds;
    if (!l.streaming && l.not_streaming_since && is_running_member(leader_member) &&
        now - *l.not_streaming_since > Seconds(repair_after_s)) {
      return make(
          Action::rewind, leader,
          fmt::format("not streaming from {} for over {} s; rewinding to its timeline", leader, repair_after_s));
    }
    return make(Action::none, "", fmt::format("no action: I am a standby following the leader {}", leader));
  }

  // No leader: race for the key if eligible.
  std::string why_not = ineligible_reason(c, l, cfg, now_ms);
  if (why_not.empty()) {
    return make(Action::acquire_leader, "",
                fmt::format("there is no leader; I am eligible ({} on timeline {}) and trying to take the leader key",
                            l.wal_position.to_string(), l.timeline));
  }
  if (primary_running)
    return make(Action::demote, "", fmt::format("demoting: there is no leader and I may not lead ({})", why_not));
  return make(Action::none, "", fmt::format("no action: there is no leader but I may not take it: {}", why_not));
}

}  // namespace tandem::ha
