// `tandem portal --config FILE`: a TLS-terminating PostgreSQL portal that leads clients
// to the current leader. SIGHUP reloads the certificate and key without dropping
// sessions; SIGTERM or SIGINT stops it cleanly.
#include <signal.h>

#include <iostream>
#include <memory>

#include <spdlog/spdlog.h>

#include "base/log.hpp"
#include "cli/commands.hpp"
#include "portal/service/portal_config.hpp"
#include "portal/service/portal_service.hpp"

namespace tandem::cli {

namespace {

int run_portal(const std::string& path, bool debug) {
  auto cfg = portal::service::load_portal_config(path);
  if (!cfg) {
    std::cerr << "tandem portal: invalid configuration: " << cfg.error().message << "\n";
    return 2;
  }
  log::init(cfg->name, cfg->log_file, debug);
  // Every thread started from here on inherits the mask, so the signals reach sigwait only.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  portal::service::PortalService service(std::move(*cfg));
  if (auto s = service.start(); !s) {
    spdlog::error("cannot start: {}", s.error().message);
    std::cerr << "tandem portal: " << s.error().message << "\n";
    return 1;
  }
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    if (sig == SIGHUP) {
      if (auto s = service.reload_tls(); !s) spdlog::error("SIGHUP: certificate not reloaded: {}", s.error().message);
      continue;
    }
    spdlog::info("{}: shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    service.stop();
    return 0;
  }
}

}  // namespace

Runner add_portal(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  auto debug = std::make_shared<bool>(false);
  auto* cmd = app.add_subcommand("portal", "Run a portal: TLS-terminating PostgreSQL endpoint that follows the leader");
  cmd->add_option("--config,-c", *path, "Portal YAML configuration file")->required();
  cmd->add_flag("--debug", *debug, "Log every session");
  return [path, debug] { return run_portal(*path, *debug); };
}

}  // namespace tandem::cli
