// AsyncArchiver's archive module socket: a listener thread accepting connections from
// PostgreSQL's archive module (tandem_archive.so) and one thread per connection answering
// its requests (archive_protocol.hpp). See async_archiver.hpp for the guarantees.
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <list>

#include <spdlog/spdlog.h>

#include "backup/archive_protocol.hpp"
#include "backup/async_archiver.hpp"

namespace tandem::backup {

namespace {

// Sends all of `data`; false when the peer is gone (no SIGPIPE).
bool send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

}  // namespace

Status AsyncArchiver::listen_socket() {
  const std::string& path = opts_.socket_path;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  static_assert(kMaxSocketPath + 1 == sizeof addr.sun_path);
  if (path.empty() || path.size() >= sizeof addr.sun_path)
    return make_error(Errc::invalid_argument, "WAL archiver socket path '{}' must have 1 to {} bytes", path,
                      sizeof addr.sun_path - 1);
  std::memcpy(addr.sun_path, path.data(), path.size());
  // A socket left by an archiver that died (we hold the spool's lock, so none runs now).
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return make_error(Errc::invalid_argument, "WAL archiver socket path {} exists and is not a socket", path);
    ::unlink(path.c_str());
  }
  if (::pipe2(stop_pipe_, O_CLOEXEC) != 0)
    return make_error(Errc::io, "WAL archiver: pipe failed: {}", std::strerror(errno));
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return make_error(Errc::io, "WAL archiver: cannot create a unix socket: {}", std::strerror(errno));
  // Only our user (PostgreSQL's, which the archiver runs as) may connect.
  mode_t old = ::umask(0177);
  int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  int err = errno;
  ::umask(old);
  if (rc != 0) {
    ::close(fd);
    return make_error(Errc::io, "WAL archiver: cannot bind {}: {}", path, std::strerror(err));
  }
  if (!opts_.owner.empty() && ::geteuid() == 0) {
    if (passwd* pw = ::getpwnam(opts_.owner.c_str()); pw != nullptr)
      (void)!::chown(path.c_str(), pw->pw_uid, pw->pw_gid);
  }
  if (::listen(fd, kMaxArchiverConnections) != 0) {
    err = errno;
    ::close(fd);
    ::unlink(path.c_str());
    return make_error(Errc::io, "WAL archiver: cannot listen on {}: {}", path, std::strerror(err));
  }
  listen_fd_ = fd;
  return {};
}

void AsyncArchiver::listen_loop() {
  struct Conn {
    std::thread thread;
    std::atomic<bool> done{false};
  };
  std::list<Conn> conns;
  auto reap = [&conns](bool all) {
    for (auto it = conns.begin(); it != conns.end();) {
      if (all || it->done) {
        it->thread.join();
        it = conns.erase(it);
      } else {
        ++it;
      }
    }
  };
  for (;;) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
    int n = ::poll(fds, 2, 1000);
    if (n < 0 && errno != EINTR) {
      spdlog::error("WAL archiver: poll on the socket failed: {}", std::strerror(errno));
      break;
    }
    if (fds[1].revents != 0) break;  // stop()
    reap(false);
    if (n <= 0 || (fds[0].revents & POLLIN) == 0) continue;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    if (conns.size() >= static_cast<size_t>(kMaxArchiverConnections)) {
      spdlog::warn("WAL archiver: refusing a socket connection: {} connections are open already",
                   kMaxArchiverConnections);
      ::close(fd);
      continue;
    }
    Conn& c = conns.emplace_back();
    c.thread = std::thread([this, fd, &c] {
      serve_connection(fd);
      c.done = true;
    });
  }
  reap(true);
}

void AsyncArchiver::serve_connection(int fd) {
  std::unique_ptr<storage::ObjectStore> store;  // this connection's own, opened on its first push
  std::string buf;
  char chunk[512];
  for (;;) {
    size_t nl;
    while ((nl = buf.find('\n')) != std::string::npos) {
      std::string line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      auto name = parse_archive_request(line);
      if (!name) {
        spdlog::warn("WAL archiver: closing a socket connection after a malformed request ({}): '{}'",
                     name.error().message, printable(line));
        ::close(fd);
        return;
      }
      auto s = handle_request(store, *name);
      if (!send_all(fd, s ? std::string(kStoredAnswer) : error_answer(s.error().message))) {
        spdlog::info("WAL archiver: the archive module left before the answer about {} ({})", *name,
                     s ? "stored" : "not archived");
        ::close(fd);
        return;
      }
    }
    if (buf.size() > kMaxRequestLine) {
      spdlog::warn("WAL archiver: closing a socket connection: request longer than {} bytes: '{}'", kMaxRequestLine,
                   printable(buf));
      break;
    }
    pollfd fds[2] = {{fd, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
    int n = ::poll(fds, 2, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 || fds[1].revents != 0) break;  // stop(): no request is in progress here
    ssize_t r = ::recv(fd, chunk, sizeof chunk, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;  // the module disconnected (PostgreSQL's archiver exited or reconnects)
    buf.append(chunk, static_cast<size_t>(r));
  }
  ::close(fd);
}

Status AsyncArchiver::handle_request(std::unique_ptr<storage::ObjectStore>& store, const std::string& name) {
  const std::string path = opts_.data_dir + "/pg_wal/" + name;
  for (;;) {
    {
      // A worker pushing it right now: its outcome decides (recorded in the spool).
      std::unique_lock lk(m_);
      pushed_cv_.wait(lk, [&] { return busy_.count(name) == 0; });
    }
    auto ack = spool_acknowledges(opts_.spool_dir, name, path, repo_->keyring().active(), opts_.repo.store_url);
    if (!ack) return ack.error();
    if (*ack) {
      std::lock_guard lk(m_);
      ++stats_.answered;
      write_status_locked();
      return {};
    }
    {
      std::lock_guard lk(m_);
      if (busy_.count(name) != 0) continue;  // a worker took it meanwhile
      queue_.erase(name);
      busy_.insert(name);
    }
    Status s;
    if (!store) {
      auto opened = repo_->open_store();
      if (opened)
        store = std::move(*opened);
      else
        s = opened.error();
    }
    if (s) s = push_and_record(*store, name, true);
    {
      std::lock_guard lk(m_);
      busy_.erase(name);
      if (s) {
        ++stats_.answered;
        write_status_locked();
      }
    }
    pushed_cv_.notify_all();
    return s;
  }
}

}  // namespace tandem::backup
