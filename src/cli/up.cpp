// `tandem up` and `tandem down`: a complete local deployment on this machine.
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <thread>

#include <fmt/format.h>

#include "api/http_client.hpp"
#include "base/process.hpp"
#include "cli/commands.hpp"
#include "cli/up_from_backup.hpp"
#include "dcs/store.hpp"
#include "deploy/layout.hpp"
#include "deploy/supervisor.hpp"
#include "portal/pki/deployment_pki.hpp"

namespace tandem::cli {

namespace {

struct UpOptions {
  std::string dir = "./tandem-data";
  int base_port = 15400;
  bool base_port_given = false;
  bool detach = false;
  std::string cluster = "tandem";
  std::string sync_mode = "on";
  int ttl = 4;
  int timeout_s = 180;
  std::string backup_store;             // new deployments: repository URL (default file://DIR/backups)
  std::string backup_credentials_file;  // S3 credentials for it
  FromBackupOptions from;               // new deployments: restore another deployment's backup
};

// Blocks SIGINT/SIGTERM so they can be received with sigtimedwait.
sigset_t block_stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  return set;
}

bool stop_requested(const sigset_t& set, std::chrono::milliseconds wait) {
  timespec ts{static_cast<time_t>(wait.count() / 1000), static_cast<long>((wait.count() % 1000) * 1000000)};
  return sigtimedwait(&set, nullptr, &ts) > 0;
}

void stop_all(const deploy::Layout& l) {
  auto comps = deploy::components(l, self_binary());
  // Portals first (clients fail fast), agents next (each shuts its PostgreSQL down fast),
  // then etcd.
  enum class Stage { portals, agents, etcd };
  for (Stage stage : {Stage::portals, Stage::agents, Stage::etcd}) {
    std::vector<std::thread> threads;
    for (const auto& c : comps) {
      const Stage own = c.is_portal ? Stage::portals : c.is_agent ? Stage::agents : Stage::etcd;
      if (own != stage) continue;
      threads.emplace_back([&l, c] {
        auto s = deploy::stop(l, c, c.is_agent ? std::chrono::seconds(60) : std::chrono::seconds(10));
        if (!s) std::cerr << "tandem: " << s.error().message << "\n";
      });
    }
    for (auto& t : threads) t.join();
  }
}

// A leader running as primary, and every other member streaming from it.
bool deployment_ready(dcs::ClusterStore& store, const deploy::Layout& l, std::string& status) {
  // Every etcd member serves (a restarted one has rejoined), not just a quorum.
  for (const auto& e : l.etcd) {
    auto h = api::http_get(e.client_url() + "/health", std::chrono::milliseconds(1000));
    if (!h || h->status != 200 || h->body.find("true") == std::string::npos) {
      status = fmt::format("waiting for etcd member {} to serve", e.name);
      return false;
    }
  }
  auto snap = store.load();
  if (!snap) {
    status = "waiting for etcd: " + snap.error().message;
    return false;
  }
  if (!snap->leader) {
    status = "waiting for a leader";
    return false;
  }
  const dcs::Member* leader = snap->leader_member();
  if (leader == nullptr || leader->state != "running" || leader->role != "leader") {
    status = fmt::format("waiting for the leader {} to run as primary", snap->leader->name);
    return false;
  }
  for (const auto& m : l.members) {
    if (m.name == leader->name) continue;
    const dcs::Member* f = snap->member(m.name);
    if (f == nullptr || f->state != "streaming") {
      status =
          fmt::format("waiting for {} to stream from {} ({})", m.name, leader->name, f ? f->state : "not registered");
      return false;
    }
  }
  for (const auto& p : l.portals) {
    auto h = api::http_get(p.http_url() + "/health", std::chrono::milliseconds(1000));
    if (!h || h->status != 200) {
      status = fmt::format("waiting for {} to route to the leader", p.name);
      return false;
    }
  }
  status = "ready";
  return true;
}

std::string portal_summary(const deploy::Layout& l) {
  std::string out;
  for (const auto& p : l.portals) {
    out += fmt::format("{}{} read-write {}:{}, read-only {}:{}, {}/metrics", out.empty() ? "" : "\n            ",
                       p.name, l.host, p.port, l.host, p.ro_port, p.http_url());
  }
  return out;
}

void print_tail(const std::string& path, int lines) {
  std::ifstream in(path);
  std::vector<std::string> all;
  for (std::string line; std::getline(in, line);) all.push_back(line);
  size_t from = all.size() > static_cast<size_t>(lines) ? all.size() - lines : 0;
  for (size_t i = from; i < all.size(); ++i) std::cerr << "  | " << all[i] << "\n";
}

int run_up(const UpOptions& o) {
  // --from-backup: check the source before anything is created, so a wrong key or a
  // missing backup leaves nothing behind.
  std::optional<CheckedSource> source;
  if (o.from.given()) {
    std::error_code ec;
    std::string want = std::filesystem::absolute(o.dir, ec).lexically_normal().string();
    while (want.size() > 1 && want.back() == '/') want.pop_back();
    if (!std::filesystem::exists(want + "/layout.json")) {
      auto checked =
          check_backup_source(o.from, want, o.backup_store.empty() ? "file://" + want + "/backups" : o.backup_store);
      if (!checked) {
        std::cerr << "tandem up: " << checked.error().message << "\nnothing was created or started\n";
        return 1;
      }
      std::cout << fmt::format("restoring {} to {}: {}\n", checked->source.store, checked->target, checked->plan)
                << std::flush;
      source = std::move(*checked);
    }
  }
  auto dir = deploy::usable_dir(o.dir);
  if (!dir) {
    std::cerr << "tandem up: " << dir.error().message << "\n";
    return 2;
  }
  deploy::Layout layout;
  if (auto existing = deploy::load_layout(*dir)) {
    layout = *existing;
    if (o.from.given() && !layout.from_backup.enabled()) {
      std::cerr << fmt::format(
          "tandem up: {} already holds a deployment that was not restored from a backup; --from-backup only "
          "creates new deployments (use another --dir)\n",
          *dir);
      return 2;
    }
    if (o.base_port_given && o.base_port != layout.base_port) {
      std::cerr << fmt::format("tandem up: {} was created with --base-port {}; drop --base-port or use another --dir\n",
                               *dir, layout.base_port);
      return 2;
    }
  } else if (existing.error().code == Errc::not_found) {
    auto mode = dcs::parse_sync_mode(o.sync_mode);
    if (!mode) {
      std::cerr << "tandem up: --sync-mode: expected off, on or strict\n";
      return 2;
    }
    layout = deploy::make_layout(*dir, o.base_port, o.cluster);
    layout.synchronous_mode = *mode;
    layout.ttl = o.ttl;
    layout.backup_store = o.backup_store;
    layout.backup_credentials_file = o.backup_credentials_file;
    if (source) {
      if (auto s = install_backup_source(layout, *source); !s) {
        std::cerr << "tandem up: " << s.error().message << "\n";
        return 1;
      }
    }
    if (auto s = deploy::save_layout(layout); !s) {
      std::cerr << "tandem up: " << s.error().message << "\n";
      return 1;
    }
  } else {
    std::cerr << "tandem up: " << existing.error().message << "\n";
    return 2;
  }
  if (auto s = deploy::prepare(layout); !s) {
    std::cerr << "tandem up: " << s.error().message << "\n";
    return 1;
  }

  {
    // The deployment CA and the portals' certificate (created once, renewed when near expiry).
    const auto names = deploy::portal_names(layout);
    portal::pki::EnsurePkiRequest req;
    req.dir = layout.pki_dir();
    req.server.dns_names = names.dns_names;
    req.server.ip_addresses = names.ip_addresses;
    req.server.now = std::chrono::system_clock::now();
    req.ca.now = req.server.now;
    req.ca.common_name = fmt::format("Tandem deployment CA ({})", layout.cluster);
    auto pki = portal::pki::ensure_deployment_pki(req);
    if (!pki) {
      std::cerr << "tandem up: deployment PKI in " << layout.pki_dir() << ": " << pki.error().message << "\n";
      return 1;
    }
    if (pki->action != portal::pki::PkiAction::unchanged) {
      std::cout << fmt::format("certificates: {} ({})\n", portal::pki::pki_action_name(pki->action), layout.pki_dir());
    }
  }

  sigset_t stop_set = block_stop_signals();
  auto comps = deploy::components(layout, self_binary());
  for (const auto& c : comps) {
    if (auto pid = deploy::running_pid(layout, c)) {
      std::cout << fmt::format("{} is already running (pid {})\n", c.name, *pid);
      continue;
    }
    auto pid = deploy::start(layout, c);
    if (!pid) {
      std::cerr << fmt::format("tandem up: cannot start {}: {}\n", c.name, pid.error().message);
      stop_all(layout);
      return 1;
    }
    std::cout << fmt::format("started {} (pid {})\n", c.name, *pid) << std::flush;
  }

  auto store = dcs::make_etcd_store({layout.etcd_endpoints(), layout.cluster});
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(o.timeout_s);
  std::string status, last_status;
  while (!deployment_ready(*store, layout, status)) {
    if (status != last_status) std::cout << status << "\n" << std::flush;
    last_status = status;
    for (const auto& c : comps) {
      if (deploy::running_pid(layout, c)) continue;
      std::cerr << fmt::format("tandem up: {} exited during start-up; its log ({}):\n", c.name,
                               layout.log_path(c.name));
      print_tail(layout.log_path(c.name), 20);
      print_tail(layout.log_path(c.name + "-stdout"), 10);
      stop_all(layout);
      return 1;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      std::cerr << fmt::format("tandem up: the deployment was not ready within {} s ({}); logs are in {}/logs\n",
                               o.timeout_s, status, layout.dir);
      // A restore that never produced a leader leaves nothing running, even with --detach.
      const bool restore_failed = source.has_value() && status == "waiting for a leader";
      if (restore_failed) {
        for (const auto& m : layout.members) {
          std::cerr << fmt::format("the end of {}'s log ({}):\n", m.name, layout.log_path(m.name));
          print_tail(layout.log_path(m.name), 12);
        }
      }
      if (!o.detach || restore_failed) stop_all(layout);
      return 1;
    }
    if (stop_requested(stop_set, std::chrono::milliseconds(200))) {
      std::cout << "stopping\n";
      stop_all(layout);
      return 130;
    }
  }
  if (auto s = deploy::write_deployment_json(layout); !s) {
    std::cerr << "tandem up: " << s.error().message << "\n";
  }
  std::cout << fmt::format(
      "\nTandem deployment '{}' is ready in {}\n"
      "  connect:  PGPASSFILE={} psql \"{}\"\n"
      "            (key=value form: \"{}\")\n"
      "  portals:  {}\n"
      "  CA:       {}\n"
      "  status:   tandem ctl list --dir {}\n"
      "  details:  {}/deployment.json\n",
      layout.cluster, layout.dir, layout.secret_path("pgpass"), deploy::connection_uri(layout),
      deploy::connection_string(layout), portal_summary(layout), layout.ca_cert_path(), layout.dir, layout.dir);
  if (layout.from_backup.enabled()) {
    std::cout << fmt::format("  restored: from {} (read only); new backups and WAL go to {}\n",
                             layout.from_backup.store, layout.backup_store_url());
  }
  if (o.detach) {
    std::cout << fmt::format("  stop:     tandem down --dir {}\n", layout.dir);
    return 0;
  }
  std::cout << "Press Ctrl-C to stop.\n" << std::flush;
  std::map<std::string, bool> reported;
  while (!stop_requested(stop_set, std::chrono::seconds(1))) {
    for (const auto& c : comps) {
      bool up = deploy::running_pid(layout, c).has_value();
      if (!up && !reported[c.name]) {
        std::cout << fmt::format("{} is not running; bring it back with: tandem up --dir {} --detach\n", c.name,
                                 layout.dir)
                  << std::flush;
      }
      reported[c.name] = !up;
    }
  }
  std::cout << "stopping the deployment\n" << std::flush;
  stop_all(layout);
  std::cout << "stopped\n";
  return 0;
}

}  // namespace

Runner add_up(CLI::App& app) {
  auto o = std::make_shared<UpOptions>();
  auto* cmd =
      app.add_subcommand("up", "Run a complete local deployment: three etcd members, two data members, two portals");
  cmd->add_option("--dir", o->dir, "Deployment directory")->capture_default_str();
  auto* bp =
      cmd->add_option("--base-port", o->base_port, "First of the ports the deployment uses")->capture_default_str();
  cmd->add_flag("--detach", o->detach, "Start what is missing, wait until ready, and return");
  cmd->add_option("--cluster", o->cluster, "Cluster name (new deployments)")->capture_default_str();
  cmd->add_option("--sync-mode", o->sync_mode, "synchronous_mode: off, on or strict (new deployments)")
      ->capture_default_str();
  cmd->add_option("--ttl", o->ttl, "Leader lease ttl in seconds (new deployments)")->capture_default_str();
  cmd->add_option("--timeout", o->timeout_s, "Seconds to wait for the deployment to be ready")->capture_default_str();
  cmd->add_option(
      "--backup-store", o->backup_store,
      "Backup repository of a new deployment (default file://DIR/backups), e.g. s3://bucket/prefix?endpoint=...");
  cmd->add_option("--backup-credentials-file", o->backup_credentials_file,
                  "S3 credentials (INI) for --backup-store, readable by the postgres user");
  add_from_backup_options(cmd, o->from);
  return [o, bp] {
    o->base_port_given = bp->count() > 0;
    return run_up(*o);
  };
}

Runner add_down(CLI::App& app) {
  auto dir = std::make_shared<std::string>("./tandem-data");
  auto* cmd = app.add_subcommand("down", "Stop a local deployment started by tandem up");
  cmd->add_option("--dir", *dir, "Deployment directory")->capture_default_str();
  return [dir] {
    std::error_code ec;
    auto abs = std::filesystem::absolute(*dir, ec).string();
    auto layout = deploy::load_layout(abs);
    if (!layout) {
      std::cerr << "tandem down: " << layout.error().message << "\n";
      return 2;
    }
    stop_all(*layout);
    std::cout << "stopped\n";
    return 0;
  };
}

}  // namespace tandem::cli
