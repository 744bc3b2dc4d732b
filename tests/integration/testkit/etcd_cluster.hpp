#pragma once
// EtcdCluster: N real etcd members (/usr/bin/etcd) on free loopback ports, for integration
// tests. Data and logs live in a TempDir removed on destruction.
//
//   testkit::EtcdCluster etcd;             // 3 members, started and healthy
//   dcs::EtcdOptions o{etcd.endpoints(), "c1"};
//   etcd.kill(0);                          // SIGKILL member 0
//   etcd.restart(0);                       // same data dir and ports; waits until it serves
//
// Owned by one test (or a fixture); not thread-safe. Construct it on the test's main thread:
// members get SIGKILL when the thread that started them exits (parent-death signal), so a
// crashed test leaves no etcd behind. The destructor kills and reaps every member.
// Errors while starting throw std::runtime_error (with the log's tail), failing the test.
#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "testkit/testkit.hpp"

namespace tandem::testkit {

class EtcdCluster {
 public:
  // Starts `members` members and waits until each answers a linearizable read.
  explicit EtcdCluster(int members = 3);
  ~EtcdCluster();
  EtcdCluster(const EtcdCluster&) = delete;
  EtcdCluster& operator=(const EtcdCluster&) = delete;

  int size() const { return static_cast<int>(members_.size()); }
  // "http://127.0.0.1:<client port>" of every member, running or not, in member order.
  std::vector<std::string> endpoints() const;
  std::string endpoint(int i) const;
  std::string peer_url(int i) const;
  std::string name(int i) const { return members_.at(static_cast<size_t>(i)).name; }
  std::string log_path(int i) const;
  pid_t pid(int i) const { return members_.at(static_cast<size_t>(i)).pid; }
  bool running(int i) const { return pid(i) > 0; }

  // SIGKILL member i and reap it. No-op when it is not running.
  void kill(int i);
  // Starts member i again with its data dir and ports (--initial-cluster-state existing)
  // and waits until it answers a linearizable read (needs a quorum of running members).
  void restart(int i);
  // Kills every running member.
  void stop_all();
  // True when every running member answers a linearizable read within `timeout`.
  bool wait_healthy(std::chrono::milliseconds timeout = std::chrono::seconds(20));
  // True when member i answers a linearizable read within `timeout`.
  bool member_healthy(int i, std::chrono::milliseconds timeout);

 private:
  struct Member {
    std::string name;
    int client_port = 0;
    int peer_port = 0;
    pid_t pid = -1;
  };
  void start(int i, bool existing);
  std::string log_tail(int i) const;

  TempDir dir_;
  std::string token_;
  std::vector<Member> members_;
};

}  // namespace tandem::testkit
