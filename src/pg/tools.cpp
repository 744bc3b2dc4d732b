#include "pg/tools.hpp"

#include <filesystem>

#include "base/log.hpp"
#include "base/process.hpp"
#include "pg/files.hpp"
#include "pg/pidfile.hpp"
#include "pg/setup.hpp"

namespace tandem::pg {

namespace {

using Clock = std::chrono::steady_clock;

SpawnOptions tool(const Settings& s, std::vector<std::string> argv) {
  SpawnOptions opts;
  opts.argv = std::move(argv);
  opts.run_as_user = s.run_as;
  opts.env = {{"LC_ALL", "C"}, {"LANG", "C"}, {"PGCONNECT_TIMEOUT", "10"}};
  return opts;
}

}  // namespace

Status empty_data_dir(const Settings& s) {
  std::error_code ec;
  if (!std::filesystem::exists(s.data_dir, ec)) return {};
  for (auto it = std::filesystem::directory_iterator(s.data_dir, ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    std::error_code rm;
    std::filesystem::remove_all(it->path(), rm);
    if (rm) return make_error(Errc::io, "cannot remove {}: {}", it->path().string(), rm.message());
  }
  if (ec) return make_error(Errc::io, "cannot list {}: {}", s.data_dir, ec.message());
  return {};
}

Result<BasebackupResult> basebackup(const Settings& s, const ConnParams& source, std::chrono::milliseconds timeout) {
  if (!data_dir_empty(s)) {
    return make_error(Errc::conflict, "pg_basebackup: {} is not empty; refusing to overwrite it", s.data_dir);
  }
  if (auto st = prepare_directories(s); !st) return st.error();
  ConnParams p = source;
  p.replication = false;  // pg_basebackup adds replication=true itself
  p.dbname.clear();
  p.statement_timeout_ms = 0;
  auto opts = tool(s, {s.bin("pg_basebackup"), "--pgdata=" + s.data_dir, "--wal-method=stream", "--checkpoint=fast",
                       "--no-password", "--progress", "--verbose", "--dbname=" + render_conninfo(p)});
  spdlog::info("[{}] cloning from {}:{} as {} into {}", s.name, source.host, source.port, source.user, s.data_dir);
  auto start = Clock::now();
  auto rr = run(opts, timeout);
  BasebackupResult out;
  out.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  if (rr) out.output = rr->output;
  if (!rr || !rr->status.ok()) {
    Status cleaned = empty_data_dir(s);
    std::string why = rr ? rr->status.describe() : rr.error().message;
    std::string tail = rr ? tail_lines(rr->output, 12) : std::string();
    Errc code = !rr ? rr.error().code
                    : (rr->output.find("could not connect") != std::string::npos ? Errc::unavailable : Errc::io);
    return make_error(code, "pg_basebackup from {}:{} failed ({}){}:\n{}", source.host, source.port, why,
                      cleaned ? "" : "; the partial copy could not be removed: " + cleaned.error().message, tail);
  }
  spdlog::info("[{}] clone finished in {} ms", s.name, out.elapsed.count());
  return out;
}

Result<RewindResult> rewind(const Settings& s, const ConnParams& source, std::chrono::milliseconds timeout) {
  if (auto pid = live_postmaster(s.data_dir)) {
    return make_error(Errc::conflict, "pg_rewind: PostgreSQL (pid {}) still runs on {}; stop it first", *pid,
                      s.data_dir);
  }
  ConnParams p = source;
  p.replication = false;
  if (p.dbname.empty()) p.dbname = "postgres";
  p.statement_timeout_ms = 0;
  // A freshly promoted source has not written its new timeline to pg_control yet (see
  // FACTS); without a CHECKPOINT pg_rewind would say "no rewind required". psql runs it:
  // in this process the SCRAM exchange would start OpenSSL's providers and leave about
  // 2 MiB of libcrypto resident in the agent for good.
  auto cp = run(tool(s, {s.bin("psql"), "--no-psqlrc", "--quiet", "--no-password", "--set=ON_ERROR_STOP=1",
                         "--command=CHECKPOINT", "--dbname=" + render_conninfo(p)}),
                std::chrono::minutes(2));
  if (!cp || !cp->status.ok()) {
    spdlog::warn("[{}] CHECKPOINT on {}:{} before pg_rewind failed ({}): {}", s.name, source.host, source.port,
                 cp ? cp->status.describe() : cp.error().message, cp ? tail_lines(cp->output, 3) : std::string());
  }
  auto opts = tool(
      s, {s.bin("pg_rewind"), "--target-pgdata=" + s.data_dir, "--source-server=" + render_conninfo(p), "--progress"});
  opts.cwd = s.data_dir;
  spdlog::info("[{}] rewinding {} to {}:{}", s.name, s.data_dir, source.host, source.port);
  auto rr = run(opts, timeout);
  if (!rr) return rr.error();
  RewindResult out;
  out.output = rr->output;
  if (!rr->status.ok()) {
    bool unreachable = rr->output.find("could not connect") != std::string::npos ||
                       rr->output.find("connection to server") != std::string::npos;
    return make_error(unreachable ? Errc::unavailable : Errc::io, "pg_rewind to {}:{} failed ({}){}:\n{}", source.host,
                      source.port, rr->status.describe(),
                      unreachable ? "; the source is unreachable, retry later" : "; re-clone this member",
                      tail_lines(rr->output, 12));
  }
  out.rewound = rr->output.find("no rewind required") == std::string::npos;
  spdlog::info("[{}] pg_rewind {}", s.name, out.rewound ? "done" : "found nothing to rewind");
  return out;
}

Result<ControlData> read_controldata(const Settings& s, std::chrono::milliseconds timeout) {
  auto rr = run(tool(s, {s.bin("pg_controldata"), "-D", s.data_dir}), timeout);
  if (!rr) return rr.error();
  if (!rr->status.ok()) {
    return make_error(Errc::io, "pg_controldata -D {} failed ({}): {}", s.data_dir, rr->status.describe(),
                      tail_lines(rr->output, 5));
  }
  return parse_controldata(rr->output);
}

}  // namespace tandem::pg
