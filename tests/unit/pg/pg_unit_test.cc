// portico::pg behaviour that needs no database server.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "portico/pg/error.h"
#include "portico/pg/migrate.h"
#include "portico/pg/pool.h"
#include "portico/testing/pg_cluster.h"

namespace portico::pg {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(Param, ConvertsEachTypeToPostgresText) {
  EXPECT_EQ(Param("text").text(), "text");
  EXPECT_EQ(Param(std::string("owned")).text(), "owned");
  EXPECT_EQ(Param(std::string_view("view")).text(), "view");
  EXPECT_EQ(Param(std::int32_t{-7}).text(), "-7");
  EXPECT_EQ(Param(std::numeric_limits<std::int64_t>::min()).text(), "-9223372036854775808");
  EXPECT_EQ(Param(std::uint64_t{18446744073709551615u}).text(), "18446744073709551615");
  EXPECT_EQ(Param(true).text(), "true");
  EXPECT_EQ(Param(false).text(), "false");
  EXPECT_EQ(Param(0.1).text(), "0.1");
  EXPECT_EQ(Param(-2.5e-300).text(), "-2.5e-300");
  EXPECT_EQ(Param(std::numeric_limits<double>::quiet_NaN()).text(), "NaN");
  EXPECT_EQ(Param(std::numeric_limits<double>::infinity()).text(), "Infinity");
  EXPECT_EQ(Param(-std::numeric_limits<double>::infinity()).text(), "-Infinity");
  EXPECT_FALSE(Param("").is_null());
  EXPECT_TRUE(Param(std::nullopt).is_null());
  EXPECT_TRUE(Param(std::optional<std::string>()).is_null());
  EXPECT_EQ(Param(std::optional<std::int64_t>(5)).text(), "5");
  // Text is kept as given: quoting is the server's business (it is a parameter).
  EXPECT_EQ(Param("it's; DROP TABLE x").text(), "it's; DROP TABLE x");
}

TEST(Param, BracedListsBuildParameterVectors) {
  std::string owned = "a";
  std::vector<Param> params = {owned, 1, 2.0, false, std::nullopt, "b"};
  ASSERT_EQ(params.size(), 6u);
  EXPECT_EQ(params[1].text(), "1");
  EXPECT_TRUE(params[4].is_null());
}

TEST(ErrorFromSqlState, MapsClassesToSafeCodes) {
  struct Case {
    const char* state;
    ErrorCode code;
  };
  const Case cases[] = {
      {"23505", ErrorCode::kAlreadyExists},   {"23503", ErrorCode::kInvalidArgument},
      {"23502", ErrorCode::kInvalidArgument}, {"23514", ErrorCode::kInvalidArgument},
      {"23P01", ErrorCode::kInvalidArgument}, {"22001", ErrorCode::kInvalidArgument},
      {"22P02", ErrorCode::kInvalidArgument}, {"57014", ErrorCode::kDeadlineExceeded},
      {"40001", ErrorCode::kUnavailable},     {"40P01", ErrorCode::kUnavailable},
      {"55P03", ErrorCode::kUnavailable},     {"08006", ErrorCode::kUnavailable},
      {"08001", ErrorCode::kUnavailable},     {"57P01", ErrorCode::kUnavailable},
      {"53300", ErrorCode::kUnavailable},     {"", ErrorCode::kUnavailable},
      {"42601", ErrorCode::kInternal},        {"42P01", ErrorCode::kInternal},
      {"XX000", ErrorCode::kInternal},        {"25P02", ErrorCode::kInternal},
  };
  for (const Case& c : cases) {
    Error e = ErrorFromSqlState(c.state);
    EXPECT_EQ(e.code, c.code) << c.state;
    EXPECT_FALSE(e.message.empty()) << c.state;
    if (*c.state != '\0') {
      EXPECT_THAT(e.message, Not(HasSubstr(c.state))) << "no internals";
    }
  }
  EXPECT_TRUE(IsRetryableSqlState("40001"));
  EXPECT_TRUE(IsRetryableSqlState("40P01"));
  EXPECT_FALSE(IsRetryableSqlState("23505"));
  EXPECT_FALSE(IsRetryableSqlState(""));
}

TEST(Pool, RejectsBadOptionsWithoutConnecting) {
  auto zero = Pool::Create({.url = "postgresql:///x", .size = 0});
  ASSERT_FALSE(zero.ok());
  EXPECT_EQ(zero.error().code, ErrorCode::kInvalidArgument);
  auto garbage = Pool::Create({.url = "postgresql://user:secret@host/db?bogus=1"});
  ASSERT_FALSE(garbage.ok());
  EXPECT_EQ(garbage.error().code, ErrorCode::kInvalidArgument);
  EXPECT_THAT(garbage.error().message, Not(HasSubstr("secret")));
  EXPECT_TRUE(Pool::Create({.url = "postgresql:///portico_users"}).ok());
  EXPECT_TRUE(Pool::Create({.url = "host=localhost dbname=x"}).ok());
}

std::string NobodyListens() {
  // A freshly released port on loopback: connecting is refused at once.
  return "postgresql://postgres@127.0.0.1:" + std::to_string(testing::FreeTcpPort()) + "/x";
}

TEST(Pool, UnreachableDatabaseIsUnavailable) {
  auto pool = Pool::Create({.url = NobodyListens()});
  ASSERT_TRUE(pool.ok());  // creating does not connect
  Status ping = (*pool)->Ping(DeadlineIn(5s));
  ASSERT_FALSE(ping.ok());
  EXPECT_EQ(ping.error().code, ErrorCode::kUnavailable);
  EXPECT_THAT(ping.error().message, Not(HasSubstr("127.0.0.1")));
  EXPECT_THAT((*pool)->LastConnectError(), HasSubstr("127.0.0.1"));
  Pool::Stats stats = (*pool)->GetStats();
  EXPECT_EQ(stats.in_use, 0);
  EXPECT_EQ(stats.idle, 0);
  EXPECT_EQ(stats.opened, 0u);
}

TEST(Pool, PassedDeadlineWithNothingIdleIsUnavailable) {
  auto pool = Pool::Create({.url = NobodyListens()});
  ASSERT_TRUE(pool.ok());
  auto lease = (*pool)->Acquire(Clock::now() - 1s);
  ASSERT_FALSE(lease.ok());
  EXPECT_EQ(lease.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(lease.error().message, "no database connection available");
}

TEST(Migrate, ChecksumIsHexSha256) {
  EXPECT_EQ(MigrationChecksum(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(MigrationChecksum("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Migrate, RejectsBadVersionsBeforeConnecting) {
  auto pool = Pool::Create({.url = NobodyListens()});
  ASSERT_TRUE(pool.ok());
  const Migration same[] = {{1, "a", "SELECT 1"}, {1, "b", "SELECT 1"}};
  const Migration down[] = {{2, "a", "SELECT 1"}, {1, "b", "SELECT 1"}};
  const Migration zero[] = {{0, "a", "SELECT 1"}};
  for (std::span<const Migration> list :
       {std::span<const Migration>(same), std::span<const Migration>(down),
        std::span<const Migration>(zero)}) {
    auto report = Migrate(**pool, list, "test", DeadlineIn(5s));
    ASSERT_FALSE(report.ok());
    EXPECT_EQ(report.error().code, ErrorCode::kInvalidArgument);
  }
  EXPECT_EQ((*pool)->GetStats().acquired + (*pool)->GetStats().acquire_timeouts, 0u);
}

}  // namespace
}  // namespace portico::pg
