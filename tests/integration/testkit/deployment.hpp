#pragma once
// A whole local deployment for HA integration tests: `tandem up --detach` in a temporary
// directory on a free port range (three etcd members, two agents with PostgreSQL), and
// helpers to kill parts of it, query members and wait for cluster states. The destructor
// runs `tandem down` and kills whatever is left.
#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/process.hpp"
#include "base/result.hpp"
#include "dcs/store.hpp"
#include "pg/conn.hpp"
#include "testkit/testkit.hpp"

namespace tandem::testkit {

struct DeploymentOptions {
  std::string sync_mode = "on";
  int ttl = 4;
  std::vector<std::string> up_args;  // extra `tandem up` arguments, e.g. {"--backup-store", URL}
};

class Deployment {
 public:
  explicit Deployment(DeploymentOptions opts = {});
  ~Deployment();
  Deployment(const Deployment&) = delete;
  Deployment& operator=(const Deployment&) = delete;

  const std::string& dir() const { return dir_.path(); }
  int base_port() const { return base_; }
  std::vector<std::string> members() const { return {"pg1", "pg2"}; }
  int pg_port(const std::string& member) const;
  int api_port(const std::string& member) const;
  // Portals k = 1, 2: read-write, read-only and HTTP ports; the deployment CA clients
  // verify them with (sslmode=verify-full), and the pgpass file (admin role).
  std::vector<int> portals() const { return {1, 2}; }
  int portal_port(int k) const { return base_ + 30 + k - 1; }
  int portal_ro_port(int k) const { return base_ + 32 + k - 1; }
  int portal_http_port(int k) const { return base_ + 34 + k - 1; }
  std::string ca_cert() const { return dir() + "/pki/ca.crt"; }
  std::string pgpass() const { return dir() + "/secrets/pgpass"; }

  // Runs the tandem binary with these arguments (plus --dir when `with_dir`).
  Result<RunResult> tandem(const std::vector<std::string>& args,
                           std::chrono::milliseconds timeout = std::chrono::seconds(180));
  // `tandem up --detach` again: starts what is missing and waits until ready.
  bool up();

  dcs::ClusterStore& store() { return *store_; }
  Result<dcs::ClusterSnapshot> snapshot() { return store_->load(); }
  // The leader's name once it runs as primary; empty when none within the timeout.
  std::string wait_leader(std::chrono::milliseconds timeout, const std::string& not_this = "");
  // Waits until `member` streams from the leader.
  bool wait_streaming(const std::string& member, std::chrono::milliseconds timeout);
  // Waits until the sync key names `member` as synchronous standby (it may then be promoted).
  bool wait_sync_standby(const std::string& member, std::chrono::milliseconds timeout);
  std::string other(const std::string& member) const { return member == "pg1" ? "pg2" : "pg1"; }

  // Pids from the deployment's pid files / postmaster.pid; 0 when absent.
  pid_t agent_pid(const std::string& member) const;
  pid_t postmaster_pid(const std::string& member) const;
  pid_t etcd_pid(int i) const;    // i = 1..3
  pid_t portal_pid(int k) const;  // k = 1, 2
  void kill9(pid_t pid);

  // Connects to one member as the admin role (short timeouts).
  Result<pg::Connection> connect(const std::string& member, int statement_timeout_ms = 3000) const;
  // One statement on one member with a fresh connection.
  Result<pg::Rows> exec(const std::string& member, const std::string& sql, int statement_timeout_ms = 3000) const;
  // True when `member` accepts a write right now (an INSERT into a scratch table commits).
  bool accepts_write(const std::string& member, int statement_timeout_ms = 2000) const;

 private:
  TempDir dir_;
  int base_ = 0;
  DeploymentOptions opts_;
  std::unique_ptr<dcs::ClusterStore> store_;
};

}  // namespace tandem::testkit
