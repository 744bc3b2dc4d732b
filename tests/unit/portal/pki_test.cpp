#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <openssl/x509v3.h>

#include "portal/pki/certificates.hpp"
#include "portal/pki/deployment_pki.hpp"
#include "portal/pki/pem_files.hpp"

namespace tandem::portal::pki {
namespace {

using namespace std::chrono_literals;

// 2030-01-01T00:00:00Z: a fixed "now", so dates in tests never depend on the wall clock.
const SystemTime kNow = std::chrono::system_clock::from_time_t(1893456000);

class ScratchDir {
 public:
  ScratchDir() {
    std::string tmpl = "/tmp/tandem-pki-test-XXXXXX";
    EXPECT_NE(mkdtemp(tmpl.data()), nullptr);
    path_ = tmpl;
  }
  ~ScratchDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

CertifiedKey make_ca() {
  auto ca = create_ca({.now = kNow});
  EXPECT_TRUE(ca.ok()) << ca.error().to_string();
  return std::move(ca.value());
}

ServerCertSpec server_spec() {
  return {.dns_names = {"localhost", "db.example.test"}, .ip_addresses = {"127.0.0.1", "::1"}, .now = kNow};
}

int mode_of(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(stat(path.c_str(), &st), 0);
  return static_cast<int>(st.st_mode & 0777);
}

TEST(Pki, CaHasTheRightExtensions) {
  const auto ca = make_ca();
  EXPECT_EQ(X509_get_version(ca.cert.get()), X509_VERSION_3);
  EXPECT_EQ(X509_check_ca(ca.cert.get()), 1);
  EXPECT_EQ(X509_check_issued(ca.cert.get(), ca.cert.get()), X509_V_OK);  // self-signed
  // basicConstraints is critical.
  const int bc = X509_get_ext_by_NID(ca.cert.get(), NID_basic_constraints, -1);
  ASSERT_GE(bc, 0);
  EXPECT_EQ(X509_EXTENSION_get_critical(X509_get_ext(ca.cert.get(), bc)), 1);
  EXPECT_EQ(X509_get_key_usage(ca.cert.get()), static_cast<uint32_t>(KU_KEY_CERT_SIGN | KU_CRL_SIGN));
  ASSERT_NE(X509_get0_subject_key_id(ca.cert.get()), nullptr);
  ASSERT_NE(X509_get0_authority_key_id(ca.cert.get()), nullptr);
  EXPECT_EQ(ASN1_OCTET_STRING_cmp(X509_get0_subject_key_id(ca.cert.get()), X509_get0_authority_key_id(ca.cert.get())),
            0);
  EXPECT_EQ(EVP_PKEY_get_base_id(ca.key.get()), EVP_PKEY_EC);
  EXPECT_EQ(EVP_PKEY_get_bits(ca.key.get()), 256);
  // Ten years, backdated a little.
  EXPECT_EQ(*not_before(ca.cert.get()), kNow - kBackdate);
  EXPECT_EQ(*not_after(ca.cert.get()), kNow + std::chrono::days(3650));
}

TEST(Pki, ServerCertificateVerifiesForEveryNameAndAddress) {
  const auto ca = make_ca();
  auto server = issue_server_cert(ca, server_spec());
  ASSERT_TRUE(server.ok()) << server.error().to_string();
  const X509* cert = server->cert.get();
  EXPECT_EQ(X509_check_ca(const_cast<X509*>(cert)), 0);
  EXPECT_TRUE(X509_get_extended_key_usage(const_cast<X509*>(cert)) & XKU_SSL_SERVER);
  EXPECT_EQ(*not_after(cert), kNow + std::chrono::days(90));
  for (const char* host : {"localhost", "db.example.test", "DB.Example.Test", "127.0.0.1", "::1"}) {
    auto s = verify_server_cert(ca.cert.get(), cert, host, kNow);
    EXPECT_TRUE(s.ok()) << host << ": " << s.error().to_string();
  }
  const auto sans = subject_alt_names(cert);
  EXPECT_EQ(sans.dns_names, (std::vector<std::string>{"localhost", "db.example.test"}));
  EXPECT_EQ(sans.ip_addresses, (std::vector<std::string>{"127.0.0.1", "::1"}));
}

TEST(Pki, VerificationFailures) {
  const auto ca = make_ca();
  auto server = issue_server_cert(ca, server_spec());
  ASSERT_TRUE(server.ok());
  auto wrong_host = verify_server_cert(ca.cert.get(), server->cert.get(), "other.example.test", kNow);
  ASSERT_FALSE(wrong_host.ok());
  EXPECT_NE(wrong_host.error().message.find("hostname mismatch"), std::string::npos) << wrong_host.error().message;
  EXPECT_FALSE(verify_server_cert(ca.cert.get(), server->cert.get(), "127.0.0.2", kNow).ok());
  auto expired = verify_server_cert(ca.cert.get(), server->cert.get(), "localhost", kNow + std::chrono::days(91));
  ASSERT_FALSE(expired.ok());
  EXPECT_NE(expired.error().message.find("expired"), std::string::npos) << expired.error().message;
  const auto other_ca = make_ca();
  auto foreign = verify_server_cert(other_ca.cert.get(), server->cert.get(), "localhost", kNow);
  EXPECT_FALSE(foreign.ok());
  // A CA certificate is not a server certificate for any name.
  EXPECT_FALSE(verify_server_cert(ca.cert.get(), ca.cert.get(), "localhost", kNow).ok());
}

TEST(Pki, InvalidNamesAreRefused) {
  const auto ca = make_ca();
  for (const auto& bad : std::vector<ServerCertSpec>{
           {.dns_names = {"bad name"}, .now = kNow},
           {.dns_names = {"a,DNS:evil.test"}, .now = kNow},
           {.dns_names = {""}, .now = kNow},
           {.dns_names = {"a..b"}, .now = kNow},
           {.ip_addresses = {"300.1.1.1"}, .now = kNow},
           {.now = kNow},
       }) {
    auto r = issue_server_cert(ca, bad);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, Errc::invalid_argument) << r.error().message;
  }
  EXPECT_TRUE(issue_server_cert(ca, {.dns_names = {"*.portals.example.test"}, .now = kNow}).ok());
}

TEST(Pki, NeedsRenewalThreshold) {
  const auto ca = make_ca();
  auto server = issue_server_cert(ca, server_spec());
  ASSERT_TRUE(server.ok());
  const X509* cert = server->cert.get();
  const auto thirty_days = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::days(30));
  EXPECT_FALSE(needs_renewal(cert, kNow, thirty_days));
  EXPECT_FALSE(needs_renewal(cert, kNow + std::chrono::days(59), thirty_days));
  EXPECT_TRUE(needs_renewal(cert, kNow + std::chrono::days(60), thirty_days));
  EXPECT_TRUE(needs_renewal(cert, kNow + std::chrono::days(120), thirty_days));
}

TEST(Pki, CoversRequestedNames) {
  const auto ca = make_ca();
  auto server = issue_server_cert(ca, server_spec());
  ASSERT_TRUE(server.ok());
  EXPECT_TRUE(covers(server->cert.get(), server_spec()));
  EXPECT_TRUE(covers(server->cert.get(), {.dns_names = {"LOCALHOST"}, .ip_addresses = {"0:0::1"}}));
  EXPECT_FALSE(covers(server->cert.get(), {.dns_names = {"new.example.test"}}));
  EXPECT_FALSE(covers(server->cert.get(), {.ip_addresses = {"10.0.0.1"}}));
}

TEST(Pki, PemRoundTripAndModes) {
  ScratchDir dir;
  const auto ca = make_ca();
  const std::string cert_path = dir.path() + "/ca.crt";
  const std::string key_path = dir.path() + "/ca.key";
  ASSERT_TRUE(write_certified_key(ca, cert_path, key_path).ok());
  EXPECT_EQ(mode_of(cert_path), 0644);
  EXPECT_EQ(mode_of(key_path), 0600);
  auto loaded = load_certified_key(cert_path, key_path);
  ASSERT_TRUE(loaded.ok()) << loaded.error().to_string();
  EXPECT_EQ(X509_cmp(loaded->cert.get(), ca.cert.get()), 0);
  EXPECT_EQ(EVP_PKEY_eq(loaded->key.get(), ca.key.get()), 1);
  // No temporary files are left behind.
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) files += e.is_regular_file() ? 1 : 0;
  EXPECT_EQ(files, 2);
}

TEST(Pki, LoadErrorsSayWhatIsWrong) {
  ScratchDir dir;
  auto missing = load_cert_pem(dir.path() + "/nope.crt");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, Errc::not_found);
  EXPECT_NE(missing.error().message.find("nope.crt"), std::string::npos);

  const std::string junk = dir.path() + "/junk.pem";
  std::ofstream(junk) << "not a certificate\n";
  auto bad = load_cert_pem(junk);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, Errc::invalid_argument);
  EXPECT_NE(bad.error().message.find("is not a PEM certificate"), std::string::npos);
  EXPECT_FALSE(load_key_pem(junk).ok());

  // A key that belongs to another certificate.
  const auto a = make_ca();
  const auto b = make_ca();
  ASSERT_TRUE(write_cert_pem(a.cert.get(), dir.path() + "/a.crt").ok());
  ASSERT_TRUE(write_key_pem(b.key.get(), dir.path() + "/b.key").ok());
  auto mismatch = load_certified_key(dir.path() + "/a.crt", dir.path() + "/b.key");
  ASSERT_FALSE(mismatch.ok());
  EXPECT_NE(mismatch.error().message.find("does not belong"), std::string::npos) << mismatch.error().message;
}

TEST(Pki, WriteIntoMissingDirectoryFails) {
  const auto ca = make_ca();
  auto s = write_cert_pem(ca.cert.get(), "/nonexistent-dir-for-tandem/x.crt");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, Errc::io);
}

TEST(DeploymentPki, CreatesThenKeepsThenRenewsThenReissues) {
  ScratchDir scratch;
  EnsurePkiRequest req{.dir = scratch.path() + "/pki", .server = server_spec()};
  auto first = ensure_deployment_pki(req);
  ASSERT_TRUE(first.ok()) << first.error().to_string();
  EXPECT_EQ(first->action, PkiAction::created);
  EXPECT_EQ(mode_of(req.dir), 0700);
  EXPECT_EQ(mode_of(first->paths.ca_key), 0600);
  EXPECT_EQ(mode_of(first->paths.server_key), 0600);
  EXPECT_EQ(first->server_not_after, kNow + std::chrono::days(90));

  auto ca_cert = load_cert_pem(first->paths.ca_cert);
  auto server_cert = load_cert_pem(first->paths.server_cert);
  ASSERT_TRUE(ca_cert.ok() && server_cert.ok());
  EXPECT_TRUE(verify_server_cert(ca_cert->get(), server_cert->get(), "localhost", kNow).ok());

  auto second = ensure_deployment_pki(req);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->action, PkiAction::unchanged);

  req.server.now = kNow + std::chrono::days(70);  // inside the 30-day window
  auto third = ensure_deployment_pki(req);
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third->action, PkiAction::renewed);
  EXPECT_EQ(third->server_not_after, req.server.now + std::chrono::days(90));
  auto ca_after = load_cert_pem(first->paths.ca_cert);
  EXPECT_EQ(X509_cmp(ca_after->get(), ca_cert->get()), 0);  // the CA itself is kept

  req.server.dns_names.push_back("portal2.example.test");
  auto fourth = ensure_deployment_pki(req);
  ASSERT_TRUE(fourth.ok());
  EXPECT_EQ(fourth->action, PkiAction::reissued_names);

  std::filesystem::remove(first->paths.server_cert);
  auto fifth = ensure_deployment_pki(req);
  ASSERT_TRUE(fifth.ok());
  EXPECT_EQ(fifth->action, PkiAction::reissued_foreign);
}

TEST(DeploymentPki, ForeignServerCertificateIsReplaced) {
  ScratchDir scratch;
  EnsurePkiRequest req{.dir = scratch.path(), .server = server_spec()};
  ASSERT_TRUE(ensure_deployment_pki(req).ok());
  const auto paths = deployment_pki_paths(req.dir);
  const auto other_ca = make_ca();
  auto foreign = issue_server_cert(other_ca, server_spec());
  ASSERT_TRUE(foreign.ok());
  ASSERT_TRUE(write_certified_key(*foreign, paths.server_cert, paths.server_key).ok());
  auto again = ensure_deployment_pki(req);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->action, PkiAction::reissued_foreign);
}

TEST(DeploymentPki, BrokenCaIsAnErrorNotASilentNewCa) {
  ScratchDir scratch;
  EnsurePkiRequest req{.dir = scratch.path(), .server = server_spec()};
  ASSERT_TRUE(ensure_deployment_pki(req).ok());
  std::filesystem::remove(deployment_pki_paths(req.dir).ca_key);
  auto r = ensure_deployment_pki(req);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("the deployment CA"), std::string::npos) << r.error().message;
}

}  // namespace
}  // namespace tandem::portal::pki
