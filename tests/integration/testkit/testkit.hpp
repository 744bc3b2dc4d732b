#pragma once
// Helpers shared by integration tests: free loopback ports, temporary directories,
// and waiting on a condition with a deadline (never a bare sleep as synchronisation).
#include <chrono>
#include <functional>
#include <string>

namespace tandem::testkit {

// A TCP port on 127.0.0.1 that nothing listens on right now. Ports handed out in this
// process are never handed out twice.
int free_port();

// `count` consecutive free ports starting at the returned one.
int free_port_range(int count);

// A directory under /tmp removed (recursively) on destruction; owned by root, mode 0755,
// so the postgres user can traverse it.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "tandem-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Polls `pred` until it returns true or `timeout` passes; returns the last result.
bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout,
                std::chrono::milliseconds step = std::chrono::milliseconds(50));

// The path of the built tandem binary.
std::string tandem_binary();

}  // namespace tandem::testkit
