#include "pg/pidfile.hpp"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <filesystem>
#include <sstream>
#include <vector>

#include "pg/files.hpp"

namespace tandem::pg {

Result<PidFile> parse_pidfile(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  PidFile pf;
  auto as_int = [](const std::string& s, auto& out) {
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && p == s.data() + s.size();
  };
  if (lines.empty() || !as_int(lines[0], pf.pid) || pf.pid <= 0) {
    return make_error(Errc::invalid_argument, "postmaster.pid does not start with a process id");
  }
  auto at = [&](size_t i) { return i < lines.size() ? lines[i] : std::string(); };
  pf.data_dir = at(1);
  if (!as_int(at(2), pf.start_time)) pf.start_time = 0;
  if (!as_int(at(3), pf.port)) pf.port = 0;
  pf.socket_dir = at(4);
  pf.listen_addr = at(5);
  pf.status = at(7);
  while (!pf.status.empty() && pf.status.back() == ' ') pf.status.pop_back();
  return pf;
}

Result<PidFile> read_pidfile(const std::string& data_dir) {
  auto text = read_file(data_dir + "/postmaster.pid");
  if (!text) return text.error();
  return parse_pidfile(*text);
}

bool pid_running(pid_t pid) {
  if (pid <= 0) return false;
  if (kill(pid, 0) != 0 && errno != EPERM) return false;
  auto stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return true;  // no /proc: trust kill()
  // "pid (comm) S ...": the state follows the last ')', since comm may contain one.
  auto close = stat->rfind(')');
  if (close == std::string::npos || close + 2 >= stat->size()) return true;
  char state = (*stat)[close + 2];
  return state != 'Z' && state != 'X';
}

bool is_postgres_process(pid_t pid) {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/" + std::to_string(pid) + "/exe", ec);
  if (ec) return false;
  std::string name = exe.filename().string();
  // A binary replaced by a package upgrade shows as "postgres (deleted)".
  return name == "postgres" || name.rfind("postgres (deleted)", 0) == 0;
}

std::vector<pid_t> child_pids(pid_t parent) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/proc", ec); !ec && it != std::filesystem::directory_iterator();
       it.increment(ec)) {
    std::string name = it->path().filename().string();
    pid_t pid = 0;
    auto [p, perr] = std::from_chars(name.data(), name.data() + name.size(), pid);
    if (perr != std::errc() || p != name.data() + name.size()) continue;
    auto stat = read_file(it->path().string() + "/stat");
    if (!stat) continue;
    // "pid (comm) state ppid ..."
    auto close = stat->rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(stat->substr(close + 1));
    std::string state;
    pid_t ppid = 0;
    if (rest >> state >> ppid && ppid == parent && state != "Z") out.push_back(pid);
  }
  return out;
}

std::optional<pid_t> live_postmaster(const std::string& data_dir) {
  auto pf = read_pidfile(data_dir);
  if (!pf) return std::nullopt;
  if (!pid_running(pf->pid) || !is_postgres_process(pf->pid)) return std::nullopt;
  return pf->pid;
}

Result<bool> remove_stale_pidfile(const std::string& data_dir) {
  auto pf = read_pidfile(data_dir);
  if (!pf && pf.error().code == Errc::not_found) return false;
  if (pf && pid_running(pf->pid) && is_postgres_process(pf->pid)) {
    return make_error(Errc::conflict, "a postmaster (pid {}) is still running on {}", pf->pid, data_dir);
  }
  // An unparsable lock file is as stale as one with a dead pid: PostgreSQL rewrites it.
  return remove_file(data_dir + "/postmaster.pid");
}

}  // namespace tandem::pg
