#include "portico/log/log.h"

#include <boost/json.hpp>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <latch>
#include <mutex>
#include <regex>
#include <string>
#include <thread>
#include <vector>

namespace portico::log {
namespace {

namespace json = boost::json;

class LogTest : public ::testing::Test {
 protected:
  void Capture(Level level, Format format, std::string_view service = "users") {
    InitForTest(service, level, format, [this](std::string_view line) {
      std::lock_guard lock(mu_);
      lines_.emplace_back(line);
    });
  }
  std::vector<std::string> Lines() {
    std::lock_guard lock(mu_);
    return lines_;
  }
  // The only captured line, parsed; fails the test unless exactly one.
  json::object OnlyJson() {
    auto lines = Lines();
    EXPECT_EQ(lines.size(), 1u);
    if (lines.empty()) return {};
    boost::system::error_code ec;
    json::value v = json::parse(lines.back(), ec);
    EXPECT_FALSE(ec) << ec.message() << ": " << lines.back();
    EXPECT_TRUE(v.is_object()) << lines.back();
    return v.is_object() ? v.as_object() : json::object{};
  }

  std::mutex mu_;
  std::vector<std::string> lines_;  // Guarded by mu_.
};

const std::regex kTimestamp(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z)");

TEST_F(LogTest, JsonLineHasStandardKeysAndFields) {
  Capture(Level::kInfo, Format::kJson);
  Info("user created", {{"user_id", "u-1"},
                        {"count", 3},
                        {"big", std::int64_t{-9007199254740993}},
                        {"ratio", 0.25},
                        {"admin", true},
                        {"name", std::string("Ann")}});
  json::object o = OnlyJson();
  EXPECT_TRUE(std::regex_match(std::string(o.at("ts").as_string()), kTimestamp))
      << o.at("ts").as_string();
  EXPECT_EQ(o.at("level").as_string(), "info");
  EXPECT_EQ(o.at("service").as_string(), "users");
  EXPECT_EQ(o.at("msg").as_string(), "user created");
  EXPECT_EQ(o.at("user_id").as_string(), "u-1");
  EXPECT_EQ(o.at("count").as_int64(), 3);
  EXPECT_EQ(o.at("big").as_int64(), -9007199254740993);
  EXPECT_EQ(o.at("ratio").as_double(), 0.25);
  EXPECT_EQ(o.at("admin").as_bool(), true);
  EXPECT_EQ(o.at("name").as_string(), "Ann");
  EXPECT_FALSE(o.contains("request_id"));
  EXPECT_FALSE(o.contains("trace_id"));
  EXPECT_FALSE(o.contains("span_id"));
  EXPECT_EQ(o.size(), 10u);
}

TEST_F(LogTest, TimestampIsCurrentUtc) {
  Capture(Level::kInfo, Format::kJson);
  const std::time_t before = std::time(nullptr);
  Info("x");
  const std::time_t after = std::time(nullptr);
  std::string ts(OnlyJson().at("ts").as_string());
  std::tm tm{};
  ASSERT_NE(strptime(ts.c_str(), "%Y-%m-%dT%H:%M:%S", &tm), nullptr) << ts;
  const std::time_t logged = timegm(&tm);
  EXPECT_GE(logged, before);
  EXPECT_LE(logged, after);
}

TEST_F(LogTest, JsonEscapesQuotesNewlinesAndControlCharacters) {
  Capture(Level::kInfo, Format::kJson);
  const std::string msg = std::string("say \"hi\"\\ \n\r\t\b\f end") + '\x01' + '\x1f' + '\x7f';
  Info(msg, {{"k\"ey", "v\nv"}});
  const std::string raw = Lines().at(0);
  EXPECT_EQ(raw.find('\n'), std::string::npos);
  EXPECT_NE(raw.find("\\u0001"), std::string::npos) << raw;
  EXPECT_NE(raw.find("\\u001f"), std::string::npos) << raw;
  json::object o = OnlyJson();
  EXPECT_EQ(o.at("msg").as_string(), msg);
  EXPECT_EQ(o.at("k\"ey").as_string(), "v\nv");
}

TEST_F(LogTest, InvalidUtf8IsReplaced) {
  Capture(Level::kInfo, Format::kJson);
  // Lone continuation, truncated sequence, overlong '/', UTF-16 surrogate,
  // beyond U+10FFFF; valid multi-byte characters stay intact.
  Info("a\xff" "b\xc3" "c\xc0\xaf" "d\xed\xa0\x80" "e\xf4\x90\x80\x80" "f é 😀",
       {{"bad", "\x80"}});
  json::object o = OnlyJson();  // Boost.JSON rejects invalid UTF-8.
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(o.at("msg").as_string(), "a" + r + "b" + r + "c" + r + r + "d" + r + r + r + "e" + r +
                                         r + r + r + "f é 😀");
  EXPECT_EQ(o.at("bad").as_string(), r);
}

TEST_F(LogTest, ReservedFieldKeysDoNotDuplicateStandardKeys) {
  Capture(Level::kInfo, Format::kJson);
  ScopedContext scope({"req-1", "", ""});
  Info("real message", {{"msg", "fake"}, {"level", "fake"}, {"request_id", "fake"}});
  const std::string raw = Lines().at(0);
  for (const char* key : {"\"msg\":", "\"level\":", "\"request_id\":"}) {
    EXPECT_EQ(raw.find(key), raw.rfind(key)) << key << " appears twice in " << raw;
  }
  json::object o = OnlyJson();
  EXPECT_EQ(o.at("msg").as_string(), "real message");
  EXPECT_EQ(o.at("level").as_string(), "info");
  EXPECT_EQ(o.at("request_id").as_string(), "req-1");
  EXPECT_EQ(o.at("fields.msg").as_string(), "fake");
}

TEST_F(LogTest, NonFiniteDoublesStayValidJson) {
  Capture(Level::kInfo, Format::kJson);
  Info("x", {{"nan", std::nan("")}, {"inf", 1.0 / 0.0}});
  json::object o = OnlyJson();
  EXPECT_EQ(o.at("nan").as_string(), "NaN");
  EXPECT_EQ(o.at("inf").as_string(), "+Inf");
}

TEST_F(LogTest, ContextScopesNestAndRestore) {
  Capture(Level::kInfo, Format::kJson);
  EXPECT_TRUE(CurrentContext().request_id.empty());
  {
    ScopedContext outer({"outer", "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"});
    Info("1");
    {
      ScopedContext inner({"inner", "", ""});
      Info("2");
      EXPECT_EQ(CurrentContext().request_id, "inner");
    }
    Info("3");
    EXPECT_EQ(CurrentContext().request_id, "outer");
  }
  Info("4");
  EXPECT_TRUE(CurrentContext().request_id.empty());

  auto lines = Lines();
  ASSERT_EQ(lines.size(), 4u);
  auto o1 = json::parse(lines[0]).as_object();
  EXPECT_EQ(o1.at("request_id").as_string(), "outer");
  EXPECT_EQ(o1.at("trace_id").as_string(), "0af7651916cd43dd8448eb211c80319c");
  EXPECT_EQ(o1.at("span_id").as_string(), "b7ad6b7169203331");
  auto o2 = json::parse(lines[1]).as_object();
  EXPECT_EQ(o2.at("request_id").as_string(), "inner");
  EXPECT_FALSE(o2.contains("trace_id"));
  EXPECT_FALSE(o2.contains("span_id"));
  auto o3 = json::parse(lines[2]).as_object();
  EXPECT_EQ(o3.at("request_id").as_string(), "outer");
  EXPECT_EQ(o3.at("trace_id").as_string(), "0af7651916cd43dd8448eb211c80319c");
  auto o4 = json::parse(lines[3]).as_object();
  EXPECT_FALSE(o4.contains("request_id"));
  EXPECT_FALSE(o4.contains("trace_id"));
}

TEST_F(LogTest, ContextIsPerThread) {
  Capture(Level::kInfo, Format::kJson);
  std::latch a_has_context(1);
  std::latch b_logged(1);
  std::thread a([&] {
    ScopedContext scope({"thread-a", "", ""});
    a_has_context.count_down();
    b_logged.wait();  // b logs while a's context is live.
    Info("from a");
  });
  std::thread b([&] {
    a_has_context.wait();
    Info("from b");
    b_logged.count_down();
  });
  a.join();
  b.join();
  auto lines = Lines();
  ASSERT_EQ(lines.size(), 2u);
  for (const auto& line : lines) {
    auto o = json::parse(line).as_object();
    if (o.at("msg").as_string() == "from a") {
      EXPECT_EQ(o.at("request_id").as_string(), "thread-a");
    } else {
      EXPECT_FALSE(o.contains("request_id")) << line;
    }
  }
}

TEST_F(LogTest, ConcurrentLinesAreWholeAndComplete) {
  Capture(Level::kInfo, Format::kJson);
  constexpr int kThreads = 4, kPerThread = 200;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t] {
      for (int i = 0; i < kPerThread; ++i) Info("line", {{"t", t}, {"i", i}});
    });
  }
  for (auto& th : threads) th.join();
  auto lines = Lines();
  ASSERT_EQ(lines.size(), static_cast<std::size_t>(kThreads * kPerThread));
  for (const auto& line : lines) {
    boost::system::error_code ec;
    json::parse(line, ec);
    ASSERT_FALSE(ec) << line;
  }
}

TEST_F(LogTest, LevelFiltering) {
  Capture(Level::kWarn, Format::kJson);
  Debug("d");
  Info("i");
  Warn("w");
  Error("e");
  Log(Level::kCritical, "c");
  Log(Level::kOff, "never");
  auto lines = Lines();
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(json::parse(lines[0]).at("level").as_string(), "warn");
  EXPECT_EQ(json::parse(lines[1]).at("level").as_string(), "error");
  EXPECT_EQ(json::parse(lines[2]).at("level").as_string(), "critical");

  lines_.clear();
  Capture(Level::kOff, Format::kJson);
  Error("e");
  EXPECT_TRUE(Lines().empty());

  Capture(Level::kTrace, Format::kJson);
  Log(Level::kTrace, "t");
  ASSERT_EQ(Lines().size(), 1u);
  EXPECT_EQ(json::parse(Lines()[0]).at("level").as_string(), "trace");
}

TEST_F(LogTest, TextFormat) {
  Capture(Level::kDebug, Format::kText);
  ScopedContext scope({"req-7", "", ""});
  Debug("request done", {{"status", 200}, {"route", "/v1/users"}, {"note", "two words"},
                         {"ok", true}, {"empty", ""}});
  auto lines = Lines();
  ASSERT_EQ(lines.size(), 1u);
  const std::regex expected(
      R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z DEBUG users request done request_id=req-7 )"
      R"(status=200 route=/v1/users note="two words" ok=true empty="")");
  EXPECT_TRUE(std::regex_match(lines[0], expected)) << lines[0];
}

TEST_F(LogTest, TextFormatKeepsOneLine) {
  Capture(Level::kInfo, Format::kText);
  Info("multi\nline", {{"v", "a\nb"}});
  auto lines = Lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].find('\n'), std::string::npos);
  EXPECT_NE(lines[0].find(" INFO users multi\\nline v=\"a\\nb\""), std::string::npos) << lines[0];
}

TEST(LogParseTest, LevelsAndFormats) {
  Level level = Level::kInfo;
  EXPECT_TRUE(ParseLevel("debug", &level));
  EXPECT_EQ(level, Level::kDebug);
  EXPECT_TRUE(ParseLevel("off", &level));
  EXPECT_EQ(level, Level::kOff);
  EXPECT_FALSE(ParseLevel("verbose", &level));
  EXPECT_EQ(level, Level::kOff);
  Format format = Format::kJson;
  EXPECT_TRUE(ParseFormat("text", &format));
  EXPECT_EQ(format, Format::kText);
  EXPECT_FALSE(ParseFormat("xml", &format));
}

// Runs `body` with stdout redirected into a pipe; returns what it wrote.
template <typename F>
std::string CaptureStdout(F body) {
  int fds[2];
  if (pipe(fds) != 0) std::abort();
  std::fflush(stdout);
  const int saved = dup(STDOUT_FILENO);
  dup2(fds[1], STDOUT_FILENO);
  body();
  std::fflush(stdout);
  dup2(saved, STDOUT_FILENO);
  close(fds[1]);
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  return out;
}

// Exits 0 iff `check` accepts the line that `body` wrote to stdout.
template <typename F, typename C>
void ExitWithVerdict(F body, C check) {
  const std::string out = CaptureStdout(body);
  const bool ok = check(out);
  if (!ok) std::fprintf(stderr, "unexpected output: %s\n", out.c_str());
  std::_Exit(ok ? 0 : 1);
}

// These run in a freshly executed process, where nothing has called Init.
TEST(LogStdoutDeathTest, LogBeforeInitUsesDefaults) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(ExitWithVerdict([] { Debug("hidden"); Info("early"); Flush(); },
                              [](const std::string& out) {
                                if (out.empty() || out.back() != '\n') return false;
                                if (out.find('\n') != out.size() - 1) return false;  // one line
                                auto o = json::parse(out).as_object();
                                return o.at("service").as_string() == "portico" &&
                                       o.at("level").as_string() == "info" &&
                                       o.at("msg").as_string() == "early";
                              }),
              ::testing::ExitedWithCode(0), "");
}

TEST(LogStdoutDeathTest, InitWritesLinesToStdout) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(ExitWithVerdict(
                  [] {
                    Init("gateway", Level::kDebug, Format::kText);
                    Debug("started", {{"port", 8080}});
                    Flush();
                  },
                  [](const std::string& out) {
                    return std::regex_match(out, std::regex(R"(\S+Z DEBUG gateway started port=8080\n)"));
                  }),
              ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace portico::log
