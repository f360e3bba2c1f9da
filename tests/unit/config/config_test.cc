#include "portico/config/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>

namespace portico::config {
namespace {

using namespace std::chrono_literals;

class FakeEnv {
 public:
  FakeEnv(std::initializer_list<std::pair<const std::string, std::string>> values)
      : values_(values) {}
  EnvLookup Lookup() const {
    return [this](const std::string& name) -> std::optional<std::string> {
      auto it = values_.find(name);
      if (it == values_.end()) return std::nullopt;
      return it->second;
    };
  }

 private:
  std::map<std::string, std::string> values_;
};

Var MakeVar(std::string name, Kind kind, std::string def) {
  Var v;
  v.name = std::move(name);
  v.kind = kind;
  v.default_value = std::move(def);
  v.help = "help for " + v.name;
  return v;
}

// Loads one variable with `value` set in the environment.
Result<Config> LoadOne(const Var& var, const std::string& value) {
  FakeEnv env{{var.name, value}};
  return Load({var}, env.Lookup());
}

TEST(ConfigTest, DefaultsApplyWhenUnset) {
  std::vector<Var> vars = {
      MakeVar("S", Kind::kString, "hello"),   MakeVar("I", Kind::kInt, "42"),
      MakeVar("B", Kind::kBool, "true"),      MakeVar("D", Kind::kDuration, "10s"),
      MakeVar("A", Kind::kAddress, ":9090"),  MakeVar("Z", Kind::kSize, "1MiB"),
  };
  Var e = MakeVar("E", Kind::kEnum, "Info");
  e.choices = {"debug", "info"};
  vars.push_back(e);
  FakeEnv env{};
  auto config = Load(vars, env.Lookup());
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->GetString("S"), "hello");
  EXPECT_EQ(config->GetInt("I"), 42);
  EXPECT_TRUE(config->GetBool("B"));
  EXPECT_EQ(config->GetDuration("D"), 10s);
  EXPECT_EQ(config->GetAddress("A").port, 9090);
  EXPECT_EQ(config->GetAddress("A").host, "");
  EXPECT_EQ(config->GetSize("Z"), 1u << 20);
  EXPECT_EQ(config->GetString("E"), "info");
  for (const auto& v : vars) EXPECT_FALSE(config->IsSet(v.name)) << v.name;
}

TEST(ConfigTest, EnvironmentOverridesDefaultAndIsSet) {
  FakeEnv env{{"S", "world"}, {"I", "-7"}};
  auto config =
      Load({MakeVar("S", Kind::kString, "hello"), MakeVar("I", Kind::kInt, "1")}, env.Lookup());
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->GetString("S"), "world");
  EXPECT_EQ(config->GetInt("I"), -7);
  EXPECT_TRUE(config->IsSet("S"));
  EXPECT_TRUE(config->IsSet("I"));
}

TEST(ConfigTest, EmptyStringCountsAsSet) {
  auto config = LoadOne(MakeVar("S", Kind::kString, "x"), "");
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->GetString("S"), "");
  EXPECT_TRUE(config->IsSet("S"));
}

TEST(ConfigTest, IntParsingAndBounds) {
  Var v = MakeVar("PORTICO_PAGE", Kind::kInt, "50");
  v.min = 1;
  v.max = 1000;
  EXPECT_EQ(LoadOne(v, "1")->GetInt("PORTICO_PAGE"), 1);
  EXPECT_EQ(LoadOne(v, "1000")->GetInt("PORTICO_PAGE"), 1000);
  EXPECT_EQ(LoadOne(v, "+5")->GetInt("PORTICO_PAGE"), 5);
  for (const char* bad : {"0", "1001", "abc", "", "12x", "1.5", " 3", "-"}) {
    auto r = LoadOne(v, bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(r.error().message,
              std::string("PORTICO_PAGE: \"") + bad + "\" is not an integer in [1, 1000]");
    ASSERT_EQ(r.error().fields.size(), 1u);
    EXPECT_EQ(r.error().fields[0].field, "PORTICO_PAGE");
  }
  Var unbounded = MakeVar("N", Kind::kInt, "0");
  EXPECT_EQ(LoadOne(unbounded, "-9223372036854775808")->GetInt("N"), INT64_MIN);
  EXPECT_FALSE(LoadOne(unbounded, "9223372036854775808").ok());
  Var min_only = MakeVar("M", Kind::kInt, "0");
  min_only.min = 0;
  EXPECT_EQ(LoadOne(min_only, "-1").error().message, "M: \"-1\" is not an integer >= 0");
}

TEST(ConfigTest, BoolSpellings) {
  Var v = MakeVar("B", Kind::kBool, "false");
  for (const char* t : {"true", "TRUE", "1", "yes", "Yes", "on", "ON"}) {
    EXPECT_TRUE(LoadOne(v, t)->GetBool("B")) << t;
  }
  for (const char* f : {"false", "False", "0", "no", "NO", "off"}) {
    EXPECT_FALSE(LoadOne(v, f)->GetBool("B")) << f;
  }
  auto r = LoadOne(v, "maybe");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("B: \"maybe\" is not a boolean"), std::string::npos);
}

TEST(ConfigTest, Durations) {
  Var v = MakeVar("D", Kind::kDuration, "1s");
  EXPECT_EQ(LoadOne(v, "250ms")->GetDuration("D"), 250ms);
  EXPECT_EQ(LoadOne(v, "10s")->GetDuration("D"), 10s);
  EXPECT_EQ(LoadOne(v, "5m")->GetDuration("D"), 5min);
  EXPECT_EQ(LoadOne(v, "2h")->GetDuration("D"), 2h);
  EXPECT_EQ(LoadOne(v, "30d")->GetDuration("D"), 30 * 24h);
  EXPECT_EQ(LoadOne(v, "7")->GetDuration("D"), 7s);
  EXPECT_EQ(LoadOne(v, "0")->GetDuration("D"), 0s);
  EXPECT_EQ(LoadOne(v, "5M")->GetDuration("D"), 5min);
  for (const char* bad : {"", "s", "-1s", "10 s", "1.5s", "10x", "99999999999999999999d"}) {
    auto r = LoadOne(v, bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().message.rfind(std::string("D: \"") + bad + "\" is not a duration", 0), 0u)
        << r.error().message;
  }
}

TEST(ConfigTest, Addresses) {
  Var v = MakeVar("PORTICO_HTTP_ADDR", Kind::kAddress, "0.0.0.0:8080");
  auto a = LoadOne(v, "127.0.0.1:80")->GetAddress("PORTICO_HTTP_ADDR");
  EXPECT_EQ(a.host, "127.0.0.1");
  EXPECT_EQ(a.port, 80);
  EXPECT_EQ(a.ToString(), "127.0.0.1:80");
  a = LoadOne(v, ":0")->GetAddress("PORTICO_HTTP_ADDR");
  EXPECT_EQ(a.host, "");
  EXPECT_EQ(a.port, 0);
  EXPECT_EQ(a.ToString(), "0.0.0.0:0");
  a = LoadOne(v, "users-svc.local:65535")->GetAddress("PORTICO_HTTP_ADDR");
  EXPECT_EQ(a.host, "users-svc.local");
  EXPECT_EQ(a.port, 65535);
  a = LoadOne(v, "[::1]:9090")->GetAddress("PORTICO_HTTP_ADDR");
  EXPECT_EQ(a.host, "::1");
  EXPECT_EQ(a.ToString(), "[::1]:9090");

  EXPECT_EQ(LoadOne(v, "abc").error().message, "PORTICO_HTTP_ADDR: \"abc\" is not host:port");
  for (const char* bad : {"host:65536", "host:", "host:x", ":-1", "::1:80", "a b:80", "[]:80",
                          "host:000080"}) {
    auto r = LoadOne(v, bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().message, std::string("PORTICO_HTTP_ADDR: \"") + bad + "\" is not host:port");
  }
}

TEST(ConfigTest, Sizes) {
  Var v = MakeVar("Z", Kind::kSize, "1");
  EXPECT_EQ(LoadOne(v, "1048576")->GetSize("Z"), 1048576u);
  EXPECT_EQ(LoadOne(v, "512KiB")->GetSize("Z"), 512u * 1024);
  EXPECT_EQ(LoadOne(v, "1MiB")->GetSize("Z"), 1u << 20);
  EXPECT_EQ(LoadOne(v, "2GiB")->GetSize("Z"), 2ull << 30);
  EXPECT_EQ(LoadOne(v, "3mib")->GetSize("Z"), 3u << 20);
  EXPECT_EQ(LoadOne(v, "10B")->GetSize("Z"), 10u);
  for (const char* bad : {"", "MiB", "1.5MiB", "-1", "1MB", "99999999999999GiB"}) {
    auto r = LoadOne(v, bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.error().message.find("is not a size in bytes"), std::string::npos);
  }
}

TEST(ConfigTest, EnumIsCaseInsensitiveAndLowerCased) {
  Var v = MakeVar("PORTICO_LOG_LEVEL", Kind::kEnum, "info");
  v.choices = {"debug", "info", "warn"};
  EXPECT_EQ(LoadOne(v, "WARN")->GetString("PORTICO_LOG_LEVEL"), "warn");
  EXPECT_EQ(LoadOne(v, "verbose").error().message,
            "PORTICO_LOG_LEVEL: \"verbose\" is not one of debug, info, warn");
}

TEST(ConfigTest, RequiredVariable) {
  Var v = MakeVar("PORTICO_DATABASE_URL", Kind::kString, "");
  v.required = true;
  FakeEnv empty{};
  auto r = Load({v}, empty.Lookup());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "PORTICO_DATABASE_URL: is required");
  EXPECT_EQ(LoadOne(v, "postgresql:///x")->GetString("PORTICO_DATABASE_URL"), "postgresql:///x");
}

TEST(ConfigTest, BadDefaultIsReported) {
  auto r = Load({MakeVar("I", Kind::kInt, "ten")}, FakeEnv{}.Lookup());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "I: default \"ten\" is not an integer");
}

TEST(ConfigTest, FirstBadVariableIsNamed) {
  FakeEnv env{{"A", "x"}, {"B", "y"}};
  auto r = Load({MakeVar("OK", Kind::kInt, "1"), MakeVar("A", Kind::kInt, "1"),
                 MakeVar("B", Kind::kInt, "1")},
                env.Lookup());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message.rfind("A: ", 0), 0u);
}

class SecretFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = std::filesystem::temp_directory_path() /
            ("portico_config_test_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
  }
  void TearDown() override { std::filesystem::remove(path_); }
  void Write(const std::string& content) {
    std::ofstream(path_, std::ios::binary) << content;
  }
  static Var Secret() {
    Var v = MakeVar("PORTICO_KEY", Kind::kString, "dev-key");
    v.secret = true;
    return v;
  }
  std::filesystem::path path_;
};

TEST_F(SecretFileTest, ReadsFileAndStripsTrailingNewline) {
  Write("s3cr3t\n");
  FakeEnv env{{"PORTICO_KEY_FILE", path_.string()}};
  auto config = Load({Secret()}, env.Lookup());
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->GetString("PORTICO_KEY"), "s3cr3t");
  EXPECT_TRUE(config->IsSet("PORTICO_KEY"));
}

TEST_F(SecretFileTest, KeepsInnerNewlinesAndStripsCrLf) {
  Write("line1\nline2\r\n");
  FakeEnv env{{"PORTICO_KEY_FILE", path_.string()}};
  EXPECT_EQ(Load({Secret()}, env.Lookup())->GetString("PORTICO_KEY"), "line1\nline2");
}

TEST_F(SecretFileTest, DirectValueAndDefault) {
  FakeEnv env{{"PORTICO_KEY", "direct"}};
  EXPECT_EQ(Load({Secret()}, env.Lookup())->GetString("PORTICO_KEY"), "direct");
  auto defaulted = Load({Secret()}, FakeEnv{}.Lookup());
  EXPECT_EQ(defaulted->GetString("PORTICO_KEY"), "dev-key");
  EXPECT_FALSE(defaulted->IsSet("PORTICO_KEY"));
}

TEST_F(SecretFileTest, BothSetIsAnError) {
  Write("from-file");
  FakeEnv env{{"PORTICO_KEY", "direct-secret"}, {"PORTICO_KEY_FILE", path_.string()}};
  auto r = Load({Secret()}, env.Lookup());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("PORTICO_KEY_FILE"), std::string::npos);
  EXPECT_EQ(r.error().message.find("direct-secret"), std::string::npos);
  EXPECT_EQ(r.error().message.find("from-file"), std::string::npos);
}

TEST_F(SecretFileTest, MissingFileNamesTheVariable) {
  FakeEnv env{{"PORTICO_KEY_FILE", "/nonexistent/portico/key"}};
  auto r = Load({Secret()}, env.Lookup());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message.rfind("PORTICO_KEY_FILE: cannot read \"/nonexistent/portico/key\"", 0),
            0u)
      << r.error().message;
}

TEST_F(SecretFileTest, BadSecretValueIsNeverEchoed) {
  Var v = Secret();
  v.kind = Kind::kInt;
  v.default_value = "1";
  auto r = LoadOne(v, "hunter2");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "PORTICO_KEY: the value is not an integer");
  Write("hunter3\n");
  FakeEnv env{{"PORTICO_KEY_FILE", path_.string()}};
  r = Load({v}, env.Lookup());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message.find("hunter3"), std::string::npos);
  EXPECT_NE(r.error().message.find("PORTICO_KEY"), std::string::npos);
}

TEST(ConfigTest, NonSecretIgnoresFileTwin) {
  FakeEnv env{{"S_FILE", "/etc/passwd"}};
  auto config = Load({MakeVar("S", Kind::kString, "d")}, env.Lookup());
  EXPECT_EQ(config->GetString("S"), "d");
}

TEST(ConfigTest, GettersRejectUndeclaredOrWrongKind) {
  auto config = Load({MakeVar("I", Kind::kInt, "1")}, FakeEnv{}.Lookup());
  ASSERT_TRUE(config.ok());
  EXPECT_THROW(config->GetInt("NOPE"), std::logic_error);
  EXPECT_THROW(config->GetString("I"), std::logic_error);
  EXPECT_THROW(config->GetBool("I"), std::logic_error);
  EXPECT_THROW((void)config->IsSet("NOPE"), std::logic_error);
}

TEST(ConfigTest, HelpTextListsVariablesDefaultsAndFlags) {
  Var addr = MakeVar("PORTICO_HTTP_ADDR", Kind::kAddress, "0.0.0.0:8080");
  addr.help = "Public REST listen address.";
  Var key = MakeVar("PORTICO_SIGNING_KEY", Kind::kString, "very-secret-default");
  key.secret = true;
  key.help = "Ed25519 signing key.";
  Var level = MakeVar("PORTICO_LOG_LEVEL", Kind::kEnum, "info");
  level.choices = {"debug", "info"};
  const std::string help = HelpText("portico-gateway", "The REST gateway.", {addr, key, level},
                                    {{"--migrate-only", "Apply migrations and exit."}});
  EXPECT_EQ(help.rfind("Usage: portico-gateway", 0), 0u);
  for (const char* part :
       {"The REST gateway.", "PORTICO_HTTP_ADDR", "Public REST listen address.",
        "default: 0.0.0.0:8080", "host:port", "PORTICO_SIGNING_KEY", "Ed25519 signing key.",
        "default: (secret)", "PORTICO_SIGNING_KEY_FILE", "one of debug, info", "--migrate-only",
        "Apply migrations and exit.", "--help"}) {
    EXPECT_NE(help.find(part), std::string::npos) << part << "\n" << help;
  }
  EXPECT_EQ(help.find("very-secret-default"), std::string::npos);
  EXPECT_EQ(help.find("PORTICO_HTTP_ADDR_FILE"), std::string::npos);
}

// LoadOrExit reads the real environment; these variables are set only inside
// the death-test child.
std::vector<Var> StartupVars() {
  return {MakeVar("PORTICO_TEST_CFG_PORT", Kind::kInt, "8080")};
}

Startup RunStartup(std::vector<std::string> args, bool allow_positional = false) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  return LoadOrExit(static_cast<int>(args.size()), argv.data(), "portico-test", "A test.",
                    StartupVars(), {{"--migrate-only", "Run migrations."}}, allow_positional);
}

TEST(LoadOrExitDeathTest, HelpExitsZero) {
  EXPECT_EXIT(RunStartup({"prog", "--help"}), ::testing::ExitedWithCode(0), "");
  EXPECT_EXIT(RunStartup({"prog", "-h"}), ::testing::ExitedWithCode(0), "");
}

TEST(LoadOrExitDeathTest, BadValueExitsTwoWithMessage) {
  EXPECT_EXIT(
      {
        ::setenv("PORTICO_TEST_CFG_PORT", "abc", 1);
        RunStartup({"prog"});
      },
      ::testing::ExitedWithCode(2),
      "portico-test: PORTICO_TEST_CFG_PORT: \"abc\" is not an integer");
}

TEST(LoadOrExitDeathTest, UnknownArgumentsExitTwo) {
  EXPECT_EXIT(RunStartup({"prog", "--bogus"}), ::testing::ExitedWithCode(2),
              "portico-test: unknown flag \"--bogus\"");
  EXPECT_EXIT(RunStartup({"prog", "serve"}), ::testing::ExitedWithCode(2),
              "portico-test: unexpected argument \"serve\"");
}

TEST(LoadOrExitTest, AcceptsDeclaredFlagsAndPositionals) {
  ::unsetenv("PORTICO_TEST_CFG_PORT");
  Startup s = RunStartup({"prog", "--migrate-only", "status"}, /*allow_positional=*/true);
  EXPECT_TRUE(s.HasFlag("--migrate-only"));
  EXPECT_FALSE(s.HasFlag("--other"));
  EXPECT_EQ(s.positional, std::vector<std::string>{"status"});
  EXPECT_EQ(s.config.GetInt("PORTICO_TEST_CFG_PORT"), 8080);
}

}  // namespace
}  // namespace portico::config
