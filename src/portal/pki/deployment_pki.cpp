#include "portal/pki/deployment_pki.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <openssl/x509v3.h>

#include "portal/pki/pem_files.hpp"

namespace tandem::portal::pki {

namespace {

bool exists(const std::string& path) {
  return std::filesystem::exists(path);
}

Status ensure_dir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return make_error(Errc::io, "creating PKI directory {}: {}", dir, ec.message());
  if (chmod(dir.c_str(), 0700) != 0) return make_error(Errc::io, "chmod 0700 {}: {}", dir, strerror(errno));
  return {};
}

// Why the current server certificate has to be replaced, or `unchanged`.
PkiAction judge_server_cert(const CertifiedKey& ca, const DeploymentPkiPaths& paths, const EnsurePkiRequest& req) {
  auto server = load_certified_key(paths.server_cert, paths.server_key);
  if (!server) return PkiAction::reissued_foreign;
  if (X509_check_issued(ca.cert.get(), server->cert.get()) != X509_V_OK ||
      X509_verify(server->cert.get(), ca.key.get()) != 1) {
    tls::clear_openssl_errors();
    return PkiAction::reissued_foreign;
  }
  if (!covers(server->cert.get(), req.server)) return PkiAction::reissued_names;
  if (needs_renewal(server->cert.get(), req.server.now, req.renew_before)) return PkiAction::renewed;
  return PkiAction::unchanged;
}

}  // namespace

DeploymentPkiPaths deployment_pki_paths(const std::string& dir) {
  return {dir + "/ca.crt", dir + "/ca.key", dir + "/server.crt", dir + "/server.key"};
}

const char* pki_action_name(PkiAction a) {
  switch (a) {
    case PkiAction::unchanged: return "unchanged";
    case PkiAction::created: return "created a new CA and server certificate";
    case PkiAction::renewed: return "renewed the server certificate before it expires";
    case PkiAction::reissued_names: return "reissued the server certificate for new names";
    case PkiAction::reissued_foreign: return "reissued a server certificate not signed by this CA";
  }
  return "unknown";
}

Result<EnsurePkiOutcome> ensure_deployment_pki(const EnsurePkiRequest& req) {
  EnsurePkiOutcome out;
  out.paths = deployment_pki_paths(req.dir);
  if (auto s = ensure_dir(req.dir); !s) return s.error();

  const bool have_ca = exists(out.paths.ca_cert) || exists(out.paths.ca_key);
  CertifiedKey ca;
  if (have_ca) {
    auto loaded = load_certified_key(out.paths.ca_cert, out.paths.ca_key);
    if (!loaded) {
      return make_error(loaded.error().code,
                        "the deployment CA in {} is unusable ({}); restore it or remove both "
                        "ca.crt and ca.key to create a new CA (clients must then trust the new ca.crt)",
                        req.dir, loaded.error().message);
    }
    ca = std::move(loaded.value());
    out.action = judge_server_cert(ca, out.paths, req);
  } else {
    CaSpec spec = req.ca;
    spec.now = req.server.now;
    auto created = create_ca(spec);
    if (!created) return created.error();
    ca = std::move(created.value());
    if (auto s = write_certified_key(ca, out.paths.ca_cert, out.paths.ca_key); !s) return s.error();
    out.action = PkiAction::created;
  }

  if (out.action != PkiAction::unchanged) {
    auto issued = issue_server_cert(ca, req.server);
    if (!issued) return issued.error();
    if (auto s = write_certified_key(*issued, out.paths.server_cert, out.paths.server_key); !s) return s.error();
  }
  auto server = load_cert_pem(out.paths.server_cert);
  if (!server) return server.error();
  auto end = not_after(server->get());
  if (!end) return end.error();
  out.server_not_after = *end;
  return out;
}

}  // namespace tandem::portal::pki
