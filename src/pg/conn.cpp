#include "pg/conn.hpp"

#include <libpq-fe.h>
#include <poll.h>

#include <cerrno>
#include <cstring>

#include "base/log.hpp"

namespace tandem::pg {

namespace {

using Clock = std::chrono::steady_clock;

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

// libpq connection errors are free text; classify the ones the agent reacts to.
Errc errc_for_connect_message(const std::string& m) {
  if (m.find("authentication failed") != std::string::npos || m.find("no password supplied") != std::string::npos ||
      m.find("no pg_hba.conf entry") != std::string::npos || m.find("permission denied") != std::string::npos) {
    return Errc::permission_denied;
  }
  if (m.find("timeout expired") != std::string::npos) return Errc::timeout;
  return Errc::unavailable;
}

Rows to_rows(PGresult* res) {
  Rows out;
  int nf = PQnfields(res);
  int nt = PQntuples(res);
  out.columns.reserve(static_cast<size_t>(nf));
  for (int f = 0; f < nf; ++f) out.columns.emplace_back(PQfname(res, f));
  out.rows.reserve(static_cast<size_t>(nt));
  for (int t = 0; t < nt; ++t) {
    Row row;
    row.reserve(static_cast<size_t>(nf));
    for (int f = 0; f < nf; ++f) {
      if (PQgetisnull(res, t, f)) {
        row.emplace_back(std::nullopt);
      } else {
        row.emplace_back(std::string(PQgetvalue(res, t, f), static_cast<size_t>(PQgetlength(res, t, f))));
      }
    }
    out.rows.push_back(std::move(row));
  }
  const char* tag = PQcmdStatus(res);
  out.command_tag = tag ? tag : "";
  return out;
}

}  // namespace

int Rows::column(const std::string& name) const {
  for (size_t i = 0; i < columns.size(); ++i) {
    if (columns[i] == name) return static_cast<int>(i);
  }
  return -1;
}

Errc errc_for_sqlstate(const std::string& s) {
  if (s.size() != 5) return Errc::internal;
  std::string cls = s.substr(0, 2);
  if (cls == "28" || s == "42501") return Errc::permission_denied;
  if (s == "57014") return Errc::timeout;  // query_canceled: statement_timeout
  if (cls == "08" || s == "57P01" || s == "57P02" || s == "57P03" || cls == "53") return Errc::unavailable;
  if (s == "55006" || s == "42710" || s == "23505" || s == "40001" || s == "40P01" || s == "55P03") {
    return Errc::conflict;  // object in use, duplicate object, unique violation, serialization, deadlock, lock
  }
  if (s == "25006") return Errc::conflict;  // read_only_sql_transaction: a write on a standby
  if (s == "42704" || s == "42P01" || s == "42883" || s == "3D000") return Errc::not_found;
  if (cls == "22" || cls == "42") return Errc::invalid_argument;
  if (cls == "58") return Errc::io;
  return Errc::internal;
}

void Connection::Closer::operator()(pg_conn* c) const {
  PQfinish(c);
}

Connection::Connection(pg_conn* c, std::chrono::milliseconds default_timeout)
    : conn_(c), default_timeout_(default_timeout) {}
Connection::Connection(Connection&&) noexcept = default;
Connection& Connection::operator=(Connection&&) noexcept = default;
Connection::~Connection() = default;

bool Connection::ok() const {
  return conn_ && PQstatus(conn_.get()) == CONNECTION_OK;
}

Result<Connection> Connection::open(const ConnParams& params) {
  auto kv = params.keywords();
  std::vector<const char*> keys;
  std::vector<const char*> values;
  for (const auto& [k, v] : kv) {
    keys.push_back(k.c_str());
    values.push_back(v.c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  PGconn* c = PQconnectdbParams(keys.data(), values.data(), 0);
  if (c == nullptr) return make_error(Errc::internal, "libpq could not allocate a connection");
  if (PQstatus(c) != CONNECTION_OK) {
    std::string msg = trim(PQerrorMessage(c));
    PQfinish(c);
    return make_error(errc_for_connect_message(msg), "cannot connect to {}:{} as {}: {}", params.host, params.port,
                      params.user, msg);
  }
  // Server notices (e.g. "terminating connection due to immediate shutdown") go to our
  // log instead of libpq's default, stderr.
  PQsetNoticeProcessor(
      c, [](void*, const char* message) { spdlog::debug("postgres notice: {}", trim(message)); }, nullptr);
  auto timeout = params.statement_timeout_ms > 0 ? std::chrono::milliseconds(params.statement_timeout_ms + 2000)
                                                 : std::chrono::milliseconds(30000);
  return Connection(c, timeout);
}

Result<Rows> Connection::exec(const std::string& sql, const std::vector<Value>& params,
                              std::optional<std::chrono::milliseconds> timeout) {
  auto r = run(sql, &params, timeout);
  if (!r) return r.error();
  if (r->size() != 1) return make_error(Errc::protocol, "expected one result, got {}", r->size());
  return std::move(r->front());
}

Result<std::vector<Rows>> Connection::exec_script(const std::string& sql,
                                                  std::optional<std::chrono::milliseconds> timeout) {
  return run(sql, nullptr, timeout);
}

Result<std::vector<Rows>> Connection::run(const std::string& sql, const std::vector<Value>* params,
                                          std::optional<std::chrono::milliseconds> timeout) {
  last_sqlstate_.clear();
  if (!ok()) return make_error(Errc::unavailable, "connection is closed");
  PGconn* c = conn_.get();
  int sent;
  if (params != nullptr) {
    std::vector<const char*> values;
    values.reserve(params->size());
    for (const auto& v : *params) values.push_back(v ? v->c_str() : nullptr);
    sent =
        PQsendQueryParams(c, sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(), nullptr, nullptr, 0);
  } else {
    sent = PQsendQuery(c, sql.c_str());
  }
  if (!sent) {
    std::string msg = trim(PQerrorMessage(c));
    return make_error(Errc::unavailable, "cannot send query: {}", msg);
  }

  auto deadline = Clock::now() + timeout.value_or(default_timeout_);
  std::vector<Rows> results;
  std::optional<Error> first_error;
  while (true) {
    while (PQisBusy(c)) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) {
        // Dropping the connection is the only bounded way out: PQcancel may block on connect.
        conn_.reset();
        return make_error(Errc::timeout, "query did not finish within the deadline; connection closed");
      }
      pollfd pfd{PQsocket(c), POLLIN, 0};
      int n = poll(&pfd, 1, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
      if (n < 0 && errno != EINTR) {
        conn_.reset();
        return make_error(Errc::io, "poll: {}", strerror(errno));
      }
      if (!PQconsumeInput(c)) {
        std::string msg = trim(PQerrorMessage(c));
        conn_.reset();
        return make_error(Errc::unavailable, "connection lost: {}", msg);
      }
    }
    PGresult* res = PQgetResult(c);
    if (res == nullptr) break;
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK || st == PGRES_EMPTY_QUERY) {
      results.push_back(to_rows(res));
    } else if (!first_error) {
      const char* state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
      const char* primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
      last_sqlstate_ = state ? state : "";
      std::string msg = primary ? primary : trim(PQresultErrorMessage(res));
      if (msg.empty()) msg = trim(PQerrorMessage(c));
      if (msg.empty()) msg = PQresStatus(st);
      first_error = last_sqlstate_.empty()
                        ? make_error(Errc::unavailable, "query failed: {}", msg)
                        : make_error(errc_for_sqlstate(last_sqlstate_), "{} (SQLSTATE {})", msg, last_sqlstate_);
    }
    PQclear(res);
  }
  if (first_error) return *first_error;
  if (PQstatus(c) != CONNECTION_OK) {
    std::string msg = trim(PQerrorMessage(c));
    return make_error(Errc::unavailable, "connection lost: {}", msg);
  }
  return results;
}

Result<std::string> Connection::quote_identifier(const std::string& ident) {
  if (!ok()) return make_error(Errc::unavailable, "connection is closed");
  char* q = PQescapeIdentifier(conn_.get(), ident.data(), ident.size());
  if (q == nullptr)
    return make_error(Errc::invalid_argument, "cannot quote identifier: {}", trim(PQerrorMessage(conn_.get())));
  std::string out(q);
  PQfreemem(q);
  return out;
}

Result<std::string> Connection::quote_literal(const std::string& text) {
  if (!ok()) return make_error(Errc::unavailable, "connection is closed");
  char* q = PQescapeLiteral(conn_.get(), text.data(), text.size());
  if (q == nullptr)
    return make_error(Errc::invalid_argument, "cannot quote literal: {}", trim(PQerrorMessage(conn_.get())));
  std::string out(q);
  PQfreemem(q);
  return out;
}

Result<std::string> Connection::scram_verifier(const std::string& user, const std::string& password) {
  if (!ok()) return make_error(Errc::unavailable, "connection is closed");
  char* v = PQencryptPasswordConn(conn_.get(), password.c_str(), user.c_str(), "scram-sha-256");
  if (v == nullptr) {
    return make_error(Errc::internal, "cannot compute the SCRAM verifier for role {}: {}", user,
                      trim(PQerrorMessage(conn_.get())));
  }
  std::string out(v);
  PQfreemem(v);
  return out;
}

Result<Rows> query_once(const ConnParams& params, const std::string& sql, const std::vector<Value>& args) {
  auto c = Connection::open(params);
  if (!c) return c.error();
  return c->exec(sql, args);
}

}  // namespace tandem::pg
