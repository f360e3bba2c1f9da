#include "portico/log/log.h"

#include <fmt/format.h>
#include <spdlog/logger.h>
#include <spdlog/sinks/base_sink.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <ctime>
#include <iterator>
#include <memory>
#include <mutex>
#include <cstdio>
#include <cstdlib>
#include <thread>

namespace portico::log {
namespace {

// What Init installs. Replaced as a whole, never mutated, so a thread that
// loaded it can keep using it while another thread re-initialises.
struct State {
  std::string service;
  Format format = Format::kJson;
  std::shared_ptr<spdlog::logger> logger;
};

// Read on every Log call before any formatting, hence separate from State.
std::atomic<int> g_level{static_cast<int>(Level::kInfo)};
std::atomic<std::shared_ptr<const State>> g_state;

thread_local Context t_context;

class CallbackSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit CallbackSink(std::function<void(std::string_view)> fn) : fn_(std::move(fn)) {}

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    fn_(std::string_view(msg.payload.data(), msg.payload.size()));
  }
  void flush_() override {}

 private:
  std::function<void(std::string_view)> fn_;
};

std::shared_ptr<const State> MakeState(std::string_view service, Format format,
                                       spdlog::sink_ptr sink) {
  sink->set_pattern("%v");
  auto logger = std::make_shared<spdlog::logger>("portico", std::move(sink));
  logger->set_level(spdlog::level::trace);  // Filtering happens in Log().
  return std::make_shared<const State>(State{std::string(service), format, std::move(logger)});
}

// Lines to stdout through stdio's buffer: spdlog's stdout sink flushes after
// every line, a write(2) per request per process, a cost that showed in
// profiles under load. Lines at warn and above are flushed at once, the
// rest by the flusher below at most kFlushInterval later, and everything at
// Flush() and exit.
class BufferedStdoutSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  BufferedStdoutSink() {
    static std::once_flag once;
    std::call_once(once, [] { std::setvbuf(stdout, nullptr, _IOFBF, 1 << 16); });
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    std::fwrite(msg.payload.data(), 1, msg.payload.size(), stdout);
    std::fputc('\n', stdout);
  }
  void flush_() override { std::fflush(stdout); }
};

constexpr auto kFlushInterval = std::chrono::milliseconds(100);

// Flushes the installed logger every kFlushInterval, from the first Init to
// the end of the process.
// The flusher stops touching g_state once exit has begun (the handler runs
// before g_state is destroyed: it is registered after g_state was made).
std::mutex g_flush_mu;
bool g_exiting = false;  // guarded by g_flush_mu

void StartFlusher() {
  static std::once_flag once;
  std::call_once(once, [] {
    std::thread([] {
      for (;;) {
        std::this_thread::sleep_for(kFlushInterval);
        std::lock_guard lock(g_flush_mu);
        if (g_exiting) return;
        if (auto state = g_state.load()) state->logger->flush();
      }
    }).detach();
    std::atexit([] {
      std::lock_guard lock(g_flush_mu);
      g_exiting = true;
      if (auto state = g_state.load()) state->logger->flush();
    });
  });
}

std::shared_ptr<const State> StdoutState(std::string_view service, Format format) {
  auto state = MakeState(service, format, std::make_shared<BufferedStdoutSink>());
  state->logger->flush_on(spdlog::level::warn);
  return state;
}

void Install(std::shared_ptr<const State> state, Level level) {
  g_level.store(static_cast<int>(level), std::memory_order_relaxed);
  auto old = g_state.exchange(std::move(state));
  if (old) old->logger->flush();
}

// The installed state, or the default (service "portico", json, stdout) when
// Log runs before Init.
std::shared_ptr<const State> CurrentState() {
  auto state = g_state.load();
  if (state) return state;
  auto fresh = StdoutState("portico", Format::kJson);
  if (g_state.compare_exchange_strong(state, fresh)) return fresh;
  return state;  // Another thread installed one first.
}

spdlog::level::level_enum ToSpdlog(Level level) {
  switch (level) {
    case Level::kTrace: return spdlog::level::trace;
    case Level::kDebug: return spdlog::level::debug;
    case Level::kInfo: return spdlog::level::info;
    case Level::kWarn: return spdlog::level::warn;
    case Level::kError: return spdlog::level::err;
    case Level::kCritical: return spdlog::level::critical;
    case Level::kOff: return spdlog::level::off;
  }
  return spdlog::level::info;
}

std::string_view LevelName(Level level, Format format) {
  static constexpr std::string_view kJson[] = {"trace", "debug", "info", "warn",
                                                "error", "critical", "off"};
  static constexpr std::string_view kText[] = {"TRACE", "DEBUG", "INFO", "WARN",
                                                "ERROR", "CRITICAL", "OFF"};
  const auto i = static_cast<std::size_t>(level);
  return format == Format::kJson ? kJson[i] : kText[i];
}

using Buffer = fmt::memory_buffer;

void Append(Buffer& out, std::string_view s) { out.append(s.data(), s.data() + s.size()); }

// Length of the valid UTF-8 sequence starting at s[i], or 0 if it is not one
// (truncated, overlong, surrogate or beyond U+10FFFF).
std::size_t Utf8SequenceLength(std::string_view s, std::size_t i) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = byte(i);
  std::size_t len = 0;
  char32_t cp = 0;
  char32_t min = 0;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2, cp = c & 0x1F, min = 0x80;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3, cp = c & 0x0F, min = 0x800;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4, cp = c & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (std::size_t k = 1; k < len; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

// Escapes `s` for a JSON string body (quote = true) or for an unquoted text
// message (quote = false: only control characters). Invalid UTF-8 becomes
// U+FFFD either way, so every line is valid UTF-8.
void AppendEscaped(Buffer& out, std::string_view s, bool quote) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      const std::size_t len = Utf8SequenceLength(s, i);
      if (len == 0) {
        Append(out, "\xEF\xBF\xBD");
        ++i;
      } else {
        Append(out, s.substr(i, len));
        i += len;
      }
      continue;
    }
    ++i;
    switch (c) {
      case '"': Append(out, quote ? "\\\"" : "\""); continue;
      case '\\': Append(out, quote ? "\\\\" : "\\"); continue;
      case '\n': Append(out, "\\n"); continue;
      case '\r': Append(out, "\\r"); continue;
      case '\t': Append(out, "\\t"); continue;
      case '\b': Append(out, "\\b"); continue;
      case '\f': Append(out, "\\f"); continue;
      default: break;
    }
    if (c < 0x20) {
      const char esc[] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xF]};
      out.append(esc, esc + sizeof(esc));
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
}

void AppendJsonString(Buffer& out, std::string_view s) {
  out.push_back('"');
  AppendEscaped(out, s, true);
  out.push_back('"');
}

// logfmt: bare when unambiguous, else quoted with JSON escapes.
void AppendTextValue(Buffer& out, std::string_view s) {
  bool bare = !s.empty();
  for (unsigned char c : s) {
    if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c >= 0x7F) {
      bare = false;
      break;
    }
  }
  if (bare) {
    Append(out, s);
  } else {
    AppendJsonString(out, s);
  }
}

// Numbers and bools print the same in both formats; non-finite doubles are
// not JSON numbers and print as strings.
void AppendValue(Buffer& out, const Value& value, Format format) {
  if (const auto* s = std::get_if<std::string_view>(&value)) {
    format == Format::kJson ? AppendJsonString(out, *s) : AppendTextValue(out, *s);
  } else if (const auto* i = std::get_if<std::int64_t>(&value)) {
    fmt::format_to(std::back_inserter(out), "{}", *i);
  } else if (const auto* d = std::get_if<double>(&value)) {
    if (std::isfinite(*d)) {
      fmt::format_to(std::back_inserter(out), "{}", *d);
    } else {
      const std::string_view text = std::isnan(*d) ? "NaN" : (*d > 0 ? "+Inf" : "-Inf");
      format == Format::kJson ? AppendJsonString(out, text) : Append(out, text);
    }
  } else {
    Append(out, std::get<bool>(value) ? "true" : "false");
  }
}

void AppendTimestamp(Buffer& out, std::chrono::system_clock::time_point now) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch());
  const std::time_t secs = static_cast<std::time_t>(std::chrono::floor<std::chrono::seconds>(ms).count());
  std::tm tm{};
  gmtime_r(&secs, &tm);
  fmt::format_to(std::back_inserter(out), "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 static_cast<int>(ms.count() - static_cast<std::int64_t>(secs) * 1000));
}

bool IsReserved(std::string_view key) {
  return key == "ts" || key == "level" || key == "service" || key == "msg" ||
         key == "request_id" || key == "trace_id" || key == "span_id";
}

void FormatJson(Buffer& out, const State& state, Level level, std::string_view msg,
                Fields fields) {
  Append(out, "{\"ts\":\"");
  AppendTimestamp(out, std::chrono::system_clock::now());
  Append(out, "\",\"level\":\"");
  Append(out, LevelName(level, Format::kJson));
  Append(out, "\",\"service\":");
  AppendJsonString(out, state.service);
  Append(out, ",\"msg\":");
  AppendJsonString(out, msg);
  const Context& ctx = t_context;
  for (auto [key, value] : {std::pair<std::string_view, std::string_view>{"request_id",
                                                                          ctx.request_id},
                            {"trace_id", ctx.trace_id},
                            {"span_id", ctx.span_id}}) {
    if (value.empty()) continue;
    Append(out, ",\"");
    Append(out, key);
    Append(out, "\":");
    AppendJsonString(out, value);
  }
  for (const Field& field : fields) {
    out.push_back(',');
    out.push_back('"');
    // A reserved key would duplicate a standard one; keep it, renamed.
    if (IsReserved(field.key)) Append(out, "fields.");
    AppendEscaped(out, field.key, true);
    Append(out, "\":");
    AppendValue(out, field.value, Format::kJson);
  }
  out.push_back('}');
}

void FormatText(Buffer& out, const State& state, Level level, std::string_view msg,
                Fields fields) {
  AppendTimestamp(out, std::chrono::system_clock::now());
  out.push_back(' ');
  Append(out, LevelName(level, Format::kText));
  out.push_back(' ');
  AppendEscaped(out, state.service, false);
  out.push_back(' ');
  AppendEscaped(out, msg, false);
  const Context& ctx = t_context;
  for (auto [key, value] : {std::pair<std::string_view, std::string_view>{"request_id",
                                                                          ctx.request_id},
                            {"trace_id", ctx.trace_id},
                            {"span_id", ctx.span_id}}) {
    if (value.empty()) continue;
    out.push_back(' ');
    Append(out, key);
    out.push_back('=');
    AppendTextValue(out, value);
  }
  for (const Field& field : fields) {
    out.push_back(' ');
    if (IsReserved(field.key)) Append(out, "fields.");
    AppendEscaped(out, field.key, false);
    out.push_back('=');
    AppendValue(out, field.value, Format::kText);
  }
}

}  // namespace

bool ParseLevel(std::string_view s, Level* out) {
  static constexpr std::pair<std::string_view, Level> kLevels[] = {
      {"trace", Level::kTrace}, {"debug", Level::kDebug}, {"info", Level::kInfo},
      {"warn", Level::kWarn},   {"error", Level::kError}, {"critical", Level::kCritical},
      {"off", Level::kOff}};
  for (const auto& [name, level] : kLevels) {
    if (name == s) {
      *out = level;
      return true;
    }
  }
  return false;
}

bool ParseFormat(std::string_view s, Format* out) {
  if (s == "json") {
    *out = Format::kJson;
  } else if (s == "text") {
    *out = Format::kText;
  } else {
    return false;
  }
  return true;
}

void Init(std::string_view service, Level level, Format format) {
  Install(StdoutState(service, format), level);
  StartFlusher();
}

void InitForTest(std::string_view service, Level level, Format format,
                 std::function<void(std::string_view line)> sink) {
  Install(MakeState(service, format, std::make_shared<CallbackSink>(std::move(sink))), level);
}

ScopedContext::ScopedContext(Context ctx) : previous_(std::move(t_context)) {
  t_context = std::move(ctx);
}

ScopedContext::~ScopedContext() { t_context = std::move(previous_); }

const Context& CurrentContext() { return t_context; }

void Log(Level level, std::string_view msg, Fields fields) {
  if (level == Level::kOff || static_cast<int>(level) < g_level.load(std::memory_order_relaxed)) {
    return;
  }
  const auto state = CurrentState();
  thread_local Buffer buffer;
  buffer.clear();
  if (state->format == Format::kJson) {
    FormatJson(buffer, *state, level, msg, fields);
  } else {
    FormatText(buffer, *state, level, msg, fields);
  }
  state->logger->log(ToSpdlog(level), spdlog::string_view_t(buffer.data(), buffer.size()));
}

void Flush() {
  if (auto state = g_state.load()) state->logger->flush();
}

}  // namespace portico::log
