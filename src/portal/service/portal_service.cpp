#include "portal/service/portal_service.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "portal/pki/deployment_pki.hpp"
#include "portal/pki/pem_files.hpp"
#include "portal/service/portal_metrics.hpp"
#include "portal/tls/client_context.hpp"

namespace tandem::portal::service {

namespace {

relay::RelayServerOptions listener_options(const PortalConfig& cfg, const char* name, const HostPort& where,
                                           relay::HoldFn hold) {
  relay::RelayServerOptions o;
  o.name = name;
  o.listen_host = where.host;
  o.port = static_cast<std::uint16_t>(where.port);
  o.workers = cfg.workers;
  o.session.allow_plaintext = cfg.allow_plaintext;
  o.session.handshake_timeout = cfg.startup_timeout;
  o.session.connect_timeout = cfg.connect_timeout;
  o.session.idle_timeout = cfg.idle_timeout;
  o.session.max_sessions = cfg.max_connections;
  o.session.hold_timeout = cfg.switchover_hold_timeout;
  o.hold = std::move(hold);
  return o;
}

std::map<std::string, std::size_t> attached_per_member(const relay::SessionRegistry& r) {
  std::map<std::string, std::size_t> out;
  for (const auto& s : r.snapshot()) {
    if (s.endpoint) ++out[s.endpoint->member];
  }
  return out;
}

// An exclusive lock on DIR/.renew.lock for as long as it lives, so two portals sharing a
// PKI directory never interleave their writes of a renewed certificate and key.
class DirLock {
 public:
  explicit DirLock(const std::string& dir) : fd_(::open((dir + "/.renew.lock").c_str(), O_CREAT | O_RDWR, 0600)) {
    if (fd_ >= 0) ::flock(fd_, LOCK_EX);
  }
  ~DirLock() {
    if (fd_ >= 0) ::close(fd_);
  }
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;

 private:
  int fd_;
};

}  // namespace

PortalService::PortalService(PortalConfig cfg) : cfg_(std::move(cfg)) {}

PortalService::~PortalService() {
  stop();
}

Status PortalService::start() {
  if (running_) return make_error(Errc::internal, "portal {} is already running", cfg_.name);
  if (!cfg_.tls_cert.empty()) {
    auto holder = tls::ServerContextHolder::create(tls::ServerTlsOptions{cfg_.tls_cert, cfg_.tls_key});
    if (!holder) return make_error(holder.error().code, "portal TLS: {}", holder.error().message);
    server_tls_ = std::move(*holder);
    note_certificate();
  }
  if (cfg_.backend_tls == BackendTls::on) {
    auto ctx = tls::make_client_context(tls::ClientTlsOptions{cfg_.backend_ca});
    if (!ctx) return make_error(ctx.error().code, "backend TLS: {}", ctx.error().message);
    backend_tls_ = std::move(*ctx);
  }
  router_ =
      std::make_unique<Router>(cfg_, &rw_route_, &rw_registry_, cfg_.read_only ? &ro_route_ : nullptr, &ro_registry_);
  Router* router = router_.get();
  rw_server_ = std::make_unique<relay::RelayServer>(
      listener_options(cfg_, "rw", cfg_.read_write, [router] { return router->holding(); }), server_tls_.get(),
      backend_tls_, rw_route_.as_route_fn(), &rw_registry_);
  if (auto s = rw_server_->start(); !s) {
    stop();
    return s;
  }
  if (cfg_.read_only) {
    ro_server_ = std::make_unique<relay::RelayServer>(
        listener_options(cfg_, "ro", *cfg_.read_only, [router] { return router->read_holding(); }), server_tls_.get(),
        backend_tls_, ro_route_.as_route_fn(), &ro_registry_);
    if (auto s = ro_server_->start(); !s) {
      stop();
      return s;
    }
  }
  if (cfg_.http) {
    api::HttpServerOptions ho;
    ho.host = cfg_.http->host;
    ho.port = cfg_.http->port;
    ho.threads = 1;
    http_ = std::make_unique<api::HttpServer>(ho, [this](const api::Request& r) { return handle_http(r); });
    if (auto s = http_->start(); !s) {
      stop();
      return make_error(s.error().code, "portal HTTP endpoint: {}", s.error().message);
    }
  }
  router_->start();
  if (!cfg_.pki_dir.empty() && server_tls_) {
    renew_stop_ = false;
    renew_thread_ = std::thread([this] { renewal_loop(); });
  }
  running_ = true;
  spdlog::info("portal {} of cluster {}: read-write on {}:{}{}{}", cfg_.name, cfg_.cluster, cfg_.read_write.host,
               read_write_port(),
               cfg_.read_only ? fmt::format(", read-only on {}:{}", cfg_.read_only->host, read_only_port()) : "",
               cfg_.http ? fmt::format(", HTTP on {}:{}", cfg_.http->host, http_port()) : "");
  return {};
}

void PortalService::stop() {
  // Routes stop changing before the listeners go away (see relay_server.hpp).
  if (router_) router_->stop();
  if (renew_thread_.joinable()) {
    {
      std::lock_guard lock(renew_mu_);
      renew_stop_ = true;
    }
    renew_cv_.notify_all();
    renew_thread_.join();
  }
  if (http_) http_->stop();
  if (ro_server_) ro_server_->stop();
  if (rw_server_) rw_server_->stop();
  if (running_) spdlog::info("portal {} stopped", cfg_.name);
  running_ = false;
}

Status PortalService::reload_tls() {
  if (!server_tls_) return make_error(Errc::invalid_argument, "this portal has no TLS certificate configured");
  if (auto s = server_tls_->reload(); !s) return s;
  note_certificate();
  spdlog::info("portal {}: reloaded {} (TLS context generation {})", cfg_.name, cfg_.tls_cert,
               server_tls_->generation());
  return {};
}

void PortalService::note_certificate() {
  auto cert = pki::load_cert_pem(cfg_.tls_cert);
  if (!cert) return;
  auto na = pki::not_after(cert->get());
  if (!na) return;
  cert_not_after_s_.store(std::chrono::duration_cast<std::chrono::seconds>(na->time_since_epoch()).count());
}

void PortalService::renewal_loop() {
  std::unique_lock lock(renew_mu_);
  for (;;) {
    lock.unlock();
    renew_once();
    lock.lock();
    if (renew_cv_.wait_for(lock, cfg_.pki_check_interval, [this] { return renew_stop_; })) return;
  }
}

void PortalService::renew_once() {
  pki::EnsurePkiRequest req;
  req.dir = cfg_.pki_dir;
  req.server.dns_names = cfg_.pki_dns_names;
  req.server.ip_addresses = cfg_.pki_ip_addresses;
  req.server.now = std::chrono::system_clock::now();
  req.ca.now = req.server.now;
  req.renew_before = std::chrono::duration_cast<std::chrono::seconds>(cfg_.pki_renew_before);
  {
    DirLock lock(cfg_.pki_dir);
    auto out = pki::ensure_deployment_pki(req);
    if (!out) {
      spdlog::error("portal {}: certificate renewal in {} failed: {}", cfg_.name, cfg_.pki_dir, out.error().message);
    } else if (out->action != pki::PkiAction::unchanged) {
      spdlog::info("portal {}: server certificate {} ({})", cfg_.name, pki::pki_action_name(out->action),
                   out->paths.server_cert);
    }
  }
  // Picks up what this or another portal wrote.
  auto changed = server_tls_->reload_if_changed();
  if (!changed) {
    spdlog::error("portal {}: cannot load the renewed certificate: {}", cfg_.name, changed.error().message);
  } else if (*changed) {
    note_certificate();
    spdlog::info("portal {}: loaded the renewed certificate (TLS context generation {})", cfg_.name,
                 server_tls_->generation());
  }
}

std::uint16_t PortalService::read_write_port() const {
  return rw_server_ ? rw_server_->port() : 0;
}
std::uint16_t PortalService::read_only_port() const {
  return ro_server_ ? ro_server_->port() : 0;
}
int PortalService::http_port() const {
  return http_ ? http_->port() : 0;
}

std::string PortalService::metrics_text() const {
  PortalMetricsInput in;
  in.cluster = cfg_.cluster;
  in.portal = cfg_.name;
  if (rw_server_) in.listeners.push_back({"rw", &rw_server_->counters(), attached_per_member(rw_registry_)});
  if (ro_server_) in.listeners.push_back({"ro", &ro_server_->counters(), attached_per_member(ro_registry_)});
  if (router_) in.router = router_->status();
  in.tls_generation = server_tls_ ? server_tls_->generation() : 0;
  in.cert_not_after_s = cert_not_after_s_.load();
  return render_portal_metrics(in);
}

api::Response PortalService::handle_http(const api::Request& req) const {
  if (req.method != "GET") {
    return api::error_response(
        make_error(Errc::invalid_argument, "{} {}: only GET is supported", req.method, req.path));
  }
  if (req.path == "/metrics") {
    api::Response r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = metrics_text();
    return r;
  }
  if (req.path == "/health" || req.path == "/") {
    const auto st = router_ ? router_->status() : RouterStatus{};
    const bool ok = st.write_kind == RouteKind::route;
    nlohmann::json j{{"portal", cfg_.name},
                     {"cluster", cfg_.cluster},
                     {"routing", routing_mode_name(st.mode)},
                     {"write", {{"state", route_kind_name(st.write_kind)}, {"reason", st.write_reason}}},
                     {"read", {{"state", route_kind_name(st.read_kind)}}},
                     {"route_changes", st.route_changes}};
    if (ok) j["write"]["member"] = st.write_member;
    if (st.read_kind == RouteKind::route) j["read"]["member"] = st.read_member;
    return api::json_response(ok ? 200 : 503, j);
  }
  return api::error_response(make_error(Errc::not_found, "no such endpoint: {} (try /health or /metrics)", req.path));
}

}  // namespace tandem::portal::service
