// portico::runtime: the shared variable tables and the database start-up
// (migrations retried while the database is unreachable, pool metrics).
#include <gtest/gtest.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <array>
#include <thread>

#include "portico/admin/metrics.h"
#include "portico/config/config.h"
#include "portico/runtime/runtime.h"
#include "portico/testing/pg_cluster.h"

namespace portico::runtime {
namespace {

const config::Var* Find(const std::vector<config::Var>& vars, std::string_view name) {
  auto it = std::find_if(vars.begin(), vars.end(), [&](const auto& v) { return v.name == name; });
  return it == vars.end() ? nullptr : &*it;
}

TEST(Vars, ServiceVarsCarryTheGivenDefaultsAndTheDatabaseUrlIsSecret) {
  auto vars = ServiceVars("0.0.0.0:50052", "0.0.0.0:9092", "postgresql:///portico_data");
  ASSERT_NE(Find(vars, "PORTICO_GRPC_ADDR"), nullptr);
  EXPECT_EQ(Find(vars, "PORTICO_GRPC_ADDR")->default_value, "0.0.0.0:50052");
  EXPECT_EQ(Find(vars, "PORTICO_ADMIN_ADDR")->default_value, "0.0.0.0:9092");
  EXPECT_TRUE(Find(vars, "PORTICO_DATABASE_URL")->secret);
  EXPECT_NE(Find(vars, "PORTICO_LOG_LEVEL"), nullptr);
  EXPECT_NE(Find(vars, "PORTICO_LOG_FORMAT"), nullptr);
  // The table parses with its own defaults, and rejects a bad log level.
  auto env = [](const std::map<std::string, std::string>& m) -> config::EnvLookup {
    return [m](const std::string& name) -> std::optional<std::string> {
      auto it = m.find(name);
      if (it == m.end()) return std::nullopt;
      return it->second;
    };
  };
  auto parsed = config::Load(vars, env({}));
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->GetInt("PORTICO_DB_POOL_SIZE"), 10);
  auto bad = config::Load(vars, env({{"PORTICO_LOG_LEVEL", "loud"}}));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("PORTICO_LOG_LEVEL"), std::string::npos);
}

TEST(Vars, TokenVarsHaveTheSharedDefaults) {
  auto vars = TokenVars("of tokens");
  EXPECT_EQ(Find(vars, "PORTICO_JWT_ISSUER")->default_value, "portico");
  EXPECT_EQ(Find(vars, "PORTICO_JWT_AUDIENCE")->default_value, "portico-api");
}

constexpr std::string_view kSql = "CREATE TABLE things (id int PRIMARY KEY)";
const std::array<pg::Migration, 1> kMigrations = {{{1, "things", kSql}}};

TEST(Database, BadUrlIsRejectedAtOpen) {
  auto db = Database::Open("postgresql://[::1", 2);
  ASSERT_FALSE(db.ok());
  EXPECT_EQ(db.error().code, ErrorCode::kInvalidArgument);
}

TEST(Database, MigrateGivesUpOnAnUnreachableDatabaseAtTheDeadline) {
  auto db = Database::Open(
      "postgresql://postgres@127.0.0.1:" + std::to_string(testing::FreeTcpPort()) + "/x", 2);
  ASSERT_TRUE(db.ok());
  auto st = (*db)->Migrate(kMigrations, "runtime_test", DeadlineIn(std::chrono::milliseconds(1500)));
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ErrorCode::kUnavailable);
}

TEST(Database, MigratesAndReportsPoolMetrics) {
  auto db = Database::Open(testing::SharedPgCluster().CreateUniqueDatabase("runtime"), 3);
  ASSERT_TRUE(db.ok());
  ASSERT_TRUE((*db)->Migrate(kMigrations, "runtime_test", DeadlineIn(std::chrono::seconds(10))).ok());
  {
    auto lease = (*db)->pool().Acquire(DeadlineIn(std::chrono::seconds(5)));
    ASSERT_TRUE(lease.ok());
    ASSERT_TRUE(lease->Exec("INSERT INTO things VALUES (1)").ok());
    EXPECT_FALSE(lease->Exec("INSERT INTO things VALUES (1)").ok());  // duplicate: an error
  }
  // The refresher publishes pool gauges every 2 s; the statement histogram is immediate.
  std::string text;
  for (int i = 0; i < 50; ++i) {
    text = prometheus::TextSerializer().Serialize(admin::Registry()->Collect());
    if (text.find("portico_db_pool_connections{state=\"size\"} 3") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_NE(text.find("portico_db_pool_connections{state=\"size\"} 3"), std::string::npos) << text;
  EXPECT_NE(text.find("portico_db_query_duration_seconds_count"), std::string::npos);
  EXPECT_EQ(text.find("portico_db_query_errors_total 0"), std::string::npos);
}

}  // namespace
}  // namespace portico::runtime
