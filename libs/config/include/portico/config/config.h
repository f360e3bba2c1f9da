#pragma once
// Typed configuration from environment variables. One table of variables
// drives parsing, defaults, `*_FILE` secrets and the `--help` text, so they
// cannot drift apart.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "portico/core/result.h"

namespace portico::config {

enum class Kind {
  kString,
  kInt,       // decimal integer, optionally bounded by Var::min/max
  kBool,      // true/false/1/0/yes/no/on/off (case-insensitive)
  kDuration,  // "250ms", "10s", "5m", "2h", "30d"; a bare number is seconds
  kAddress,   // "host:port" or ":port"; port 0-65535
  kSize,      // bytes: "1048576", "512KiB", "1MiB", "2GiB"
  kEnum,      // one of Var::choices (case-insensitive), stored lower-case
};

struct Var {
  std::string name;           // e.g. "PORTICO_HTTP_ADDR"
  Kind kind = Kind::kString;
  std::string default_value;  // used when unset; "" with required=true means no default
  std::string help;           // one line for --help
  bool secret = false;        // may come from NAME_FILE; value never printed
  bool required = false;
  std::int64_t min = INT64_MIN;  // kInt bounds
  std::int64_t max = INT64_MAX;
  std::vector<std::string> choices;  // kEnum
};

/// Looks a variable up; the default reads the process environment.
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;
EnvLookup ProcessEnv();

struct Address {
  std::string host;  // "" means all interfaces ("0.0.0.0")
  std::uint16_t port = 0;
  std::string ToString() const;  // "host:port" with "0.0.0.0" for an empty host
};

/// Parsed values, by variable name. Getters on a name that was not declared,
/// or of another kind, are bugs (they throw std::logic_error).
class Config {
 public:
  const std::string& GetString(std::string_view name) const;
  std::int64_t GetInt(std::string_view name) const;
  bool GetBool(std::string_view name) const;
  std::chrono::milliseconds GetDuration(std::string_view name) const;
  Address GetAddress(std::string_view name) const;
  std::uint64_t GetSize(std::string_view name) const;
  /// True if the variable (or its _FILE twin) was set rather than defaulted.
  bool IsSet(std::string_view name) const;

 private:
  friend Result<Config> Load(const std::vector<Var>&, const EnvLookup&);
  const std::string& Raw(std::string_view name, Kind kind) const;

  // Validated text of each variable (enum values lower-cased); getters parse it.
  std::map<std::string, std::string, std::less<>> raw_;
  std::map<std::string, bool, std::less<>> set_;
  std::map<std::string, Kind, std::less<>> kinds_;
};

/// Parses every variable. kInvalidArgument naming the variable and the
/// expected form on the first bad value (a secret's value is never echoed).
/// For secrets, NAME_FILE is read (trailing newline stripped) when NAME is
/// unset; both set is an error.
Result<Config> Load(const std::vector<Var>& vars, const EnvLookup& env = ProcessEnv());

/// The --help text: usage line, summary, then each variable with its
/// default and help, and the flags.
std::string HelpText(std::string_view program, std::string_view summary,
                     const std::vector<Var>& vars,
                     const std::vector<std::pair<std::string, std::string>>& flags = {});

/// For main(): handles `--help`/`-h` (prints HelpText, exits 0), rejects
/// unknown arguments, and loads the config; on error prints
/// "<program>: <message>" to stderr and exits 2. Arguments listed in `flags`
/// (e.g. "--migrate-only") are accepted and reported in `present_flags`.
struct Startup {
  Config config;
  std::vector<std::string> present_flags;
  std::vector<std::string> positional;  // e.g. a sub-command name
  bool HasFlag(std::string_view flag) const;
};
Startup LoadOrExit(int argc, char** argv, std::string_view program, std::string_view summary,
                   const std::vector<Var>& vars,
                   const std::vector<std::pair<std::string, std::string>>& flags = {},
                   bool allow_positional = false);

}  // namespace portico::config
