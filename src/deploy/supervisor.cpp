#include "deploy/supervisor.hpp"

#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "base/process.hpp"

namespace tandem::deploy {

namespace fs = std::filesystem;

std::vector<Component> components(const Layout& l, const std::string& bin) {
  std::vector<Component> out;
  std::string initial;
  for (const auto& e : l.etcd) {
    if (!initial.empty()) initial += ",";
    initial += e.name + "=" + e.peer_url();
  }
  for (const auto& e : l.etcd) {
    Component c;
    c.name = e.name;
    c.marker = l.etcd_data_dir(e);
    c.argv = {"/usr/bin/etcd",
              "--name",
              e.name,
              "--data-dir",
              l.etcd_data_dir(e),
              "--listen-client-urls",
              e.client_url(),
              "--advertise-client-urls",
              e.client_url(),
              "--listen-peer-urls",
              e.peer_url(),
              "--initial-advertise-peer-urls",
              e.peer_url(),
              "--initial-cluster",
              initial,
              "--initial-cluster-token",
              l.cluster,
              "--initial-cluster-state",
              "new",
              "--logger=zap"};
    out.push_back(std::move(c));
  }
  for (const auto& m : l.members) {
    Component c;
    c.name = m.name;
    c.is_agent = true;
    c.marker = l.agent_config_path(m);
    c.argv = {bin, "agent", "--config", l.agent_config_path(m)};
    out.push_back(std::move(c));
  }
  for (const auto& p : l.portals) {
    Component c;
    c.name = p.name;
    c.is_portal = true;
    c.marker = l.portal_config_path(p);
    c.argv = {bin, "portal", "--config", l.portal_config_path(p)};
    out.push_back(std::move(c));
  }
  return out;
}

namespace {

std::string cmdline_of(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/cmdline", pid));
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  for (char& ch : s) {
    if (ch == '\0') ch = ' ';
  }
  return s;
}

// Running (not a zombie); reaps it when it is our own exited child.
bool alive(pid_t pid) {
  if (!process_alive(pid)) return false;
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string stat;
  std::getline(in, stat);
  auto close_paren = stat.rfind(')');
  if (close_paren != std::string::npos && close_paren + 2 < stat.size() && stat[close_paren + 2] == 'Z') {
    (void)try_reap(pid);
    return false;
  }
  return true;
}

}  // namespace

std::optional<pid_t> running_pid(const Layout& l, const Component& c) {
  std::ifstream in(l.pid_path(c.name));
  pid_t pid = 0;
  if (!(in >> pid) || pid <= 0) return std::nullopt;
  if (!alive(pid)) return std::nullopt;
  if (cmdline_of(pid).find(c.marker) == std::string::npos) return std::nullopt;
  return pid;
}

Result<pid_t> start(const Layout& l, const Component& c) {
  SpawnOptions o;
  o.argv = c.argv;
  o.output_file = l.log_path(c.name + (c.is_agent || c.is_portal ? "-stdout" : ""));
  o.new_session = true;
  o.cwd = l.dir;
  // libpq loads GnuTLS (through libldap), whose constructor initialises it in every process
  // (~0.9 MiB resident). Nothing of ours uses GnuTLS; libldap initialises it explicitly
  // when it needs TLS, so only the implicit start-up work is skipped.
  if (c.is_agent || c.is_portal) o.env["GNUTLS_NO_IMPLICIT_INIT"] = "1";
  auto pid = spawn(o);
  if (!pid) return pid.error();
  std::ofstream out(l.pid_path(c.name), std::ios::trunc);
  out << *pid << "\n";
  return pid;
}

Status stop(const Layout& l, const Component& c, std::chrono::milliseconds grace) {
  auto pid = running_pid(l, c);
  if (!pid) {
    fs::remove(l.pid_path(c.name));
    return {};
  }
  kill(*pid, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + grace;
  while (alive(*pid) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (alive(*pid)) {
    kill(*pid, SIGKILL);
    auto kill_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (alive(*pid) && std::chrono::steady_clock::now() < kill_deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    fs::remove(l.pid_path(c.name));
    return make_error(Errc::timeout, "{} did not stop within {} ms and was killed", c.name, grace.count());
  }
  fs::remove(l.pid_path(c.name));
  return {};
}

}  // namespace tandem::deploy
