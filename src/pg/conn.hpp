#pragma once
// Connection: a small RAII wrapper over one libpq connection. Queries run with a deadline
// (statement_timeout on the server plus a client-side wait that cancels the query), so a
// hung peer cannot block the caller forever. Errors are Result values whose message
// carries the SQLSTATE and the server's message; libpq never sees a password (only a
// passfile), so no error can contain one.
//
// Owned by one thread at a time (libpq connections are not thread-safe); movable.
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "pg/conninfo.hpp"

struct pg_conn;

namespace tandem::pg {

using Value = std::optional<std::string>;  // nullopt is SQL NULL
using Row = std::vector<Value>;

// One result set, values in PostgreSQL's text format.
struct Rows {
  std::vector<std::string> columns;
  std::vector<Row> rows;
  std::string command_tag;  // "SELECT 3", "CHECKPOINT", ...

  // The index of a column by name; -1 when absent.
  int column(const std::string& name) const;
};

class Connection {
 public:
  // Connects (blocking up to params.connect_timeout_s). Errors: unavailable (cannot reach
  // or server starting/shutting down), permission_denied (authentication), protocol.
  static Result<Connection> open(const ConnParams& params);

  Connection(Connection&&) noexcept;
  Connection& operator=(Connection&&) noexcept;
  ~Connection();

  // Runs one statement with $1..$n text parameters (extended protocol: values are never
  // spliced into SQL). Waits at most `timeout` (default: statement timeout + 2 s, or 30 s).
  Result<Rows> exec(const std::string& sql, const std::vector<Value>& params = {},
                    std::optional<std::chrono::milliseconds> timeout = std::nullopt);

  // Runs several ';'-separated statements in one round trip (simple protocol, one implicit
  // transaction); returns one Rows per statement. No parameters.
  Result<std::vector<Rows>> exec_script(const std::string& sql,
                                        std::optional<std::chrono::milliseconds> timeout = std::nullopt);

  // SQLSTATE of the last failed statement ("" when the last one succeeded or failed
  // without reaching the server).
  const std::string& last_sqlstate() const { return last_sqlstate_; }

  // Quoting helpers for the rare statements that cannot take parameters (DDL).
  Result<std::string> quote_identifier(const std::string& ident);
  Result<std::string> quote_literal(const std::string& text);

  // The SCRAM-SHA-256 verifier of a password, computed locally by libpq, so the
  // password itself never travels to the server or into its logs.
  Result<std::string> scram_verifier(const std::string& user, const std::string& password);

  bool ok() const;
  pg_conn* raw() const { return conn_.get(); }

 private:
  struct Closer {
    void operator()(pg_conn* c) const;
  };
  explicit Connection(pg_conn* c, std::chrono::milliseconds default_timeout);
  Result<std::vector<Rows>> run(const std::string& sql, const std::vector<Value>* params,
                                std::optional<std::chrono::milliseconds> timeout);

  std::unique_ptr<pg_conn, Closer> conn_;
  std::chrono::milliseconds default_timeout_;
  std::string last_sqlstate_;
};

// Maps a SQLSTATE to our error codes (28xxx -> permission_denied, 57014 -> timeout, ...).
Errc errc_for_sqlstate(const std::string& sqlstate);

// One-shot helper: connect, run one parameterised statement, disconnect.
Result<Rows> query_once(const ConnParams& params, const std::string& sql, const std::vector<Value>& args = {});

}  // namespace tandem::pg
