#include "connection.h"

#include <poll.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <vector>

#include "portico/pg/error.h"
#include "portico/pg/pool.h"

namespace portico::pg {
namespace {

using std::chrono::duration_cast;
using std::chrono::milliseconds;

// How long after the caller's deadline the client keeps waiting for the
// server, whose statement_timeout should have fired first. Past it the
// server (or network) is not answering and the connection is given up.
constexpr auto kServerGrace = std::chrono::seconds(2);

// Silences libpq's default notice printer (NOTICE/WARNING lines on stderr,
// e.g. "relation already exists, skipping").
void IgnoreNotice(void*, const char*) {}

// Milliseconds to pass to poll(): -1 for no limit, 0 if passed, else rounded up.
int PollTimeout(Deadline limit) {
  if (limit == kNoDeadline) return -1;
  auto left = limit - Clock::now();
  if (left <= Clock::duration::zero()) return 0;
  auto ms = duration_cast<milliseconds>(left).count() + 1;
  return ms > INT_MAX ? INT_MAX : static_cast<int>(ms);
}

Deadline WaitLimitFor(Deadline deadline) {
  if (deadline == kNoDeadline || deadline > kNoDeadline - kServerGrace) return kNoDeadline;
  return deadline + kServerGrace;
}

// poll() one fd for `events` until `limit`; >0 ready, 0 timed out, <0 error.
int PollFd(int fd, short events, Deadline limit) {
  for (;;) {
    pollfd p{fd, events, 0};
    int rc = ::poll(&p, 1, PollTimeout(limit));
    if (rc < 0 && errno == EINTR) continue;
    return rc;
  }
}

}  // namespace

std::optional<std::string> StatementTimeoutFor(Deadline deadline) {
  auto ms = duration_cast<milliseconds>(deadline - Clock::now()).count();
  if (ms <= 0) return std::nullopt;  // 0 would mean "no timeout" to the server
  if (ms > INT_MAX) ms = INT_MAX;
  return std::to_string(ms);
}

Result<std::unique_ptr<Connection>> Connection::Open(const std::string& url, Deadline deadline,
                                                     milliseconds connect_timeout,
                                                     std::string* detail) {
  Deadline limit = std::min(deadline, Clock::now() + connect_timeout);
  const char* keys[] = {"dbname", "fallback_application_name", nullptr};
  const char* values[] = {url.c_str(), "portico", nullptr};
  PGconn* raw = PQconnectStartParams(keys, values, /*expand_dbname=*/1);
  if (raw == nullptr) {
    *detail = "out of memory";
    return Error::Unavailable("database unavailable");
  }
  std::unique_ptr<Connection> conn(new Connection(raw));
  PostgresPollingStatusType state =
      PQstatus(raw) == CONNECTION_BAD ? PGRES_POLLING_FAILED : PGRES_POLLING_WRITING;
  while (state != PGRES_POLLING_OK) {
    if (state == PGRES_POLLING_FAILED) {
      *detail = PQerrorMessage(raw);
      return Error::Unavailable("database unavailable");
    }
    int rc = PollFd(PQsocket(raw), state == PGRES_POLLING_READING ? POLLIN : POLLOUT, limit);
    if (rc == 0) {
      *detail = "timed out connecting to the database";
      return Error::Unavailable("database unavailable");
    }
    if (rc < 0) {
      *detail = "poll failed while connecting";
      return Error::Unavailable("database unavailable");
    }
    state = PQconnectPoll(raw);
  }
  PQsetNoticeProcessor(raw, IgnoreNotice, nullptr);
  // Statements are prepared once per connection (Run), which saves parsing;
  // but a generic plan, which PostgreSQL may switch to after five runs, knows
  // neither the parameters' values nor a LIMIT's, and chose to sort a whole
  // collection for a 50-item page. Plans stay custom; parsing stays saved.
  auto planned = conn->Run("SET plan_cache_mode = force_custom_plan", {}, /*want_timeout_ms=*/-1,
                           /*prepare=*/false, kNoDeadline, limit);
  if (!planned.ok()) {
    *detail = conn->last_error_message();
    return Error::Unavailable("database unavailable");
  }
  return conn;
}

Connection::~Connection() { PQfinish(conn_); }

bool Connection::usable() const { return !broken_ && PQstatus(conn_) == CONNECTION_OK; }

bool Connection::in_transaction() const {
  auto s = PQtransactionStatus(conn_);
  return s == PQTRANS_INTRANS || s == PQTRANS_INERROR;
}

bool Connection::in_failed_transaction() const {
  return PQtransactionStatus(conn_) == PQTRANS_INERROR;
}

bool Connection::CheckIdle() {
  if (!usable() || PQtransactionStatus(conn_) != PQTRANS_IDLE) return false;
  // An idle connection has nothing to read unless the server spoke on its
  // own: a NOTIFY (harmless), or an error followed by EOF when it closes the
  // session. Read until the socket is quiet; a few rounds cover both.
  for (int round = 0; round < 4; ++round) {
    int fd = PQsocket(conn_);
    if (fd < 0) return false;
    pollfd p{fd, POLLIN, 0};
    int rc = ::poll(&p, 1, 0);
    if (rc == 0) break;
    if (rc < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (!PQconsumeInput(conn_)) return false;
    if (PQstatus(conn_) != CONNECTION_OK) return false;
  }
  return usable();
}

void Connection::ClearLastError() {
  last_sqlstate_.clear();
  last_constraint_.clear();
  last_error_message_.clear();
}

Error Connection::Lost(std::string message) {
  broken_ = true;
  last_error_message_ = std::move(message);
  return Error::Unavailable("database connection lost");
}

Error Connection::Stalled() {
  broken_ = true;
  last_error_message_ = "no answer from the server before the deadline";
  return Error{ErrorCode::kDeadlineExceeded, "deadline exceeded", {}};
}

Status Connection::AwaitResult(Deadline wait_limit) {
  bool timed_out = false;
  if (WaitForResult(wait_limit, &timed_out)) return {};
  return timed_out ? Stalled() : Lost(PQerrorMessage(conn_));
}

Error Connection::Failure(const PGresult* result) {
  const char* state = result ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
  const char* constraint = result ? PQresultErrorField(result, PG_DIAG_CONSTRAINT_NAME) : nullptr;
  const char* message = result ? PQresultErrorMessage(result) : "";
  if (message == nullptr || *message == '\0') message = PQerrorMessage(conn_);
  if (PQstatus(conn_) != CONNECTION_OK) broken_ = true;
  if (state == nullptr || *state == '\0') {
    last_error_message_ = message;
    if (broken_) return Lost(message);
    return Error::Internal("database error");
  }
  last_sqlstate_ = state;
  last_constraint_ = constraint ? constraint : "";
  last_error_message_ = message;
  return ErrorFromSqlState(last_sqlstate_);
}

bool Connection::WaitForResult(Deadline wait_limit, bool* timed_out) {
  while (PQisBusy(conn_)) {
    int fd = PQsocket(conn_);
    if (fd < 0) return false;
    int rc = PollFd(fd, POLLIN, wait_limit);
    if (rc == 0) {
      *timed_out = true;
      return false;
    }
    if (rc < 0 || !PQconsumeInput(conn_)) return false;
  }
  return true;
}

namespace {

// statement_timeout is a session setting changed only when a statement's
// deadline needs another value, so it costs no statement of its own: the
// time left is rounded up to one of these (ms), and nearly every call of a
// service (same budget, a few ms spent) lands on the same one. The client
// cancels the statement at the deadline itself (Connection::Run); the
// server's timeout is the backstop should the cancel not get through.
constexpr int kTimeoutSteps[] = {100,   250,   500,    1000,   2000,    5000,    10000,
                                 15000, 30000, 60000, 120000, 300000, 900000, 3600000};

int TimeoutStep(std::int64_t ms) {
  for (int step : kTimeoutSteps) {
    if (ms <= step) return step;
  }
  return ms > INT_MAX ? INT_MAX : static_cast<int>(ms);
}

// Prepared statements a connection keeps at most; statements beyond run
// unnamed (parsed each time). Services use a few dozen distinct texts; the
// bound only matters for SQL built from input (filters).
constexpr std::size_t kMaxPrepared = 256;

}  // namespace

Result<Rows> Connection::Run(std::string_view sql, std::span<const Param> params,
                             int want_timeout_ms, bool prepare, Deadline cancel_at,
                             Deadline wait_limit) {
  ClearLastError();
  if (!usable()) return Lost("connection is broken");
  if (params.size() > 65535) return Error::Internal("database error");

  std::string statement(sql);  // libpq wants NUL-terminated text
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const Param& p : params) values.push_back(p.is_null() ? nullptr : p.text().data());
  const int n = static_cast<int>(params.size());

  // One round trip: [set statement_timeout] [prepare] statement, Sync. The
  // queries up to the Sync are one implicit transaction (or part of the
  // caller's), so if the statement fails, a new timeout is rolled back too.
  const bool set_timeout = want_timeout_ms >= 0 && want_timeout_ms != session_timeout_ms_;
  const std::string timeout_text = std::to_string(want_timeout_ms);
  std::string name;
  bool preparing = false;
  if (prepare) {
    if (auto it = prepared_.find(statement); it != prepared_.end()) {
      name = it->second;
    } else if (prepared_.size() < kMaxPrepared) {
      name = "portico_" + std::to_string(prepared_.size());
      preparing = true;
    }
  }
  if (!PQenterPipelineMode(conn_)) return Lost(PQerrorMessage(conn_));
  int queries = 0;
  bool sent = true;
  if (set_timeout) {
    const char* v[] = {timeout_text.c_str()};
    sent = sent && PQsendQueryParams(conn_, "SELECT set_config('statement_timeout', $1, false)", 1,
                                     nullptr, v, nullptr, nullptr, 0);
    ++queries;
  }
  if (preparing) {
    sent = sent && PQsendPrepare(conn_, name.c_str(), statement.c_str(), n, nullptr);
    ++queries;
  }
  if (name.empty()) {
    sent = sent && PQsendQueryParams(conn_, statement.c_str(), n, nullptr, values.data(), nullptr,
                                     nullptr, 0);
  } else {
    sent = sent && PQsendQueryPrepared(conn_, name.c_str(), n, values.data(), nullptr, nullptr, 0);
  }
  ++queries;
  sent = sent && PQpipelineSync(conn_);
  if (!sent) return Lost(PQerrorMessage(conn_));

  // Each query yields its result(s) and then a null; the pipeline ends with
  // a PGRES_PIPELINE_SYNC result. The statement's result comes last.
  int queries_left = queries;
  bool sync_seen = false;
  bool prepared_ok = false;
  bool cancelled = false;
  UniqueResult first_error;
  UniqueResult last;
  while (queries_left > 0 || !sync_seen) {
    if (!cancelled && cancel_at != kNoDeadline && !ResultReady(cancel_at)) {
      // The caller's deadline passed: ask the server to stop, then wait a
      // little for it to say so (57014). PQcancel returns once the server
      // has signalled the backend, before the next statement is sent; a
      // cancel that finds the backend idle is ignored by it, so it cannot
      // hit a later statement.
      cancelled = true;
      if (PGcancel* cancel = PQgetCancel(conn_)) {
        char err[256];
        (void)PQcancel(cancel, err, sizeof err);
        PQfreeCancel(cancel);
      }
    }
    if (auto ready = AwaitResult(wait_limit); !ready.ok()) return std::move(ready).error();
    UniqueResult r(PQgetResult(conn_));
    if (r == nullptr) {
      if (PQstatus(conn_) != CONNECTION_OK) break;
      if (queries_left == 0) break;  // protocol confusion; handled below
      --queries_left;
      continue;
    }
    ExecStatusType status = PQresultStatus(r.get());
    if (status == PGRES_PIPELINE_SYNC) {
      sync_seen = true;
      continue;
    }
    // The query this result belongs to, counted from the first.
    const int index = queries - queries_left;
    if (status == PGRES_FATAL_ERROR || status == PGRES_BAD_RESPONSE ||
        status == PGRES_NONFATAL_ERROR) {
      if (!first_error) first_error = std::move(r);
      continue;
    }
    if (status == PGRES_COPY_IN || status == PGRES_COPY_OUT || status == PGRES_COPY_BOTH) {
      // Not supported by this API; the connection cannot continue sanely.
      broken_ = true;
      return Error::Internal("database error");
    }
    if (preparing && index == queries - 2 && status == PGRES_COMMAND_OK) prepared_ok = true;
    if (index == queries - 1) last = std::move(r);
  }
  if (!PQexitPipelineMode(conn_)) broken_ = true;
  if (prepared_ok) prepared_.emplace(std::move(statement), std::move(name));
  if (PQstatus(conn_) != CONNECTION_OK) {
    broken_ = true;
    if (first_error) return Failure(first_error.get());
    return Lost(PQerrorMessage(conn_));
  }
  if (!sync_seen || queries_left != 0) broken_ = true;
  if (first_error) {
    // Whatever this round trip set may have been rolled back.
    if (set_timeout || in_transaction()) session_timeout_ms_ = -1;
    return Failure(first_error.get());
  }
  if (!last || PQresultStatus(last.get()) == PGRES_PIPELINE_ABORTED) {
    broken_ = true;
    last_error_message_ = "unexpected protocol state";
    return Error::Internal("database error");
  }
  if (set_timeout) session_timeout_ms_ = want_timeout_ms;
  auto impl = std::make_unique<Rows::Impl>();
  impl->result = std::move(last);
  return Rows(std::move(impl));
}

bool Connection::ResultReady(Deadline limit) {
  bool timed_out = false;
  if (WaitForResult(limit, &timed_out)) return true;
  return !timed_out;  // a failure shows in the wait that follows
}

Result<Rows> Connection::Exec(std::string_view sql, std::span<const Param> params,
                              Deadline deadline) {
  if (deadline == kNoDeadline) {
    return Run(sql, params, /*want_timeout_ms=*/0, /*prepare=*/true, kNoDeadline, kNoDeadline);
  }
  const auto left = duration_cast<milliseconds>(deadline - Clock::now()).count();
  if (left <= 0) {
    ClearLastError();
    return Error{ErrorCode::kDeadlineExceeded, "deadline exceeded", {}};
  }
  return Run(sql, params, TimeoutStep(left), /*prepare=*/true, deadline, WaitLimitFor(deadline));
}

Result<Rows> Connection::ExecControl(const char* sql, Deadline wait_limit) {
  auto done = Run(sql, {}, /*want_timeout_ms=*/-1, /*prepare=*/false, kNoDeadline, wait_limit);
  // A rollback undoes a statement_timeout set inside the transaction.
  if (std::string_view(sql).starts_with("ROLLBACK") || !done.ok()) session_timeout_ms_ = -1;
  return done;
}

Status Connection::ExecScript(std::string_view sql, Deadline deadline) {
  ClearLastError();
  // Several statements in one simple query form one implicit transaction
  // (or run in the caller's), so SET LOCAL covers exactly this script, and
  // overrides the session's value (0: none) for it.
  std::string script = "SET LOCAL statement_timeout = 0;\n";
  if (deadline != kNoDeadline) {
    auto timeout = StatementTimeoutFor(deadline);
    if (!timeout) return Error{ErrorCode::kDeadlineExceeded, "deadline exceeded", {}};
    script = "SET LOCAL statement_timeout = " + *timeout + ";\n";
  }
  script.append(sql);
  if (!usable()) return Lost("connection is broken");
  if (!PQsendQuery(conn_, script.c_str())) return Lost(PQerrorMessage(conn_));
  Deadline wait_limit = WaitLimitFor(deadline);
  UniqueResult first_error;
  for (;;) {
    if (auto ready = AwaitResult(wait_limit); !ready.ok()) return ready;
    UniqueResult r(PQgetResult(conn_));
    if (r == nullptr) break;
    ExecStatusType status = PQresultStatus(r.get());
    if (status == PGRES_FATAL_ERROR || status == PGRES_BAD_RESPONSE) {
      if (!first_error) first_error = std::move(r);
    } else if (status == PGRES_COPY_IN || status == PGRES_COPY_OUT || status == PGRES_COPY_BOTH) {
      broken_ = true;
      return Error::Internal("database error");
    }
  }
  if (first_error) return Failure(first_error.get());
  if (PQstatus(conn_) != CONNECTION_OK) return Lost(PQerrorMessage(conn_));
  return {};
}

}  // namespace portico::pg
