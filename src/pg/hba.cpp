#include "pg/hba.hpp"

#include <arpa/inet.h>

#include <fmt/format.h>

namespace tandem::pg {

bool valid_role_name(const std::string& name) {
  if (name.empty() || name.size() > 63) return false;
  auto first_ok = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; };
  if (!first_ok(name[0])) return false;
  for (char c : name) {
    if (!first_ok(c) && !(c >= '0' && c <= '9') && c != '$' && c != '-') return false;
  }
  return true;
}

bool valid_cidr(const std::string& cidr) {
  auto slash = cidr.find('/');
  if (slash == std::string::npos || slash + 1 >= cidr.size()) return false;
  std::string addr = cidr.substr(0, slash);
  std::string bits = cidr.substr(slash + 1);
  if (bits.size() > 3) return false;
  for (char c : bits) {
    if (c < '0' || c > '9') return false;
  }
  int n = std::stoi(bits);
  unsigned char buf[16];
  if (inet_pton(AF_INET, addr.c_str(), buf) == 1) return n <= 32;
  if (inet_pton(AF_INET6, addr.c_str(), buf) == 1) return n <= 128;
  return false;
}

namespace {

Status check_spec(const HbaSpec& spec) {
  if (!valid_role_name(spec.superuser))
    return make_error(Errc::invalid_argument, "bad superuser name '{}'", spec.superuser);
  if (!valid_role_name(spec.run_as)) return make_error(Errc::invalid_argument, "bad OS user name '{}'", spec.run_as);
  for (const auto& n : spec.networks) {
    if (!valid_cidr(n)) {
      return make_error(Errc::invalid_argument,
                        "bad network '{}': expected an address with a prefix length, e.g. 10.0.0.0/8", n);
    }
  }
  return {};
}

}  // namespace

Result<std::string> render_pg_hba(const HbaSpec& spec) {
  if (auto st = check_spec(spec); !st) return st.error();
  std::string out =
      "# Managed by tandem: rewritten by the agent, local edits are lost.\n"
      "# TYPE  DATABASE     USER         ADDRESS            METHOD\n";
  auto line = [&](const char* type, const char* db, const std::string& user, const std::string& addr,
                  const std::string& method) {
    out += fmt::format("{:<7} {:<12} {:<12} {:<18} {}\n", type, db, user, addr, method);
  };
  std::string su = "\"" + spec.superuser + "\"";
  // The agent (root) and the postgres OS user reach the superuser over the socket.
  line("local", "all", su, "", "peer map=tandem");
  line("local", "replication", su, "", "peer map=tandem");
  line("local", "all", "all", "", "peer");
  line("local", "replication", "all", "", "peer");
  std::vector<std::string> nets = {"127.0.0.1/32", "::1/128"};
  for (const auto& n : spec.networks) {
    if (n != "127.0.0.1/32" && n != "::1/128") nets.push_back(n);
  }
  for (const auto& n : nets) {
    line("host", "all", "all", n, "scram-sha-256");
    line("host", "replication", "all", n, "scram-sha-256");
  }
  return out;
}

Result<std::string> render_pg_ident(const HbaSpec& spec) {
  if (auto st = check_spec(spec); !st) return st.error();
  std::string out =
      "# Managed by tandem: rewritten by the agent, local edits are lost.\n"
      "# MAPNAME  SYSTEM-USERNAME  PG-USERNAME\n";
  out += fmt::format("{:<8} {:<16} \"{}\"\n", "tandem", "root", spec.superuser);
  if (spec.run_as != "root") out += fmt::format("{:<8} {:<16} \"{}\"\n", "tandem", spec.run_as, spec.superuser);
  return out;
}

}  // namespace tandem::pg
