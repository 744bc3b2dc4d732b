// `tandem backup create | list | show | verify | extract | delete | expire`: base backups in the
// repository named by --config / --dir / --store (see repo_options.hpp). Exit codes: 0 ok,
// 1 error (one message line on stderr).
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "backup/base_backup.hpp"
#include "backup/retention.hpp"
#include "cli/commands.hpp"
#include "cli/repo_options.hpp"
#include "pg/conn.hpp"
#include "pg/settings.hpp"

namespace tandem::cli {

namespace {

struct BackupArgs {
  RepoOptions repo;
  // create
  std::string label;
  bool progress = false;
  int archive_timeout_s = 300;
  std::string compression = "server";
  int zstd_level = 1;
  int zstd_workers = 1;
  std::string pg_host;  // explicit server instead of the agent config's member
  int pg_port = 5432;
  std::string pg_user;
  std::string pg_passfile;
  // list / show / create
  bool json = false;
  // show / verify / delete
  std::string id;
  bool all = false;
  // extract
  std::string target;
  std::string run_as = "postgres";
  // expire
  bool dry_run = false;
  std::string count;
  std::string max_age;
  std::string pitr_window;
};

int fail(const std::string& cmd, const std::string& message) {
  std::cerr << "tandem backup " << cmd << ": " << message << "\n";
  return 1;
}

Result<std::unique_ptr<backup::Repo>> open(const BackupArgs& a) {
  auto rc = resolve_repo_config(a.repo);
  if (!rc) return rc.error();
  return backup::open_repo(*rc);
}

// The members of a `tandem up` directory: DIR/config/*.yaml.
std::vector<std::string> member_configs(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir + "/config", ec)) {
    if (e.path().extension() == ".yaml") out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Where `backup create` connects: --pg-host, else the member of --config, else the
// primary among the members of --dir.
Result<std::pair<pg::ConnParams, std::string>> backup_source(const BackupArgs& a) {
  if (!a.pg_host.empty()) {
    pg::ConnParams p;
    p.host = a.pg_host;
    p.port = a.pg_port;
    p.user = a.pg_user.empty() ? "postgres" : a.pg_user;
    p.passfile = a.pg_passfile;
    return std::pair{p, std::string()};
  }
  std::vector<std::string> candidates;
  if (!a.repo.config.empty()) {
    candidates.push_back(a.repo.config);
  } else if (!a.repo.dir.empty()) {
    candidates = member_configs(a.repo.dir);
  } else {
    return make_error(Errc::invalid_argument, "no server: give --config AGENT.yaml, --dir DIR or --pg-host");
  }
  std::string standbys;
  for (const auto& path : candidates) {
    auto cfg = config::load_agent_config(path);
    if (!cfg) {
      if (a.repo.config.empty()) continue;  // --dir: not an agent's config (e.g. a portal's)
      return cfg.error();
    }
    pg::ConnParams p = pg::local_superuser(pg::settings_from_config(*cfg), 5000);
    auto rows = pg::query_once(p, "SELECT pg_is_in_recovery()");
    if (!rows) {
      if (a.repo.config.empty()) continue;  // --dir: try the next member
      return rows.error();
    }
    if (!rows->rows.empty() && rows->rows[0][0].value_or("t") == "f") return std::pair{p, cfg->cluster};
    standbys += (standbys.empty() ? "" : ", ") + cfg->name;
  }
  return make_error(Errc::unavailable, "no running primary found (standbys: {}); back up from the leader",
                    standbys.empty() ? "none" : standbys);
}

int run_create(const BackupArgs& a) {
  auto repo = open(a);
  if (!repo) return fail("create", repo.error().message);
  auto source = backup_source(a);
  if (!source) return fail("create", source.error().message);
  backup::CreateOptions opts;
  opts.conn = source->first;
  opts.cluster = source->second;
  opts.label = a.label;
  opts.archive_timeout = std::chrono::seconds(std::max(0, a.archive_timeout_s));
  opts.compression = a.compression == "client" ? backup::CreateOptions::Compression::client
                                               : backup::CreateOptions::Compression::server;
  opts.server_zstd_level = a.zstd_level;
  opts.server_zstd_workers = a.zstd_workers > 1 ? a.zstd_workers : 0;
  opts.seal.zstd_level = a.zstd_level;
  opts.seal.zstd_workers = std::max(0, a.zstd_workers);
  if (a.progress || ::isatty(STDERR_FILENO)) {
    opts.progress = [](const std::string& line) { std::cerr << line << "\n"; };
  }
  auto t0 = std::chrono::steady_clock::now();
  auto m = backup::create_backup(**repo, opts);
  if (!m) return fail("create", m.error().message);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (a.json) {
    std::cout << backup::manifest_to_json(*m);
    return 0;
  }
  double ratio = m->stored_bytes > 0 ? static_cast<double>(m->bytes) / static_cast<double>(m->stored_bytes) : 0;
  std::cout << fmt::format("backup {} complete: {} stored as {} (ratio {:.1f}) in {:.1f}s, {:.0f} MB/s; WAL {}..{}\n",
                           m->id, backup::human_bytes(m->bytes), backup::human_bytes(m->stored_bytes), ratio, secs,
                           secs > 0 ? static_cast<double>(m->bytes) / 1e6 / secs : 0.0, m->start_wal, m->stop_wal);
  return 0;
}

int run_list(const BackupArgs& a) {
  auto repo = open(a);
  if (!repo) return fail("list", repo.error().message);
  auto entries = backup::list_backup_entries(**repo);
  if (!entries) return fail("list", entries.error().message);
  if (a.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& e : *entries) {
      nlohmann::json j = {{"id", e.id}, {"state", e.complete ? "complete" : "incomplete"}};
      if (e.manifest) {
        j["manifest"] = nlohmann::json::parse(backup::manifest_to_json(*e.manifest));
      } else {
        j["problem"] = e.problem;
        j["stored_bytes"] = e.stored_bytes;
      }
      out.push_back(j);
    }
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::cout << fmt::format("{:<20} {:<10} {:<20} {:<12} {:<12} {:>3} {:>9} {:>9} {:>6}\n", "ID", "STATE", "STARTED",
                           "START LSN", "STOP LSN", "TLI", "SIZE", "STORED", "RATIO");
  for (const auto& e : *entries) {
    if (e.manifest) {
      const auto& m = *e.manifest;
      double ratio = m.stored_bytes > 0 ? static_cast<double>(m.bytes) / static_cast<double>(m.stored_bytes) : 0;
      std::cout << fmt::format("{:<20} {:<10} {:<20} {:<12} {:<12} {:>3} {:>9} {:>9} {:>6.1f}\n", e.id, "complete",
                               m.start_time, m.start_lsn.to_string(), m.stop_lsn.to_string(), m.timeline,
                               backup::human_bytes(m.bytes), backup::human_bytes(m.stored_bytes), ratio);
    } else {
      auto t = backup::backup_id_time(e.id);
      std::cout << fmt::format("{:<20} {:<10} {:<20} {:<12} {:<12} {:>3} {:>9} {:>9} {:>6}   ({})\n", e.id,
                               "incomplete", t ? backup::format_utc(*t) : "?", "-", "-", "-", "-",
                               backup::human_bytes(e.stored_bytes), "-", e.problem);
    }
  }
  return 0;
}

int run_show(const BackupArgs& a) {
  auto repo = open(a);
  if (!repo) return fail("show", repo.error().message);
  auto m = backup::read_manifest(**repo, a.id);
  if (!m) return fail("show", m.error().message);
  std::cout << backup::manifest_to_json(*m);
  return 0;
}

int run_verify(const BackupArgs& a) {
  auto repo = open(a);
  if (!repo) return fail("verify", repo.error().message);
  std::vector<std::string> ids;
  if (a.all) {
    auto entries = backup::list_backup_entries(**repo);
    if (!entries) return fail("verify", entries.error().message);
    for (const auto& e : *entries) ids.push_back(e.id);
    if (ids.empty()) return fail("verify", fmt::format("no backups in {}", (*repo)->url()));
  } else if (!a.id.empty()) {
    ids.push_back(a.id);
  } else {
    return fail("verify", "give a backup id or --all");
  }
  int failed = 0;
  for (const auto& id : ids) {
    auto t0 = std::chrono::steady_clock::now();
    auto st = backup::verify_backup(**repo, id);
    std::optional<backup::BackupManifest> m;
    if (st) {
      auto r = backup::read_manifest(**repo, id);
      if (r) m = std::move(*r);
      st = r ? backup::verify_backup_wal(**repo, *m) : Status(r.error());
    }
    if (!st) {
      ++failed;
      std::cerr << "tandem backup verify: " << id << ": FAILED: " << st.error().message << "\n";
      continue;
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::cout << fmt::format("{}: OK ({} objects, {}, WAL {}..{} archived) in {:.1f}s\n", id, m->objects.size(),
                             backup::human_bytes(m->bytes), m->start_wal, m->stop_wal, secs);
  }
  return failed == 0 ? 0 : 1;
}

int run_delete(const BackupArgs& a) {
  auto repo = open(a);
  if (!repo) return fail("delete", repo.error().message);
  if (auto st = backup::delete_backup(**repo, a.id); !st) return fail("delete", st.error().message);
  std::cout << "deleted backup " << a.id << "\n";
  return 0;
}

int run_extract(const BackupArgs& a) {
  auto repo = open(a);
  if (!repo) return fail("extract", repo.error().message);
  auto t0 = std::chrono::steady_clock::now();
  if (auto st = backup::restore_base(**repo, a.id, a.target, a.run_as); !st) return fail("extract", st.error().message);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << fmt::format("extracted backup {} into {} in {:.1f}s (no WAL, no recovery settings)\n", a.id, a.target,
                           secs);
  return 0;
}

Result<config::RetentionConfig> retention_policy(const BackupArgs& a) {
  config::RetentionConfig p;
  if (!a.repo.config.empty() || !a.repo.dir.empty()) {
    auto cfg = resolve_agent_config(a.repo);
    if (!cfg) return cfg.error();
    p = cfg->backup.retention;
  }
  if (!a.count.empty()) {
    try {
      p.count = std::stoi(a.count);
    } catch (const std::exception&) {
      return make_error(Errc::invalid_argument, "--count: expected a number, got '{}'", a.count);
    }
  }
  if (!a.max_age.empty()) {
    auto d = config::parse_duration(a.max_age, "--max-age");
    if (!d) return d.error();
    p.max_age = *d;
  }
  if (!a.pitr_window.empty()) {
    auto d = config::parse_duration(a.pitr_window, "--pitr-window");
    if (!d) return d.error();
    p.pitr_window = *d;
  }
  return p;
}

int run_expire(const BackupArgs& a) {
  auto policy = retention_policy(a);
  if (!policy) return fail("expire", policy.error().message);
  auto repo = open(a);
  if (!repo) return fail("expire", repo.error().message);
  auto entries = backup::list_backup_entries(**repo);
  if (!entries) return fail("expire", entries.error().message);
  auto wal = (*repo)->store().list(std::string(backup::kWalPrefix));
  if (!wal) return fail("expire", wal.error().message);

  std::vector<backup::RetentionBackup> input;
  uint64_t segment_size = backup::kDefaultWalSegmentSize;
  for (const auto& e : *entries) {
    backup::RetentionBackup b;
    b.id = e.id;
    b.complete = e.complete;
    auto t = e.manifest ? backup::parse_utc(e.manifest->start_time) : backup::backup_id_time(e.id);
    if (!t) continue;  // not a backup directory we made: leave it alone
    b.start_time = *t;
    if (e.manifest) {
      b.start_wal = e.manifest->start_wal;
      segment_size = e.manifest->wal_segment_size;
    }
    input.push_back(std::move(b));
  }
  std::vector<std::string> wal_names;
  for (const auto& o : *wal) wal_names.push_back(o.key.substr(backup::kWalPrefix.size()));
  auto plan = backup::plan_retention(input, wal_names, std::chrono::system_clock::now(), *policy, segment_size);

  const char* verb = a.dry_run ? "would delete" : "deleted";
  for (const auto& d : plan.backups) {
    if (d.keep) {
      std::cout << fmt::format("keep   {}: {}\n", d.id, d.reason);
      continue;
    }
    if (!a.dry_run) {
      if (auto st = backup::delete_backup(**repo, d.id); !st) return fail("expire", st.error().message);
    }
    std::cout << fmt::format("{} {}: {}\n", verb, d.id, d.reason);
  }
  for (const auto& name : plan.delete_wal) {
    if (!a.dry_run) {
      if (auto st = (*repo)->store().del(backup::wal_key(name)); !st) return fail("expire", st.error().message);
    }
  }
  std::cout << fmt::format("{} {} WAL files{}\n", verb, plan.delete_wal.size(),
                           plan.wal_floor.empty() ? " (no complete backup kept: WAL left alone)"
                                                  : fmt::format(" before {}", plan.wal_floor));
  return 0;
}

}  // namespace

void add_backup(CLI::App& app, std::vector<std::pair<CLI::App*, Runner>>& runners) {
  auto* b = app.add_subcommand("backup",
                               "Base backups in the repository: create, list, show, verify, extract, delete, expire");
  b->require_subcommand(1);

  auto create = std::make_shared<BackupArgs>();
  auto* c = b->add_subcommand("create", "Take a full backup of the primary, streamed into the repository");
  add_repo_options(c, create->repo);
  c->add_option("--label", create->label, "A label stored with the backup");
  c->add_flag("--progress", create->progress, "Report progress on stderr (default: only when stderr is a terminal)");
  c->add_option("--archive-timeout", create->archive_timeout_s,
                "Seconds to wait for the last WAL segment to be archived (0: do not wait; default 300)");
  c->add_option("--compression", create->compression,
                "server: PostgreSQL compresses (zstd) and tandem encrypts (default); client: tandem does both")
      ->check(CLI::IsMember({"server", "client"}));
  c->add_option("--zstd-level", create->zstd_level, "zstd level (default 1)");
  c->add_option("--zstd-workers", create->zstd_workers,
                "zstd threads: client side, extra threads (default 1); server side, used when above 1");
  c->add_option("--pg-host", create->pg_host,
                "Back up this server (host or socket dir) instead of the config's member");
  c->add_option("--pg-port", create->pg_port, "Port of --pg-host (default 5432)");
  c->add_option("--pg-user", create->pg_user, "Replication user for --pg-host (default postgres)");
  c->add_option("--pg-passfile", create->pg_passfile, "pgpass file for --pg-user");
  c->add_flag("--json", create->json, "Print the manifest as JSON");
  runners.emplace_back(c, [create] { return run_create(*create); });

  auto list = std::make_shared<BackupArgs>();
  auto* l = b->add_subcommand("list", "List backups (complete and incomplete)");
  add_repo_options(l, list->repo);
  l->add_flag("--json", list->json, "JSON output");
  runners.emplace_back(l, [list] { return run_list(*list); });

  auto show = std::make_shared<BackupArgs>();
  auto* s = b->add_subcommand("show", "Print a backup's manifest");
  add_repo_options(s, show->repo);
  s->add_option("id", show->id, "Backup id")->required();
  runners.emplace_back(s, [show] { return run_show(*show); });

  auto verify = std::make_shared<BackupArgs>();
  auto* v = b->add_subcommand("verify", "Download, decrypt and check a backup and the WAL it needs");
  add_repo_options(v, verify->repo);
  v->add_option("id", verify->id, "Backup id");
  v->add_flag("--all", verify->all, "Verify every backup");
  runners.emplace_back(v, [verify] { return run_verify(*verify); });

  auto del = std::make_shared<BackupArgs>();
  auto* d = b->add_subcommand("delete", "Delete a backup");
  add_repo_options(d, del->repo);
  d->add_option("id", del->id, "Backup id")->required();
  runners.emplace_back(d, [del] { return run_delete(*del); });

  auto extract = std::make_shared<BackupArgs>();
  auto* x = b->add_subcommand("extract",
                              "Verify and unpack a base backup into an empty directory (no WAL, no recovery settings; "
                              "use `tandem restore` for a startable copy)");
  add_repo_options(x, extract->repo);
  x->add_option("id", extract->id, "Backup id")->required();
  x->add_option("target", extract->target, "Empty or missing directory")->required();
  x->add_option("--run-as", extract->run_as, "Owner of the files (default postgres)");
  runners.emplace_back(x, [extract] { return run_extract(*extract); });

  auto expire = std::make_shared<BackupArgs>();
  auto* e = b->add_subcommand("expire", "Apply the retention policy: delete old backups and WAL no backup needs");
  add_repo_options(e, expire->repo);
  e->add_flag("--dry-run", expire->dry_run, "Only say what would be deleted");
  e->add_option("--count", expire->count, "Override retention.count");
  e->add_option("--max-age", expire->max_age, "Override retention.max_age (e.g. 30d, 0 = none)");
  e->add_option("--pitr-window", expire->pitr_window, "Override retention.pitr_window (e.g. 7d)");
  runners.emplace_back(e, [expire] { return run_expire(*expire); });
}

}  // namespace tandem::cli
