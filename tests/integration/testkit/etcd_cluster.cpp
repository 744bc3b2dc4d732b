#include "testkit/etcd_cluster.hpp"

#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "base/process.hpp"
#include "dcs/etcd/etcd_client.hpp"

namespace tandem::testkit {

namespace {

constexpr const char* kEtcdBinary = "/usr/bin/etcd";

}  // namespace

EtcdCluster::EtcdCluster(int members) : dir_("tandem-etcd") {
  if (members < 1) throw std::invalid_argument("EtcdCluster needs at least one member");
  const int base = free_port_range(2 * members);
  token_ = fmt::format("tandem-test-{}-{}", getpid(), base);
  for (int i = 0; i < members; ++i) {
    Member m;
    m.name = fmt::format("e{}", i + 1);
    m.client_port = base + i;
    m.peer_port = base + members + i;
    members_.push_back(m);
  }
  for (int i = 0; i < members; ++i) start(i, false);
  if (!wait_healthy()) {
    std::string tails;
    for (int i = 0; i < members; ++i) tails += fmt::format("\n--- {} ---\n{}", name(i), log_tail(i));
    stop_all();
    throw std::runtime_error("etcd cluster did not become healthy within 20 s" + tails);
  }
}

EtcdCluster::~EtcdCluster() {
  stop_all();
}

std::vector<std::string> EtcdCluster::endpoints() const {
  std::vector<std::string> out;
  for (int i = 0; i < size(); ++i) out.push_back(endpoint(i));
  return out;
}

std::string EtcdCluster::endpoint(int i) const {
  return fmt::format("http://127.0.0.1:{}", members_.at(static_cast<size_t>(i)).client_port);
}

std::string EtcdCluster::peer_url(int i) const {
  return fmt::format("http://127.0.0.1:{}", members_.at(static_cast<size_t>(i)).peer_port);
}

std::string EtcdCluster::log_path(int i) const {
  return dir_.sub(name(i) + ".log");
}

void EtcdCluster::start(int i, bool existing) {
  Member& m = members_.at(static_cast<size_t>(i));
  std::string initial_cluster;
  for (int j = 0; j < size(); ++j) {
    if (!initial_cluster.empty()) initial_cluster += ",";
    initial_cluster += name(j) + "=" + peer_url(j);
  }
  SpawnOptions o;
  o.argv = {kEtcdBinary,
            "--name",
            m.name,
            "--data-dir",
            dir_.sub(m.name + ".data"),
            "--listen-client-urls",
            endpoint(i),
            "--advertise-client-urls",
            endpoint(i),
            "--listen-peer-urls",
            peer_url(i),
            "--initial-advertise-peer-urls",
            peer_url(i),
            "--initial-cluster",
            initial_cluster,
            "--initial-cluster-state",
            existing ? "existing" : "new",
            "--initial-cluster-token",
            token_,
            "--logger=zap"};
  o.output_file = log_path(i);
  o.cwd = dir_.path();
  o.parent_death_signal = SIGKILL;
  auto pid = spawn(o);
  if (!pid) throw std::runtime_error(fmt::format("starting etcd {}: {}", m.name, pid.error().to_string()));
  m.pid = *pid;
}

bool EtcdCluster::member_healthy(int i, std::chrono::milliseconds timeout) {
  dcs::EtcdOptions o;
  o.endpoints = {endpoint(i)};
  o.call_timeout = std::chrono::milliseconds(500);
  o.retry_timeout = std::chrono::milliseconds(500);
  dcs::etcd::EtcdClient client(o);
  return wait_until(
      [&] {
        if (!running(i)) return false;
        return client.get("/tandem-testkit/health").ok();
      },
      timeout, std::chrono::milliseconds(100));
}

bool EtcdCluster::wait_healthy(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (int i = 0; i < size(); ++i) {
    if (!running(i)) continue;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (!member_healthy(i, std::max(left, std::chrono::milliseconds(0)))) return false;
  }
  return true;
}

void EtcdCluster::kill(int i) {
  Member& m = members_.at(static_cast<size_t>(i));
  if (m.pid <= 0) return;
  ::kill(m.pid, SIGKILL);
  if (!wait_for(m.pid, std::chrono::seconds(10))) {
    throw std::runtime_error(fmt::format("etcd {} (pid {}) did not exit after SIGKILL", m.name, m.pid));
  }
  m.pid = -1;
}

void EtcdCluster::restart(int i) {
  kill(i);
  start(i, true);
  if (!member_healthy(i, std::chrono::seconds(20))) {
    throw std::runtime_error(fmt::format("etcd {} did not serve within 20 s after restart\n{}", name(i), log_tail(i)));
  }
}

void EtcdCluster::stop_all() {
  for (int i = 0; i < size(); ++i) {
    Member& m = members_[static_cast<size_t>(i)];
    if (m.pid <= 0) continue;
    ::kill(m.pid, SIGKILL);
    (void)wait_for(m.pid, std::chrono::seconds(10));
    m.pid = -1;
  }
}

std::string EtcdCluster::log_tail(int i) const {
  std::ifstream in(log_path(i));
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  return s.size() > 3000 ? s.substr(s.size() - 3000) : s;
}

}  // namespace tandem::testkit
