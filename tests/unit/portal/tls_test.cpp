// TLS context tests: real handshakes between OpenSSL objects joined by a memory BIO pair.
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "portal/pki/certificates.hpp"
#include "portal/pki/pem_files.hpp"
#include "portal/tls/client_context.hpp"
#include "portal/tls/openssl_util.hpp"
#include "portal/tls/server_context.hpp"

namespace tandem::portal::tls {
namespace {

struct SslFree {
  void operator()(SSL* p) const { SSL_free(p); }
};
using SslPtr = std::unique_ptr<SSL, SslFree>;

// A CA, a server certificate for localhost/127.0.0.1 and its files, in a scratch dir.
class TlsFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = "/tmp/tandem-tls-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    const auto now = std::chrono::system_clock::now();
    auto ca = pki::create_ca({.now = now});
    ASSERT_TRUE(ca.ok());
    ca_ = std::move(ca.value());
    ASSERT_TRUE(pki::write_cert_pem(ca_.cert.get(), ca_file()).ok());
    issue("server", {"localhost"}, {"127.0.0.1"});
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void issue(const std::string& name, std::vector<std::string> dns, std::vector<std::string> ips) {
    auto cert = pki::issue_server_cert(
        ca_, {.dns_names = std::move(dns), .ip_addresses = std::move(ips), .now = std::chrono::system_clock::now()});
    ASSERT_TRUE(cert.ok());
    ASSERT_TRUE(pki::write_certified_key(*cert, path(name + ".crt"), path(name + ".key")).ok());
  }

  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  std::string ca_file() const { return path("ca.crt"); }
  ServerTlsOptions server_opts() const { return {path("server.crt"), path("server.key")}; }

  std::shared_ptr<SslContext> server_ctx() {
    auto ctx = make_server_context(server_opts());
    EXPECT_TRUE(ctx.ok()) << ctx.error().to_string();
    return ctx.ok() ? ctx.value() : nullptr;
  }

  // A client context verifying against our CA; `tweak` adjusts it (versions, ciphers, ALPN).
  SslCtxPtr client_ctx(const std::function<void(SSL_CTX*)>& tweak = {}) {
    SslCtxPtr c(SSL_CTX_new(TLS_client_method()));
    SSL_CTX_load_verify_locations(c.get(), ca_file().c_str(), nullptr);
    SSL_CTX_set_verify(c.get(), SSL_VERIFY_PEER, nullptr);
    if (tweak) tweak(c.get());
    return c;
  }

  // Runs a handshake between fresh SSL objects; true when both sides completed.
  bool handshake(SSL_CTX* server, SSL_CTX* client, const std::string& host = "localhost") {
    server_ssl_.reset(SSL_new(server));
    client_ssl_.reset(SSL_new(client));
    BIO* sb = nullptr;
    BIO* cb = nullptr;
    BIO_new_bio_pair(&sb, 0, &cb, 0);
    SSL_set_bio(server_ssl_.get(), sb, sb);
    SSL_set_bio(client_ssl_.get(), cb, cb);
    SSL_set_accept_state(server_ssl_.get());
    SSL_set_connect_state(client_ssl_.get());
    if (!host.empty()) {
      EXPECT_TRUE(expect_server_identity(client_ssl_.get(), host).ok());
    }
    bool server_done = false;
    bool client_done = false;
    for (int i = 0; i < 100 && !(server_done && client_done); ++i) {
      if (!client_done) {
        const int r = SSL_do_handshake(client_ssl_.get());
        if (r == 1)
          client_done = true;
        else if (SSL_get_error(client_ssl_.get(), r) != SSL_ERROR_WANT_READ)
          break;
      }
      if (!server_done) {
        const int r = SSL_do_handshake(server_ssl_.get());
        if (r == 1)
          server_done = true;
        else if (SSL_get_error(server_ssl_.get(), r) != SSL_ERROR_WANT_READ)
          break;
      }
    }
    clear_openssl_errors();
    return server_done && client_done;
  }

  std::string dir_;
  pki::CertifiedKey ca_;
  SslPtr server_ssl_;
  SslPtr client_ssl_;
};

TEST_F(TlsFixture, ServerContextSettings) {
  auto ctx = server_ctx();
  SSL_CTX* c = ctx->native_handle();
  EXPECT_EQ(SSL_CTX_get_min_proto_version(c), TLS1_2_VERSION);
  EXPECT_EQ(SSL_CTX_get_max_proto_version(c), 0);  // highest available: TLS 1.3
  const auto opts = SSL_CTX_get_options(c);
  EXPECT_TRUE(opts & SSL_OP_NO_RENEGOTIATION);
  EXPECT_TRUE(opts & SSL_OP_NO_TICKET);
  EXPECT_TRUE(opts & SSL_OP_NO_COMPRESSION);
  // Every cipher suite on offer is an AEAD with forward secrecy.
  STACK_OF(SSL_CIPHER)* ciphers = SSL_CTX_get_ciphers(c);
  ASSERT_GT(sk_SSL_CIPHER_num(ciphers), 0);
  for (int i = 0; i < sk_SSL_CIPHER_num(ciphers); ++i) {
    const SSL_CIPHER* cipher = sk_SSL_CIPHER_value(ciphers, i);
    EXPECT_EQ(SSL_CIPHER_is_aead(cipher), 1) << SSL_CIPHER_get_name(cipher);
    const int kx = SSL_CIPHER_get_kx_nid(cipher);
    EXPECT_TRUE(kx == NID_kx_ecdhe || kx == NID_kx_any) << SSL_CIPHER_get_name(cipher);
  }
}

TEST_F(TlsFixture, DefaultClientGetsTls13) {
  auto server = server_ctx();
  auto client = client_ctx();
  ASSERT_TRUE(handshake(server->native_handle(), client.get()));
  EXPECT_EQ(SSL_version(client_ssl_.get()), TLS1_3_VERSION);
  EXPECT_EQ(describe_tls(server_ssl_.get()).rfind("TLSv1.3 TLS_", 0), 0u) << describe_tls(server_ssl_.get());
  EXPECT_FALSE(alpn_is_postgresql(server_ssl_.get()));  // no ALPN offered, none selected
}

TEST_F(TlsFixture, Tls12ClientGetsAnAeadSuite) {
  auto server = server_ctx();
  auto client = client_ctx([](SSL_CTX* c) { SSL_CTX_set_max_proto_version(c, TLS1_2_VERSION); });
  ASSERT_TRUE(handshake(server->native_handle(), client.get()));
  EXPECT_EQ(SSL_version(server_ssl_.get()), TLS1_2_VERSION);
  const SSL_CIPHER* cipher = SSL_get_current_cipher(server_ssl_.get());
  EXPECT_EQ(SSL_CIPHER_is_aead(cipher), 1);
  EXPECT_EQ(SSL_CIPHER_get_kx_nid(cipher), NID_kx_ecdhe);
}

TEST_F(TlsFixture, OldProtocolsAndWeakCiphersAreRefused) {
  auto server = server_ctx();
  auto tls11 = client_ctx([](SSL_CTX* c) {
    SSL_CTX_set_security_level(c, 0);
    SSL_CTX_set_cipher_list(c, "ALL:@SECLEVEL=0");
    SSL_CTX_set_min_proto_version(c, TLS1_VERSION);
    SSL_CTX_set_max_proto_version(c, TLS1_1_VERSION);
  });
  EXPECT_FALSE(handshake(server->native_handle(), tls11.get()));
  auto cbc_only = client_ctx([](SSL_CTX* c) {
    SSL_CTX_set_max_proto_version(c, TLS1_2_VERSION);
    SSL_CTX_set_cipher_list(c, "ECDHE-ECDSA-AES128-SHA256:AES128-SHA");
  });
  EXPECT_FALSE(handshake(server->native_handle(), cbc_only.get()));
}

TEST_F(TlsFixture, AlpnPostgresqlIsSelected) {
  auto server = server_ctx();
  auto client = make_client_context({ca_file()});
  ASSERT_TRUE(client.ok()) << client.error().to_string();
  ASSERT_TRUE(handshake(server->native_handle(), (*client)->native_handle()));
  EXPECT_TRUE(alpn_is_postgresql(server_ssl_.get()));
  EXPECT_TRUE(alpn_is_postgresql(client_ssl_.get()));
}

TEST_F(TlsFixture, OtherAlpnIsRefused) {
  auto server = server_ctx();
  auto client = client_ctx([](SSL_CTX* c) {
    static const unsigned char http[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    SSL_CTX_set_alpn_protos(c, http, sizeof http);
  });
  EXPECT_FALSE(handshake(server->native_handle(), client.get()));
}

TEST_F(TlsFixture, ClientContextChecksTheHostName) {
  auto server = server_ctx();
  auto client = make_client_context({ca_file()});
  ASSERT_TRUE(client.ok());
  EXPECT_TRUE(handshake(server->native_handle(), (*client)->native_handle(), "localhost"));
  EXPECT_TRUE(handshake(server->native_handle(), (*client)->native_handle(), "127.0.0.1"));
  EXPECT_FALSE(handshake(server->native_handle(), (*client)->native_handle(), "db.other.test"));
  EXPECT_EQ(SSL_get_verify_result(client_ssl_.get()), X509_V_ERR_HOSTNAME_MISMATCH);
  EXPECT_FALSE(handshake(server->native_handle(), (*client)->native_handle(), "127.0.0.2"));
  EXPECT_EQ(SSL_get_verify_result(client_ssl_.get()), X509_V_ERR_IP_ADDRESS_MISMATCH);
}

TEST_F(TlsFixture, ClientContextRejectsAForeignCa) {
  auto other = pki::create_ca({.now = std::chrono::system_clock::now()});
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE(pki::write_cert_pem(other->cert.get(), path("other-ca.crt")).ok());
  auto server = server_ctx();
  auto client = make_client_context({path("other-ca.crt")});
  ASSERT_TRUE(client.ok());
  EXPECT_FALSE(handshake(server->native_handle(), (*client)->native_handle(), "localhost"));
}

TEST_F(TlsFixture, ClearErrorsForBadFiles) {
  auto missing = make_server_context({path("missing.crt"), path("server.key")});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("loading TLS certificate " + path("missing.crt")), std::string::npos)
      << missing.error().message;

  issue("other", {"localhost"}, {});
  auto mismatch = make_server_context({path("server.crt"), path("other.key")});
  ASSERT_FALSE(mismatch.ok());
  EXPECT_NE(mismatch.error().message.find("does not match"), std::string::npos) << mismatch.error().message;

  std::ofstream(path("junk.key")) << "junk\n";
  auto junk = make_server_context({path("server.crt"), path("junk.key")});
  ASSERT_FALSE(junk.ok());
  EXPECT_NE(junk.error().message.find("loading TLS private key"), std::string::npos);

  EXPECT_FALSE(make_client_context({path("missing-ca.crt")}).ok());
  EXPECT_FALSE(make_client_context({}).ok());
}

TEST_F(TlsFixture, HotReloadKeepsOldSessionsContext) {
  auto holder = ServerContextHolder::create(server_opts());
  ASSERT_TRUE(holder.ok()) << holder.error().to_string();
  auto& h = *holder.value();
  EXPECT_EQ(h.generation(), 1u);
  auto old_ctx = h.current();
  auto unchanged = h.reload_if_changed();
  ASSERT_TRUE(unchanged.ok());
  EXPECT_FALSE(*unchanged);

  // A renewed certificate (new file) is picked up; the old context still works for the
  // sessions that hold it.
  issue("server", {"localhost", "renewed.test"}, {"127.0.0.1"});
  auto changed = h.reload_if_changed();
  ASSERT_TRUE(changed.ok());
  EXPECT_TRUE(*changed);
  EXPECT_EQ(h.generation(), 2u);
  EXPECT_NE(h.current(), old_ctx);
  auto client = make_client_context({ca_file()});
  ASSERT_TRUE(client.ok());
  EXPECT_TRUE(handshake(h.current()->native_handle(), (*client)->native_handle(), "renewed.test"));
  EXPECT_TRUE(handshake(old_ctx->native_handle(), (*client)->native_handle(), "localhost"));
  EXPECT_FALSE(handshake(old_ctx->native_handle(), (*client)->native_handle(), "renewed.test"));

  // A broken file does not replace a working context.
  std::ofstream(path("server.crt")) << "broken\n";
  auto bad = h.reload();
  EXPECT_FALSE(bad.ok());
  EXPECT_EQ(h.generation(), 2u);
  EXPECT_TRUE(handshake(h.current()->native_handle(), (*client)->native_handle(), "renewed.test"));
}

}  // namespace
}  // namespace tandem::portal::tls
