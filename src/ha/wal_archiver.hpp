#pragma once
// WalArchiverSupervisor: runs `tandem wal-archiver --config AGENT.yaml` (an AsyncArchiver,
// see backup/async_archiver.hpp) as a child process while this member leads and
// PostgreSQL runs as primary, so ready WAL files are pushed in parallel ahead of
// archive_command, which then acknowledges them at once. The child runs as PostgreSQL's OS
// user, like archive_command, so both read and write the same spool and file store; a
// crash in it never takes the agent down. It is restarted after a delay when it exits
// while we lead (doubling up to a minute while it keeps exiting within 10 s), and stopped (SIGTERM, pushes in flight
// complete) when we stop leading; archive_command keeps working without it (it pushes every file itself).
//
// Owned by `tandem agent` (created before Agent::run(), destroyed after it returns). The
// HA thread only calls set_leader(); the child is spawned, watched and stopped on the
// supervisor's own thread (which outlives the child, as spawn() requires).
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

namespace tandem::ha {

struct WalArchiverOptions {
  std::string tandem_binary;  // this executable
  std::string config_path;    // the agent's YAML (backup: section, data_dir, run_dir, run_as)
  std::string run_as;         // PostgreSQL's OS user; empty = ours
  std::string log_path;       // the child's stdout and stderr
  std::string socket_path;    // served to PostgreSQL's archive module (--socket); empty = none
  std::chrono::milliseconds restart_delay{2000};
};

class WalArchiverSupervisor {
 public:
  explicit WalArchiverSupervisor(WalArchiverOptions options);
  ~WalArchiverSupervisor();  // stops the child and the thread
  WalArchiverSupervisor(const WalArchiverSupervisor&) = delete;
  WalArchiverSupervisor& operator=(const WalArchiverSupervisor&) = delete;

  void start();
  // Called by the HA loop every cycle; cheap.
  void set_leader(bool leader);

 private:
  using Steady = std::chrono::steady_clock;
  void loop();
  void stop_child();

  WalArchiverOptions opts_;
  std::atomic<bool> leader_{false};
  std::atomic<bool> stop_{false};
  std::mutex m_;
  std::condition_variable cv_;
  std::thread thread_;
  // Supervisor thread only.
  pid_t child_ = -1;
  Steady::time_point started_{};
  Steady::time_point next_start_{};
  std::chrono::milliseconds delay_{0};  // doubles (up to a minute) while the child keeps failing fast
};

}  // namespace tandem::ha
