#include "ha/agent.hpp"

#include <signal.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include <spdlog/spdlog.h>

#include "api/handler.hpp"
#include "api/http_server.hpp"
#include "ha/lease_keeper.hpp"
#include "pg/admin.hpp"
#include "pg/archiver.hpp"
#include "pg/conninfo.hpp"
#include "pg/setup.hpp"
#include "pg/status.hpp"

namespace tandem::ha {

namespace fs = std::filesystem;

Agent::Agent(config::AgentConfig cfg)
    : cfg_(std::move(cfg)), settings_(pg::settings_from_config(cfg_)), pm_(settings_), dyn_(cfg_.bootstrap) {
  settings_.superuser = cfg_.superuser.username;
  passfile_ = cfg_.run_dir + "/pgpass";
  store_ = dcs::make_etcd_store(dcs::EtcdOptions{cfg_.etcd_endpoints, cfg_.cluster, Millis(cfg_.etcd_call_timeout_ms)});
}

Agent::~Agent() = default;

int Agent::run() {
  started_ms_ = unix_millis_now();
  if (auto s = start_up(); !s) {
    spdlog::critical("cannot start: {}", s.error().message);
    shut_down();
    return 1;
  }
  // SIGTERM/SIGINT are blocked in every thread (see main); one thread turns them into stop_.
  std::thread signals([this] {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR2);
    int sig = 0;
    sigwait(&set, &sig);
    if (sig != SIGUSR2) spdlog::info("received {}; shutting down", strsignal(sig));
    stop_ = true;
    store_->wake();
  });
  while (!stop_) cycle();
  shut_down();
  pthread_kill(signals.native_handle(), SIGUSR2);
  signals.join();
  return 0;
}

Status Agent::start_up() {
  spdlog::info("agent {} of cluster {} starting (etcd {})", cfg_.name, cfg_.cluster,
               fmt::join(cfg_.etcd_endpoints, ","));
  if (auto s = pg::prepare_directories(settings_); !s) return s;
  if (auto s = write_passfile(); !s) return s;
  // A postmaster left by an earlier agent of this member must not run unsupervised.
  if (auto s = pg::stop_orphan_postmaster(settings_, pg::StopMode::fast, Seconds(30)); !s) return s;

  http_ = std::make_unique<api::HttpServer>(api::HttpServerOptions{cfg_.api_listen.host, cfg_.api_listen.port},
                                            api::make_handler(views_, *this));
  if (auto s = http_->start(); !s) return s;

  keeper_ = std::make_unique<LeaseKeeper>(*store_, dyn_.ttl, [this] { store_->wake(); });
  if (auto s = keeper_->start(Seconds(60)); !s) return s;

  // Claim the member name: a live agent elsewhere with the same name is a configuration error.
  LocalState initial;
  initial.name = cfg_.name;
  initial.tags = cfg_.tags;
  auto rec = member_record(initial);
  auto claimed = store_->claim_member(rec, keeper_->lease_id());
  if (!claimed) return claimed.error();
  if (!*claimed) {
    auto snap = store_->load();
    const dcs::Member* other = snap ? snap->member(cfg_.name) : nullptr;
    if (other != nullptr && other->api_url != rec.api_url) {
      return make_error(Errc::conflict,
                        "member name '{}' is already used in cluster '{}' by a running agent (API {}); give this agent "
                        "another name",
                        cfg_.name, cfg_.cluster, other->api_url);
    }
    // Same API address, and we could bind it: the record is left by a dead predecessor.
    spdlog::info("taking over the member record of a previous agent of {}", cfg_.name);
  }
  return {};
}

void Agent::shut_down() {
  if (pm_started_) {
    bool primary = pg_status_ && !pg_status_->in_recovery;
    spdlog::info("stopping PostgreSQL (fast)");
    (void)stop_pg(pg::StopMode::fast);
    // The leader key goes with the lease; a clean leader releases it first so a follower
    // can take over without waiting for the ttl.
    if (primary) (void)store_->release_leader(cfg_.name);
  }
  if (keeper_) {
    keeper_->stop();
    keeper_->revoke();
  }
  if (http_) http_->stop();
  spdlog::info("agent {} stopped", cfg_.name);
}

void Agent::cycle() {
  ++cycles_;
  auto snap = store_->load();
  if (snap && !snap->config) {
    // The first agent writes the dynamic configuration from its bootstrap section.
    auto w = store_->write_config(cfg_.bootstrap, 0);
    if (w && *w) spdlog::info("wrote the initial dynamic configuration");
    snap = store_->load();
  }
  if (snap && snap->config) {
    dyn_ = *snap->config;
  }
  LocalState local = observe(snap);
  static const dcs::ClusterSnapshot kEmpty;
  const dcs::ClusterSnapshot& cs = snap ? *snap : kEmpty;
  Decision d = decide(cs, local, dyn_, SteadyClock::now(), unix_millis_now());
  // One line per cycle, like Patroni: what this member did and why.
  spdlog::info("{}", d.reason);
  last_reason_ = d.reason;
  execute(d, cs, local);
  publish(snap, local);

  bool writable = pm_started_ && pg_status_ && !pg_status_->in_recovery;
  keeper_->arm(pm_.pid(), writable, dyn_.paused, dyn_.ttl);
  if (leader_observer_) leader_observer_(writable && cs.leader && cs.leader->name == cfg_.name);
  if (stop_) return;
  bool busy = d.action != Action::none && d.action != Action::keep_leader;
  if (busy || d.sync.step != SyncPlan::Step::none) {
    // Something changed: look again soon rather than a full loop_wait later.
    (void)store_->wait_for_change(snap ? snap->revision : 0, Millis(100));
  } else {
    (void)store_->wait_for_change(snap ? snap->revision : 0, Seconds(dyn_.loop_wait));
  }
}

pg::Connection* Agent::local_conn() {
  if (conn_ && conn_->ok()) return &*conn_;
  conn_.reset();
  auto c = pg::Connection::open(pg::local_superuser(settings_, std::max(1000, dyn_.retry_timeout * 1000)));
  if (!c) return nullptr;
  conn_.emplace(std::move(*c));
  return &*conn_;
}

LocalState Agent::observe(const Result<dcs::ClusterSnapshot>& snap) {
  LocalState l;
  auto now = SteadyClock::now();
  l.name = cfg_.name;
  l.tags = cfg_.tags;
  l.dcs_ok = snap.ok();
  l.data_initialized = pg::data_dir_initialised(settings_);
  l.was_primary = read_was_primary();
  if (keeper_->take_fenced()) {
    fenced_ = true;
    expect_exit_ = true;
  }
  pg_status_.reset();
  if (pm_started_) {
    if (auto exit = pm_.poll()) {
      pm_started_ = false;
      conn_.reset();
      if (!expect_exit_) {
        spdlog::error("PostgreSQL exited unexpectedly: {}", exit->describe());
        pg_down_since_ = now;
      }
      expect_exit_ = false;
    }
  }
  if (!pm_started_) {
    l.pg = pg_down_since_ ? PgRun::crashed : PgRun::stopped;
  } else if (auto* c = local_conn()) {
    auto st = pg::query_status(*c);
    if (st) {
      pg_status_ = *st;
      l.pg = PgRun::running;
      pg_down_since_.reset();
      fenced_ = false;
    } else {
      conn_.reset();
      l.pg = PgRun::starting;
    }
  } else {
    l.pg = PgRun::starting;
  }
  if (pg_status_) {
    const auto& st = *pg_status_;
    l.in_recovery = st.in_recovery;
    l.timeline = st.timeline;
    l.wal_position = st.wal_position();
    l.streaming = st.streaming();
    l.synchronous_standby_names = st.synchronous_standby_names;
    for (const auto& r : st.replication) {
      l.replicas.push_back(
          ReplicaPeer{r.application_name, r.state == "streaming", r.sync_state == "sync", r.flush_lsn, r.replay_lsn});
    }
  }
  l.following = following_;
  if (l.pg == PgRun::running && l.in_recovery && !l.streaming) {
    if (!not_streaming_since_) not_streaming_since_ = now;
  } else {
    not_streaming_since_.reset();
  }
  l.not_streaming_since = not_streaming_since_;
  l.pg_down_since = pg_down_since_;
  l.lease_deadline = keeper_->deadline();
  if (snap && snap->leader) {
    if (const dcs::Member* lm = snap->leader_member(); lm != nullptr && lm->name != cfg_.name) {
      last_leader_position_ = std::max(last_leader_position_, lm->wal_position);
    }
    if (last_leader_ != snap->leader->name) last_leader_position_ = Lsn();
    last_leader_ = snap->leader->name;
  }
  l.last_leader = last_leader_;
  l.last_leader_position = last_leader_position_;
  l.sync_requested_at = sync_requested_at_;
  l.restart_requested = restart_requested_.exchange(false);
  l.reinit_requested = reinit_requested_.exchange(false);
  l.reinit_from_backup = reinit_from_backup_.exchange(false);
  l.bootstrap_from_backup = cfg_.bootstrap_from_backup.enabled();
  l.archive_catchup = archive_catchup_;
  return l;
}

dcs::Member Agent::member_record(const LocalState& local) const {
  dcs::Member m;
  m.name = cfg_.name;
  m.api_url = "http://" + cfg_.api_connect.to_string();
  m.conn_url = fmt::format("postgres://{}/postgres", cfg_.pg_connect.to_string());
  m.host = cfg_.pg_connect.host;
  m.pg_port = cfg_.pg_connect.port;
  m.tags = cfg_.tags;
  m.updated_ms = unix_millis_now();
  m.timeline = local.timeline;
  if (!local.data_initialized && phase_.empty()) {
    m.role = "uninitialized";
    m.state = "stopped";
  } else if (local.pg == PgRun::running) {
    m.role = local.in_recovery ? "replica" : (last_leader_ == cfg_.name ? "leader" : "primary");
    m.state = local.in_recovery && local.streaming ? "streaming" : "running";
    if (pg_status_) {
      m.wal_position = local.wal_position;
      m.replay_position = pg_status_->replay_lsn.value_or(Lsn());
      m.pending_restart = pg_status_->pending_restart;
    }
  } else {
    m.role = local.was_primary ? "primary" : "replica";
    m.state = local.pg == PgRun::starting ? "starting" : local.pg == PgRun::crashed ? "crashed" : "stopped";
    if (fenced_) m.state = "fenced";
  }
  if (!phase_.empty()) m.state = phase_;
  return m;
}

void Agent::publish(const Result<dcs::ClusterSnapshot>& snap, const LocalState& local_in) {
  // Re-observe the cheap parts the action may have changed.
  LocalState local = local_in;
  if (pg_status_) {
    local.pg = PgRun::running;
    local.in_recovery = pg_status_->in_recovery;
  } else if (!pm_started_) {
    local.pg = pg_down_since_ ? PgRun::crashed : PgRun::stopped;
  }
  local.data_initialized = pg::data_dir_initialised(settings_);
  local.was_primary = read_was_primary();
  dcs::Member rec = member_record(local);
  if (keeper_->lease_id() != 0 && snap.ok()) {
    if (auto s = store_->put_member(rec, keeper_->lease_id()); !s)
      spdlog::warn("cannot publish member status: {}", s.error().message);
  }
  api::MemberView v;
  v.member = cfg_.name;
  v.cluster = cfg_.cluster;
  v.role = rec.role;
  v.pg_state = rec.state;
  bool i_lead = snap.ok() && snap->leader && snap->leader->name == cfg_.name;
  auto deadline = keeper_->deadline();
  bool lease_live = deadline && SteadyClock::now() < *deadline - fence_margin(dyn_);
  v.pg_running = pg_status_.has_value();
  v.in_recovery = pg_status_ && pg_status_->in_recovery;
  v.holds_leader_lease = i_lead && lease_live && v.pg_running && !v.in_recovery;
  v.streaming = pg_status_ && pg_status_->streaming();
  v.timeline = local.timeline;
  v.wal_position = rec.wal_position;
  v.replay_position = rec.replay_position;
  if (snap.ok()) {
    const dcs::Member* lm = snap->leader_member();
    if (v.in_recovery && lm != nullptr && lm->name != cfg_.name) {
      v.lag_bytes = lm->wal_position > rec.wal_position
                        ? static_cast<int64_t>(lm->wal_position.value() - rec.wal_position.value())
                        : 0;
    } else if (!v.in_recovery && v.pg_running) {
      v.lag_bytes = 0;
    }
    v.is_sync_standby = snap->sync && snap->sync->sync_standby && *snap->sync->sync_standby == cfg_.name;
    v.snapshot = *snap;
  }
  v.sync_mode = dyn_.synchronous_mode;
  v.paused = dyn_.paused;
  auto now = SteadyClock::now();
  if (auto r = keeper_->last_renewal()) v.lease_age_ms = std::chrono::duration_cast<Millis>(now - *r).count();
  if (deadline) v.lease_remaining_ms = std::chrono::duration_cast<Millis>(*deadline - now).count();
  v.pending_restart = rec.pending_restart;
  v.pg_start_time_ms = pg_status_ ? pg_status_->postmaster_start_unix * 1000 : 0;
  v.agent_start_time_ms = started_ms_;
  v.api_url = rec.api_url;
  v.conn_url = rec.conn_url;
  v.tags = cfg_.tags;
  v.dcs_reachable = snap.ok();
  v.ha_cycles = cycles_;
  v.last_decision = last_reason_;
  v.version = "0.1.0";
  if (cfg_.backup.enabled() && cfg_.backup.archive && pg_status_) {
    if (auto* c = local_conn()) {
      if (auto a = pg::query_archiver(*c, cfg_.data_dir)) {
        v.archive =
            api::ArchiveView{a->archived_count,    a->failed_count,   a->last_archived_unix, a->last_failed_unix,
                             a->last_archived_wal, a->lag_segments(), a->ready_files};
      }
    }
  }
  v.published_ms = unix_millis_now();
  views_.publish(std::move(v));
}

// --- AgentControl: called from API threads; they only write etcd or set flags. ---

Result<std::string> Agent::switchover(const std::string& leader, const std::string& candidate,
                                      int64_t scheduled_at_ms) {
  auto snap = store_->load();
  if (!snap) return snap.error();
  if (!snap->leader) return make_error(Errc::conflict, "there is no leader to switch over from; use failover");
  if (!leader.empty() && leader != snap->leader->name) {
    return make_error(Errc::conflict, "{} is not the leader (the leader is {})", leader, snap->leader->name);
  }
  if (!candidate.empty()) {
    if (candidate == snap->leader->name)
      return make_error(Errc::invalid_argument, "{} is already the leader", candidate);
    const dcs::Member* m = snap->member(candidate);
    if (m == nullptr) return make_error(Errc::not_found, "{} is not a member of cluster {}", candidate, cfg_.cluster);
    if (m->state != "streaming")
      return make_error(Errc::conflict, "{} is not streaming from the leader (state {})", candidate, m->state);
  }
  auto ok = store_->set_switchover(dcs::Switchover{snap->leader->name, candidate, scheduled_at_ms, 0});
  if (!ok) return ok.error();
  if (!*ok) return make_error(Errc::conflict, "another switchover is already pending");
  return fmt::format("switchover from {} to {} {}", snap->leader->name,
                     candidate.empty() ? "the healthiest replica" : candidate,
                     scheduled_at_ms > 0 ? "scheduled" : "started");
}

Result<std::string> Agent::failover(const std::string& candidate) {
  if (candidate.empty()) return make_error(Errc::invalid_argument, "failover needs a candidate");
  auto snap = store_->load();
  if (!snap) return snap.error();
  const dcs::Member* m = snap->member(candidate);
  if (m == nullptr) return make_error(Errc::not_found, "{} is not a member of cluster {}", candidate, cfg_.cluster);
  if (snap->leader && snap->leader->name == candidate)
    return make_error(Errc::invalid_argument, "{} is already the leader", candidate);
  std::string leader = snap->leader ? snap->leader->name : "";
  auto ok = store_->set_switchover(dcs::Switchover{leader, candidate, 0, 0});
  if (!ok) return ok.error();
  if (!*ok) return make_error(Errc::conflict, "another switchover or failover is already pending");
  return fmt::format("failover to {} started", candidate);
}

Result<std::string> Agent::cancel_switchover() {
  if (auto s = store_->clear_switchover(); !s) return s.error();
  return std::string("pending switchover cancelled");
}

Result<std::string> Agent::restart() {
  restart_requested_ = true;
  store_->wake();
  return std::string("restart requested");
}

Result<std::string> Agent::reinitialize(bool /*force*/) {
  auto snap = store_->load();
  if (snap && snap->leader && snap->leader->name == cfg_.name) {
    return make_error(Errc::conflict, "{} is the leader; switch over before reinitializing it", cfg_.name);
  }
  reinit_from_backup_ = false;
  reinit_requested_ = true;
  store_->wake();
  return std::string("reinitialize requested");
}

Result<std::string> Agent::pause(bool paused) {
  for (int attempt = 0; attempt < 5; ++attempt) {
    auto snap = store_->load();
    if (!snap) return snap.error();
    dcs::DynamicConfig c = snap->config.value_or(cfg_.bootstrap);
    c.paused = paused;
    auto ok = store_->write_config(c, snap->config ? snap->config->mod_revision : 0);
    if (!ok) return ok.error();
    if (*ok) return std::string(paused ? "cluster paused: no automatic HA actions" : "cluster resumed");
  }
  return make_error(Errc::conflict, "the configuration changed concurrently; try again");
}

void Agent::set_was_primary(bool v) {
  std::string path = cfg_.run_dir + "/was_primary";
  if (v) {
    std::ofstream(path) << "1\n";
  } else {
    std::error_code ec;
    fs::remove(path, ec);
  }
}

bool Agent::read_was_primary() const {
  return fs::exists(cfg_.run_dir + "/was_primary");
}

}  // namespace tandem::ha
