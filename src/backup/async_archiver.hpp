#pragma once
// AsyncArchiver: pushes the WAL files PostgreSQL marked ready (pg_wal/archive_status/
// *.ready) into the repository in the background, several at once, ahead of PostgreSQL's
// archive_command, and records each durable store in the wal-push spool (wal_spool.hpp).
// archive_command (`tandem wal-push`) then acknowledges such a file at once when the spool
// entry names the same content (keyed MAC, SpoolMac) and store, and waits for a file the archiver is
// pushing right now; anything else it pushes itself, as without an archiver. So the
// archive guarantees stay those of wal_archive.hpp, while PostgreSQL's one-file-at-a-time
// archiver no longer waits for compression, encryption and the store per file.
//
// It only pushes while active (the agent activates it while it leads and PostgreSQL runs
// as primary, so a demoted member never pushes what PostgreSQL itself would not), oldest
// first with timeline history files before segments, like PostgreSQL. It learns of new
// .ready files from inotify and also rescans the directory every `rescan`. A failed push is
// logged and retried after `retry_delay`; meanwhile archive_command reports the error.
//
// Archive module socket (ArchiverOptions::socket_path, archive_protocol.hpp): PostgreSQL's
// archive module (archive_library = tandem_archive.so) asks for each file over a unix
// socket instead of running archive_command. The answer is "stored" only once the file
// is durably stored: at once when its spool entry acknowledges it (the same MAC check as
// wal-push), after the push when a worker is pushing it, else after pushing it right away
// on the connection's own store connection (ahead of the queue). A refused push (different
// content under the same name) is answered with its error. No fork, exec or process start
// per file, which archive_command costs.
//
// Threads: one watcher thread and `workers` push threads, each with its own store
// connection (the keyring is shared, read-only); with a socket, a listener thread and one
// thread per connection (at most kMaxArchiverConnections), each with its own store
// connection once it pushes. Owned by `tandem agent` (or the
// standalone `tandem wal-archiver`); start(), set_active() and stop() may be called from
// any thread. One archiver per spool: start() fails while another process holds its lock.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "backup/repo.hpp"
#include "backup/wal_archive.hpp"
#include "backup/wal_spool.hpp"
#include "base/result.hpp"

namespace tandem::backup {

struct ArchiverOptions {
  std::string data_dir;     // PostgreSQL data directory (pg_wal/ and pg_wal/archive_status/)
  std::string spool_dir;    // RUN_DIR/wal-push-spool, the one archive_command uses
  std::string owner;        // OS user that archive_command runs as (gets the spool); empty = ours
  std::string socket_path;  // serve the archive module here (unix socket, mode 0600); empty = no socket
  RepoConfig repo;
  int workers = 2;
  storage::SealOptions seal = kWalSealOptions;
  std::chrono::milliseconds rescan{1000};
  std::chrono::milliseconds retry_delay{5000};
};

struct ArchiverStats {
  uint64_t stored = 0;     // files sealed and stored
  uint64_t identical = 0;  // files already archived with the same content
  uint64_t failed = 0;     // failed pushes (each retried later)
  uint64_t answered = 0;   // archive module requests answered "stored"
};

// The archiver rewrites SPOOL/archiver.status ("stored N identical N failed N answered N\n")
// after every push and answer, for operators and tests.
inline constexpr const char* kArchiverStatusName = "archiver.status";
inline constexpr int kMaxArchiverConnections = 16;
// The agent's archiver listens on RUN_DIR/<kArchiverSocketName>; PostgreSQL loads the
// archive module from <directory of the tandem binary>/<kArchiveModuleName>.
inline constexpr const char* kArchiverSocketName = "wal-archiver.sock";
inline constexpr const char* kArchiveModuleName = "tandem_archive.so";
// The longest unix socket path (sockaddr_un::sun_path without its terminating NUL).
inline constexpr size_t kMaxSocketPath = 107;

class AsyncArchiver {
 public:
  explicit AsyncArchiver(ArchiverOptions options);
  ~AsyncArchiver();  // stop()
  AsyncArchiver(const AsyncArchiver&) = delete;
  AsyncArchiver& operator=(const AsyncArchiver&) = delete;

  // Opens the repository (keys, one store connection per worker), creates and locks the
  // spool, clears markers a crashed archiver left, listens on the socket (replacing a
  // stale one) and starts the threads (inactive; the socket is served at once).
  Status start();
  // Pushes only while active; deactivating drops the queue (pushes in flight complete).
  void set_active(bool active);
  // Stops and joins every thread; pushes in flight complete first (and are answered).
  void stop();

  ArchiverStats stats() const;

 private:
  struct Order {  // history files first, then by name (= by timeline and position)
    bool operator()(const std::string& a, const std::string& b) const;
  };
  void watch_loop();
  void worker_loop(storage::ObjectStore* store);
  void scan();
  void push_one(storage::ObjectStore& store, const std::string& name);
  // Pushes `name` (marked busy by the caller), records the spool entry and the outcome.
  Status push_and_record(storage::ObjectStore& store, const std::string& name, bool requested);
  void write_status_locked();
  // Socket side (async_archiver_socket.cpp).
  Status listen_socket();
  void listen_loop();
  void serve_connection(int fd);
  // "stored" (ok) or why not, for one request of the archive module.
  Status handle_request(std::unique_ptr<storage::ObjectStore>& store, const std::string& name);
  std::string status_dir() const { return opts_.data_dir + "/pg_wal/archive_status"; }

  ArchiverOptions opts_;
  std::unique_ptr<Repo> repo_;
  std::vector<std::unique_ptr<storage::ObjectStore>> stores_;  // one per worker
  SpoolLock lock_;
  int wake_fd_ = -1;  // eventfd: wakes the watcher on stop()
  std::atomic<bool> active_{false};
  std::atomic<bool> stop_{false};
  std::thread watcher_;
  std::vector<std::thread> workers_;
  int listen_fd_ = -1;
  int stop_pipe_[2] = {-1, -1};  // write end closed on stop(): wakes every socket thread
  std::thread listener_;

  mutable std::mutex m_;
  std::condition_variable cv_;
  std::condition_variable pushed_cv_;                                      // a name left busy_
  std::set<std::string, Order> queue_;                                     // ready, waiting for a worker
  std::set<std::string> busy_;                                             // being pushed
  std::map<std::string, std::chrono::steady_clock::time_point> retry_at_;  // failed: not before
  ArchiverStats stats_;
};

}  // namespace tandem::backup
