// Migrations against a real PostgreSQL 15, and the migrations embedded into
// this binary by portico_embed_migrations.

#include "portico/pg/migrate.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <future>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "portico/pg/pool.h"
#include "portico/testing/pg_cluster.h"

namespace portico::pg_test {
std::span<const portico::pg::Migration> Migrations();
}  // namespace portico::pg_test

namespace portico::pg {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

class MigrateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto pool = Pool::Create(
        {.url = testing::SharedPgCluster().CreateUniqueDatabase("migrate"), .size = 4});
    ASSERT_TRUE(pool.ok());
    pool_ = std::move(pool).value();
  }

  std::vector<std::string> Column(std::string_view sql) {
    auto lease = pool_->Acquire(DeadlineIn(10s));
    EXPECT_TRUE(lease.ok());
    auto rows = lease->Exec(sql);
    EXPECT_TRUE(rows.ok()) << lease->last_error_message();
    std::vector<std::string> out;
    for (Row row : *rows) out.push_back(row.IsNull(0) ? "NULL" : row.GetString(0));
    return out;
  }

  Result<MigrationReport> Run(std::span<const Migration> migrations) {
    return Migrate(*pool_, migrations, "migrate_test", DeadlineIn(30s));
  }

  std::unique_ptr<Pool> pool_;
};

const Migration kFirst{1, "create_a", "CREATE TABLE a (id int4 PRIMARY KEY);"};
const Migration kSecond{2, "create_b",
                        "CREATE TABLE b (id int4 REFERENCES a);\n"
                        "INSERT INTO a VALUES (1); INSERT INTO b VALUES (1);"};
const Migration kThird{5, "add_column", "ALTER TABLE a ADD COLUMN note text DEFAULT 'x;y';"};

TEST_F(MigrateTest, AppliesPendingMigrationsInOrderOnce) {
  std::vector<Migration> two = {kFirst, kSecond};
  auto first = Run(two);
  ASSERT_TRUE(first.ok()) << first.error().message;
  EXPECT_THAT(first->applied, ElementsAre(1, 2));
  EXPECT_EQ(first->current_version, 2);
  EXPECT_THAT(Column("SELECT count(*) FROM b"), ElementsAre("1"));

  auto again = Run(two);
  ASSERT_TRUE(again.ok());
  EXPECT_THAT(again->applied, IsEmpty());
  EXPECT_EQ(again->current_version, 2);

  std::vector<Migration> three = {kFirst, kSecond, kThird};
  auto third = Run(three);
  ASSERT_TRUE(third.ok()) << third.error().message;
  EXPECT_THAT(third->applied, ElementsAre(5));
  EXPECT_THAT(Column("SELECT note FROM a"), ElementsAre("x;y"));
  EXPECT_THAT(Column("SELECT version || ':' || name || ':' || length(checksum) "
                     "FROM schema_migrations ORDER BY version"),
              ElementsAre("1:create_a:64", "2:create_b:64", "5:add_column:64"));
  EXPECT_THAT(Column("SELECT checksum FROM schema_migrations WHERE version = 5"),
              ElementsAre(MigrationChecksum(kThird.sql)));

  // A binary that knows fewer migrations (an older release) is fine.
  std::vector<Migration> one = {kFirst};
  auto older = Run(one);
  ASSERT_TRUE(older.ok());
  EXPECT_THAT(older->applied, IsEmpty());
}

TEST_F(MigrateTest, ConcurrentRunsApplyEachMigrationOnce) {
  // A slow first migration keeps the lock held while the others queue.
  std::vector<Migration> list = {
      {1, "slow", "SELECT pg_sleep(0.3); CREATE TABLE counter (n int4);"},
      {2, "bump", "INSERT INTO counter VALUES (1);"},
      {3, "bump_again", "INSERT INTO counter VALUES (1);"}};
  std::vector<std::future<Result<MigrationReport>>> runs;
  for (int i = 0; i < 3; ++i) {
    runs.push_back(std::async(std::launch::async, [&] { return Run(list); }));
  }
  std::vector<int> applied;
  for (auto& run : runs) {
    auto report = run.get();
    ASSERT_TRUE(report.ok()) << report.error().message;
    EXPECT_EQ(report->current_version, 3);
    applied.insert(applied.end(), report->applied.begin(), report->applied.end());
  }
  std::sort(applied.begin(), applied.end());
  EXPECT_THAT(applied, ElementsAre(1, 2, 3));
  EXPECT_THAT(Column("SELECT count(*) FROM counter"), ElementsAre("2"));
  // The advisory lock was released.
  EXPECT_THAT(Column("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"),
              ElementsAre("0"));
}

TEST_F(MigrateTest, EditedAppliedMigrationStopsEverything) {
  std::vector<Migration> original = {kFirst};
  ASSERT_TRUE(Run(original).ok());
  Migration edited = kFirst;
  edited.sql = "CREATE TABLE a (id int8 PRIMARY KEY);";
  std::vector<Migration> next = {edited, kSecond};
  auto result = Run(next);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_THAT(result.error().message, HasSubstr("migration 1 (create_a)"));
  EXPECT_THAT(Column("SELECT version::text FROM schema_migrations"), ElementsAre("1"));
  EXPECT_THAT(Column("SELECT to_regclass('b')::text"), ElementsAre("NULL"));
}

TEST_F(MigrateTest, VersionsMustIncrease) {
  std::vector<Migration> unordered = {kSecond, kFirst};
  auto result = Run(unordered);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().code, ErrorCode::kInvalidArgument);
  std::vector<Migration> duplicate = {kFirst, kFirst};
  EXPECT_EQ(Run(duplicate).error().code, ErrorCode::kInvalidArgument);
  EXPECT_THAT(Column("SELECT to_regclass('schema_migrations')::text"), ElementsAre("NULL"));
}

TEST_F(MigrateTest, PendingMigrationOlderThanAppliedIsRefused) {
  std::vector<Migration> with_gap = {kFirst, kThird};
  ASSERT_TRUE(Run(with_gap).ok());
  std::vector<Migration> filled = {kFirst, kSecond, kThird};
  auto result = Run(filled);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_THAT(result.error().message, HasSubstr("migration 2"));
}

TEST_F(MigrateTest, FailingMigrationLeavesNoTrace) {
  std::vector<Migration> list = {
      kFirst, {2, "broken", "CREATE TABLE c (id int4); SELECT no_such_function();"}};
  auto result = Run(list);
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(result.error().message, HasSubstr("migration 2 (broken) failed"));
  EXPECT_THAT(Column("SELECT version::text FROM schema_migrations"), ElementsAre("1"));
  EXPECT_THAT(Column("SELECT to_regclass('c')::text"), ElementsAre("NULL"));
  // Fixed, it applies.
  list[1].sql = "CREATE TABLE c (id int4);";
  auto fixed = Run(list);
  ASSERT_TRUE(fixed.ok());
  EXPECT_THAT(fixed->applied, ElementsAre(2));
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(EmbeddedMigrations, CarryTheFilesBytesInVersionOrder) {
  auto embedded = portico::pg_test::Migrations();
  ASSERT_EQ(embedded.size(), 3u);
  const std::string dir = PORTICO_PG_TEST_MIGRATIONS_DIR;
  EXPECT_EQ(embedded[0].version, 1);
  EXPECT_EQ(embedded[0].name, "create_widgets");
  EXPECT_EQ(embedded[0].sql, ReadFile(dir + "/0001_create_widgets.sql"));
  EXPECT_EQ(embedded[1].version, 2);
  EXPECT_EQ(embedded[1].name, "add_color");
  EXPECT_EQ(embedded[1].sql, ReadFile(dir + "/0002_add_color.sql"));
  EXPECT_THAT(std::string(embedded[1].sql), HasSubstr("\r\n"));
  EXPECT_EQ(embedded[2].version, 10);
  EXPECT_EQ(embedded[2].name, "seed");
}

TEST_F(MigrateTest, EmbeddedMigrationsApply) {
  auto report = Run(portico::pg_test::Migrations());
  ASSERT_TRUE(report.ok()) << report.error().message;
  EXPECT_THAT(report->applied, ElementsAre(1, 2, 10));
  EXPECT_THAT(Column("SELECT name || '/' || color FROM widgets ORDER BY id"),
              ElementsAre("first/it's \"blue\"", "second/it's \"blue\""));
}

}  // namespace
}  // namespace portico::pg
