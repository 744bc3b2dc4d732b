#include "pg/setup.hpp"

#include <filesystem>

#include "base/log.hpp"
#include "base/process.hpp"
#include "pg/files.hpp"
#include "pg/hba.hpp"

namespace tandem::pg {

bool data_dir_initialised(const Settings& s) {
  std::error_code ec;
  return std::filesystem::exists(s.data_file("PG_VERSION"), ec);
}

bool data_dir_empty(const Settings& s) {
  std::error_code ec;
  if (!std::filesystem::exists(s.data_dir, ec)) return true;
  return std::filesystem::is_directory(s.data_dir, ec) && std::filesystem::is_empty(s.data_dir, ec);
}

Status prepare_directories(const Settings& s) {
  if (auto st = ensure_dir(s.data_dir, 0700, s.run_as); !st) return st;
  if (auto st = ensure_dir(s.run_dir, 0700, s.run_as); !st) return st;
  if (!s.log_file.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(s.log_file).parent_path(), ec);
    if (!std::filesystem::exists(s.log_file, ec)) {
      if (auto st = write_file_atomic(s.log_file, "", 0640, s.run_as); !st) return st;
    }
  }
  return {};
}

Status initdb(const Settings& s, const Secret& superuser_password, std::chrono::milliseconds timeout) {
  if (!valid_role_name(s.superuser)) return make_error(Errc::invalid_argument, "bad superuser name '{}'", s.superuser);
  if (superuser_password.empty()) return make_error(Errc::invalid_argument, "initdb: the superuser password is empty");
  if (!data_dir_empty(s)) {
    return make_error(Errc::conflict, "initdb: {} is not empty; refusing to overwrite a data directory", s.data_dir);
  }
  if (auto st = prepare_directories(s); !st) return st;

  std::string pwfile = s.run_dir + "/initdb.pw";
  if (auto st = write_file_atomic(pwfile, superuser_password.reveal() + "\n", 0600, s.run_as); !st) return st;
  SpawnOptions opts;
  opts.argv = {s.bin("initdb"),
               "-D",
               s.data_dir,
               "--data-checksums",
               "--encoding=UTF8",
               "--locale=C",
               "--auth-local=peer",
               "--auth-host=scram-sha-256",
               "-U",
               s.superuser,
               "--pwfile=" + pwfile};
  opts.run_as_user = s.run_as;
  opts.env = {{"LC_ALL", "C"}, {"LANG", "C"}};
  spdlog::info("[{}] initdb {} (superuser {})", s.name, s.data_dir, s.superuser);
  auto rr = run(opts, timeout);
  (void)remove_file(pwfile);
  if (!rr) return rr.error();
  if (!rr->status.ok()) {
    return make_error(Errc::io, "initdb failed ({}):\n{}", rr->status.describe(), tail_lines(rr->output, 15));
  }
  return {};
}

Status set_password(Connection& conn, const std::string& role, const Secret& password) {
  if (password.empty()) return make_error(Errc::invalid_argument, "the password for role {} is empty", role);
  auto quiet = conn.exec_script(
      "SET log_statement = 'none'; SET log_min_duration_statement = -1; "
      "SET log_min_error_statement = 'panic'");
  if (!quiet) return quiet.error();
  auto verifier = conn.scram_verifier(role, password.reveal());
  if (!verifier) return verifier.error();
  auto ident = conn.quote_identifier(role);
  if (!ident) return ident.error();
  auto literal = conn.quote_literal(*verifier);
  if (!literal) return literal.error();
  auto r = conn.exec("ALTER ROLE " + *ident + " PASSWORD " + *literal);
  if (!r) return make_error(r.error().code, "cannot set the password of role {}: {}", role, r.error().message);
  return {};
}

namespace {

Status ensure_role(Connection& conn, const std::string& name, const std::string& attributes) {
  if (!valid_role_name(name)) return make_error(Errc::invalid_argument, "bad role name '{}'", name);
  auto ident = conn.quote_identifier(name);
  if (!ident) return ident.error();
  auto exists = conn.exec("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1", {name});
  if (!exists) return exists.error();
  std::string sql = (exists->rows.empty() ? "CREATE ROLE " : "ALTER ROLE ") + *ident + " WITH " + attributes;
  auto r = conn.exec(sql);
  if (!r) return make_error(r.error().code, "cannot create role {}: {}", name, r.error().message);
  return {};
}

}  // namespace

Status create_roles(Connection& conn, const RoleSpec& replication, const RoleSpec& admin) {
  if (auto st = ensure_role(conn, replication.name, "LOGIN REPLICATION NOSUPERUSER"); !st) return st;
  if (auto st = set_password(conn, replication.name, replication.password); !st) return st;
  auto rep = conn.quote_identifier(replication.name);
  if (!rep) return rep.error();
  // What pg_rewind needs from its source, and CHECKPOINT (PostgreSQL 15's pg_checkpoint).
  for (const char* fn :
       {"pg_catalog.pg_ls_dir(text, boolean, boolean)", "pg_catalog.pg_stat_file(text, boolean)",
        "pg_catalog.pg_read_binary_file(text)", "pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)"}) {
    auto r = conn.exec(std::string("GRANT EXECUTE ON FUNCTION ") + fn + " TO " + *rep);
    if (!r) return make_error(r.error().code, "cannot grant {} to {}: {}", fn, replication.name, r.error().message);
  }
  auto cp = conn.exec("GRANT pg_checkpoint TO " + *rep);
  if (!cp)
    return make_error(cp.error().code, "cannot grant pg_checkpoint to {}: {}", replication.name, cp.error().message);

  if (auto st = ensure_role(conn, admin.name, "LOGIN CREATEDB CREATEROLE NOSUPERUSER"); !st) return st;
  if (auto st = set_password(conn, admin.name, admin.password); !st) return st;
  // PostgreSQL 15 no longer lets every role create in schema public; the admin role is
  // the deployment's operator account, so it gets the schema and monitoring rights.
  auto adm = conn.quote_identifier(admin.name);
  if (!adm) return adm.error();
  auto g = conn.exec_script(
      fmt::format("GRANT ALL ON SCHEMA public TO {0}; GRANT pg_monitor, pg_signal_backend TO {0}", *adm));
  if (!g) return make_error(g.error().code, "cannot grant the admin rights to {}: {}", admin.name, g.error().message);
  return {};
}

}  // namespace tandem::pg
