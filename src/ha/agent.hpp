#pragma once
// Agent: `tandem agent`, one per data member. Supervises its PostgreSQL as a child
// process, keeps its lease and member record in etcd, and runs the HA loop:
// observe -> decide() (pure) -> execute -> publish, woken early by etcd watches.
//
// Threads: the HA loop runs on the thread that calls run() (the process's main thread:
// PostgreSQL is spawned from it, see pg::Postmaster); LeaseKeeper owns two threads; the
// REST API owns its I/O threads and reaches the agent only through AgentControl, whose
// methods write etcd or set flags for the HA thread.
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "api/control.hpp"
#include "api/member_view.hpp"
#include "config/agent_config.hpp"
#include "dcs/store.hpp"
#include "ha/decide.hpp"
#include "pg/conn.hpp"
#include "pg/managed_config.hpp"
#include "pg/postmaster.hpp"
#include "pg/settings.hpp"
#include "pg/status.hpp"

namespace tandem::api {
class HttpServer;
}

namespace tandem::ha {

class LeaseKeeper;

class Agent : public api::AgentControl {
 public:
  explicit Agent(config::AgentConfig cfg);
  ~Agent() override;

  // Runs until SIGTERM/SIGINT (blocked by the caller, see main) or a fatal start-up error.
  // Returns the process exit code.
  int run();

  // AgentControl (called from API threads).
  Result<std::string> switchover(const std::string& leader, const std::string& candidate,
                                 int64_t scheduled_at_ms) override;
  Result<std::string> failover(const std::string& candidate) override;
  Result<std::string> cancel_switchover() override;
  Result<std::string> restart() override;
  Result<std::string> reinitialize(bool force) override;
  Result<std::string> reinitialize_from_backup() override;  // agent_restore.cpp
  Result<std::string> pause(bool paused) override;

  // Called on the HA thread after every cycle with "I am the leader and run as primary"
  // (e.g. BackupScheduler::set_leader). Set before run(); must be cheap and not block.
  void set_leader_observer(std::function<void(bool)> observer) { leader_observer_ = std::move(observer); }

 private:
  Status start_up();
  void shut_down();
  void cycle();
  LocalState observe(const Result<dcs::ClusterSnapshot>& snap);
  void execute(const Decision& d, const dcs::ClusterSnapshot& snap, const LocalState& local);
  void publish(const Result<dcs::ClusterSnapshot>& snap, const LocalState& local);

  // Actions (HA thread only).
  Status do_bootstrap(bool from_backup = false);
  // Runs `tandem agent --setup-roles` for this config (restored: also the superuser).
  Status setup_roles(bool restored);
  // agent_restore.cpp: restore paths instead of initdb / pg_basebackup.
  Status restore_for_bootstrap();
  Status do_reinit_from_backup(const dcs::Member& leader);
  void finish_archive_catchup(const dcs::ClusterSnapshot& snap);
  Status do_clone(const dcs::Member& source);
  Status do_start(pg::Role role, const dcs::Member* upstream);
  Status do_follow(const dcs::Member* upstream);
  Status do_rewind(const dcs::Member& source);
  Status do_acquire(const dcs::ClusterSnapshot& snap, const LocalState& local);
  Status do_promote(const std::string& reason);
  Status do_keep_leader(const Decision& d, const dcs::ClusterSnapshot& snap, const LocalState& local);
  Status do_switchover(const std::string& candidate);
  Status stop_pg(pg::StopMode mode);
  Status ensure_slots(const dcs::ClusterSnapshot& snap);
  void apply_parameter_changes(const dcs::ClusterSnapshot& snap);

  pg::ManagedConfig managed(pg::Role role, const dcs::Member* upstream) const;
  pg::ConnParams remote_params(const dcs::Member& m, bool replication) const;
  Status write_passfile();
  void set_was_primary(bool v);
  bool read_was_primary() const;
  pg::Connection* local_conn();
  dcs::Member member_record(const LocalState& local) const;
  const dcs::DynamicConfig& dyn() const { return dyn_; }

  config::AgentConfig cfg_;
  pg::Settings settings_;
  std::unique_ptr<dcs::ClusterStore> store_;
  std::unique_ptr<LeaseKeeper> keeper_;
  std::unique_ptr<api::HttpServer> http_;
  api::ViewPublisher views_;
  pg::Postmaster pm_;
  std::optional<pg::Connection> conn_;

  dcs::DynamicConfig dyn_;
  std::string passfile_;
  std::string following_;                              // member our standby config points at
  std::string sync_names_;                             // synchronous_standby_names we configured
  std::map<std::string, std::string> applied_params_;  // dynamic parameters PostgreSQL runs with
  Lsn sync_requested_at_;
  bool pm_started_ = false;   // we started a postmaster that has not been reaped
  bool expect_exit_ = false;  // we are stopping it on purpose
  std::string phase_;         // a long action in progress: "cloning", "rewinding", ...
  bool fenced_ = false;
  std::optional<TimePoint> pg_down_since_;
  std::optional<TimePoint> not_streaming_since_;
  std::string last_leader_;
  Lsn last_leader_position_;
  std::string last_reason_;
  uint64_t cycles_ = 0;
  int64_t started_ms_ = 0;
  int64_t pg_started_ms_ = 0;
  std::optional<pg::MemberStatus> pg_status_;
  std::function<void(bool)> leader_observer_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> restart_requested_{false};
  std::atomic<bool> reinit_requested_{false};
  std::atomic<bool> reinit_from_backup_{false};  // with reinit_requested_: from the repository
  bool archive_catchup_ = false;  // rebuilt from a backup: standby keeps restore_command until it streams
};

}  // namespace tandem::ha
