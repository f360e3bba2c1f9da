#include "portico/pg/pool.h"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <vector>

#include "connection.h"

namespace portico::pg {
namespace {

constexpr auto kReleaseRollbackLimit = std::chrono::seconds(5);

Error NoConnection() { return Error::Unavailable("no database connection available"); }

Error DeadlineExceeded() { return Error{ErrorCode::kDeadlineExceeded, "deadline exceeded", {}}; }

Deadline ControlWaitLimit(Deadline deadline) {
  // Transaction control is quick; wait a little past the deadline for it
  // rather than leave a transaction in an unknown state.
  if (deadline > kNoDeadline - std::chrono::seconds(2)) return kNoDeadline;
  return deadline + std::chrono::seconds(2);
}

}  // namespace

// Shared by a Pool and its Leases, so a Lease can outlive its Pool.
class PoolState : public std::enable_shared_from_this<PoolState> {
 public:
  explicit PoolState(PoolOptions options) : options_(std::move(options)) {}

  Result<Lease> Acquire(Deadline deadline);
  void Release(std::unique_ptr<Connection> conn);
  void Close();
  Pool::Stats GetStats() const;
  std::string LastConnectError() const;
  const PoolOptions& options() const { return options_; }

 private:
  const PoolOptions options_;
  mutable std::mutex mu_;
  std::condition_variable freed_;  // signalled when idle_ grows or open_ shrinks
  // Guarded by mu_:
  std::vector<std::unique_ptr<Connection>> idle_;  // most recently used last
  int open_ = 0;  // idle + leased + being opened; never above options_.size
  int waiting_ = 0;
  bool closed_ = false;
  Pool::Stats counters_;
  std::string last_connect_error_;
};

Result<Lease> PoolState::Acquire(Deadline deadline) {
  const auto start = Clock::now();
  std::unique_lock lock(mu_);
  auto account = [&] { counters_.acquire_wait += Clock::now() - start; };
  bool counted_waiting = false;
  for (;;) {
    if (closed_) break;
    if (!idle_.empty()) {
      std::unique_ptr<Connection> conn = std::move(idle_.back());
      idle_.pop_back();
      lock.unlock();
      // Reuse only a connection that is still alive; otherwise replace it.
      bool alive = conn->CheckIdle();
      if (!alive) conn.reset();
      lock.lock();
      if (alive) {
        if (counted_waiting) --waiting_;
        ++counters_.acquired;
        account();
        return Lease(shared_from_this(), std::move(conn), deadline);
      }
      --open_;
      ++counters_.discarded;
      continue;
    }
    if (open_ < options_.size) {
      if (Clock::now() >= deadline) break;
      ++open_;  // reserve the slot while connecting without the lock
      if (counted_waiting) {
        --waiting_;
        counted_waiting = false;
      }
      lock.unlock();
      std::string detail;
      auto conn = Connection::Open(options_.url, deadline, options_.connect_timeout, &detail);
      lock.lock();
      if (!conn.ok()) {
        --open_;
        last_connect_error_ = detail;
        account();
        freed_.notify_one();
        return std::move(conn).error();
      }
      ++counters_.opened;
      ++counters_.acquired;
      account();
      return Lease(shared_from_this(), std::move(conn).value(), deadline);
    }
    if (!counted_waiting) {
      ++waiting_;
      counted_waiting = true;
    }
    if (freed_.wait_until(lock, deadline) == std::cv_status::timeout && idle_.empty() &&
        open_ >= options_.size) {
      break;
    }
  }
  if (counted_waiting) --waiting_;
  ++counters_.acquire_timeouts;
  account();
  return NoConnection();
}

void PoolState::Release(std::unique_ptr<Connection> conn) {
  bool keep = conn->usable();
  if (keep && conn->in_transaction()) {
    keep = conn->ExecControl("ROLLBACK", Clock::now() + kReleaseRollbackLimit).ok() &&
           conn->usable() && !conn->in_transaction();
  }
  std::unique_ptr<Connection> to_close;
  {
    std::lock_guard lock(mu_);
    if (keep && !closed_) {
      idle_.push_back(std::move(conn));
    } else {
      --open_;
      if (!keep) ++counters_.discarded;
      to_close = std::move(conn);
    }
  }
  freed_.notify_one();
  // to_close (PQfinish) runs here, outside the lock.
}

void PoolState::Close() {
  std::vector<std::unique_ptr<Connection>> idle;
  {
    std::lock_guard lock(mu_);
    closed_ = true;
    idle.swap(idle_);
    open_ -= static_cast<int>(idle.size());
  }
  freed_.notify_all();
}

Pool::Stats PoolState::GetStats() const {
  std::lock_guard lock(mu_);
  Pool::Stats s = counters_;
  s.size = options_.size;
  s.idle = static_cast<int>(idle_.size());
  s.in_use = open_ - s.idle;
  s.waiting = waiting_;
  return s;
}

std::string PoolState::LastConnectError() const {
  std::lock_guard lock(mu_);
  return last_connect_error_;
}

// ---- Pool ----

Result<std::unique_ptr<Pool>> Pool::Create(PoolOptions options) {
  if (options.size < 1) return Error::InvalidArgument("database pool size must be at least 1");
  char* err = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(options.url.c_str(), &err);
  if (parsed == nullptr) {
    // libpq's message may echo the URL (and a password in it): keep it out.
    PQfreemem(err);
    return Error::InvalidArgument("database URL is not a valid libpq connection string");
  }
  PQconninfoFree(parsed);
  return std::unique_ptr<Pool>(new Pool(std::make_shared<PoolState>(std::move(options))));
}

Pool::Pool(std::shared_ptr<PoolState> state) : state_(std::move(state)) {}

Pool::~Pool() { state_->Close(); }

Result<Lease> Pool::Acquire(Deadline deadline) { return state_->Acquire(deadline); }

Status Pool::Ping(Deadline deadline) {
  auto lease = Acquire(deadline);
  if (!lease.ok()) return std::move(lease).error();
  auto rows = lease->Exec("SELECT 1");
  if (!rows.ok()) return std::move(rows).error();
  return {};
}

Pool::Stats Pool::GetStats() const { return state_->GetStats(); }

std::string Pool::LastConnectError() const { return state_->LastConnectError(); }

// ---- Lease ----

Lease::Lease(std::shared_ptr<PoolState> pool, std::unique_ptr<Connection> conn, Deadline deadline)
    : pool_(std::move(pool)), conn_(std::move(conn)), deadline_(deadline) {}

Lease::Lease(Lease&& other) noexcept = default;

Lease& Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    Release();
    pool_ = std::move(other.pool_);
    conn_ = std::move(other.conn_);
    deadline_ = other.deadline_;
  }
  return *this;
}

Lease::~Lease() { Release(); }

void Lease::Release() {
  if (conn_) pool_->Release(std::move(conn_));
  pool_.reset();
}

Result<Rows> Lease::Exec(std::string_view sql, std::initializer_list<Param> params) {
  return ExecSpan(sql, std::span<const Param>(params.begin(), params.size()));
}

Result<Rows> Lease::Exec(std::string_view sql, const std::vector<Param>& params) {
  return ExecSpan(sql, params);
}

Result<Rows> Lease::ExecSpan(std::string_view sql, std::span<const Param> params) {
  const auto& observe = pool_->options().on_query;
  const auto start = Clock::now();
  auto rows = conn_->Exec(sql, params, deadline_);
  if (observe) observe(Clock::now() - start, rows.ok());
  return rows;
}

Status Lease::ExecScript(std::string_view sql) {
  const auto& observe = pool_->options().on_query;
  const auto start = Clock::now();
  Status done = conn_->ExecScript(sql, deadline_);
  if (observe) observe(Clock::now() - start, done.ok());
  return done;
}

Result<Transaction> Lease::Begin(TransactionOptions options) {
  if (deadline_ != kNoDeadline && Clock::now() >= deadline_) return DeadlineExceeded();
  const char* sql = "BEGIN ISOLATION LEVEL READ COMMITTED";
  switch (options.isolation) {
    case IsolationLevel::kReadCommitted:
      sql = options.read_only ? "BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY"
                              : "BEGIN ISOLATION LEVEL READ COMMITTED";
      break;
    case IsolationLevel::kRepeatableRead:
      sql = options.read_only ? "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
                              : "BEGIN ISOLATION LEVEL REPEATABLE READ";
      break;
    case IsolationLevel::kSerializable:
      sql = options.read_only ? "BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY"
                              : "BEGIN ISOLATION LEVEL SERIALIZABLE";
      break;
  }
  if (conn_->in_transaction()) return Error::Internal("database error");  // nested: a bug
  auto begun = conn_->ExecControl(sql, ControlWaitLimit(deadline_));
  if (!begun.ok()) return std::move(begun).error();
  return Transaction(this);
}

const std::string& Lease::last_sqlstate() const { return conn_->last_sqlstate(); }
const std::string& Lease::last_constraint() const { return conn_->last_constraint(); }
const std::string& Lease::last_error_message() const { return conn_->last_error_message(); }

void Lease::Discard() { conn_->MarkBroken(); }

// ---- Transaction ----

Transaction::Transaction(Transaction&& other) noexcept
    : lease_(other.lease_), open_(std::exchange(other.open_, false)) {}

Transaction::~Transaction() {
  if (open_) (void)Rollback();
}

Result<Rows> Transaction::Exec(std::string_view sql, std::initializer_list<Param> params) {
  return lease_->Exec(sql, params);
}

Result<Rows> Transaction::Exec(std::string_view sql, const std::vector<Param>& params) {
  return lease_->Exec(sql, params);
}

Status Transaction::Commit() {
  if (!open_) return Error::Internal("database error");
  Connection& conn = *lease_->conn_;
  if (conn.in_failed_transaction()) {
    // COMMIT would silently roll back; say so instead.
    (void)Rollback();
    return Error::Internal("database error");
  }
  if (lease_->deadline_ != kNoDeadline && Clock::now() >= lease_->deadline_) {
    (void)Rollback();
    return DeadlineExceeded();
  }
  auto done = conn.ExecControl("COMMIT", ControlWaitLimit(lease_->deadline_));
  open_ = false;
  // A failed COMMIT ends the transaction on the server. If the connection
  // still reports one, its state is unknown: close it rather than reuse it.
  // (No ROLLBACK here: it would replace last_sqlstate(), which callers read
  // to decide on a retry.)
  if (!done.ok() && conn.in_transaction()) conn.MarkBroken();
  if (!done.ok()) return std::move(done).error();
  return {};
}

Status Transaction::Rollback() {
  if (!open_) return {};
  open_ = false;
  Connection& conn = *lease_->conn_;
  if (!conn.usable() || !conn.in_transaction()) return {};
  auto done = conn.ExecControl("ROLLBACK", ControlWaitLimit(lease_->deadline_));
  if (!done.ok()) {
    conn.MarkBroken();  // never hand out a connection stuck in a transaction
    return std::move(done).error();
  }
  return {};
}

}  // namespace portico::pg
