#pragma once
// Administrative statements on a running member: CHECKPOINT, physical replication
// slots, and waiting for a reloaded setting to take effect. Free functions over a
// Connection; they block up to the connection's timeout.
#include <chrono>
#include <string>
#include <vector>

#include "base/lsn.hpp"
#include "base/result.hpp"
#include "pg/conn.hpp"

namespace tandem::pg {

struct Slot {
  std::string name;
  std::string type;  // "physical" or "logical"
  bool active = false;
  std::optional<Lsn> restart_lsn;
};

// CHECKPOINT (needs superuser or pg_checkpoint). Run it on a freshly promoted primary
// before rewinding the old one.
Status checkpoint(Connection& conn, std::chrono::milliseconds timeout = std::chrono::seconds(60));

// The slot name for a member: lowercase, characters outside [a-z0-9_] replaced by '_',
// at most 63 characters.
std::string slot_name_for(const std::string& member);

// True for a valid replication slot name ([a-z0-9_]{1,63}).
bool valid_slot_name(const std::string& name);

// Creates a physical slot that reserves WAL immediately, if it does not exist.
// Returns whether it created one.
Result<bool> create_physical_slot(Connection& conn, const std::string& name);

// Drops a slot if it exists. conflict while a walsender uses it. Returns whether it dropped one.
Result<bool> drop_slot(Connection& conn, const std::string& name);

// All replication slots, ordered by name.
Result<std::vector<Slot>> list_slots(Connection& conn);

// Polls `SHOW <name>` until it equals `expected` (after a reload) or the timeout passes.
Status wait_for_setting(Connection& conn, const std::string& name, const std::string& expected,
                        std::chrono::milliseconds timeout);

// True when every commit this primary can still acknowledge waits for `standby` to have
// written or flushed its WAL: `standby` streams to us as PostgreSQL's synchronous standby
// ("sync" in pg_stat_replication), synchronous_commit is on, remote_write or remote_apply
// by default, and no role or database overrides it (ALTER ROLE/DATABASE ... SET). A
// session that lowers synchronous_commit itself is not visible here.
Result<bool> commits_wait_for(Connection& conn, const std::string& standby);

}  // namespace tandem::pg
