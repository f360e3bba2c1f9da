#pragma once
// A bounded pool of PostgreSQL connections, and the ways to use one: plain
// statements on a Lease, or a Transaction. Every statement is bounded by the
// lease's Deadline, which the library turns into PostgreSQL's
// statement_timeout so the server stops work nobody waits for.
//
//   auto pool = pg::Pool::Create({.url = "postgresql:///portico_users"});
//   auto lease = (*pool)->Acquire(deadline);
//   if (!lease) return lease.error();
//   auto rows = lease->Exec("SELECT name FROM users WHERE id = $1", {id});
//   if (!rows) return rows.error();
//   for (pg::Row row : *rows) use(row.GetString("name"));
//
// libpq blocks the calling thread: call this from worker threads, never from
// an event loop or a gRPC reactor callback.

#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "portico/core/deadline.h"
#include "portico/core/result.h"
#include "portico/pg/error.h"
#include "portico/pg/param.h"
#include "portico/pg/rows.h"

namespace portico::pg {

class Connection;  // One libpq connection; internal to the library.
class PoolState;   // Shared by a Pool and its Leases; internal.
class Transaction;

/// Deadline::max() means "no deadline": statements then run without a
/// statement_timeout (and without the implicit transaction described at
/// Lease::Exec).
inline constexpr Deadline kNoDeadline = Deadline::max();

struct PoolOptions {
  /// libpq connection URI or key=value string, e.g.
  /// "postgresql://user@host:5432/db?sslmode=require".
  std::string url;
  /// Most connections open at once (>= 1).
  int size = 10;
  /// Upper bound for opening one connection (also bounded by the caller's
  /// deadline).
  std::chrono::milliseconds connect_timeout{5000};
  /// Called after every statement with its duration and whether it
  /// succeeded (for latency metrics). Runs on the calling thread; must be
  /// thread-safe and cheap. Optional.
  std::function<void(std::chrono::nanoseconds elapsed, bool ok)> on_query;
};

enum class IsolationLevel { kReadCommitted, kRepeatableRead, kSerializable };

struct TransactionOptions {
  IsolationLevel isolation = IsolationLevel::kReadCommitted;
  bool read_only = false;
  /// Pool::InTransaction only: how many times to run the function when the
  /// transaction fails with a retryable SQLSTATE (40001, 40P01). 1 = no retry.
  int max_attempts = 1;
};

/// One pooled connection, held exclusively until the Lease is destroyed,
/// which returns it to the pool (rolling back any open transaction; a broken
/// connection is closed instead and replaced on a later Acquire). A Lease may
/// outlive its Pool (the connection is then closed). Not thread-safe: use a
/// Lease from one thread at a time; it may move between threads.
class Lease {
 public:
  Lease(Lease&& other) noexcept;
  Lease& operator=(Lease&& other) noexcept;
  ~Lease();

  /// Runs one statement with parameters $1..$n (text format, never spliced
  /// into the SQL). Blocks until the server answers. Errors (see error.h):
  /// kDeadlineExceeded if the deadline has passed (the server is not
  /// contacted) or the statement ran out of time (SQLSTATE 57014);
  /// kUnavailable if the connection is lost (the lease is then discarded on
  /// return); the SQLSTATE mapping otherwise. The failure's SQLSTATE is in
  /// last_sqlstate().
  /// With a deadline, the statement is preceded, in the same network round
  /// trip (libpq pipeline mode), by `set_config('statement_timeout', <ms
  /// left>, true)`; both run in one implicit transaction (or in the open
  /// Transaction), so the setting never outlives the statement. Statements
  /// that refuse to run in a transaction block (CREATE DATABASE, VACUUM, ...)
  /// need set_deadline(kNoDeadline).
  Result<Rows> Exec(std::string_view sql, std::initializer_list<Param> params = {});
  Result<Rows> Exec(std::string_view sql, const std::vector<Param>& params);

  /// Runs a script of one or more ';'-separated statements without
  /// parameters (simple query protocol), as one implicit transaction unless
  /// a Transaction is open. For migrations and fixed DDL only: never build
  /// `sql` from input. Errors as Exec.
  Status ExecScript(std::string_view sql);

  /// Starts a transaction (BEGIN with the given isolation). The Lease must
  /// outlive the Transaction and stay where it is (not moved from) while the
  /// Transaction is open; only one may be open at a time. BEGIN itself runs
  /// without statement_timeout. Errors: kDeadlineExceeded if the deadline
  /// has passed; else as Exec.
  Result<Transaction> Begin(TransactionOptions options = {});

  /// The deadline every statement on this lease must meet; starts as the one
  /// given to Pool::Acquire.
  Deadline deadline() const { return deadline_; }
  void set_deadline(Deadline deadline) { deadline_ = deadline; }

  /// SQLSTATE of the last failed statement ("" after a success or a
  /// client-side failure such as a lost connection), e.g. "23505".
  const std::string& last_sqlstate() const;
  /// Constraint named by the last failure (unique, foreign key, check), or "".
  const std::string& last_constraint() const;
  /// The server's or libpq's message for the last failure. For logs only:
  /// it may contain data and schema details, never return it to a client.
  const std::string& last_error_message() const;

  /// Closes the connection instead of returning it to the pool when the
  /// lease ends (e.g. after session state that must not leak was set).
  void Discard();

 private:
  friend class PoolState;
  friend class Transaction;
  Lease(std::shared_ptr<PoolState> pool, std::unique_ptr<Connection> conn, Deadline deadline);
  void Release();
  Result<Rows> ExecSpan(std::string_view sql, std::span<const Param> params);

  std::shared_ptr<PoolState> pool_;
  std::unique_ptr<Connection> conn_;
  Deadline deadline_;
};

/// An open transaction on a Lease. Commit() makes it durable; destroying it
/// without a successful Commit() rolls it back. Not thread-safe (like its
/// Lease). Statements run through Exec here or on the Lease alike.
class Transaction {
 public:
  Transaction(Transaction&& other) noexcept;
  Transaction& operator=(Transaction&&) = delete;
  ~Transaction();

  /// As Lease::Exec. After a failed statement the transaction is aborted:
  /// only Rollback (or destruction) is useful.
  Result<Rows> Exec(std::string_view sql, std::initializer_list<Param> params = {});
  Result<Rows> Exec(std::string_view sql, const std::vector<Param>& params);

  /// COMMIT. Errors as Lease::Exec; kUnavailable with SQLSTATE 40001 for a
  /// serialization failure at commit. On any error the transaction is over
  /// (rolled back). Calling it twice is a bug (kInternal).
  Status Commit();
  /// ROLLBACK now instead of at destruction. Errors as Lease::Exec.
  Status Rollback();

  Lease& lease() { return *lease_; }

 private:
  friend class Lease;
  explicit Transaction(Lease* lease) : lease_(lease) {}
  Lease* lease_;
  bool open_ = true;
};

/// Thread-safe: any number of threads may Acquire, Ping and read stats at
/// once. Destroying the Pool while another thread is inside one of its
/// methods is a bug; Leases still out are fine (their connections close when
/// they end).
class Pool {
 public:
  struct Stats {
    int size = 0;                              // configured maximum
    int idle = 0;                              // open, not leased
    int in_use = 0;                            // leased, or being opened for a caller
    int waiting = 0;                           // callers blocked in Acquire
    std::uint64_t acquired = 0;                // successful Acquire calls
    std::uint64_t acquire_timeouts = 0;        // Acquire calls that gave up waiting
    std::chrono::nanoseconds acquire_wait{0};  // total time callers spent in Acquire
    std::uint64_t opened = 0;                  // connections opened
    std::uint64_t discarded = 0;               // connections closed as broken
  };

  /// Validates `options` (kInvalidArgument for size < 1 or a URL libpq
  /// cannot parse) without connecting: connections open on demand, so a
  /// service can start before its database answers. Thread-safe.
  static Result<std::unique_ptr<Pool>> Create(PoolOptions options);
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  /// Takes an idle connection, opens a new one if fewer than `size` are
  /// open, or blocks until another caller returns one. Errors: kUnavailable
  /// "no database connection available" when none frees up before
  /// `deadline` (also for a deadline already passed with none idle);
  /// kUnavailable "database unavailable" if opening a connection fails
  /// (detail in LastConnectError()). An idle connection the server has
  /// closed is noticed here and replaced. Thread-safe; blocks.
  Result<Lease> Acquire(Deadline deadline);

  /// Runs `fn(Transaction&) -> Result<T>` (or Status) in a transaction on a
  /// fresh lease and commits if it returns a value; otherwise rolls back and
  /// returns its error. Retries the whole function on serialization
  /// failures/deadlocks up to options.max_attempts times while the deadline
  /// allows. Thread-safe; blocks.
  template <typename Fn>
  auto InTransaction(Deadline deadline, Fn&& fn, TransactionOptions options = {})
      -> std::invoke_result_t<Fn&, Transaction&>;

  /// Readiness probe: SELECT 1 on a pooled connection. Errors as Acquire
  /// and Exec. Thread-safe; blocks.
  Status Ping(Deadline deadline);

  /// A consistent snapshot of the counters. Thread-safe; does not block on
  /// the database.
  Stats GetStats() const;

  /// libpq's message for the last failed connection attempt, "" if none.
  /// For logs only (may name hosts). Thread-safe.
  std::string LastConnectError() const;

 private:
  explicit Pool(std::shared_ptr<PoolState> state);
  std::shared_ptr<PoolState> state_;
};

template <typename Fn>
auto Pool::InTransaction(Deadline deadline, Fn&& fn, TransactionOptions options)
    -> std::invoke_result_t<Fn&, Transaction&> {
  using R = std::invoke_result_t<Fn&, Transaction&>;
  auto lease = Acquire(deadline);
  if (!lease.ok()) return std::move(lease).error();
  for (int attempt = 1;; ++attempt) {
    auto tx = lease->Begin(options);
    if (!tx.ok()) return std::move(tx).error();
    R result = fn(*tx);
    auto may_retry = [&] {
      return attempt < options.max_attempts && IsRetryableSqlState(lease->last_sqlstate()) &&
             Clock::now() < deadline;
    };
    if (result.ok()) {
      Status committed = tx->Commit();
      if (committed.ok()) return result;
      if (!may_retry()) return std::move(committed).error();
    } else {
      if (!may_retry()) return result;  // `tx` rolls back as it goes out of scope
      (void)tx->Rollback();
    }
  }
}

}  // namespace portico::pg
