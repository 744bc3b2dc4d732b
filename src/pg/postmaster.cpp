#include "pg/postmaster.hpp"

#include <libpq-fe.h>
#include <signal.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include "base/log.hpp"
#include "pg/conninfo.hpp"
#include "pg/files.hpp"
#include "pg/pidfile.hpp"

namespace tandem::pg {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr milliseconds kQuitGrace{2000};
constexpr milliseconds kKillGrace{5000};

// Waits until `gone()` holds or the timeout passes.
bool wait_gone(const std::function<bool()>& gone, milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  auto step = milliseconds(5);
  while (!gone()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(step);
    // Short steps: a switchover's write outage lasts until the old leader's postmaster is
    // seen gone, so every millisecond of polling slack counts there.
    step = std::min(step * 2, milliseconds(10));
  }
  return true;
}

// The shutdown sequence shared by our child and an orphan: mode signal, SIGQUIT, SIGKILL.
// `gone` reports (and for a child, reaps) the postmaster's exit.
Status terminate(const std::string& member, pid_t pid, StopMode mode, milliseconds timeout,
                 const std::function<bool()>& gone) {
  if (gone()) return {};
  spdlog::info("[{}] stopping PostgreSQL (pid {}): {} shutdown", member, pid, to_string(mode));
  if (kill(pid, stop_signal(mode)) != 0 && errno != ESRCH) {
    return make_error(Errc::io, "cannot signal postmaster {}: {}", pid, strerror(errno));
  }
  if (wait_gone(gone, timeout)) return {};
  if (mode != StopMode::immediate) {
    spdlog::warn("[{}] PostgreSQL (pid {}) did not stop within {} ms; switching to immediate shutdown", member, pid,
                 timeout.count());
    kill(pid, SIGQUIT);
    if (wait_gone(gone, kQuitGrace)) return {};
  }
  spdlog::warn("[{}] PostgreSQL (pid {}) ignored its shutdown signal; killing it and its children", member, pid);
  auto children = child_pids(pid);
  kill(pid, SIGKILL);
  for (pid_t c : children) kill(c, SIGKILL);
  bool postmaster_gone = wait_gone(gone, kKillGrace);
  bool children_gone = wait_gone(
      [&] {
        for (pid_t c : children) {
          if (pid_running(c)) return false;
        }
        return true;
      },
      kKillGrace);
  if (!postmaster_gone || !children_gone) {
    return make_error(Errc::timeout, "PostgreSQL (pid {}) survived SIGKILL for {} ms", pid, kKillGrace.count());
  }
  return {};
}

PGPing ping_socket(const Settings& s) {
  ConnParams p = local_superuser(s);
  p.connect_timeout_s = 2;
  p.statement_timeout_ms = 0;
  auto kv = p.keywords();
  std::vector<const char*> keys;
  std::vector<const char*> values;
  for (const auto& [k, v] : kv) {
    keys.push_back(k.c_str());
    values.push_back(v.c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  return PQpingParams(keys.data(), values.data(), 0);
}

}  // namespace

const char* to_string(StopMode m) {
  switch (m) {
    case StopMode::smart: return "smart";
    case StopMode::fast: return "fast";
    case StopMode::immediate: return "immediate";
  }
  return "?";
}

int stop_signal(StopMode m) {
  switch (m) {
    case StopMode::smart: return SIGTERM;
    case StopMode::fast: return SIGINT;
    case StopMode::immediate: return SIGQUIT;
  }
  return SIGQUIT;
}

bool ping(const Settings& s) {
  return ping_socket(s) == PQPING_OK;
}

Postmaster::Postmaster(Settings settings) : s_(std::move(settings)) {}

Status Postmaster::start() {
  if (running()) return make_error(Errc::conflict, "PostgreSQL is already running (pid {})", pid_);
  if (!read_file(s_.data_file("PG_VERSION"))) {
    return make_error(Errc::not_found, "{} is not an initialised data directory (no PG_VERSION)", s_.data_dir);
  }
  if (auto st = ensure_dir(s_.run_dir, 0700, s_.run_as); !st) return st;
  auto removed = remove_stale_pidfile(s_.data_dir);
  if (!removed) return removed.error();
  if (*removed) spdlog::info("[{}] removed a stale postmaster.pid from {}", s_.name, s_.data_dir);

  SpawnOptions opts;
  opts.argv = {s_.bin("postgres"), "-D", s_.data_dir};
  opts.run_as_user = s_.run_as;
  opts.output_file = s_.log_file;
  opts.parent_death_signal = SIGQUIT;
  opts.new_session = true;  // a terminal's Ctrl-C reaches the agent only; the agent decides
  auto pid = spawn(opts);
  if (!pid) return pid.error();
  pid_ = *pid;
  exit_.reset();
  spdlog::info("[{}] started PostgreSQL (pid {}) on {} port {}, log {}", s_.name, pid_, s_.data_dir, s_.port,
               s_.log_file);
  return {};
}

std::optional<ExitStatus> Postmaster::poll() {
  if (pid_ == 0) return std::nullopt;
  if (!exit_) exit_ = try_reap(pid_);
  return exit_;
}

bool Postmaster::running() {
  return pid_ != 0 && !poll();
}

Status Postmaster::wait_ready(milliseconds timeout) {
  if (pid_ == 0) return make_error(Errc::invalid_argument, "PostgreSQL was not started");
  auto deadline = Clock::now() + timeout;
  PGPing last = PQPING_NO_RESPONSE;
  while (true) {
    if (auto ex = poll()) {
      return make_error(Errc::io, "PostgreSQL exited ({}) before accepting connections; last log lines:\n{}",
                        ex->describe(), tail_file(s_.log_file, 15));
    }
    last = ping_socket(s_);
    if (last == PQPING_OK) return {};
    if (Clock::now() >= deadline) break;
    std::this_thread::sleep_for(milliseconds(50));
  }
  const char* why =
      last == PQPING_REJECT ? "it rejects connections (still starting or recovering)" : "nothing answers on its socket";
  return make_error(Errc::timeout, "PostgreSQL (pid {}) not ready within {} ms: {}; last log lines:\n{}", pid_,
                    timeout.count(), why, tail_file(s_.log_file, 10));
}

Status Postmaster::stop(StopMode mode, milliseconds timeout) {
  if (!running()) return {};
  Status st = terminate(s_.name, pid_, mode, timeout, [this] { return poll().has_value(); });
  if (st) spdlog::info("[{}] PostgreSQL stopped ({})", s_.name, exit_ ? exit_->describe() : "gone");
  return st;
}

Status Postmaster::signal(int sig, const char* what) {
  if (!running()) return make_error(Errc::unavailable, "cannot {}: PostgreSQL is not running", what);
  if (kill(pid_, sig) != 0) return make_error(Errc::io, "cannot {} (pid {}): {}", what, pid_, strerror(errno));
  return {};
}

Status Postmaster::request_stop(StopMode mode) {
  return signal(stop_signal(mode), "stop PostgreSQL");
}

int Postmaster::walsender_count() {
  if (!running()) return 0;
  int n = 0;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    // /proc/N/stat: "pid (comm) state ppid ..."; comm may hold spaces, so parse after ')'.
    std::ifstream stat(entry.path() / "stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    auto close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 1));
    char state = 0;
    pid_t ppid = 0;
    if (!(rest >> state >> ppid) || ppid != pid_) continue;
    std::ifstream cmd(entry.path() / "cmdline");
    std::string title;
    std::getline(cmd, title, '\0');
    if (title.starts_with("postgres: ") && title.find("walsender") != std::string::npos) ++n;
  }
  return n;
}

Status Postmaster::promote() {
  if (!running()) return make_error(Errc::unavailable, "cannot promote: PostgreSQL is not running");
  if (!read_file(s_.data_file("standby.signal"))) {
    return make_error(Errc::conflict, "cannot promote: {} is not a standby (no standby.signal)", s_.data_dir);
  }
  if (auto st = write_file_atomic(s_.data_file("promote"), "", 0600, s_.run_as); !st) return st;
  spdlog::info("[{}] promoting PostgreSQL (pid {})", s_.name, pid_);
  return signal(SIGUSR1, "promote");
}

Status Postmaster::reload() {
  return signal(SIGHUP, "reload");
}

Result<ConfigChange> Postmaster::apply_config(const ManagedConfig& cfg) {
  auto change = write_managed_config(s_, cfg);
  if (!change) return change;
  if ((change->conf_changed || change->hba_changed) && running()) {
    if (auto st = reload(); !st) return st.error();
    spdlog::info("[{}] configuration changed; PostgreSQL reloaded", s_.name);
  }
  return change;
}

Result<ConfigChange> set_synchronous_standby_names(Postmaster& pm, ManagedConfig& cfg, const std::string& value) {
  if (cfg.role != Role::primary) {
    return make_error(Errc::invalid_argument, "synchronous_standby_names applies to a primary only");
  }
  cfg.synchronous_standby_names = value;
  return pm.apply_config(cfg);
}

Status stop_orphan_postmaster(const Settings& s, StopMode mode, milliseconds timeout) {
  auto pid = live_postmaster(s.data_dir);
  if (!pid) return {};
  spdlog::warn("[{}] found PostgreSQL (pid {}) from an earlier agent run on {}; stopping it", s.name, *pid, s.data_dir);
  pid_t p = *pid;
  return terminate(s.name, p, mode, timeout, [p] { return !pid_running(p); });
}

}  // namespace tandem::pg
