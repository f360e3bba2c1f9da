#pragma once
// One libpq connection and the statement protocol the library speaks on it.
// Internal: the public API is portico/pg/pool.h.

#include <libpq-fe.h>

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>

#include "portico/core/deadline.h"
#include "portico/core/result.h"
#include "portico/pg/param.h"
#include "portico/pg/rows.h"

namespace portico::pg {

struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using UniqueResult = std::unique_ptr<PGresult, ResultDeleter>;

struct Rows::Impl {
  UniqueResult result;
};

class Connection {
 public:
  /// Opens a connection, giving up at the earlier of `deadline` and
  /// `connect_timeout` from now. On failure `detail` gets libpq's message.
  static Result<std::unique_ptr<Connection>> Open(const std::string& url, Deadline deadline,
                                                  std::chrono::milliseconds connect_timeout,
                                                  std::string* detail);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  /// One statement bounded by `deadline` (server-side statement_timeout
  /// unless kNoDeadline; client-side a grace period later).
  Result<Rows> Exec(std::string_view sql, std::span<const Param> params, Deadline deadline);
  /// A multi-statement script (simple query protocol), bounded likewise.
  Status ExecScript(std::string_view sql, Deadline deadline);
  /// A transaction-control statement (BEGIN/COMMIT/ROLLBACK): no
  /// statement_timeout (it would not survive an aborted transaction), but the
  /// client stops waiting at `wait_limit`.
  Result<Rows> ExecControl(const char* sql, Deadline wait_limit);

  /// Connected and not known to be broken.
  bool usable() const;
  /// Inside a transaction block (open or aborted).
  bool in_transaction() const;
  bool in_failed_transaction() const;
  /// For an idle connection: reads anything the server sent meanwhile (e.g.
  /// its goodbye after pg_terminate_backend) without blocking, and reports
  /// whether the connection is still good for reuse.
  bool CheckIdle();
  void MarkBroken() { broken_ = true; }
  /// The libpq handle, for protocol features the statement API does not
  /// cover (LISTEN/NOTIFY in listener.cc).
  PGconn* native() { return conn_; }

  const std::string& last_sqlstate() const { return last_sqlstate_; }
  const std::string& last_constraint() const { return last_constraint_; }
  const std::string& last_error_message() const { return last_error_message_; }

 private:
  explicit Connection(PGconn* conn) : conn_(conn) {}
  /// One statement in one round trip. `want_timeout_ms`: the session's
  /// statement_timeout the statement needs (0: none; -1: leave it), set in
  /// the same round trip only if it differs. `prepare`: run it as a named
  /// prepared statement of this connection (prepared on first use). At
  /// `cancel_at` the statement is cancelled; at `wait_limit` the client
  /// gives up on the server (the connection is then not reused).
  Result<Rows> Run(std::string_view sql, std::span<const Param> params, int want_timeout_ms,
                   bool prepare, Deadline cancel_at, Deadline wait_limit);
  /// Waits for a result until `limit`; false only if the limit passed.
  bool ResultReady(Deadline limit);
  /// Waits until PQgetResult will not block. False if `wait_limit` passed or
  /// the connection failed.
  bool WaitForResult(Deadline wait_limit, bool* timed_out);
  Error Failure(const PGresult* result);
  Error Lost(std::string message);
  /// The result did not come by the wait limit: the server ignored
  /// statement_timeout, so the connection's state is unknown and it is not
  /// reused. kDeadlineExceeded.
  Error Stalled();
  /// Waits for the next result until `wait_limit`; an Error if none came
  /// (Stalled) or the connection failed (Lost).
  Status AwaitResult(Deadline wait_limit);
  void ClearLastError();

  PGconn* conn_;
  bool broken_ = false;
  // The session's statement_timeout in ms as last set here; -1 unknown
  // (e.g. after a rollback that may have undone a SET).
  int session_timeout_ms_ = -1;
  std::unordered_map<std::string, std::string> prepared_;  // SQL -> statement name
  std::string last_sqlstate_;
  std::string last_constraint_;
  std::string last_error_message_;
};

/// statement_timeout in milliseconds for the time left before `deadline`
/// (rounded down, capped to INT_MAX), or nullopt if none is left.
std::optional<std::string> StatementTimeoutFor(Deadline deadline);

}  // namespace portico::pg
