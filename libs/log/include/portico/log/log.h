#pragma once
// Structured logging on spdlog: one JSON object per line on stdout (or text),
// with the service name and the current request's ids on every line.

#include <cstdint>
#include <functional>
#include <type_traits>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace portico::log {

enum class Level { kTrace, kDebug, kInfo, kWarn, kError, kCritical, kOff };
enum class Format { kJson, kText };

/// Parses "trace|debug|info|warn|error|critical|off" and "json|text".
bool ParseLevel(std::string_view s, Level* out);
bool ParseFormat(std::string_view s, Format* out);

/// Installs the process-wide logger writing to stdout. Call once in main()
/// before any thread logs. `service` appears as "service" on every line.
void Init(std::string_view service, Level level, Format format);

/// For tests: route output into `sink` (one call per line, without newline).
void InitForTest(std::string_view service, Level level, Format format,
                 std::function<void(std::string_view line)> sink);

/// The ids of the request the current thread works for. Fields left empty are
/// omitted from log lines.
struct Context {
  std::string request_id;
  std::string trace_id;  // 32 lower-case hex (W3C trace-context)
  std::string span_id;   // 16 lower-case hex
  /// W3C trace flags (2 hex, "01" = sampled), kept so work continued later
  /// keeps the caller's sampling decision; not logged. Empty = unknown.
  std::string trace_flags;
};

/// Sets the current thread's request context for its lifetime, restoring
/// the previous one after. Not movable.
class ScopedContext {
 public:
  explicit ScopedContext(Context ctx);
  ~ScopedContext();
  ScopedContext(const ScopedContext&) = delete;
  ScopedContext& operator=(const ScopedContext&) = delete;

 private:
  Context previous_;
};

/// The current thread's context (empty outside a request).
const Context& CurrentContext();

using Value = std::variant<std::string_view, std::int64_t, double, bool>;
struct Field {
  std::string_view key;
  Value value;
  Field(std::string_view k, std::string_view v) : key(k), value(v) {}
  Field(std::string_view k, const char* v) : key(k), value(std::string_view(v)) {}
  Field(std::string_view k, const std::string& v) : key(k), value(std::string_view(v)) {}
  Field(std::string_view k, bool v) : key(k), value(v) {}
  Field(std::string_view k, double v) : key(k), value(v) {}
  template <typename I>
    requires std::is_integral_v<I>
  Field(std::string_view k, I v) : key(k), value(static_cast<std::int64_t>(v)) {}
};
using Fields = std::initializer_list<Field>;

/// Logs `msg` with event fields at a level. Thread-safe. Keys "ts", "level",
/// "service", "msg", "request_id", "trace_id", "span_id" are reserved.
void Log(Level level, std::string_view msg, Fields fields = {});
inline void Debug(std::string_view msg, Fields f = {}) { Log(Level::kDebug, msg, f); }
inline void Info(std::string_view msg, Fields f = {}) { Log(Level::kInfo, msg, f); }
inline void Warn(std::string_view msg, Fields f = {}) { Log(Level::kWarn, msg, f); }
inline void Error(std::string_view msg, Fields f = {}) { Log(Level::kError, msg, f); }

/// Flushes buffered output (call before exit).
void Flush();

}  // namespace portico::log
