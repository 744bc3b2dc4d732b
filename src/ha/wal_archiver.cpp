#include "ha/wal_archiver.hpp"

#include <signal.h>

#include <algorithm>

#include <spdlog/spdlog.h>

#include "base/process.hpp"

namespace tandem::ha {

WalArchiverSupervisor::WalArchiverSupervisor(WalArchiverOptions options) : opts_(std::move(options)) {}

WalArchiverSupervisor::~WalArchiverSupervisor() {
  stop_ = true;
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void WalArchiverSupervisor::start() {
  if (!thread_.joinable()) thread_ = std::thread([this] { loop(); });
}

void WalArchiverSupervisor::set_leader(bool leader) {
  if (leader_.exchange(leader) != leader) cv_.notify_all();
}

void WalArchiverSupervisor::stop_child() {
  if (child_ <= 0) return;
  ::kill(child_, SIGTERM);
  if (!wait_for(child_, std::chrono::seconds(30))) {
    spdlog::warn("WAL archiver (pid {}) did not stop within 30s; killing it", child_);
    ::kill(child_, SIGKILL);
    (void)wait_for(child_, std::chrono::seconds(5));
  }
  child_ = -1;
}

void WalArchiverSupervisor::loop() {
  while (!stop_) {
    bool leader = leader_;
    if (child_ > 0) {
      if (auto st = try_reap(child_)) {
        bool fast = Steady::now() - started_ < std::chrono::seconds(10);
        delay_ =
            fast && delay_.count() > 0 ? std::min(delay_ * 2, std::chrono::milliseconds(60000)) : opts_.restart_delay;
        spdlog::warn("WAL archiver (pid {}) exited ({}); restarting it in {} ms, see {}", child_, st->describe(),
                     delay_.count(), opts_.log_path);
        child_ = -1;
        next_start_ = Steady::now() + delay_;
      } else if (!leader) {
        spdlog::info("WAL archiver: no longer the leader, stopping it (pid {})", child_);
        stop_child();
      }
    } else if (leader && Steady::now() >= next_start_) {
      SpawnOptions so;
      so.argv = {opts_.tandem_binary, "wal-archiver", "--config", opts_.config_path};
      if (opts_.socket_path.empty()) {
        so.argv.push_back("--no-socket");
      } else {
        so.argv.push_back("--socket");
        so.argv.push_back(opts_.socket_path);
      }
      if (!opts_.run_as.empty()) so.run_as_user = opts_.run_as;
      so.output_file = opts_.log_path;
      so.parent_death_signal = SIGTERM;
      auto pid = spawn(so);
      if (pid) {
        child_ = *pid;
        started_ = Steady::now();
        spdlog::info("WAL archiver started (pid {}, output in {})", child_, opts_.log_path);
      } else {
        spdlog::error("cannot start the WAL archiver: {}", pid.error().message);
        next_start_ = Steady::now() + opts_.restart_delay;
      }
    }
    std::unique_lock lock(m_);
    cv_.wait_for(lock, std::chrono::milliseconds(500), [&] { return stop_.load() || leader_.load() != leader; });
  }
  stop_child();
}

}  // namespace tandem::ha
