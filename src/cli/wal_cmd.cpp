// `tandem wal-push` (archive_command) and `tandem wal-fetch` (restore_command).
//
// Exit codes follow PostgreSQL's rules for these commands:
//   wal-push: 0 = durably archived (or an identical copy was there), 1 = not archived.
//   wal-fetch: 0 = restored; 1 = not in the archive (PostgreSQL tries elsewhere or ends
//   recovery); kFetchAbort (> 125) for anything else — a wrong key, a tampered or truncated
//   object, an unreachable store — which makes PostgreSQL abort recovery instead of
//   mistaking it for the end of the archive. With --standby (a streaming standby's
//   restore_command), an unreachable store is reported as 1 so the standby keeps
//   streaming from its upstream.
//
// `tandem wal-archiver` runs an AsyncArchiver in the foreground until SIGTERM/SIGINT, for
// a PostgreSQL that no agent supervises (the agent runs one itself while it leads). With a
// socket it also serves PostgreSQL's archive module (archive_library = tandem_archive.so).
#include <malloc.h>
#include <signal.h>

#include <algorithm>
#include <iostream>
#include <memory>

#include "backup/async_archiver.hpp"
#include "backup/wal_archive.hpp"
#include "base/log.hpp"
#include "cli/commands.hpp"
#include "cli/repo_options.hpp"

namespace tandem::cli {

namespace {

constexpr int kFetchMissing = 1;

// A push allocates a few 1 MiB buffers (file blocks, seal chunks, store writes) and zstd's
// tables. Left to glibc, each is a fresh mmap: thousands of page faults per segment, which
// cost more than the compression on a virtual machine. Keep them in the heap for reuse.
void keep_buffers_in_heap() {
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
}
constexpr int kFetchAbort = 200;

struct PushArgs {
  RepoOptions repo;
  std::string path;
  std::string spool_dir;
  int parallel = 4;
  bool verbose = false;
};

struct ArchiverArgs {
  RepoOptions repo;
  std::string data_dir;
  std::string spool_dir;
  std::string socket_path;
  bool no_socket = false;
  int workers = 2;
};

struct FetchArgs {
  RepoOptions repo;
  std::string name;
  std::string dest;
  bool standby = false;
};

int run_push(const PushArgs& a) {
  keep_buffers_in_heap();
  auto rc = resolve_repo_config(a.repo);
  if (!rc) {
    std::cerr << "tandem wal-push: " << rc.error().message << "\n";
    return 1;
  }
  backup::PushOptions opts;
  opts.parallel = std::max(1, a.parallel);
  opts.spool_dir = a.spool_dir;
  if (opts.spool_dir.empty() && (!a.repo.config.empty() || !a.repo.dir.empty())) {
    if (auto cfg = resolve_agent_config(a.repo)) opts.spool_dir = cfg->run_dir + "/wal-push-spool";
  }
  auto repo = backup::open_repo(*rc);
  if (!repo) {
    std::cerr << "tandem wal-push: " << repo.error().message << "\n";
    return 1;
  }
  auto r = backup::push_wal_file(**repo, a.path, opts);
  if (!r) {
    std::cerr << "tandem wal-push: " << r.error().message << "\n";
    return 1;
  }
  if (a.verbose)
    std::cerr << "tandem wal-push: " << a.path << ": " << backup::to_string(r->outcome) << " in " << (*repo)->url()
              << (r->read_ahead > 0 ? fmt::format(" (+{} read ahead)", r->read_ahead) : "")
              << (r->waited_for_archiver ? " (waited for the archiver)" : "") << "\n";
  return 0;
}

int run_archiver(const ArchiverArgs& a) {
  keep_buffers_in_heap();
  auto rc = resolve_repo_config(a.repo);
  if (!rc) {
    std::cerr << "tandem wal-archiver: " << rc.error().message << "\n";
    return 2;
  }
  backup::ArchiverOptions o;
  o.repo = *rc;
  o.data_dir = a.data_dir;
  o.spool_dir = a.spool_dir;
  o.workers = std::max(1, a.workers);
  o.socket_path = a.socket_path;
  if (!a.repo.config.empty() || !a.repo.dir.empty()) {
    if (auto cfg = resolve_agent_config(a.repo)) {
      if (o.data_dir.empty()) o.data_dir = cfg->data_dir;
      if (o.spool_dir.empty()) o.spool_dir = cfg->run_dir + "/wal-push-spool";
      // The agent uses archive_command instead when the default path is too long for a socket.
      std::string socket = cfg->run_dir + "/" + backup::kArchiverSocketName;
      if (o.socket_path.empty() && socket.size() <= backup::kMaxSocketPath) o.socket_path = socket;
      o.owner = cfg->run_as;
    }
  }
  if (a.no_socket) o.socket_path.clear();
  if (o.data_dir.empty() || o.spool_dir.empty()) {
    std::cerr << "tandem wal-archiver: give --pgdata and --spool-dir (or --config)\n";
    return 2;
  }
  log::init("wal-archiver");
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);  // before the threads start: only sigwait sees them
  backup::AsyncArchiver archiver(std::move(o));
  if (auto s = archiver.start(); !s) {
    std::cerr << "tandem wal-archiver: " << s.error().message << "\n";
    return 1;
  }
  archiver.set_active(true);
  int sig = 0;
  sigwait(&set, &sig);
  archiver.stop();
  auto st = archiver.stats();
  spdlog::info("WAL archiver: stopped after {} stored, {} already archived, {} failed pushes", st.stored, st.identical,
               st.failed);
  return 0;
}

int run_fetch(const FetchArgs& a) {
  auto rc = resolve_repo_config(a.repo);
  if (!rc) {
    std::cerr << "tandem wal-fetch: " << rc.error().message << "\n";
    return kFetchAbort;
  }
  auto repo = backup::open_repo(*rc);
  if (!repo) {
    std::cerr << "tandem wal-fetch: " << repo.error().message << "\n";
    return kFetchAbort;
  }
  auto s = backup::fetch_wal_file(**repo, a.name, a.dest);
  if (s) return 0;
  const Error& e = s.error();
  if (e.code == Errc::not_found) {
    std::cerr << "tandem wal-fetch: " << a.name << " is not in the archive\n";
    return kFetchMissing;
  }
  if (a.standby && (e.code == Errc::unavailable || e.code == Errc::timeout)) {
    std::cerr << "tandem wal-fetch: " << e.message << " (standby: will retry)\n";
    return kFetchMissing;
  }
  std::cerr << "tandem wal-fetch: FATAL: cannot restore " << a.name << ": " << e.message << "\n";
  return kFetchAbort;
}

}  // namespace

void add_wal(CLI::App& app, std::vector<std::pair<CLI::App*, Runner>>& runners) {
  auto push = std::make_shared<PushArgs>();
  auto* p = app.add_subcommand("wal-push", "Archive one WAL file (archive_command = tandem wal-push --config F %p)");
  add_repo_options(p, push->repo);
  p->add_option("path", push->path, "The WAL file (%p)")->required();
  p->add_option("--parallel", push->parallel, "Files pushed at once, with read-ahead of ready segments (default 4)");
  p->add_option("--spool-dir", push->spool_dir, "Where read-ahead is recorded (default RUN_DIR/wal-push-spool)");
  p->add_flag("--verbose,-v", push->verbose, "Say what was done");
  runners.emplace_back(p, [push] { return run_push(*push); });

  auto arch = std::make_shared<ArchiverArgs>();
  auto* w = app.add_subcommand("wal-archiver",
                               "Push ready WAL files in the background ahead of archive_command (wal-push then "
                               "acknowledges them at once); runs until SIGTERM");
  add_repo_options(w, arch->repo);
  w->add_option("--pgdata", arch->data_dir, "PostgreSQL data directory (default: the agent config's)");
  w->add_option("--spool-dir", arch->spool_dir, "The spool wal-push uses (default RUN_DIR/wal-push-spool)");
  w->add_option("--workers", arch->workers, "Files pushed at once (default 2)");
  w->add_option("--socket", arch->socket_path,
                "Unix socket served to PostgreSQL's archive module (archive_library = tandem_archive.so); "
                "default RUN_DIR/wal-archiver.sock with --config, none otherwise");
  w->add_flag("--no-socket", arch->no_socket, "Do not serve the archive module");
  runners.emplace_back(w, [arch] { return run_archiver(*arch); });

  auto fetch = std::make_shared<FetchArgs>();
  auto* f = app.add_subcommand("wal-fetch",
                               "Restore one WAL file (restore_command = tandem wal-fetch --config F %f %p); exit 1 "
                               "when it is not archived, 200 on any other failure");
  add_repo_options(f, fetch->repo);
  f->add_option("name", fetch->name, "The WAL file name (%f)")->required();
  f->add_option("dest", fetch->dest, "Where to write it (%p)")->required();
  f->add_flag("--standby", fetch->standby, "Report an unreachable store as 'not archived' (streaming standbys)");
  runners.emplace_back(f, [fetch] { return run_fetch(*fetch); });
}

}  // namespace tandem::cli
