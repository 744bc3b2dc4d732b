// The agent's actions: each carries out one Decision on the HA thread.
#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <thread>

#include <spdlog/spdlog.h>

#include "backup/async_archiver.hpp"
#include "base/process.hpp"
#include "config/agent_config.hpp"
#include "ha/agent.hpp"
#include "ha/lease_keeper.hpp"
#include "pg/admin.hpp"
#include "pg/archiver.hpp"
#include "pg/conninfo.hpp"
#include "pg/files.hpp"
#include "pg/passfile.hpp"
#include "pg/setup.hpp"
#include "pg/status.hpp"
#include "pg/tools.hpp"

namespace tandem::ha {

namespace {

constexpr Millis kStartTimeout = Seconds(60);

void log_failure(const char* what, const Status& s) {
  if (!s) spdlog::error("{} failed: {}", what, s.error().message);
}

// archive_command / restore_command calling this binary with the agent's own config.
std::string wal_command(const config::AgentConfig& cfg, const char* sub, const char* args) {
  return fmt::format("{} {} --config {} {}", shell_quote(self_binary()), sub, shell_quote(cfg.source_path), args);
}

// The archive module next to this binary, when PostgreSQL's user can read it; else "".
std::string archive_module_path() {
  const std::string path = std::filesystem::path(self_binary()).parent_path() / backup::kArchiveModuleName;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & S_IROTH) == 0) return "";
  return path;
}

}  // namespace

Status Agent::write_passfile() {
  std::vector<pg::PassEntry> entries;
  for (const auto* cred : {&cfg_.replication, &cfg_.superuser}) {
    if (cred->password_file.empty()) continue;
    auto pw = config::read_secret_file(cred->password_file);
    if (!pw) return pw.error();
    entries.push_back(pg::PassEntry{"*", "*", "*", cred->username, Secret(*pw)});
  }
  std::error_code ec;
  std::filesystem::create_directories(cfg_.run_dir, ec);
  return pg::write_passfile(passfile_, entries, cfg_.run_as);
}

pg::ConnParams Agent::remote_params(const dcs::Member& m, bool replication) const {
  pg::ConnParams p;
  p.host = m.host;
  p.port = m.pg_port;
  p.user = cfg_.replication.username;
  p.passfile = passfile_;
  p.application_name = cfg_.name;
  p.connect_timeout_s = std::max(2, dyn_.retry_timeout);
  p.replication = replication;
  return p;
}

pg::ManagedConfig Agent::managed(pg::Role role, const dcs::Member* upstream) const {
  pg::ManagedConfig mc;
  mc.role = role;
  mc.parameters = dyn_.parameters;
  for (const auto& [k, v] : cfg_.parameters) mc.parameters[k] = v;
  if (role == pg::Role::standby && upstream != nullptr) {
    pg::Upstream up;
    up.host = upstream->host;
    up.port = upstream->pg_port;
    up.user = cfg_.replication.username;
    up.passfile = passfile_;
    up.slot = pg::slot_name_for(cfg_.name);
    up.connect_timeout_s = std::max(2, dyn_.retry_timeout);
    mc.upstream = up;
  }
  if (role == pg::Role::primary) mc.synchronous_standby_names = sync_names_;
  if (cfg_.backup.enabled() && cfg_.backup.archive && !cfg_.source_path.empty()) {
    mc.archive_command = wal_command(cfg_, "wal-push", "%p");
    // The archive module hands each file to the leader's WAL archiver over its socket (no
    // process per file); archive_command becomes its fallback when no archiver answers.
    const std::string socket = cfg_.run_dir + "/" + backup::kArchiverSocketName;
    if (std::string lib = archive_module_path(); !lib.empty() && socket.size() <= backup::kMaxSocketPath) {
      mc.archive_library = lib;
      mc.archive_socket = socket;
      mc.archive_fallback_command = mc.archive_command;
    }
    // A standby streaming from a leader never needs the archive: the leader keeps its WAL
    // in our replication slot. And restore_command costs failover time: PostgreSQL runs it
    // while waiting for WAL and several times while promoting (history files), so a
    // promotion waits for each of those processes. Only a standby without a source reads it.
    // A standby rebuilt from a backup reads the archive until it streams (archive_catchup_).
    if (upstream == nullptr || archive_catchup_) mc.restore_command = wal_command(cfg_, "wal-fetch", "--standby %f %p");
  }
  return mc;
}

Status Agent::stop_pg(pg::StopMode mode) {
  if (!pm_started_) return {};
  expect_exit_ = true;
  conn_.reset();
  auto s = pm_.stop(mode, mode == pg::StopMode::immediate ? Seconds(5) : Seconds(30));
  pm_.poll();
  pm_started_ = false;
  expect_exit_ = false;
  pg_status_.reset();
  pg_started_ms_ = 0;
  return s;
}

Status Agent::do_start(pg::Role role, const dcs::Member* upstream) {
  auto written = pg::write_managed_config(settings_, managed(role, upstream));
  if (!written) return written.error();
  following_ = role == pg::Role::standby && upstream != nullptr ? upstream->name : "";
  applied_params_ = dyn_.parameters;
  if (auto s = pm_.start(); !s) return s;
  pm_started_ = true;
  expect_exit_ = false;
  pg_started_ms_ = unix_millis_now();
  auto ready = pm_.wait_ready(kStartTimeout);
  if (!ready) {
    if (!pm_.running()) {
      pm_started_ = false;
      pg_down_since_ = pg_down_since_.value_or(SteadyClock::now());
    }
    return ready;
  }
  pg_down_since_.reset();
  return {};
}

Status Agent::do_follow(const dcs::Member* upstream) {
  auto change = pm_.apply_config(managed(pg::Role::standby, upstream));
  if (!change) return change.error();
  following_ = upstream ? upstream->name : "";
  if (change->standby_signal_changed) {
    if (auto s = stop_pg(pg::StopMode::fast); !s) return s;
    return do_start(pg::Role::standby, upstream);
  }
  return {};
}

Status Agent::setup_roles(bool restored) {
  SpawnOptions so;
  so.argv = {self_binary(), "agent", "--config", cfg_.source_path, "--setup-roles"};
  if (restored) so.argv.push_back("--restored");
  so.parent_death_signal = SIGTERM;
  auto r = tandem::run(so, std::chrono::minutes(2));
  if (!r) return r.error();
  const std::string last = pg::tail_lines(r->output, 1);
  if (!r->status.ok()) return make_error(Errc::io, "setting up the roles failed ({}): {}", r->status.describe(), last);
  spdlog::info("{}", last);
  return {};
}

Status Agent::do_bootstrap(bool from_backup) {
  auto won = store_->try_initialize(cfg_.name);
  if (!won) return won.error();
  if (!*won) {
    spdlog::info("another member is bootstrapping the cluster");
    return {};
  }
  phase_ = "bootstrapping";
  auto fail = [&](Status s) {
    (void)stop_pg(pg::StopMode::immediate);
    (void)pg::empty_data_dir(settings_);
    (void)store_->cancel_initialize(cfg_.name);
    phase_.clear();
    return s;
  };
  auto su_pw = config::read_secret_file(cfg_.superuser.password_file);
  if (!su_pw) return fail(su_pw.error());
  if (auto s = from_backup ? restore_for_bootstrap() : pg::initdb(settings_, Secret(*su_pw)); !s) return fail(s);
  sync_names_.clear();  // nothing to wait for yet; the first leader cycle sets it
  if (auto s = do_start(pg::Role::primary, nullptr); !s) return fail(s);
  // The roles and their passwords are set up by a short-lived `tandem agent --setup-roles`
  // child: hashing the passwords (SCRAM) starts OpenSSL's providers, about 2 MiB of
  // libcrypto that would otherwise stay resident in this long-running process.
  if (auto s = setup_roles(from_backup); !s) return fail(s);
  auto* c = local_conn();
  if (c == nullptr) return fail(make_error(Errc::unavailable, "cannot connect to the new PostgreSQL"));
  auto st = pg::query_status(*c);
  if (!st) return fail(st.error());
  auto held = store_->try_acquire_leader(cfg_.name, keeper_->lease_id());
  if (!held || !*held)
    return fail(held ? make_error(Errc::conflict, "another member took the leader key during bootstrap")
                     : held.error());
  set_was_primary(true);
  (void)store_->set_initialize(cfg_.name, std::to_string(st->system_identifier));
  (void)store_->write_sync(dcs::SyncState{cfg_.name, std::nullopt, 0});
  (void)store_->append_history(
      dcs::HistoryEntry{unix_millis_now(), "", cfg_.name, "bootstrap", st->timeline, st->wal_position()});
  last_leader_ = cfg_.name;
  phase_.clear();
  spdlog::info("bootstrapped cluster {} (system identifier {}{}); I am the leader", cfg_.cluster, st->system_identifier,
               from_backup ? ", restored from a backup" : "");
  return {};
}

Status Agent::do_clone(const dcs::Member& source) {
  phase_ = "cloning";
  publish(store_->load(), LocalState{});
  (void)stop_pg(pg::StopMode::immediate);
  if (auto s = pg::empty_data_dir(settings_); !s) {
    phase_.clear();
    return s;
  }
  spdlog::info("cloning from {} ({}:{})", source.name, source.host, source.pg_port);
  auto r = pg::basebackup(settings_, remote_params(source, true));
  phase_.clear();
  if (!r) return r.error();
  set_was_primary(false);
  spdlog::info("clone from {} finished in {} ms", source.name, r->elapsed.count());
  return do_start(pg::Role::standby, &source);
}

Status Agent::do_rewind(const dcs::Member& source) {
  phase_ = "rewinding";
  if (auto s = stop_pg(pg::StopMode::fast); !s)
    spdlog::warn("stopping PostgreSQL before rewind: {}", s.error().message);
  auto r = pg::rewind(settings_, remote_params(source, false));
  phase_.clear();
  if (!r) {
    if (r.error().code == Errc::unavailable) return r.error();  // the source is unreachable: try again later
    spdlog::error("pg_rewind from {} failed ({}); re-cloning instead", source.name, r.error().message);
    return do_clone(source);
  }
  spdlog::info("{}", r->rewound ? fmt::format("rewound to {}'s timeline", source.name) : "no rewind was needed");
  set_was_primary(false);
  return do_start(pg::Role::standby, &source);
}

Status Agent::do_promote(const std::string& reason) {
  phase_ = "promoting";
  set_was_primary(true);
  if (auto s = pm_.promote(); !s) {
    phase_.clear();
    return s;
  }
  auto deadline = SteadyClock::now() + Seconds(60);
  while (SteadyClock::now() < deadline) {
    auto* c = local_conn();
    if (c != nullptr) {
      auto rows = c->exec("SELECT pg_is_in_recovery()");
      if (rows && !rows->rows.empty() && rows->rows[0][0] == "f") break;
    }
    std::this_thread::sleep_for(Millis(20));
  }
  phase_.clear();
  following_.clear();
  // PostgreSQL removed standby.signal itself; now drop primary_conninfo and set the
  // synchronous standby names a new primary starts with.
  sync_names_ = dyn_.synchronous_mode == dcs::SyncMode::strict ? "*" : "";
  auto change = pm_.apply_config(managed(pg::Role::primary, nullptr));
  if (!change) log_failure("writing the primary configuration", change.error());
  auto* c = local_conn();
  auto st = c ? pg::query_status(*c) : Result<pg::MemberStatus>(make_error(Errc::unavailable, "no connection"));
  if (!st || st->in_recovery) return make_error(Errc::timeout, "PostgreSQL did not finish promotion within 60 s");
  pg_status_ = *st;
  spdlog::info("promoted: now primary on timeline {} at {} ({})", st->timeline, st->wal_position().to_string(), reason);
  return {};
}

Status Agent::do_acquire(const dcs::ClusterSnapshot& snap, const LocalState& local) {
  auto won = store_->try_acquire_leader(cfg_.name, keeper_->lease_id());
  if (!won) return won.error();
  if (!*won) {
    spdlog::info("another member took the leader key first");
    return {};
  }
  std::string reason = "failover";
  // A switchover without a named candidate hands the key to whoever is eligible: me.
  if (snap.switchover && (snap.switchover->candidate == cfg_.name || snap.switchover->candidate.empty()))
    reason = snap.switchover->leader.empty() ? "manual failover" : "switchover";
  std::string from = snap.sync ? snap.sync->leader : local.last_leader;
  if (local.in_recovery) {
    if (auto s = do_promote(reason); !s) {
      spdlog::error("promotion failed ({}); giving up the leader key", s.error().message);
      (void)store_->release_leader(cfg_.name);
      return s;
    }
  } else {
    set_was_primary(true);
  }
  last_leader_ = cfg_.name;
  if (snap.switchover) (void)store_->clear_switchover();
  // The sync key now names this leader with no standby until one is synchronous again.
  (void)store_->write_sync(dcs::SyncState{cfg_.name, std::nullopt, 0});
  uint32_t tl = pg_status_ ? pg_status_->timeline : local.timeline;
  Lsn lsn = pg_status_ ? pg_status_->wal_position() : local.wal_position;
  (void)store_->append_history(
      dcs::HistoryEntry{unix_millis_now(), from == cfg_.name ? "" : from, cfg_.name, reason, tl, lsn});
  return {};
}

Status Agent::ensure_slots(const dcs::ClusterSnapshot& snap) {
  auto* c = local_conn();
  if (c == nullptr) return make_error(Errc::unavailable, "no connection to the local PostgreSQL");
  for (const auto& [name, m] : snap.members) {
    if (name == cfg_.name) continue;
    auto r = pg::create_physical_slot(*c, pg::slot_name_for(name));
    if (!r) return r.error();
    if (*r) spdlog::info("created replication slot {} for {}", pg::slot_name_for(name), name);
  }
  return {};
}

Status Agent::do_keep_leader(const Decision& d, const dcs::ClusterSnapshot& snap, const LocalState& local) {
  if (snap.leader && snap.leader->lease_id != keeper_->lease_id()) {
    auto r = store_->refresh_leader(cfg_.name, keeper_->lease_id());
    if (!r) return r.error();
    if (!*r) return make_error(Errc::conflict, "lost the leader key while re-binding it to my new lease");
    spdlog::info("re-bound the leader key to lease {:x}", keeper_->lease_id());
  }
  if (!dyn_.paused) log_failure("maintaining replication slots", ensure_slots(snap));
  switch (d.sync.step) {
    case SyncPlan::Step::none: break;
    case SyncPlan::Step::set_standby_names: {
      sync_names_ = d.sync.standby_names;
      auto change = pm_.apply_config(managed(pg::Role::primary, nullptr));
      if (!change) return change.error();
      sync_requested_at_ = local.wal_position;
      if (auto* c = local_conn()) {
        auto w = pg::wait_for_setting(*c, "synchronous_standby_names", sync_names_, Seconds(5));
        log_failure("reloading synchronous_standby_names", w);
        if (auto rows = c->exec("SELECT pg_current_wal_lsn()::text"); rows && !rows->rows.empty() && rows->rows[0][0]) {
          sync_requested_at_ = Lsn::parse(*rows->rows[0][0]).value_or(local.wal_position);
        }
      }
      break;
    }
    case SyncPlan::Step::record_standby:
    case SyncPlan::Step::unrecord_standby: {
      auto ok = store_->write_sync(dcs::SyncState{cfg_.name, d.sync.standby, 0});
      if (!ok) return ok.error();
      if (!*ok) return make_error(Errc::conflict, "cannot record the sync standby: I no longer hold the leader key");
      break;
    }
  }
  return {};
}

Status Agent::do_switchover(const std::string& candidate) {
  // A checkpoint now leaves the shutdown checkpoint almost nothing to write, which is
  // most of the time writes are unavailable during the switchover.
  if (auto* c = local_conn()) log_failure("CHECKPOINT before the switchover", pg::checkpoint(*c));
  // PostgreSQL's shutdown waits for the archiver to push every finished segment. Let it
  // catch up now, while writes still go on, so that does not lengthen the outage.
  if (cfg_.backup.enabled() && cfg_.backup.archive) {
    auto start = SteadyClock::now();
    auto deadline = start + Seconds(5);
    int ready = -1;
    while (SteadyClock::now() < deadline) {
      ready = -1;
      if (auto* c = local_conn()) {
        if (auto a = pg::query_archiver(*c, cfg_.data_dir)) ready = a->ready_files;
      }
      if (ready <= 0) break;
      std::this_thread::sleep_for(Millis(50));
    }
    auto waited = std::chrono::duration_cast<Millis>(SteadyClock::now() - start).count();
    if (ready > 0) {
      spdlog::warn("switchover: {} WAL file(s) still waiting for the archive after {} ms; shutting down anyway", ready,
                   waited);
    } else if (waited >= 50) {
      spdlog::info("switchover: waited {} ms for the archiver to catch up before the shutdown", waited);
    }
  }
  // Synchronous replication to the candidate fences the hand-over: then every commit we
  // acknowledged is already written on the candidate, and the key can go as soon as
  // PostgreSQL has started its shutdown checkpoint (no client backend is left, no new
  // connection is accepted) instead of after the checkpoint and the last WAL send.
  bool sync_fence = false;
  if (auto* c = local_conn()) {
    auto w = pg::commits_wait_for(*c, candidate);
    if (w) {
      sync_fence = *w;
    } else {
      log_failure("checking synchronous replication to the candidate", w.error());
    }
  }
  // From here on we are leaving: no scheduled backup may start against this server (the
  // HA loop, which tells the observer each cycle, is busy here until the key is gone).
  if (leader_observer_) leader_observer_(false);
  spdlog::info("switchover: stopping PostgreSQL (fast) so {} receives every last WAL record{}", candidate,
               sync_fence ? " (every commit waits for it: the key goes once no client backend is left)" : "");
  bool released = false;
  if (pm_started_ && pm_.request_stop(pg::StopMode::fast)) {
    expect_exit_ = true;
    conn_.reset();
    // Hand the key over once PostgreSQL has written its shutdown checkpoint and its WAL
    // senders are gone, not when the postmaster has exited. A WAL sender leaves only
    // after its standby confirmed flushing everything up to that checkpoint (or lost the
    // connection), which is all the postmaster's own exit tells us about the candidate;
    // after the shutdown checkpoint this server writes no WAL and accepts no connection.
    // What the postmaster still waits for then (the archiver's last segment) no longer
    // keeps the candidate from promoting.
    const auto deadline = SteadyClock::now() + Seconds(30);
    //
    // With the synchronous fence it is enough that no process is left that could answer a
    // client: only the checkpointer, archiver, logger and WAL senders remain (the background
    // and WAL writers, which run while the server takes connections, are gone too), or
    // pg_control already says "shutting down" (the shutdown checkpoint has started). The
    // candidate may then promote before it has the shutdown checkpoint; the old primary
    // rejoins with pg_rewind as after any failover.
    while (!released && SteadyClock::now() < deadline && pm_.running()) {
      auto cd = pg::read_control_file(cfg_.data_dir);
      const bool down = cd && cd->state == pg::ClusterState::shut_down;
      const bool fenced = sync_fence && ((cd && (down || cd->state == pg::ClusterState::shutting_down)) ||
                                         pm_.clients_gone(cfg_.replication.username));
      if (fenced || (down && pm_.walsender_count() == 0)) {
        auto r = store_->release_leader(cfg_.name);
        if (!r) {
          spdlog::warn("switchover: cannot release the leader key yet: {}", r.error().message);
          break;  // try again once PostgreSQL is down
        }
        released = true;
        if (fenced && !down) {
          spdlog::info(
              "switchover: PostgreSQL is shutting down with no client backend left and every acknowledged commit "
              "is on {}; released the leader key while PostgreSQL finishes stopping",
              candidate);
        } else {
          spdlog::info(
              "switchover: PostgreSQL wrote its shutdown checkpoint at {} and no WAL sender is left; released the "
              "leader key for {} while PostgreSQL finishes stopping",
              cd->checkpoint_lsn.to_string(), candidate);
        }
        break;
      }
      std::this_thread::sleep_for(Millis(10));
    }
  }
  auto s = stop_pg(pg::StopMode::fast);
  if (!s) spdlog::warn("fast shutdown: {}", s.error().message);
  if (!released) {
    auto r = store_->release_leader(cfg_.name);
    if (!r) return r.error();
    spdlog::info("switchover: released the leader key for {}", candidate);
  }
  return {};
}

void Agent::apply_parameter_changes(const dcs::ClusterSnapshot& snap) {
  if (!pg_status_ || dyn_.parameters == applied_params_) return;
  pg::Role role = pg_status_->in_recovery ? pg::Role::standby : pg::Role::primary;
  const dcs::Member* upstream = following_.empty() ? nullptr : snap.member(following_);
  auto change = pm_.apply_config(managed(role, upstream));
  if (!change) {
    log_failure("applying changed PostgreSQL parameters", change.error());
    return;
  }
  applied_params_ = dyn_.parameters;
  spdlog::info("applied changed PostgreSQL parameters from the dynamic configuration");
}

void Agent::execute(const Decision& d, const dcs::ClusterSnapshot& snap, const LocalState& local) {
  const dcs::Member* target = d.target.empty() ? nullptr : snap.member(d.target);
  Status s;
  switch (d.action) {
    case Action::none: break;
    case Action::bootstrap: s = do_bootstrap(); break;
    case Action::clone:
      if (target == nullptr) return;
      s = do_clone(*target);
      break;
    case Action::start_replica: s = do_start(pg::Role::standby, target); break;
    case Action::start_primary:
      // Restarting in place: PostgreSQL must wait for the recorded standby from its first
      // commit on, as before the crash (strict: for someone, even if none is recorded).
      if (snap.sync && snap.sync->leader == cfg_.name && snap.sync->sync_standby) {
        sync_names_ = *snap.sync->sync_standby;
      } else if (dyn_.synchronous_mode == dcs::SyncMode::strict) {
        sync_names_ = "*";
      }
      s = do_start(pg::Role::primary, nullptr);
      break;
    case Action::restart: {
      bool primary = local.pg == PgRun::running && !local.in_recovery;
      if (auto st = stop_pg(pg::StopMode::fast); !st) log_failure("stop before restart", st);
      s = do_start(primary ? pg::Role::primary : pg::Role::standby, primary ? nullptr : target);
      break;
    }
    case Action::follow: s = do_follow(target); break;
    case Action::rewind:
      if (target == nullptr) return;
      s = do_rewind(*target);
      break;
    case Action::reinitialize:
      if (target == nullptr) return;
      s = do_clone(*target);
      break;
    case Action::acquire_leader: s = do_acquire(snap, local); break;
    case Action::promote: s = do_promote("leader key held"); break;
    case Action::keep_leader: s = do_keep_leader(d, snap, local); break;
    case Action::demote:
      // Stop writes at once; the next cycle rewinds and follows (or starts read-only).
      s = stop_pg(pg::StopMode::immediate);
      break;
    case Action::fence:
      fenced_ = true;
      s = stop_pg(pg::StopMode::immediate);
      break;
    case Action::release_leader: {
      auto r = store_->release_leader(cfg_.name);
      if (!r) s = r.error();
      break;
    }
    case Action::switchover: s = do_switchover(d.target); break;
    case Action::clear_switchover: s = store_->clear_switchover(); break;
    case Action::bootstrap_from_backup: s = do_bootstrap(true); break;
    case Action::reinitialize_from_backup:
      if (target == nullptr) return;
      s = do_reinit_from_backup(*target);
      break;
  }
  if (!s) spdlog::error("{} failed: {}", to_string(d.action), s.error().message);
  if (d.action == Action::none || d.action == Action::keep_leader) apply_parameter_changes(snap);
  if (d.action == Action::none) finish_archive_catchup(snap);
}

}  // namespace tandem::ha
