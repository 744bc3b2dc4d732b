#pragma once
// BackupScheduler: scheduled full backups on the leader. While the agent reports that it
// is the leader, the scheduler runs `tandem backup create --config AGENT.yaml` every
// `schedule` (the first one shortly after it became leader when the repository has no
// recent backup), then `tandem backup expire` to apply retention. Both run as child
// processes of the agent, watched from the scheduler's own thread, so a slow backup never
// delays the HA loop or lease renewal; output goes to a log file, one summary line to the
// agent log.
//
// Owned by `tandem agent` (created before Agent::run(), destroyed after it returns). The
// HA thread only calls set_leader(); everything else happens on the scheduler thread.
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "base/result.hpp"

namespace tandem::ha {

struct BackupScheduleOptions {
  std::string tandem_binary;  // this executable
  std::string config_path;    // the agent's YAML (its backup: section names the repository)
  std::chrono::seconds schedule{24 * 3600};
  std::chrono::seconds first_delay{10};   // after becoming leader, when a backup is due
  std::chrono::seconds retry_delay{600};  // after a failed backup
  std::string log_path;                   // children's stdout and stderr
};

class BackupScheduler {
 public:
  explicit BackupScheduler(BackupScheduleOptions options);
  ~BackupScheduler();  // stops the thread; a running backup is terminated (SIGTERM)
  BackupScheduler(const BackupScheduler&) = delete;
  BackupScheduler& operator=(const BackupScheduler&) = delete;

  void start();
  // Called by the HA loop every cycle; cheap.
  void set_leader(bool leader);

 private:
  using Steady = std::chrono::steady_clock;
  void loop();
  // Asks the repository for the newest complete backup's start time.
  Result<std::optional<std::chrono::system_clock::time_point>> newest_backup();
  void plan_next();
  void start_backup();
  void finish_backup(const std::string& outcome, bool ok);
  std::string output_since(uint64_t offset) const;

  BackupScheduleOptions opts_;
  std::atomic<bool> leader_{false};
  std::atomic<bool> stop_{false};
  std::mutex m_;
  std::condition_variable cv_;
  std::thread thread_;
  // Scheduler thread only.
  bool was_leader_ = false;
  std::optional<Steady::time_point> next_due_;
  pid_t child_ = -1;
  Steady::time_point child_started_;
  uint64_t log_offset_ = 0;
};

}  // namespace tandem::ha
