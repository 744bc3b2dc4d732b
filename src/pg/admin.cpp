#include "pg/admin.hpp"

#include <thread>

namespace tandem::pg {

Status checkpoint(Connection& conn, std::chrono::milliseconds timeout) {
  auto r = conn.exec("CHECKPOINT", {}, timeout);
  if (!r) return make_error(r.error().code, "CHECKPOINT failed: {}", r.error().message);
  return {};
}

std::string slot_name_for(const std::string& member) {
  std::string out;
  for (char c : member) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    out += ok ? c : '_';
    if (out.size() == 63) break;
  }
  return out;
}

bool valid_slot_name(const std::string& name) {
  return !name.empty() && name.size() <= 63 && slot_name_for(name) == name;
}

Result<bool> create_physical_slot(Connection& conn, const std::string& name) {
  if (!valid_slot_name(name)) return make_error(Errc::invalid_argument, "bad replication slot name '{}'", name);
  auto r = conn.exec(
      "SELECT pg_create_physical_replication_slot($1, true) "
      "WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
      {name});
  if (!r) {
    if (conn.last_sqlstate() == "42710") return false;  // created concurrently
    return make_error(r.error().code, "cannot create replication slot {}: {}", name, r.error().message);
  }
  return !r->rows.empty();
}

Result<bool> drop_slot(Connection& conn, const std::string& name) {
  auto r =
      conn.exec("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", {name});
  if (!r) {
    if (conn.last_sqlstate() == "42704") return false;  // dropped concurrently
    return make_error(r.error().code, "cannot drop replication slot {}: {}", name, r.error().message);
  }
  return !r->rows.empty();
}

Result<std::vector<Slot>> list_slots(Connection& conn) {
  auto r = conn.exec("SELECT slot_name, slot_type, active, restart_lsn FROM pg_replication_slots ORDER BY slot_name");
  if (!r) return make_error(r.error().code, "cannot list replication slots: {}", r.error().message);
  std::vector<Slot> out;
  for (const auto& row : r->rows) {
    Slot s;
    s.name = row[0].value_or("");
    s.type = row[1].value_or("");
    s.active = row[2] && *row[2] == "t";
    if (row[3]) s.restart_lsn = Lsn::parse(*row[3]);
    out.push_back(std::move(s));
  }
  return out;
}

Status wait_for_setting(Connection& conn, const std::string& name, const std::string& expected,
                        std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string last;
  while (true) {
    auto r = conn.exec("SELECT current_setting($1)", {name});
    if (!r) return r.error();
    last = r->rows.empty() ? "" : r->rows[0][0].value_or("");
    if (last == expected) return {};
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return make_error(Errc::timeout, "setting {} is still '{}' after {} ms (expected '{}')", name, last, timeout.count(),
                    expected);
}

Result<bool> commits_wait_for(Connection& conn, const std::string& standby) {
  // reset_val: the server's value for a session without its own SET (the agent sets none).
  auto r = conn.exec(
      "SELECT (SELECT reset_val FROM pg_settings WHERE name = 'synchronous_commit'),"
      " EXISTS (SELECT 1 FROM pg_stat_replication WHERE application_name = $1 AND state = 'streaming'"
      "         AND sync_state = 'sync'),"
      " EXISTS (SELECT 1 FROM pg_db_role_setting, unnest(setconfig) AS c(s) WHERE c.s LIKE 'synchronous_commit=%'"
      "         AND c.s NOT IN ('synchronous_commit=on', 'synchronous_commit=remote_write',"
      "                         'synchronous_commit=remote_apply'))",
      {standby});
  if (!r) return r.error();
  if (r->rows.size() != 1 || r->rows[0].size() != 3) {
    return make_error(Errc::protocol, "unexpected answer to the synchronous commit query");
  }
  const auto& row = r->rows[0];
  const std::string level = row[0].value_or("");
  const bool waits = level == "on" || level == "remote_write" || level == "remote_apply";
  return waits && row[1].value_or("") == "t" && row[2].value_or("") == "f";
}

}  // namespace tandem::pg
