#pragma once
// postmaster.pid, the lock file PostgreSQL keeps in its data directory, and the checks
// that tell a live postmaster from a stale lock file (dead pid, zombie, or a pid reused
// by an unrelated program). Free functions; safe from any thread.
#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "base/result.hpp"

namespace tandem::pg {

struct PidFile {
  pid_t pid = 0;
  std::string data_dir;
  int64_t start_time = 0;  // unix seconds
  int port = 0;
  std::string socket_dir;
  std::string listen_addr;
  std::string status;  // "starting", "ready", "stopping", "standby" (may be empty)
};

// Parses the content of postmaster.pid; invalid_argument when the first line is no pid.
Result<PidFile> parse_pidfile(const std::string& text);

// Reads <data_dir>/postmaster.pid; not_found when there is none.
Result<PidFile> read_pidfile(const std::string& data_dir);

// True while a process with this pid exists and is not a zombie.
bool pid_running(pid_t pid);

// True when the process runs the `postgres` executable.
bool is_postgres_process(pid_t pid);

// The pids of the running children of a process (from /proc).
std::vector<pid_t> child_pids(pid_t parent);

// The pid of a live postmaster owning data_dir according to postmaster.pid, or nullopt
// when the file is missing or stale. A pid that now belongs to another program counts
// as stale.
std::optional<pid_t> live_postmaster(const std::string& data_dir);

// Removes postmaster.pid when it is stale; conflict when its postmaster is alive.
// Returns whether a file was removed.
Result<bool> remove_stale_pidfile(const std::string& data_dir);

}  // namespace tandem::pg
