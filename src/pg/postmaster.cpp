#include "pg/postmaster.hpp"

#include <libpq-fe.h>
#include <signal.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string_view>
#include <thread>
#include <vector>

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

namespace {

// /proc/N/stat: "pid (comm) state ppid ..."; comm may hold spaces, so parse after ')'.
bool read_stat(const std::string& pid, char& state, pid_t& ppid) {
  std::ifstream stat("/proc/" + pid + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  auto close = line.rfind(')');
  if (close == std::string::npos) return false;
  std::istringstream rest(line.substr(close + 1));
  return static_cast<bool>(rest >> state >> ppid);
}

}  // namespace

std::vector<std::string> Postmaster::child_titles() {
  std::vector<std::string> titles;
  auto add = [&titles](const std::string& pid) {
    char state = 0;
    pid_t ppid = 0;
    if (!read_stat(pid, state, ppid) || state == 'Z') return;  // gone, or exited and not reaped yet
    std::ifstream cmd("/proc/" + pid + "/cmdline");
    std::string title;
    std::getline(cmd, title, '\0');
    titles.push_back(std::move(title));
  };
  // /proc/PID/task/PID/children lists the main thread's children (the postmaster has one
  // thread); without it (CONFIG_PROC_CHILDREN off), scan /proc for our parent pid.
  std::ifstream list("/proc/" + std::to_string(pid_) + "/task/" + std::to_string(pid_) + "/children");
  if (list) {
    std::string child;
    while (list >> child) add(child);
    return titles;
  }
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    char state = 0;
    pid_t ppid = 0;
    if (read_stat(name, state, ppid) && ppid == pid_) add(name);
  }
  return titles;
}

int Postmaster::walsender_count() {
  if (!running()) return 0;
  int n = 0;
  for (const auto& title : child_titles()) {
    if (title.starts_with("postgres: ") && title.find("walsender") != std::string::npos) ++n;
  }
  return n;
}

bool Postmaster::clients_gone(const std::string& replication_user) {
  if (!running()) return true;
  return only_shutdown_processes(child_titles(), s_.name, replication_user);
}

bool only_shutdown_processes(const std::vector<std::string>& titles, const std::string& cluster_name,
                             const std::string& replication_user) {
  // The background and WAL writers run for as long as the server takes connections.
  for (const auto& t : titles) {
    if (t.starts_with("postgres: ") &&
        (t.find(": background writer") != std::string::npos || t.find(": walwriter") != std::string::npos)) {
      return false;
    }
  }
  for (const auto& full : titles) {
    std::string_view t = full;
    // Not titled: a fork that has not read its startup packet. Once the shutdown has begun
    // the postmaster forks only children that refuse the connection, and every backend it
    // forked before got SIGTERM with the rest; neither ever runs a query.
    if (!t.starts_with("postgres: ")) continue;
    t.remove_prefix(10);
    if (!cluster_name.empty() && t.starts_with(cluster_name + ": ")) t.remove_prefix(cluster_name.size() + 2);
    std::vector<std::string_view> words;
    for (size_t i = 0; i < t.size();) {
      size_t j = t.find(' ', i);
      if (j == std::string_view::npos) j = t.size();
      if (j > i) words.push_back(t.substr(i, j - i));
      i = j + 1;
    }
    if (words.empty()) return false;
    const auto first = words[0];
    if (words.size() == 1 && (first == "checkpointer" || first == "logger")) continue;
    if (first == "archiver") continue;  // "archiver", "archiver last was F", "archiver failed on F"
    // Physical: "walsender USER HOST(PORT) STATE" or "walsender USER [local] STATE";
    // logical: "walsender USER DB HOST(PORT) ...". (A client backend of a role named
    // "walsender" reads "walsender DB HOST ...", hence the user check.)
    if (first == "walsender" && words.size() >= 3 && words[1] == replication_user &&
        (words[2] == "[local]" || words[2].find('(') != std::string_view::npos)) {
      continue;
    }
    return false;
  }
  return true;
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
