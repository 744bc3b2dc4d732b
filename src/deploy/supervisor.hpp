#pragma once
// Starting, finding and stopping the processes of a local deployment. Each component
// (e1..e3, pg1, pg2, portal1, portal2) runs in its own session with a pid file in DIR/run; a pid file is
// trusted only while /proc/<pid>/cmdline still names that component's files, so a reused
// pid is never signalled. Used from one thread (the `tandem up`/`down` main thread).
#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "deploy/layout.hpp"

namespace tandem::deploy {

struct Component {
  std::string name;               // e1, pg1, ...
  std::vector<std::string> argv;  // how to start it
  std::string marker;             // a string its command line must contain
  bool is_agent = false;
  bool is_portal = false;
};

std::vector<Component> components(const Layout& l, const std::string& tandem_binary);

// The pid of a running component, or nullopt.
std::optional<pid_t> running_pid(const Layout& l, const Component& c);

// Starts the component (detached into its own session) and writes its pid file.
Result<pid_t> start(const Layout& l, const Component& c);

// SIGTERM, then SIGKILL after `grace`; waits for it to exit and removes the pid file.
Status stop(const Layout& l, const Component& c, std::chrono::milliseconds grace);

}  // namespace tandem::deploy
