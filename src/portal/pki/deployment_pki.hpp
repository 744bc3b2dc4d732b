#pragma once
// The PKI files of one deployment, kept in one directory:
//   ca.crt      the CA certificate clients use with sslmode=verify-full (exported path)
//   ca.key      the CA key (0600), never leaves the directory
//   server.crt  the portals' certificate (SANs for every client-facing name and address)
//   server.key  its key (0600)
// ensure_deployment_pki() makes the directory complete and current: it creates what is
// missing and reissues the server certificate when it nears expiry, no longer covers the
// requested names, or was not signed by this CA. Called by `tandem up` at start and by
// the portal's renewal timer; the portal then reloads its TLS context (see tls/).
#include <chrono>
#include <string>

#include "base/result.hpp"
#include "portal/pki/certificates.hpp"

namespace tandem::portal::pki {

struct DeploymentPkiPaths {
  std::string ca_cert;
  std::string ca_key;
  std::string server_cert;
  std::string server_key;
};

DeploymentPkiPaths deployment_pki_paths(const std::string& dir);

enum class PkiAction {
  unchanged,         // everything present and current
  created,           // a new CA and server certificate
  renewed,           // the server certificate was near expiry
  reissued_names,    // the server certificate lacked a requested name or address
  reissued_foreign,  // the server certificate was missing or not signed by this CA
};

const char* pki_action_name(PkiAction a);

struct EnsurePkiRequest {
  std::string dir;                                                  // created (0700) when missing
  ServerCertSpec server;                                            // names, addresses, now, validity
  CaSpec ca;                                                        // used only when the CA is created
  std::chrono::seconds renew_before = std::chrono::hours(24 * 30);  // renew 30 days before expiry
};

struct EnsurePkiOutcome {
  PkiAction action = PkiAction::unchanged;
  DeploymentPkiPaths paths;
  SystemTime server_not_after;
};

[[nodiscard]] Result<EnsurePkiOutcome> ensure_deployment_pki(const EnsurePkiRequest& req);

}  // namespace tandem::portal::pki
