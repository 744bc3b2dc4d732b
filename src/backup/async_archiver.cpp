#include "backup/async_archiver.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <spdlog/spdlog.h>

#include "pg/files.hpp"

namespace tandem::backup {

namespace fs = std::filesystem;
using Steady = std::chrono::steady_clock;

bool AsyncArchiver::Order::operator()(const std::string& a, const std::string& b) const {
  bool ha = parse_history_name(a).has_value();
  bool hb = parse_history_name(b).has_value();
  if (ha != hb) return ha;
  return a < b;
}

AsyncArchiver::AsyncArchiver(ArchiverOptions options) : opts_(std::move(options)) {}

AsyncArchiver::~AsyncArchiver() {
  stop();
}

Status AsyncArchiver::start() {
  if (watcher_.joinable()) return {};
  if (opts_.data_dir.empty() || opts_.spool_dir.empty())
    return make_error(Errc::invalid_argument, "WAL archiver: data directory and spool directory are required");
  auto repo = open_repo(opts_.repo);
  if (!repo) return repo.error();
  repo_ = std::move(*repo);
  const int workers = std::max(1, opts_.workers);
  stores_.clear();
  for (int i = 0; i < workers; ++i) {
    auto store = repo_->open_store();
    if (!store) return store.error();
    stores_.push_back(std::move(*store));
  }
  if (auto s = pg::ensure_dir(opts_.spool_dir, 0755, opts_.owner); !s) return s;
  if (auto s = lock_.acquire(opts_.spool_dir); !s) return s;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(opts_.spool_dir, ec)) {
    if (e.path().filename().string().ends_with(kSpoolMarkerSuffix)) fs::remove(e.path(), ec);
  }
  if (!opts_.socket_path.empty()) {
    if (auto s = listen_socket(); !s) {
      lock_.release();
      return s;
    }
  }
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) return make_error(Errc::io, "WAL archiver: eventfd failed: {}", std::strerror(errno));
  stop_ = false;
  watcher_ = std::thread([this] { watch_loop(); });
  for (auto& store : stores_) workers_.emplace_back([this, s = store.get()] { worker_loop(s); });
  if (listen_fd_ >= 0) listener_ = std::thread([this] { listen_loop(); });
  spdlog::info("WAL archiver: {} push threads into {}, spool {}{}", workers, repo_->url(), opts_.spool_dir,
               listen_fd_ >= 0 ? ", archive module socket " + opts_.socket_path : "");
  return {};
}

void AsyncArchiver::set_active(bool active) {
  if (active_.exchange(active) == active) return;
  spdlog::info("WAL archiver: {}", active ? "active (leader, primary)" : "paused (not the leader)");
  {
    std::lock_guard lk(m_);
    if (!active) queue_.clear();
  }
  cv_.notify_all();
  if (wake_fd_ >= 0) {
    uint64_t one = 1;
    (void)!::write(wake_fd_, &one, sizeof one);
  }
}

void AsyncArchiver::stop() {
  if (!watcher_.joinable()) return;
  stop_ = true;
  uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof one);
  cv_.notify_all();
  if (stop_pipe_[1] >= 0) {
    ::close(stop_pipe_[1]);  // every socket thread polls the read end: EOF wakes them all
    stop_pipe_[1] = -1;
  }
  if (listener_.joinable()) listener_.join();  // joins the connection threads (answers given)
  if (listen_fd_ >= 0) {
    ::close(listen_fd_);
    listen_fd_ = -1;
    ::unlink(opts_.socket_path.c_str());
  }
  if (stop_pipe_[0] >= 0) ::close(stop_pipe_[0]);
  stop_pipe_[0] = -1;
  watcher_.join();
  for (auto& t : workers_) t.join();
  workers_.clear();
  ::close(wake_fd_);
  wake_fd_ = -1;
  lock_.release();  // wal-push no longer waits for markers of ours
}

ArchiverStats AsyncArchiver::stats() const {
  std::lock_guard lk(m_);
  return stats_;
}

void AsyncArchiver::watch_loop() {
  int ino = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  int wd = -1;
  char buf[16 * 1024];
  while (!stop_) {
    // pg_wal/archive_status may not exist yet (before initdb or a restore); retry.
    if (ino >= 0 && wd < 0)
      wd = ::inotify_add_watch(ino, status_dir().c_str(), IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE);
    scan();
    pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {ino, POLLIN, 0}};
    int n = ::poll(fds, ino >= 0 && wd >= 0 ? 2 : 1, static_cast<int>(opts_.rescan.count()));
    if (n <= 0) continue;
    if (fds[0].revents & POLLIN) {
      uint64_t v;
      (void)!::read(wake_fd_, &v, sizeof v);
    }
    if (fds[1].revents & POLLIN) {
      for (;;) {
        ssize_t r = ::read(ino, buf, sizeof buf);
        if (r <= 0) break;
        // An IN_IGNORED (directory removed, e.g. by a re-clone) means watching anew.
        for (char* p = buf; p < buf + r;) {
          auto* ev = reinterpret_cast<inotify_event*>(p);
          if (ev->mask & IN_IGNORED) wd = -1;
          p += sizeof(inotify_event) + ev->len;
        }
      }
    }
  }
  if (ino >= 0) ::close(ino);
}

void AsyncArchiver::scan() {
  if (!active_) return;
  std::vector<std::string> ready;
  std::set<std::string> ready_set;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(status_dir(), ec)) {
    std::string f = e.path().filename().string();
    if (!f.ends_with(".ready")) continue;
    std::string name = f.substr(0, f.size() - 6);
    if (!classify_wal_file(name)) continue;
    ready_set.insert(name);
  }
  const auto now = Steady::now();
  bool added = false;
  {
    std::lock_guard lk(m_);
    for (const auto& name : ready_set) {
      if (queue_.count(name) != 0 || busy_.count(name) != 0) continue;
      auto r = retry_at_.find(name);
      if (r != retry_at_.end() && r->second > now) continue;
      if (fs::exists(opts_.spool_dir + "/" + name, ec)) continue;  // pushed, not yet acknowledged
      queue_.insert(name);
      added = true;
    }
    // Forget what PostgreSQL no longer waits for.
    for (auto it = retry_at_.begin(); it != retry_at_.end();)
      it = ready_set.count(it->first) != 0 ? std::next(it) : retry_at_.erase(it);
  }
  if (added) cv_.notify_all();
  // Entries PostgreSQL will never ask for any more (acknowledged without consuming, or its
  // .ready went away): drop them so they cannot outlive the file they describe.
  for (const auto& e : fs::directory_iterator(opts_.spool_dir, ec)) {
    std::string name = e.path().filename().string();
    if (!classify_wal_file(name) || ready_set.count(name) != 0) continue;
    std::lock_guard lk(m_);
    if (busy_.count(name) == 0) fs::remove(e.path(), ec);
  }
}

void AsyncArchiver::worker_loop(storage::ObjectStore* store) {
  for (;;) {
    std::string name;
    {
      std::unique_lock lk(m_);
      cv_.wait(lk, [&] { return stop_ || (active_ && !queue_.empty()); });
      if (stop_) return;
      name = *queue_.begin();
      queue_.erase(queue_.begin());
      busy_.insert(name);
    }
    push_one(*store, name);
    {
      std::lock_guard lk(m_);
      busy_.erase(name);
    }
    pushed_cv_.notify_all();
  }
}

void AsyncArchiver::push_one(storage::ObjectStore& store, const std::string& name) {
  std::error_code ec;
  if (!fs::exists(status_dir() + "/" + name + ".ready", ec)) return;  // archive_command was quicker
  (void)push_and_record(store, name, false);
}

Status AsyncArchiver::push_and_record(storage::ObjectStore& store, const std::string& name, bool requested) {
  set_spool_marker(opts_.spool_dir, name);
  auto pushed = push_wal_path(store, repo_->keyring(), opts_.data_dir + "/pg_wal/" + name, opts_.seal, true);
  Status recorded;
  if (pushed) recorded = write_spool_entry(opts_.spool_dir, name, pushed->fingerprint, opts_.repo.store_url);
  clear_spool_marker(opts_.spool_dir, name);
  std::lock_guard lk(m_);
  Status result;
  if (pushed) {
    // Recording the entry is an optimisation: the object is durably stored either way.
    ++(pushed->outcome == PushOutcome::stored ? stats_.stored : stats_.identical);
    spdlog::debug("WAL archiver: {} {}{}", name, to_string(pushed->outcome), requested ? " (requested)" : "");
    if (recorded) {
      retry_at_.erase(name);
    } else {
      retry_at_[name] = Steady::now() + opts_.retry_delay;  // not queued again at once (no entry)
      spdlog::warn("WAL archiver: {} is archived but its spool entry could not be written: {}", name,
                   recorded.error().message);
    }
  } else {
    ++stats_.failed;
    retry_at_[name] = Steady::now() + opts_.retry_delay;
    spdlog::warn("WAL archiver: {} not archived{}: {}", name,
                 requested ? " (PostgreSQL will retry)" : " ahead of PostgreSQL (it will ask for it itself)",
                 pushed.error().message);
    result = pushed.error();
  }
  write_status_locked();
  return result;
}

void AsyncArchiver::write_status_locked() {
  std::error_code ec;
  const std::string path = opts_.spool_dir + "/" + kArchiverStatusName;
  std::ofstream(path + ".tmp", std::ios::trunc)
      << fmt::format("stored {} identical {} failed {} answered {}\n", stats_.stored, stats_.identical, stats_.failed,
                     stats_.answered);
  fs::rename(path + ".tmp", path, ec);
}

}  // namespace tandem::backup
