#include "ha/backup_scheduler.hpp"

#include <signal.h>
#include <sys/stat.h>

#include <ctime>
#include <fstream>
#include <iomanip>
#include <sstream>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "base/process.hpp"

namespace tandem::ha {

namespace {

// "2026-11-28T13:05:00Z" -> time point.
std::optional<std::chrono::system_clock::time_point> parse_iso(const std::string& s) {
  std::tm tm{};
  std::istringstream in(s);
  in >> std::get_time(&tm, "%Y-%m-%dT%H:%M:%SZ");
  if (in.fail()) return std::nullopt;
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

uint64_t file_size(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

}  // namespace

BackupScheduler::BackupScheduler(BackupScheduleOptions options) : opts_(std::move(options)) {}

BackupScheduler::~BackupScheduler() {
  stop_ = true;
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void BackupScheduler::start() {
  thread_ = std::thread([this] { loop(); });
}

void BackupScheduler::set_leader(bool leader) {
  if (leader_.exchange(leader) != leader) cv_.notify_all();
}

std::string BackupScheduler::output_since(uint64_t offset) const {
  std::ifstream in(opts_.log_path);
  in.seekg(static_cast<std::streamoff>(offset));
  std::string line;
  std::string last;
  while (std::getline(in, line)) {
    if (!line.empty()) last = line;
  }
  return last;
}

Result<std::optional<std::chrono::system_clock::time_point>> BackupScheduler::newest_backup() {
  SpawnOptions so;
  so.argv = {opts_.tandem_binary, "backup", "list", "--json", "--config", opts_.config_path};
  so.parent_death_signal = SIGTERM;
  auto r = run(so, std::chrono::seconds(120));
  if (!r) return r.error();
  if (!r->status.ok()) return make_error(Errc::unavailable, "backup list failed: {}", r->output);
  // The output is JSON; anything before the first '[' would be a stray log line.
  auto start = r->output.find('[');
  auto j = nlohmann::json::parse(start == std::string::npos ? "" : r->output.substr(start), nullptr, false);
  if (j.is_discarded() || !j.is_array()) return make_error(Errc::protocol, "backup list printed no JSON list");
  std::optional<std::chrono::system_clock::time_point> newest;
  for (const auto& e : j) {
    if (e.value("state", "") != "complete" || !e.contains("manifest")) continue;
    auto t = parse_iso(e["manifest"].value("start_time", ""));
    if (t && (!newest || *t > *newest)) newest = t;
  }
  return newest;
}

void BackupScheduler::plan_next() {
  auto newest = newest_backup();
  auto now = Steady::now();
  if (!newest) {
    spdlog::warn("scheduled backups: cannot read the repository ({}); retrying in {}s", newest.error().message,
                 opts_.first_delay.count() * 6);
    next_due_ = now + opts_.first_delay * 6;
    return;
  }
  auto delay = opts_.first_delay;
  if (*newest) {
    auto due = **newest + opts_.schedule;
    auto wait = std::chrono::duration_cast<std::chrono::seconds>(due - std::chrono::system_clock::now());
    if (wait > delay) delay = wait;
  }
  next_due_ = now + delay;
  spdlog::info("scheduled backups: next full backup in {}s (every {}s{})", delay.count(), opts_.schedule.count(),
               *newest ? "" : "; the repository has none yet");
}

void BackupScheduler::start_backup() {
  log_offset_ = file_size(opts_.log_path);
  SpawnOptions so;
  so.argv = {opts_.tandem_binary, "backup",  "create",    "--config",
             opts_.config_path,   "--label", "scheduled", "--progress"};
  so.output_file = opts_.log_path;
  so.parent_death_signal = SIGTERM;
  auto pid = spawn(so);
  if (!pid) {
    spdlog::error("scheduled backup: cannot start tandem backup create: {}", pid.error().message);
    next_due_ = Steady::now() + opts_.retry_delay;
    return;
  }
  child_ = *pid;
  child_started_ = Steady::now();
  spdlog::info("scheduled backup started (pid {}, output in {})", child_, opts_.log_path);
}

void BackupScheduler::finish_backup(const std::string& outcome, bool ok) {
  double secs = std::chrono::duration<double>(Steady::now() - child_started_).count();
  child_ = -1;
  if (!ok) {
    spdlog::error("scheduled backup failed after {:.0f}s ({}): {}; next try in {}s", secs, outcome,
                  output_since(log_offset_), opts_.retry_delay.count());
    next_due_ = Steady::now() + opts_.retry_delay;
    return;
  }
  spdlog::info("scheduled backup done in {:.0f}s: {}", secs, output_since(log_offset_));
  next_due_ = Steady::now() + opts_.schedule;
  // Retention after every successful backup; run() captures its output.
  SpawnOptions so;
  so.argv = {opts_.tandem_binary, "backup", "expire", "--config", opts_.config_path};
  so.parent_death_signal = SIGTERM;
  auto r = run(so, std::chrono::minutes(30));
  if (!r) {
    spdlog::error("backup retention failed: {}", r.error().message);
    return;
  }
  std::string last;
  std::istringstream lines(r->output);
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty()) last = line;
  }
  if (!r->status.ok()) {
    spdlog::error("backup retention failed ({}): {}", r->status.describe(), last);
  } else {
    spdlog::info("backup retention applied: {}", last);
  }
  std::ofstream(opts_.log_path, std::ios::app) << r->output;
}

void BackupScheduler::loop() {
  while (!stop_) {
    bool leader = leader_;
    if (child_ > 0) {
      if (auto st = try_reap(child_)) {
        finish_backup(st->describe(), st->ok());
      } else if (!leader) {
        spdlog::warn("scheduled backup: no longer the leader, stopping the running backup (pid {})", child_);
        ::kill(child_, SIGTERM);
        if (!wait_for(child_, std::chrono::seconds(30))) {
          ::kill(child_, SIGKILL);
          (void)wait_for(child_, std::chrono::seconds(5));
        }
        child_ = -1;
      }
    } else if (leader) {
      if (!was_leader_ || !next_due_) plan_next();
      if (next_due_ && Steady::now() >= *next_due_) start_backup();
    }
    if (!leader) next_due_.reset();
    was_leader_ = leader;
    std::unique_lock lock(m_);
    cv_.wait_for(lock, std::chrono::seconds(1), [&] { return stop_.load() || leader_.load() != leader; });
  }
  if (child_ > 0) {
    ::kill(child_, SIGTERM);
    if (!wait_for(child_, std::chrono::seconds(10))) {
      ::kill(child_, SIGKILL);
      (void)wait_for(child_, std::chrono::seconds(5));
    }
  }
}

}  // namespace tandem::ha
