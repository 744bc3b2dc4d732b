#pragma once
// Postmaster: runs the local PostgreSQL server as a direct child of the agent.
//
// The server runs as Settings::run_as in its own session, with stderr/stdout appended to
// Settings::log_file. It gets SIGQUIT as its parent-death signal: if the agent dies,
// even by SIGKILL, PostgreSQL performs an immediate shutdown, so a member whose agent is
// gone stops accepting writes at once.
//
// Lifetime and threads: owned by the agent's HA state; one thread at a time. start()
// MUST be called from a thread that lives as long as the agent process (the main
// thread): the kernel delivers the parent-death signal when the *thread* that forked
// the child exits, not the process. All other methods may be called from any one thread.
// Destroying a Postmaster does not stop the server; call stop() first.
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/process.hpp"
#include "base/result.hpp"
#include "pg/managed_config.hpp"
#include "pg/settings.hpp"

namespace tandem::pg {

// PostgreSQL's shutdown modes: smart waits for clients (SIGTERM), fast disconnects them
// and checkpoints (SIGINT), immediate quits without a checkpoint (SIGQUIT; crash
// recovery at the next start).
enum class StopMode { smart, fast, immediate };
const char* to_string(StopMode m);
int stop_signal(StopMode m);

class Postmaster {
 public:
  explicit Postmaster(Settings settings);
  Postmaster(const Postmaster&) = delete;
  Postmaster& operator=(const Postmaster&) = delete;

  // Spawns `postgres -D <data_dir>`. Creates the socket directory when missing, refuses
  // (conflict) when postmaster.pid names a live postmaster, removes it when it is stale.
  // Returns once the process runs; use wait_ready() to wait for connections.
  // Call from the agent's main thread (see the class comment).
  Status start();

  // Reaps the child if it has exited; returns its exit status once it has.
  std::optional<ExitStatus> poll();
  // True while our child runs (polls first).
  bool running();
  // The child's pid; 0 before start().
  pid_t pid() const { return pid_; }

  // Waits until the server accepts connections on its socket (PQping), the child exits
  // (io error quoting the server log) or the timeout passes (timeout error).
  Status wait_ready(std::chrono::milliseconds timeout);

  // Sends the mode's signal and waits up to `timeout`. If the server still runs, sends
  // SIGQUIT (smart/fast) and waits 2 s more, then SIGKILLs the postmaster and its
  // children. Succeeds once the server is gone; a server that was not running is fine.
  Status stop(StopMode mode, std::chrono::milliseconds timeout);

  // Sends the mode's signal and returns at once; poll() or stop() to see the server go.
  Status request_stop(StopMode mode);

  // How many WAL senders the running server has (its children whose process title says
  // walsender, from /proc). 0 when it does not run.
  int walsender_count();

  // True once a running server that was asked to stop (request_stop) has no process left
  // that could answer a client: every child is the checkpointer, the archiver, the logger,
  // a physical WAL sender of `replication_user` or a fork that has not read its startup
  // packet (see only_shutdown_processes). The background writer and WAL writer, which run as long
  // as the server takes connections, must be gone too, so this is never true of a server
  // that has not started its shutdown. From /proc; poll it.
  bool clients_gone(const std::string& replication_user);

  // Promotes a standby without waiting: writes <data>/promote and sends SIGUSR1, as
  // pg_ctl promote does. Poll status (in_recovery) to see it finish. conflict when the
  // member is not a standby.
  Status promote();

  // Sends SIGHUP: the server re-reads its configuration files.
  Status reload();

  // Writes the managed configuration (write_managed_config) and reloads when a file
  // changed and the server runs. A changed standby.signal needs a restart: see
  // ConfigChange::standby_signal_changed.
  Result<ConfigChange> apply_config(const ManagedConfig& cfg);

  const Settings& settings() const { return s_; }

 private:
  Status signal(int sig, const char* what);
  // The process titles of the postmaster's live children (/proc; zombies left out).
  std::vector<std::string> child_titles();

  Settings s_;
  pid_t pid_ = 0;
  std::optional<ExitStatus> exit_;
};

// Sets synchronous_standby_names (e.g. from render_sync_standby_names()) in `cfg` and
// applies it through tandem.conf + reload, the one mechanism for every managed setting.
// The new value is live once SHOW reports it: see wait_for_setting() in admin.hpp.
Result<ConfigChange> set_synchronous_standby_names(Postmaster& pm, ManagedConfig& cfg, const std::string& value);

// For an agent that restarts and finds a postmaster from an earlier run still alive on
// its data directory (postmaster.pid with a live postgres pid): stops it with `mode`
// (normally immediate), waits up to `timeout`, then SIGKILLs it and its children, so
// the agent can start its own. Succeeds when there was nothing to stop.
Status stop_orphan_postmaster(const Settings& s, StopMode mode, std::chrono::milliseconds timeout);

// True when the server accepts connections on its unix socket (PQping).
bool ping(const Settings& s);

// Whether a postmaster with children of these process titles (/proc/PID/cmdline up to the
// first NUL, e.g. "postgres: pg1: checkpointer ") has begun its shutdown and has no
// process left that could answer a client. False while the background writer or WAL
// writer runs (they stop only once the shutdown has begun). Then every titled child must
// be the checkpointer, the archiver, the logger or a physical WAL sender of
// `replication_user` ("walsender USER HOST(PORT) ..." or "walsender USER [local] ..."; a
// logical WAL sender names a database and can run SQL); untitled children (forks that
// have not read a startup packet) do not count. `cluster_name` is the server's
// cluster_name ("" when unset).
bool only_shutdown_processes(const std::vector<std::string>& titles, const std::string& cluster_name,
                             const std::string& replication_user);

}  // namespace tandem::pg
