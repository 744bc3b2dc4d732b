#include "testkit/deployment.hpp"

#include <signal.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <stdexcept>
#include <thread>

#include "base/process.hpp"
#include "pg/conninfo.hpp"

namespace tandem::testkit {

Deployment::Deployment(DeploymentOptions opts) : dir_("tandem-ha"), opts_(std::move(opts)) {
  base_ = free_port_range(40);  // see deploy::make_layout: portals use base+30..35
  std::vector<std::string> args = {"up",
                                   "--base-port",
                                   std::to_string(base_),
                                   "--detach",
                                   "--sync-mode",
                                   opts_.sync_mode,
                                   "--ttl",
                                   std::to_string(opts_.ttl),
                                   "--timeout",
                                   "150"};
  args.insert(args.end(), opts_.up_args.begin(), opts_.up_args.end());
  auto r = tandem(args);
  if (!r || !r->status.ok()) {
    std::string out = r ? r->output : r.error().message;
    throw std::runtime_error("tandem up failed:\n" + out);
  }
  store_ = dcs::make_etcd_store(
      dcs::EtcdOptions{{fmt::format("http://127.0.0.1:{}", base_), fmt::format("http://127.0.0.1:{}", base_ + 2),
                        fmt::format("http://127.0.0.1:{}", base_ + 4)},
                       "tandem"});
}

Deployment::~Deployment() {
  (void)tandem({"down"}, std::chrono::seconds(90));
  if (::testing::Test::HasFailure()) {
    // Keep the logs of a failed test (CI prints where they are).
    std::string keep = "/tmp/tandem-failed-logs/" + std::filesystem::path(dir_.path()).filename().string();
    std::error_code ec;
    std::filesystem::create_directories(keep, ec);
    std::filesystem::copy(dir_.path() + "/logs", keep, std::filesystem::copy_options::recursive, ec);
    fprintf(stderr, "deployment logs kept in %s\n", keep.c_str());
    // CI keeps only the test output: show the agents' warnings and errors there too.
    for (const auto& m : members()) {
      std::ifstream in(dir_.path() + "/logs/" + m + ".log");
      std::vector<std::string> lines;
      for (std::string line; std::getline(in, line);) {
        if (line.find(" warn ") != std::string::npos || line.find(" error ") != std::string::npos ||
            line.find(" critical ") != std::string::npos)
          lines.push_back(line.substr(0, 300));
      }
      const size_t from = lines.size() > 30 ? lines.size() - 30 : 0;
      for (size_t i = from; i < lines.size(); ++i) fprintf(stderr, "  %s\n", lines[i].c_str());
    }
  }
  for (const auto& m : members()) {
    if (pid_t p = postmaster_pid(m); p > 0) kill(p, SIGKILL);
  }
}

int Deployment::pg_port(const std::string& member) const {
  return base_ + 10 + (member == "pg1" ? 0 : 1);
}
int Deployment::api_port(const std::string& member) const {
  return base_ + 20 + (member == "pg1" ? 0 : 1);
}

Result<RunResult> Deployment::tandem(const std::vector<std::string>& args, std::chrono::milliseconds timeout) {
  SpawnOptions o;
  o.argv = {tandem_binary()};
  o.argv.insert(o.argv.end(), args.begin(), args.end());
  o.argv.push_back("--dir");
  o.argv.push_back(dir_.path());
  o.cwd = "/tmp";
  return run(o, timeout);
}

bool Deployment::up() {
  auto r = tandem({"up", "--detach", "--timeout", "150"});
  return r && r->status.ok();
}

std::string Deployment::wait_leader(std::chrono::milliseconds timeout, const std::string& not_this) {
  std::string leader;
  wait_until(
      [&] {
        auto s = snapshot();
        if (!s || !s->leader || s->leader->name == not_this) return false;
        const dcs::Member* m = s->leader_member();
        if (m == nullptr || m->role != "leader" || m->state != "running") return false;
        leader = m->name;
        return true;
      },
      timeout, std::chrono::milliseconds(50));
  return leader;
}

bool Deployment::wait_streaming(const std::string& member, std::chrono::milliseconds timeout) {
  return wait_until(
      [&] {
        auto s = snapshot();
        if (!s) return false;
        const dcs::Member* m = s->member(member);
        return m != nullptr && m->state == "streaming";
      },
      timeout, std::chrono::milliseconds(100));
}

bool Deployment::wait_sync_standby(const std::string& member, std::chrono::milliseconds timeout) {
  return wait_until(
      [&] {
        auto s = snapshot();
        return s && s->sync && s->sync->sync_standby == member;
      },
      timeout, std::chrono::milliseconds(100));
}

namespace {
pid_t read_pid(const std::string& path) {
  std::ifstream in(path);
  pid_t p = 0;
  in >> p;
  return p;
}
}  // namespace

pid_t Deployment::agent_pid(const std::string& member) const {
  return read_pid(dir() + "/run/" + member + ".pid");
}
pid_t Deployment::postmaster_pid(const std::string& member) const {
  pid_t p = read_pid(dir() + "/members/" + member + "/data/postmaster.pid");
  return p > 0 && process_alive(p) ? p : 0;
}
pid_t Deployment::etcd_pid(int i) const {
  return read_pid(dir() + "/run/e" + std::to_string(i) + ".pid");
}

pid_t Deployment::portal_pid(int k) const {
  return read_pid(dir() + "/run/portal" + std::to_string(k) + ".pid");
}

void Deployment::kill9(pid_t pid) {
  if (pid > 0) kill(pid, SIGKILL);
}

Result<pg::Connection> Deployment::connect(const std::string& member, int statement_timeout_ms) const {
  pg::ConnParams p;
  p.host = "127.0.0.1";
  p.port = pg_port(member);
  p.user = "admin";
  p.passfile = dir() + "/secrets/pgpass";
  p.connect_timeout_s = 2;
  p.statement_timeout_ms = statement_timeout_ms;
  return pg::Connection::open(p);
}

Result<pg::Rows> Deployment::exec(const std::string& member, const std::string& sql, int statement_timeout_ms) const {
  auto c = connect(member, statement_timeout_ms);
  if (!c) return c.error();
  return c->exec(sql);
}

bool Deployment::accepts_write(const std::string& member, int statement_timeout_ms) const {
  auto c = connect(member, statement_timeout_ms);
  if (!c) return false;
  auto r =
      c->exec_script("CREATE TABLE IF NOT EXISTS write_probe(at timestamptz); INSERT INTO write_probe VALUES (now())");
  return r.ok();
}

}  // namespace tandem::testkit
