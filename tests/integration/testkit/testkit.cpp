#include "testkit/testkit.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>
#include <thread>

namespace tandem::testkit {

namespace {

bool port_free(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(fd);
  return ok;
}

std::mutex g_mu;
std::set<int> g_used;

}  // namespace

int free_port_range(int count) {
  std::lock_guard lock(g_mu);
  std::random_device rd;
  std::mt19937 rng(rd() ^ static_cast<unsigned>(getpid()));
  // Below the kernel's ephemeral range: a port from that range can be taken at any time as
  // the local port of some outgoing connection, and a member we kill and restart (an etcd
  // member, PostgreSQL) must find its port still free.
  int ephemeral_low = 32768;
  if (std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range"); range) range >> ephemeral_low;
  const int high = std::max(10001, ephemeral_low - count - 1);
  std::uniform_int_distribution<int> dist(std::min(10000, high - 1), high);
  for (int attempt = 0; attempt < 1000; ++attempt) {
    int base = dist(rng);
    bool ok = true;
    for (int p = base; p < base + count && ok; ++p) ok = !g_used.count(p) && port_free(p);
    if (!ok) continue;
    for (int p = base; p < base + count; ++p) g_used.insert(p);
    return base;
  }
  throw std::runtime_error("no free port range found");
}

int free_port() {
  return free_port_range(1);
}

TempDir::TempDir(const std::string& prefix) {
  std::string tmpl = "/tmp/" + prefix + "-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
  std::filesystem::permissions(path_, std::filesystem::perms(0755));
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout, std::chrono::milliseconds step) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return pred();
    std::this_thread::sleep_for(step);
  }
}

std::string tandem_binary() {
  return TANDEM_BINARY;
}

}  // namespace tandem::testkit
