#include "testkit/pg_member.hpp"

#include "base/secret.hpp"
#include "pg/passfile.hpp"
#include "pg/setup.hpp"
#include "pg/tools.hpp"
#include "testkit/testkit.hpp"

namespace tandem::testkit {

namespace {

constexpr std::chrono::seconds kReady{60};

pg::Settings layout(const std::string& root, const std::string& name, const PgPasswords& pw) {
  pg::Settings s;
  s.superuser = pw.superuser;
  s.name = name;
  s.data_dir = root + "/" + name + "/data";
  s.run_dir = root + "/" + name + "/run";
  s.log_file = root + "/" + name + "/postgresql.log";
  s.listen_host = "127.0.0.1";
  s.port = free_port();
  return s;
}

}  // namespace

Status PgPasswords::write_passfile(const std::string& path) {
  passfile = path;
  return pg::write_passfile(path,
                            {{"*", "*", "*", superuser, Secret(superuser_password)},
                             {"*", "*", "*", replication, Secret(replication_password)},
                             {"*", "*", "*", admin, Secret(admin_password)}},
                            "postgres");
}

PgMember::PgMember(const std::string& root, const std::string& name, const PgPasswords& pw)
    : s_(layout(root, name, pw)), pw_(pw), pm_(s_) {}

PgMember::~PgMember() {
  (void)pm_.stop(pg::StopMode::immediate, std::chrono::seconds(10));
}

Status PgMember::start() {
  if (auto st = pm_.start(); !st) return st;
  return pm_.wait_ready(kReady);
}

Status PgMember::configure_and_start(const pg::ManagedConfig& cfg) {
  cfg_ = cfg;
  auto change = pg::write_managed_config(s_, cfg_);
  if (!change) return change.error();
  return start();
}

Status PgMember::bootstrap_primary() {
  if (auto st = pg::initdb(s_, Secret(pw_.superuser_password)); !st) return st;
  if (auto st = configure_and_start(pg::ManagedConfig{}); !st) return st;
  auto conn = local();
  if (!conn) return conn.error();
  return pg::create_roles(*conn, {pw_.replication, Secret(pw_.replication_password)},
                          {pw_.admin, Secret(pw_.admin_password)});
}

pg::Upstream PgMember::upstream_params() const {
  return pg::Upstream{"127.0.0.1", s_.port, pw_.replication, pw_.passfile, "", 3};
}

pg::ManagedConfig PgMember::standby_of(const PgMember& upstream, const std::string& slot) const {
  pg::ManagedConfig cfg;
  cfg.role = pg::Role::standby;
  cfg.upstream = upstream.upstream_params();
  cfg.upstream->slot = slot;
  return cfg;
}

Status PgMember::clone_from(const PgMember& source, const std::string& slot) {
  auto bb = pg::basebackup(s_, source.tcp(pw_.replication), std::chrono::minutes(5));
  if (!bb) return bb.error();
  return configure_and_start(standby_of(source, slot));
}

pg::ConnParams PgMember::tcp(const std::string& user) const {
  pg::ConnParams p;
  p.host = "127.0.0.1";
  p.port = s_.port;
  p.user = user;
  p.passfile = pw_.passfile;
  p.connect_timeout_s = 3;
  p.statement_timeout_ms = 10000;
  return p;
}

Result<pg::Connection> PgMember::local() const {
  return pg::Connection::open(pg::local_superuser(s_, 10000));
}

Result<pg::Connection> PgMember::tcp_connect(const std::string& user) const {
  return pg::Connection::open(tcp(user));
}

}  // namespace tandem::testkit
