// `tandem agent --config FILE`: one HA agent beside one PostgreSQL member.
#include <signal.h>

#include <iostream>
#include <memory>

#include "backup/async_archiver.hpp"
#include "base/log.hpp"
#include "base/process.hpp"
#include "cli/commands.hpp"
#include "config/agent_config.hpp"
#include "ha/agent.hpp"
#include "ha/backup_scheduler.hpp"
#include "ha/wal_archiver.hpp"
#include "pg/conn.hpp"
#include "pg/conninfo.hpp"
#include "pg/settings.hpp"
#include "pg/setup.hpp"

namespace tandem::cli {

namespace {

// `tandem agent --config FILE --setup-roles [--restored]`: the agent's bootstrap step that
// creates the replication and admin roles with the passwords of the configured files, on
// the running local PostgreSQL (see Agent::setup_roles).
int setup_roles(const config::AgentConfig& cfg, bool restored) {
  auto fail = [](const std::string& message) {
    std::cerr << "tandem agent --setup-roles: " << message << "\n";
    return 1;
  };
  auto repl_pw = config::read_secret_file(cfg.replication.password_file);
  if (!repl_pw) return fail(repl_pw.error().message);
  auto admin_pw = config::read_secret_file(cfg.admin.password_file);
  if (!admin_pw) return fail(admin_pw.error().message);
  auto conn = pg::Connection::open(pg::local_superuser(pg::settings_from_config(cfg), 60000));
  if (!conn) return fail(conn.error().message);
  auto st =
      pg::create_roles(*conn, {cfg.replication.username, Secret(*repl_pw)}, {cfg.admin.username, Secret(*admin_pw)});
  if (!st) return fail(st.error().message);
  // A restored cluster keeps the source's roles and passwords: this deployment's own
  // secrets replace them (the two roles above, and the superuser).
  if (restored) {
    auto su_pw = config::read_secret_file(cfg.superuser.password_file);
    if (!su_pw) return fail(su_pw.error().message);
    if (auto s = pg::set_password(*conn, cfg.superuser.username, Secret(*su_pw)); !s) return fail(s.error().message);
  }
  std::cout << "created roles " << cfg.replication.username << " (replication) and " << cfg.admin.username << " (admin)"
            << (restored ? "; the superuser's password is this deployment's" : "") << "\n";
  return 0;
}

}  // namespace

Runner add_agent(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  auto debug = std::make_shared<bool>(false);
  auto* cmd = app.add_subcommand("agent", "Run the HA agent of one data member (supervises its PostgreSQL)");
  cmd->add_option("--config,-c", *path, "Agent YAML configuration file")->required();
  cmd->add_flag("--debug", *debug, "Log every HA cycle");
  // The agent's own bootstrap step (hidden from --help).
  auto roles = std::make_shared<bool>(false);
  auto restored = std::make_shared<bool>(false);
  cmd->add_flag("--setup-roles", *roles, "Create the roles on the running local PostgreSQL, then exit")->group("");
  cmd->add_flag("--restored", *restored, "With --setup-roles: also reset the superuser's password")->group("");
  return [path, debug, roles, restored] {
    auto cfg = config::load_agent_config(*path);
    if (!cfg) {
      std::cerr << "tandem agent: invalid configuration: " << cfg.error().message << "\n";
      return 2;
    }
    if (*roles) return setup_roles(*cfg, *restored);
    log::init(cfg->name, cfg->log_file, *debug);
    // Stop signals are taken by the agent's signal thread; block them everywhere else.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    signal(SIGPIPE, SIG_IGN);
    // Scheduled backups run as child processes watched by their own thread (see
    // BackupScheduler); the agent only reports whether it leads.
    std::unique_ptr<ha::BackupScheduler> backups;
    if (cfg->backup.enabled() && cfg->backup.schedule.count() > 0) {
      ha::BackupScheduleOptions so;
      so.tandem_binary = self_binary();
      so.config_path = cfg->source_path;
      so.schedule = cfg->backup.schedule;
      so.log_path = cfg->run_dir + "/scheduled-backup.log";
      backups = std::make_unique<ha::BackupScheduler>(std::move(so));
    }
    // WAL files are pushed ahead of archive_command by a `tandem wal-archiver` child while
    // this member leads (archive_command then acknowledges them at once).
    std::unique_ptr<ha::WalArchiverSupervisor> archiver;
    if (cfg->backup.enabled() && cfg->backup.archive) {
      ha::WalArchiverOptions ao;
      ao.tandem_binary = self_binary();
      ao.config_path = cfg->source_path;
      ao.run_as = cfg->run_as;
      ao.log_path = cfg->run_dir + "/wal-archiver.log";
      ao.socket_path = cfg->run_dir + "/" + backup::kArchiverSocketName;  // the agent's archive_library setting
      if (ao.socket_path.size() > backup::kMaxSocketPath) ao.socket_path.clear();  // then archive_command
      archiver = std::make_unique<ha::WalArchiverSupervisor>(std::move(ao));
    }
    ha::Agent agent(std::move(*cfg));
    if (backups || archiver) {
      agent.set_leader_observer([b = backups.get(), a = archiver.get()](bool leader) {
        if (b != nullptr) b->set_leader(leader);
        if (a != nullptr) a->set_leader(leader);
      });
    }
    if (backups) backups->start();
    if (archiver) archiver->start();
    int rc = agent.run();
    backups.reset();
    archiver.reset();
    if (rc != 0) std::cerr << "tandem agent: failed to start; see " << (*path) << " and the agent log\n";
    return rc;
  };
}

}  // namespace tandem::cli
