#pragma once
// PortalService: one running `tandem portal`. It owns, and starts and stops in order:
//   - the server TLS context (ServerContextHolder: reloaded on SIGHUP and after renewal),
//   - the read-write listener and, when configured, the read-only one (RelayServer),
//     each with its own SessionRegistry and CurrentRoute,
//   - the Router (etcd watch, /primary fallback) that keeps both routes current,
//   - the HTTP endpoint (/health, /metrics),
//   - the certificate renewal thread (when pki.dir is set).
// Owned by `tandem portal` on its main thread; start(), stop() and reload_tls() are
// called from that thread only. The HTTP handler runs on the HTTP server's threads and
// reads only thread-safe state.
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>

#include "api/http_server.hpp"
#include "base/result.hpp"
#include "portal/relay/relay_server.hpp"
#include "portal/relay/route.hpp"
#include "portal/relay/session_registry.hpp"
#include "portal/service/portal_config.hpp"
#include "portal/service/router.hpp"
#include "portal/tls/server_context.hpp"

namespace tandem::portal::service {

class PortalService {
 public:
  explicit PortalService(PortalConfig cfg);
  ~PortalService();
  PortalService(const PortalService&) = delete;
  PortalService& operator=(const PortalService&) = delete;

  // Loads TLS material, binds every listener and starts routing. On error nothing is left
  // running and the message says which part failed.
  [[nodiscard]] Status start();
  // Stops routing, then the listeners (closing their sessions), the HTTP endpoint and the
  // renewal thread. Idempotent.
  void stop();
  // Re-reads the certificate and key (SIGHUP). Sessions keep the context they started
  // with; new sessions get the new one. On failure the old context stays.
  [[nodiscard]] Status reload_tls();

  std::uint16_t read_write_port() const;
  std::uint16_t read_only_port() const;  // 0 without a read-only listener
  int http_port() const;                 // 0 without an HTTP listener

  api::Response handle_http(const api::Request& req) const;
  std::string metrics_text() const;

 private:
  void renewal_loop();
  void renew_once();
  void note_certificate();

  const PortalConfig cfg_;
  std::unique_ptr<tls::ServerContextHolder> server_tls_;
  std::shared_ptr<tls::SslContext> backend_tls_;
  relay::SessionRegistry rw_registry_;
  relay::SessionRegistry ro_registry_;
  // Sessions are closed by the router (see Router), not by CurrentRoute::set().
  relay::CurrentRoute rw_route_{nullptr};
  relay::CurrentRoute ro_route_{nullptr};
  std::unique_ptr<Router> router_;
  std::unique_ptr<relay::RelayServer> rw_server_;
  std::unique_ptr<relay::RelayServer> ro_server_;
  std::unique_ptr<api::HttpServer> http_;
  std::atomic<std::int64_t> cert_not_after_s_{0};

  std::mutex renew_mu_;
  std::condition_variable renew_cv_;
  bool renew_stop_ = false;
  std::thread renew_thread_;
  bool running_ = false;
};

}  // namespace tandem::portal::service
