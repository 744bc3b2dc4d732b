#include "base/process.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>

extern char** environ;

namespace tandem {

namespace {

// Writes a message and exits; used in the forked child, where only async-signal-safe calls are allowed.
[[noreturn]] void child_fail(int err_fd, const char* what) {
  int e = errno;
  (void)!write(err_fd, what, strlen(what));
  (void)!write(err_fd, ": ", 2);
  const char* msg = strerror(e);
  (void)!write(err_fd, msg, strlen(msg));
  (void)!write(err_fd, "\n", 1);
  _exit(127);
}

}  // namespace

std::string ExitStatus::describe() const {
  if (signal != 0) return fmt::format("killed by signal {} ({})", signal, strsignal(signal));
  return fmt::format("exit code {}", code);
}

Result<std::pair<uid_t, gid_t>> lookup_user(const std::string& name) {
  struct passwd pw {};
  struct passwd* found = nullptr;
  std::vector<char> buf(16384);
  if (getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
    return make_error(Errc::not_found, "user '{}' does not exist", name);
  }
  return std::make_pair(pw.pw_uid, pw.pw_gid);
}

Status chown_recursive(const std::string& path, const std::string& user) {
  auto ids = lookup_user(user);
  if (!ids) return ids.error();
  std::error_code ec;
  auto apply = [&](const std::filesystem::path& p) -> bool { return lchown(p.c_str(), ids->first, ids->second) == 0; };
  if (!apply(path)) return make_error(Errc::io, "chown {}: {}", path, strerror(errno));
  if (std::filesystem::is_directory(path)) {
    for (auto it = std::filesystem::recursive_directory_iterator(path, ec);
         !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
      if (!apply(it->path())) return make_error(Errc::io, "chown {}: {}", it->path().string(), strerror(errno));
    }
  }
  if (ec) return make_error(Errc::io, "walking {}: {}", path, ec.message());
  return {};
}

// The exec-status pipe closes at exec's point of no return, but the kernel records the new
// argv a little later (when it builds the new stack): until then /proc/<pid>/cmdline is empty.
// Waits, briefly, for that; a child that already exited (exit status pending) shows none.
static void await_new_argv(pid_t pid) {
  const std::string path = "/proc/" + std::to_string(pid) + "/cmdline";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  while (std::chrono::steady_clock::now() < deadline) {
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    char c = 0;
    ssize_t n = read(fd, &c, 1);
    close(fd);
    if (n != 0) return;
    siginfo_t info{};
    if (waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid == pid) return;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

Result<pid_t> spawn(const SpawnOptions& opts) {
  if (opts.argv.empty()) return make_error(Errc::invalid_argument, "spawn: empty argv");

  // Everything the child needs is prepared before fork: no allocation after it.
  std::vector<std::string> env_strings;
  std::map<std::string, std::string> merged;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string s(*e);
    auto eq = s.find('=');
    if (eq != std::string::npos) merged[s.substr(0, eq)] = s.substr(eq + 1);
  }
  for (const auto& [k, v] : opts.env) merged[k] = v;
  std::optional<std::pair<uid_t, gid_t>> ids;
  if (opts.run_as_user) {
    auto r = lookup_user(*opts.run_as_user);
    if (!r) return r.error();
    ids = *r;
    merged["USER"] = *opts.run_as_user;
    merged["LOGNAME"] = *opts.run_as_user;
    merged["HOME"] = "/var/lib/postgresql";
  }
  for (const auto& [k, v] : merged) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_copy = opts.argv;
  std::vector<char*> argv;
  for (auto& s : argv_copy) argv.push_back(s.data());
  argv.push_back(nullptr);
  std::string cwd = opts.cwd.empty() ? "/" : opts.cwd;
  std::string out = opts.output_file.empty() ? "/dev/null" : opts.output_file;

  int out_fd = open(out.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (out_fd < 0) return make_error(Errc::io, "cannot open {}: {}", out, strerror(errno));
  if (ids && opts.output_file.size() > 0) (void)!fchown(out_fd, ids->first, ids->second);

  int in_pipe[2] = {-1, -1};
  if (pipe2(in_pipe, O_CLOEXEC) != 0) {
    close(out_fd);
    return make_error(Errc::io, "pipe: {}", strerror(errno));
  }

  // Closed by a successful exec (CLOEXEC); carries errno when exec fails. spawn() returns
  // only once the child runs the new program, so /proc/<pid>/cmdline already names it.
  int exec_pipe[2] = {-1, -1};
  if (pipe2(exec_pipe, O_CLOEXEC) != 0) {
    close(out_fd);
    close(in_pipe[0]);
    close(in_pipe[1]);
    return make_error(Errc::io, "pipe: {}", strerror(errno));
  }

  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    close(out_fd);
    close(in_pipe[0]);
    close(in_pipe[1]);
    close(exec_pipe[0]);
    close(exec_pipe[1]);
    return make_error(Errc::io, "fork: {}", strerror(errno));
  }
  if (pid == 0) {
    // Child.
    if (dup2(in_pipe[0], 0) < 0) child_fail(out_fd, "dup2 stdin");
    if (dup2(out_fd, 1) < 0 || dup2(out_fd, 2) < 0) child_fail(out_fd, "dup2 output");
    if (dup2(exec_pipe[1], 3) < 0 || fcntl(3, F_SETFD, FD_CLOEXEC) != 0) child_fail(2, "dup2 exec pipe");
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int s = 1; s < NSIG; ++s) signal(s, SIG_DFL);
    if (opts.new_session) setsid();
    // Only stdin/stdout/stderr cross exec: sockets the parent opened without CLOEXEC
    // (an API listener, DCS connections) must not outlive it in a long-running child.
    // (fd 3 is the exec-status pipe, closed by exec itself.)
    if (syscall(SYS_close_range, 4U, ~0U, 0U) != 0) {
      for (int fd = 4; fd < 65536; ++fd) close(fd);
    }
    if (chdir(cwd.c_str()) != 0) child_fail(2, "chdir");
    if (ids) {
      if (setgroups(0, nullptr) != 0) child_fail(2, "setgroups");
      if (setgid(ids->second) != 0) child_fail(2, "setgid");
      if (setuid(ids->first) != 0) child_fail(2, "setuid");
    }
    // Set after the uid change: changing credentials clears the parent-death signal.
    if (opts.parent_death_signal != 0) {
      if (prctl(PR_SET_PDEATHSIG, opts.parent_death_signal) != 0) child_fail(2, "prctl");
      if (getppid() != parent) _exit(126);  // the parent died before we armed the signal
    }
    execve(argv[0], argv.data(), envp.data());
    const int exec_errno = errno;
    (void)!write(3, &exec_errno, sizeof exec_errno);
    child_fail(2, argv[0]);
  }
  close(out_fd);
  close(in_pipe[0]);
  close(exec_pipe[1]);
  int exec_errno = 0;
  ssize_t got;
  do {
    got = read(exec_pipe[0], &exec_errno, sizeof exec_errno);
  } while (got < 0 && errno == EINTR);
  close(exec_pipe[0]);
  if (got == static_cast<ssize_t>(sizeof exec_errno)) {
    close(in_pipe[1]);
    int status = 0;
    (void)waitpid(pid, &status, 0);
    return make_error(Errc::io, "cannot run {}: {}", opts.argv[0], strerror(exec_errno));
  }
  await_new_argv(pid);
  if (!opts.stdin_data.empty()) {
    const char* p = opts.stdin_data.data();
    size_t left = opts.stdin_data.size();
    while (left > 0) {
      ssize_t n = write(in_pipe[1], p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      p += n;
      left -= static_cast<size_t>(n);
    }
  }
  close(in_pipe[1]);
  return pid;
}

static ExitStatus decode(int status) {
  ExitStatus s;
  if (WIFEXITED(status)) s.code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) s.signal = WTERMSIG(status);
  return s;
}

std::optional<ExitStatus> try_reap(pid_t pid) {
  int status = 0;
  pid_t r = waitpid(pid, &status, WNOHANG);
  if (r == pid) return decode(status);
  if (r < 0 && errno == ECHILD) return ExitStatus{};  // already reaped elsewhere
  return std::nullopt;
}

std::optional<ExitStatus> wait_for(pid_t pid, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  auto step = std::chrono::milliseconds(2);
  while (true) {
    if (auto s = try_reap(pid)) return s;
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(step);
    step = std::min(step * 2, std::chrono::milliseconds(50));
  }
}

Result<RunResult> run(const SpawnOptions& opts_in, std::chrono::milliseconds timeout) {
  char tmpl[] = "/tmp/tandem-run-XXXXXX";
  int fd = mkstemp(tmpl);
  if (fd < 0) return make_error(Errc::io, "mkstemp: {}", strerror(errno));
  close(fd);
  SpawnOptions opts = opts_in;
  opts.output_file = tmpl;
  if (opts.run_as_user) {
    if (auto ids = lookup_user(*opts.run_as_user)) (void)!chown(tmpl, ids->first, ids->second);
  }
  auto pid = spawn(opts);
  if (!pid) {
    unlink(tmpl);
    return pid.error();
  }
  auto status = wait_for(*pid, timeout);
  bool timed_out = !status;
  if (timed_out) {
    kill(*pid, SIGKILL);
    status = wait_for(*pid, std::chrono::seconds(5));
  }
  RunResult rr;
  rr.status = status.value_or(ExitStatus{});
  if (FILE* f = fopen(tmpl, "r")) {
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) rr.output.append(buf, n);
    fclose(f);
  }
  unlink(tmpl);
  if (timed_out) {
    return make_error(Errc::timeout, "{} did not finish within {} ms", opts.argv[0], timeout.count());
  }
  return rr;
}

bool process_alive(pid_t pid) {
  return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

std::string self_binary() {
  std::error_code ec;
  std::string self = std::filesystem::read_symlink("/proc/self/exe", ec).string();
  if (ec) return "tandem";
  if (self.ends_with(" (deleted)")) self.resize(self.size() - 10);
  return self;
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

}  // namespace tandem
