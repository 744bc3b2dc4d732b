#pragma once
// Spawning and supervising child processes (PostgreSQL, etcd, agents).
// Call spawn() from a thread that lives as long as the process: the kernel sends
// the parent-death signal when the *thread* that forked exits.
#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/result.hpp"

namespace tandem {

struct SpawnOptions {
  std::vector<std::string> argv;           // argv[0] is the program path
  std::map<std::string, std::string> env;  // added to (or replacing in) the inherited environment
  std::optional<std::string> run_as_user;  // drop to this user (e.g. "postgres") before exec
  std::string cwd;                         // working directory; "/" when empty
  std::string output_file;                 // stdout+stderr appended here; /dev/null when empty
  int parent_death_signal = 0;             // e.g. SIGQUIT: delivered when we die, even by SIGKILL
  bool new_session = false;                // setsid(): detach from our terminal and process group
  std::string stdin_data;                  // written to the child's stdin (then closed)
};

// Starts a child and returns its pid once it runs the new program (exec succeeded), so
// /proc/<pid>/cmdline already shows argv. A program that cannot be executed is an io
// error naming it (the child is reaped).
Result<pid_t> spawn(const SpawnOptions& opts);

struct ExitStatus {
  int code = -1;   // exit code, or -1 when killed by a signal
  int signal = 0;  // the signal that ended it
  bool ok() const { return code == 0; }
  std::string describe() const;
};

// Non-blocking reap: nullopt while the child still runs.
std::optional<ExitStatus> try_reap(pid_t pid);
// Waits up to `timeout` for the child; nullopt when it still runs.
std::optional<ExitStatus> wait_for(pid_t pid, std::chrono::milliseconds timeout);

struct RunResult {
  ExitStatus status;
  std::string output;  // stdout and stderr together
};

// Runs a command to completion and captures its output, killing it after `timeout`.
Result<RunResult> run(const SpawnOptions& opts, std::chrono::milliseconds timeout);

// True when a process with this pid exists (any owner).
bool process_alive(pid_t pid);

// uid/gid of a user name.
Result<std::pair<uid_t, gid_t>> lookup_user(const std::string& name);

// chown -R to a user (used to hand directories to the postgres user).
Status chown_recursive(const std::string& path, const std::string& user);

// The path of the running tandem binary (/proc/self/exe, without the " (deleted)" the
// kernel appends when the file was replaced on disk); "tandem" when it cannot be read.
std::string self_binary();

// A word for /bin/sh: single-quoted, with embedded quotes escaped.
std::string shell_quote(const std::string& s);

}  // namespace tandem
