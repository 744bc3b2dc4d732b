#include "pg/status.hpp"

#include <charconv>

namespace tandem::pg {

namespace {

// Three statements, one round trip. CASE keeps primary-only functions off standbys.
constexpr const char* kStatusSql = R"sql(
SELECT pg_is_in_recovery() AS in_recovery,
       (pg_control_system()).system_identifier AS system_identifier,
       CASE WHEN NOT pg_is_in_recovery() THEN pg_walfile_name(pg_current_wal_lsn()) END AS walfile,
       (pg_control_checkpoint()).timeline_id AS checkpoint_tli,
       CASE WHEN NOT pg_is_in_recovery() THEN pg_current_wal_lsn() END AS write_lsn,
       CASE WHEN NOT pg_is_in_recovery() THEN pg_current_wal_flush_lsn() END AS flush_lsn,
       pg_last_wal_receive_lsn() AS receive_lsn,
       pg_last_wal_replay_lsn() AS replay_lsn,
       CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END AS replay_paused,
       current_setting('synchronous_standby_names') AS sync_names,
       EXISTS (SELECT 1 FROM pg_settings WHERE pending_restart) AS pending_restart,
       extract(epoch FROM pg_postmaster_start_time())::bigint AS started;
SELECT status, sender_host, sender_port, received_tli, flushed_lsn, latest_end_lsn, slot_name
  FROM pg_stat_wal_receiver WHERE pid IS NOT NULL;
SELECT application_name, host(client_addr) AS client_addr, state, sync_state,
       sent_lsn, write_lsn, flush_lsn, replay_lsn
  FROM pg_stat_replication ORDER BY application_name, pid
)sql";

template <typename T>
bool number(const Value& v, T& out, int base = 10) {
  if (!v) return false;
  auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), out, base);
  return ec == std::errc() && p == v->data() + v->size();
}

std::optional<Lsn> lsn(const Value& v) {
  return v ? Lsn::parse(*v) : std::nullopt;
}
std::string text(const Value& v) {
  return v.value_or("");
}
bool boolean(const Value& v) {
  return v && *v == "t";
}

}  // namespace

Lsn MemberStatus::wal_position() const {
  if (!in_recovery) return write_lsn.value_or(Lsn());
  return std::max(receive_lsn.value_or(Lsn()), replay_lsn.value_or(Lsn()));
}

const ReplicationPeer* MemberStatus::peer(const std::string& application_name) const {
  for (const auto& p : replication) {
    if (p.application_name == application_name) return &p;
  }
  return nullptr;
}

Result<MemberStatus> query_status(Connection& conn) {
  auto sets = conn.exec_script(kStatusSql);
  if (!sets) return make_error(sets.error().code, "cannot read member status: {}", sets.error().message);
  if (sets->size() != 3 || (*sets)[0].rows.size() != 1) {
    return make_error(Errc::protocol, "member status: unexpected result shape");
  }
  MemberStatus st;
  const Row& r = (*sets)[0].rows[0];
  if (r.size() != 12) return make_error(Errc::protocol, "member status: expected 12 columns, got {}", r.size());
  st.in_recovery = boolean(r[0]);
  if (!number(r[1], st.system_identifier)) return make_error(Errc::protocol, "member status: bad system identifier");
  uint32_t checkpoint_tli = 0;
  (void)number(r[3], checkpoint_tli);
  st.write_lsn = lsn(r[4]);
  st.flush_lsn = lsn(r[5]);
  st.receive_lsn = lsn(r[6]);
  st.replay_lsn = lsn(r[7]);
  st.replay_paused = boolean(r[8]);
  st.synchronous_standby_names = text(r[9]);
  st.pending_restart = boolean(r[10]);
  (void)number(r[11], st.postmaster_start_unix);

  for (const Row& w : (*sets)[1].rows) {
    if (w.size() != 7) return make_error(Errc::protocol, "member status: bad pg_stat_wal_receiver row");
    WalReceiver wr;
    wr.status = text(w[0]);
    wr.sender_host = text(w[1]);
    (void)number(w[2], wr.sender_port);
    (void)number(w[3], wr.received_tli);
    wr.flushed_lsn = lsn(w[4]).value_or(Lsn());
    wr.latest_end_lsn = lsn(w[5]).value_or(Lsn());
    wr.slot_name = text(w[6]);
    st.wal_receiver = wr;
  }
  for (const Row& p : (*sets)[2].rows) {
    if (p.size() != 8) return make_error(Errc::protocol, "member status: bad pg_stat_replication row");
    ReplicationPeer peer;
    peer.application_name = text(p[0]);
    peer.client_addr = text(p[1]);
    peer.state = text(p[2]);
    peer.sync_state = text(p[3]);
    peer.sent_lsn = lsn(p[4]).value_or(Lsn());
    peer.write_lsn = lsn(p[5]).value_or(Lsn());
    peer.flush_lsn = lsn(p[6]).value_or(Lsn());
    peer.replay_lsn = lsn(p[7]).value_or(Lsn());
    st.replication.push_back(std::move(peer));
  }

  if (!st.in_recovery) {
    // The WAL file name starts with the timeline in 8 hex digits.
    const Value& walfile = r[2];
    if (!walfile || walfile->size() < 8 || !number(Value(walfile->substr(0, 8)), st.timeline, 16)) {
      return make_error(Errc::protocol, "member status: bad WAL file name");
    }
  } else if (st.wal_receiver && st.wal_receiver->received_tli != 0) {
    st.timeline = st.wal_receiver->received_tli;
  } else {
    st.timeline = checkpoint_tli;
  }
  return st;
}

}  // namespace tandem::pg
