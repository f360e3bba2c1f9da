// Pool, statements, errors and transactions against a real PostgreSQL 15.

#include "portico/pg/pool.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <limits>
#include <optional>
#include <string>
#include <thread>

#include "portico/testing/pg_cluster.h"

namespace portico::pg {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::Not;

std::unique_ptr<Pool> MakePool(const std::string& url, int size = 4) {
  auto pool = Pool::Create({.url = url, .size = size});
  EXPECT_TRUE(pool.ok());
  return std::move(pool).value();
}

class PgTest : public ::testing::Test {
 protected:
  void SetUp() override {
    url_ = testing::SharedPgCluster().CreateUniqueDatabase("pool");
    pool_ = MakePool(url_);
  }

  Lease MustAcquire(Deadline deadline = DeadlineIn(10s)) {
    auto lease = pool_->Acquire(deadline);
    EXPECT_TRUE(lease.ok()) << lease.error().message;
    return std::move(lease).value();
  }

  void MustExec(std::string_view sql) {
    Lease lease = MustAcquire();
    Status done = lease.ExecScript(sql);
    ASSERT_TRUE(done.ok()) << lease.last_error_message();
  }

  std::int64_t Count(std::string_view sql) {
    Lease lease = MustAcquire();
    auto rows = lease.Exec(sql);
    EXPECT_TRUE(rows.ok()) << lease.last_error_message();
    return rows->front().GetInt64(0);
  }

  std::string url_;
  std::unique_ptr<Pool> pool_;
};

TEST_F(PgTest, PoolIsBoundedAndAcquireTimesOut) {
  auto pool = MakePool(url_, 2);
  auto a = pool->Acquire(DeadlineIn(10s));
  auto b = pool->Acquire(DeadlineIn(10s));
  ASSERT_TRUE(a.ok() && b.ok());
  Pool::Stats stats = pool->GetStats();
  EXPECT_EQ(stats.size, 2);
  EXPECT_EQ(stats.in_use, 2);
  EXPECT_EQ(stats.idle, 0);

  auto start = Clock::now();
  auto third = std::async(std::launch::async, [&] { return pool->Acquire(DeadlineIn(200ms)); });
  auto result = third.get();
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(result.error().message, "no database connection available");
  EXPECT_GE(Clock::now() - start, 200ms);
  EXPECT_EQ(pool->GetStats().acquire_timeouts, 1u);
  EXPECT_EQ(pool->GetStats().opened, 2u);
}

TEST_F(PgTest, ReleaseWakesAWaiter) {
  auto pool = MakePool(url_, 1);
  auto held = pool->Acquire(DeadlineIn(10s));
  ASSERT_TRUE(held.ok());
  auto waiter = std::async(std::launch::async, [&] {
    auto lease = pool->Acquire(DeadlineIn(60s));
    if (!lease.ok()) return std::string("acquire failed");
    auto rows = lease->Exec("SELECT 'woken'");
    return rows.ok() ? rows->front().GetString(0) : std::string("exec failed");
  });
  while (pool->GetStats().waiting == 0) std::this_thread::sleep_for(1ms);
  { auto released = std::move(held).value(); }
  EXPECT_EQ(waiter.get(), "woken");
  EXPECT_EQ(pool->GetStats().opened, 1u);  // the same connection was handed over
}

std::int64_t BackendPid(Lease& lease) {
  auto rows = lease.Exec("SELECT pg_backend_pid()");
  EXPECT_TRUE(rows.ok());
  return rows->front().GetInt64(0);
}

void TerminateAndWait(std::int64_t pid) {
  auto& cluster = testing::SharedPgCluster();
  cluster.AdminExec("SELECT pg_terminate_backend(" + std::to_string(pid) + ")");
  // pg_terminate_backend only signals; wait until the backend is gone.
  auto admin = Pool::Create({.url = cluster.AdminUrl(), .size = 1});
  ASSERT_TRUE(admin.ok());
  for (;;) {
    auto lease = (*admin)->Acquire(DeadlineIn(10s));
    ASSERT_TRUE(lease.ok());
    auto rows = lease->Exec("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", {pid});
    ASSERT_TRUE(rows.ok());
    if (rows->front().GetInt64(0) == 0) return;
    std::this_thread::sleep_for(5ms);
  }
}

TEST_F(PgTest, IdleConnectionKilledByServerIsReplaced) {
  auto pool = MakePool(url_, 1);
  std::int64_t old_pid;
  {
    Lease lease = std::move(pool->Acquire(DeadlineIn(10s))).value();
    old_pid = BackendPid(lease);
  }
  TerminateAndWait(old_pid);
  auto lease = pool->Acquire(DeadlineIn(10s));
  ASSERT_TRUE(lease.ok()) << lease.error().message;
  std::int64_t new_pid = BackendPid(*lease);
  EXPECT_NE(new_pid, old_pid);
  EXPECT_EQ(pool->GetStats().discarded, 1u);
}

TEST_F(PgTest, ConnectionLostInUseIsUnavailableAndReplaced) {
  auto pool = MakePool(url_, 1);
  std::int64_t old_pid;
  {
    Lease lease = std::move(pool->Acquire(DeadlineIn(10s))).value();
    old_pid = BackendPid(lease);
    TerminateAndWait(old_pid);
    auto rows = lease.Exec("SELECT 1");
    ASSERT_FALSE(rows.ok());
    EXPECT_EQ(rows.error().code, ErrorCode::kUnavailable);
  }
  auto lease = pool->Acquire(DeadlineIn(10s));
  ASSERT_TRUE(lease.ok());
  EXPECT_NE(BackendPid(*lease), old_pid);
}

TEST_F(PgTest, PingSucceeds) { EXPECT_TRUE(pool_->Ping(DeadlineIn(5s)).ok()); }

TEST_F(PgTest, ParametersOfEveryTypeRoundTrip) {
  MustExec("CREATE TABLE t (s text, i8 int8, i4 int4, b bool, d float8, n text, v text, c text)");
  Lease lease = MustAcquire();
  const std::string evil = "O'Reilly\"; DROP TABLE t; -- $1 \\ \xE2\x82\xAC";
  std::string_view view = "a view";
  std::optional<std::string> absent;
  auto inserted =
      lease.Exec("INSERT INTO t (s, i8, i4, b, d, n, v, c) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                 {evil, std::int64_t{-9007199254740993}, std::int32_t{-42}, true, 0.1, std::nullopt,
                  view, absent});
  ASSERT_TRUE(inserted.ok()) << lease.last_error_message();
  EXPECT_EQ(inserted->affected(), 1);

  auto rows = lease.Exec("SELECT s, i8, i4, b, d, n, v, c FROM t WHERE s = $1 AND b = $2",
                         {evil.c_str(), true});
  ASSERT_TRUE(rows.ok()) << lease.last_error_message();
  ASSERT_EQ(rows->size(), 1);
  Row row = rows->front();
  EXPECT_EQ(row.GetString("s"), evil);
  EXPECT_EQ(row.GetInt64("i8"), -9007199254740993);
  EXPECT_EQ(row.GetInt64(2), -42);
  EXPECT_TRUE(row.GetBool("b"));
  EXPECT_DOUBLE_EQ(row.GetDouble("d"), 0.1);
  EXPECT_TRUE(row.IsNull("n"));
  EXPECT_EQ(row.GetOptionalString("n"), std::nullopt);
  EXPECT_EQ(row.GetString("v"), "a view");
  EXPECT_TRUE(row.IsNull(7));
  EXPECT_THROW(row.GetString("n"), std::logic_error);
  EXPECT_THROW(row.GetInt64("s"), std::logic_error);
  EXPECT_THROW(row.GetString("no_such_column"), std::logic_error);
  EXPECT_EQ(Count("SELECT count(*) FROM t"), 1);  // the table survived

  auto special =
      lease.Exec("SELECT $1::float8, $2::float8, $3::bool, $4::int8",
                 {std::numeric_limits<double>::infinity(), -1e300, false, std::size_t{0}});
  ASSERT_TRUE(special.ok()) << lease.last_error_message();
  EXPECT_EQ(special->front().GetDouble(0), std::numeric_limits<double>::infinity());
  EXPECT_EQ(special->front().GetDouble(1), -1e300);
  EXPECT_FALSE(special->front().GetBool(2));
  EXPECT_EQ(special->front().GetInt64(3), 0);
}

TEST_F(PgTest, RowsIterateAndCountAffected) {
  MustExec("CREATE TABLE n (x int4 PRIMARY KEY)");
  Lease lease = MustAcquire();
  std::vector<Param> params = {1, 2, 3};
  auto inserted = lease.Exec("INSERT INTO n VALUES ($1), ($2), ($3)", params);
  ASSERT_TRUE(inserted.ok());
  EXPECT_EQ(inserted->affected(), 3);
  auto updated = lease.Exec("UPDATE n SET x = x * 10 WHERE x >= $1", {2});
  ASSERT_TRUE(updated.ok());
  EXPECT_EQ(updated->affected(), 2);
  EXPECT_TRUE(updated->empty());
  auto rows = lease.Exec("SELECT x AS value FROM n ORDER BY x");
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ(rows->ColumnIndex("value"), 0);
  EXPECT_EQ(rows->ColumnName(0), "value");
  std::vector<std::int64_t> seen;
  for (Row row : *rows) seen.push_back(row.GetInt64("value"));
  EXPECT_EQ(seen, (std::vector<std::int64_t>{1, 20, 30}));
}

TEST_F(PgTest, SqlStatesMapToSafeErrors) {
  MustExec(
      "CREATE TABLE u (email text CONSTRAINT u_email_key UNIQUE NOT NULL, "
      "age int4 CHECK (age >= 0))");
  Lease lease = MustAcquire();
  ASSERT_TRUE(lease.Exec("INSERT INTO u (email) VALUES ($1)", {"a@example.com"}).ok());

  auto dup = lease.Exec("INSERT INTO u (email) VALUES ($1)", {"a@example.com"});
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.error().code, ErrorCode::kAlreadyExists);
  EXPECT_EQ(lease.last_sqlstate(), "23505");
  EXPECT_EQ(lease.last_constraint(), "u_email_key");
  EXPECT_THAT(dup.error().message, Not(HasSubstr("u_email_key")));
  EXPECT_THAT(dup.error().message, Not(HasSubstr("a@example.com")));
  EXPECT_THAT(lease.last_error_message(), HasSubstr("u_email_key"));

  auto null = lease.Exec("INSERT INTO u (email) VALUES ($1)", {std::nullopt});
  ASSERT_FALSE(null.ok());
  EXPECT_EQ(null.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(lease.last_sqlstate(), "23502");

  auto check = lease.Exec("INSERT INTO u (email, age) VALUES ($1, $2)", {"b@x", -1});
  ASSERT_FALSE(check.ok());
  EXPECT_EQ(check.error().code, ErrorCode::kInvalidArgument);

  auto bad_text = lease.Exec("SELECT $1::int4", {"not a number"});
  ASSERT_FALSE(bad_text.ok());
  EXPECT_EQ(bad_text.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(lease.last_sqlstate(), "22P02");

  auto syntax = lease.Exec("SELEC 1");
  ASSERT_FALSE(syntax.ok());
  EXPECT_EQ(syntax.error().code, ErrorCode::kInternal);
  EXPECT_EQ(syntax.error().message, "database error");
  EXPECT_EQ(lease.last_sqlstate(), "42601");

  // The lease is still good after failures, and a success clears the state.
  auto fine = lease.Exec("SELECT 1");
  ASSERT_TRUE(fine.ok());
  EXPECT_EQ(lease.last_sqlstate(), "");
}

TEST_F(PgTest, DeadlineBecomesStatementTimeout) {
  Lease lease = MustAcquire(DeadlineIn(200ms));
  auto start = Clock::now();
  auto slow = lease.Exec("SELECT pg_sleep(5)");
  ASSERT_FALSE(slow.ok());
  EXPECT_EQ(slow.error().code, ErrorCode::kDeadlineExceeded);
  EXPECT_EQ(lease.last_sqlstate(), "57014");
  EXPECT_LT(Clock::now() - start, 4s);

  // The deadline has passed now: refused without asking the server.
  auto late = lease.Exec("SELECT 1");
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.error().code, ErrorCode::kDeadlineExceeded);
  EXPECT_EQ(lease.last_sqlstate(), "");

  // The timeout covers the statement only: it does not stay on the session.
  lease.set_deadline(DeadlineIn(60s));
  auto during = lease.Exec("SELECT current_setting('statement_timeout')");
  ASSERT_TRUE(during.ok());
  EXPECT_NE(during->front().GetString(0), "0");
  lease.set_deadline(kNoDeadline);
  auto after = lease.Exec("SELECT current_setting('statement_timeout')");
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->front().GetString(0), "0");
}

// Each connection prepares a statement once and reuses it; statement_timeout
// is a session setting that changes only when a deadline needs another
// value, not a statement per query.
TEST_F(PgTest, StatementsArePreparedOnceAndTheTimeoutIsNotResentEachTime) {
  Lease lease = MustAcquire(DeadlineIn(8s));
  for (int i = 0; i < 3; ++i) {
    auto r = lease.Exec("SELECT $1::int + 1 AS n", {i});
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(r->front().GetInt64("n"), i + 1);
  }
  auto prepared = lease.Exec(
      "SELECT count(*) FROM pg_prepared_statements WHERE statement = 'SELECT $1::int + 1 AS n'");
  ASSERT_TRUE(prepared.ok());
  EXPECT_EQ(prepared->front().GetInt64(0), 1);
  auto timeout = lease.Exec("SELECT current_setting('statement_timeout')");
  ASSERT_TRUE(timeout.ok());
  EXPECT_EQ(timeout->front().GetString(0), "10s");  // 8 s left, rounded up to a step

  // A statement that does not parse is an error and is not remembered.
  auto bad = lease.Exec("SELEC 1");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(lease.last_sqlstate(), "42601");
  EXPECT_TRUE(lease.Exec("SELECT 1").ok());
}

TEST_F(PgTest, DeadlineAppliesInsideTransactions) {
  Lease lease = MustAcquire(DeadlineIn(60s));
  auto tx = lease.Begin();
  ASSERT_TRUE(tx.ok());
  lease.set_deadline(DeadlineIn(200ms));
  auto slow = tx->Exec("SELECT pg_sleep(5)");
  ASSERT_FALSE(slow.ok());
  EXPECT_EQ(slow.error().code, ErrorCode::kDeadlineExceeded);
}

TEST_F(PgTest, TransactionsCommitAndRollBack) {
  MustExec("CREATE TABLE k (v text)");
  {
    Lease lease = MustAcquire();
    auto tx = lease.Begin();
    ASSERT_TRUE(tx.ok());
    ASSERT_TRUE(tx->Exec("INSERT INTO k VALUES ($1)", {"committed"}).ok());
    EXPECT_TRUE(tx->Commit().ok());
  }
  {
    Lease lease = MustAcquire();
    auto tx = lease.Begin();
    ASSERT_TRUE(tx.ok());
    ASSERT_TRUE(tx->Exec("INSERT INTO k VALUES ($1)", {"dropped"}).ok());
    // Destroyed without Commit: rolled back.
  }
  {
    Lease lease = MustAcquire();
    auto tx = lease.Begin();
    ASSERT_TRUE(tx.ok());
    ASSERT_TRUE(tx->Exec("INSERT INTO k VALUES ($1)", {"rolled back"}).ok());
    EXPECT_TRUE(tx->Rollback().ok());
  }
  {
    // A lease returned mid-transaction is rolled back by the pool.
    Lease lease = MustAcquire();
    ASSERT_TRUE(lease.Exec("BEGIN").ok());
    ASSERT_TRUE(lease.Exec("INSERT INTO k VALUES ($1)", {"abandoned"}).ok());
  }
  Lease lease = MustAcquire();
  auto rows = lease.Exec("SELECT v FROM k ORDER BY v");
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 1);
  EXPECT_EQ(rows->front().GetString(0), "committed");
}

TEST_F(PgTest, IsolationLevelIsApplied) {
  Lease lease = MustAcquire();
  auto tx = lease.Begin({.isolation = IsolationLevel::kSerializable, .read_only = true});
  ASSERT_TRUE(tx.ok());
  auto rows = tx->Exec(
      "SELECT current_setting('transaction_isolation'), "
      "current_setting('transaction_read_only')");
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ(rows->front().GetString(0), "serializable");
  EXPECT_EQ(rows->front().GetString(1), "on");
  EXPECT_TRUE(tx->Commit().ok());
  auto default_level = lease.Begin();
  ASSERT_TRUE(default_level.ok());
  auto level = default_level->Exec("SELECT current_setting('transaction_isolation')");
  ASSERT_TRUE(level.ok());
  EXPECT_EQ(level->front().GetString(0), "read committed");
}

TEST_F(PgTest, CommitAfterAFailedStatementFails) {
  MustExec("CREATE TABLE f (v int4 PRIMARY KEY)");
  Lease lease = MustAcquire();
  auto tx = lease.Begin();
  ASSERT_TRUE(tx.ok());
  ASSERT_TRUE(tx->Exec("INSERT INTO f VALUES (1)").ok());
  ASSERT_FALSE(tx->Exec("INSERT INTO f VALUES (1)").ok());
  EXPECT_FALSE(tx->Commit().ok());
  EXPECT_EQ(Count("SELECT count(*) FROM f"), 0);
  EXPECT_TRUE(lease.Exec("SELECT 1").ok());  // the lease is usable again
}

TEST_F(PgTest, InTransactionCommitsOrRollsBack) {
  MustExec("CREATE TABLE g (v text)");
  Result<std::int64_t> id = pool_->InTransaction(DeadlineIn(10s), [](Transaction& tx) {
    auto rows = tx.Exec("INSERT INTO g VALUES ($1) RETURNING 7", {"kept"});
    if (!rows.ok()) return Result<std::int64_t>(rows.error());
    return Result<std::int64_t>(rows->front().GetInt64(0));
  });
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(*id, 7);

  Status failed = pool_->InTransaction(DeadlineIn(10s), [](Transaction& tx) -> Status {
    if (auto r = tx.Exec("INSERT INTO g VALUES ($1)", {"discarded"}); !r.ok()) return r.error();
    return Error::NotFound("changed my mind");
  });
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(Count("SELECT count(*) FROM g"), 1);
}

TEST_F(PgTest, InTransactionRetriesSerializationFailures) {
  MustExec("CREATE TABLE h (v int4)");
  int attempts = 0;
  Status done = pool_->InTransaction(
      DeadlineIn(10s),
      [&](Transaction& tx) -> Status {
        ++attempts;
        if (auto r = tx.Exec("INSERT INTO h VALUES ($1)", {attempts}); !r.ok()) return r.error();
        if (attempts < 3) {
          auto conflict =
              tx.Exec("DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$");
          if (!conflict.ok()) return conflict.error();
        }
        return {};
      },
      {.isolation = IsolationLevel::kSerializable, .max_attempts = 5});
  ASSERT_TRUE(done.ok()) << done.error().message;
  EXPECT_EQ(attempts, 3);
  EXPECT_EQ(Count("SELECT count(*) FROM h"), 1);
  EXPECT_EQ(Count("SELECT max(v) FROM h"), 3);

  attempts = 0;
  Status gave_up = pool_->InTransaction(DeadlineIn(10s), [&](Transaction& tx) -> Status {
    ++attempts;
    auto conflict =
        tx.Exec("DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40P01'; END $$");
    if (!conflict.ok()) return conflict.error();
    return {};
  });
  ASSERT_FALSE(gave_up.ok());
  EXPECT_EQ(gave_up.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(attempts, 1);  // max_attempts defaults to 1
}

TEST_F(PgTest, QueryObserverSeesEveryStatement) {
  std::atomic<int> ok{0}, failed{0};
  auto pool = Pool::Create(
      {.url = url_, .size = 1, .on_query = [&](auto, bool success) { (success ? ok : failed)++; }});
  ASSERT_TRUE(pool.ok());
  auto lease = (*pool)->Acquire(DeadlineIn(10s));
  ASSERT_TRUE(lease.ok());
  ASSERT_TRUE(lease->Exec("SELECT 1").ok());
  ASSERT_FALSE(lease->Exec("SELECT 1/0").ok());
  EXPECT_EQ(ok.load(), 1);
  EXPECT_EQ(failed.load(), 1);
}

}  // namespace
}  // namespace portico::pg
