#include "portico/config/config.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <stdexcept>

namespace portico::config {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// A whole-string unsigned decimal; nullopt on anything else or overflow.
std::optional<std::uint64_t> ParseUnsigned(std::string_view s) {
  if (s.empty() || s.front() == '+' || s.front() == '-') return std::nullopt;
  std::uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

std::optional<std::int64_t> ParseInt(std::string_view s) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  if (s.empty()) return std::nullopt;
  std::int64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

std::optional<bool> ParseBool(std::string_view s) {
  const std::string v = Lower(s);
  if (v == "true" || v == "1" || v == "yes" || v == "on") return true;
  if (v == "false" || v == "0" || v == "no" || v == "off") return false;
  return std::nullopt;
}

// Splits "<digits><unit>" at the first non-digit.
std::pair<std::string_view, std::string> SplitNumberUnit(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
  return {s.substr(0, i), Lower(s.substr(i))};
}

std::optional<std::chrono::milliseconds> ParseDuration(std::string_view s) {
  auto [digits, unit] = SplitNumberUnit(s);
  auto n = ParseUnsigned(digits);
  if (!n) return std::nullopt;
  std::uint64_t scale = 0;
  if (unit == "ms") {
    scale = 1;
  } else if (unit.empty() || unit == "s") {
    scale = 1000;
  } else if (unit == "m") {
    scale = 60'000;
  } else if (unit == "h") {
    scale = 3'600'000;
  } else if (unit == "d") {
    scale = 86'400'000;
  } else {
    return std::nullopt;
  }
  std::uint64_t ms = 0;
  if (__builtin_mul_overflow(*n, scale, &ms) || ms > static_cast<std::uint64_t>(INT64_MAX)) {
    return std::nullopt;
  }
  return std::chrono::milliseconds(static_cast<std::int64_t>(ms));
}

std::optional<std::uint64_t> ParseSize(std::string_view s) {
  auto [digits, unit] = SplitNumberUnit(s);
  auto n = ParseUnsigned(digits);
  if (!n) return std::nullopt;
  int shift = 0;
  if (unit.empty() || unit == "b") {
    shift = 0;
  } else if (unit == "kib") {
    shift = 10;
  } else if (unit == "mib") {
    shift = 20;
  } else if (unit == "gib") {
    shift = 30;
  } else if (unit == "tib") {
    shift = 40;
  } else {
    return std::nullopt;
  }
  if (shift > 0 && *n > (UINT64_MAX >> shift)) return std::nullopt;
  return *n << shift;
}

bool IsHostChar(char c, bool bracketed) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  if (c == '.' || c == '-' || c == '_') return true;
  return bracketed && (c == ':' || c == '%');
}

std::optional<Address> ParseAddress(std::string_view s) {
  const std::size_t colon = s.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  std::string_view host = s.substr(0, colon);
  const std::string_view port_text = s.substr(colon + 1);
  bool bracketed = false;
  if (!host.empty() && host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') return std::nullopt;
    host = host.substr(1, host.size() - 2);
    bracketed = true;
  }
  if (!std::all_of(host.begin(), host.end(), [&](char c) { return IsHostChar(c, bracketed); })) {
    return std::nullopt;
  }
  if (port_text.size() > 5) return std::nullopt;
  auto port = ParseUnsigned(port_text);
  if (!port || *port > 65535) return std::nullopt;
  return Address{std::string(host), static_cast<std::uint16_t>(*port)};
}

std::string Join(const std::vector<std::string>& items, std::string_view sep) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += sep;
    out += item;
  }
  return out;
}

// The expected form of a kind, as error messages and --help phrase it.
std::string ExpectedForm(const Var& var) {
  switch (var.kind) {
    case Kind::kString:
      return "a string";
    case Kind::kInt:
      if (var.min != INT64_MIN && var.max != INT64_MAX) {
        return "an integer in [" + std::to_string(var.min) + ", " + std::to_string(var.max) + "]";
      }
      if (var.min != INT64_MIN) return "an integer >= " + std::to_string(var.min);
      if (var.max != INT64_MAX) return "an integer <= " + std::to_string(var.max);
      return "an integer";
    case Kind::kBool:
      return "a boolean (true/false, 1/0, yes/no, on/off)";
    case Kind::kDuration:
      return "a duration (e.g. 250ms, 10s, 5m, 2h, 30d; bare number = seconds)";
    case Kind::kAddress:
      return "host:port";
    case Kind::kSize:
      return "a size in bytes (e.g. 1048576, 512KiB, 1MiB, 2GiB)";
    case Kind::kEnum:
      return "one of " + Join(var.choices, ", ");
  }
  return "a valid value";
}

// Validates `value` for `var`; on success returns the text to store.
std::optional<std::string> Validate(const Var& var, const std::string& value) {
  switch (var.kind) {
    case Kind::kString:
      if (var.required && value.empty()) return std::nullopt;
      return value;
    case Kind::kInt: {
      auto v = ParseInt(value);
      if (!v || *v < var.min || *v > var.max) return std::nullopt;
      return std::to_string(*v);
    }
    case Kind::kBool:
      if (!ParseBool(value)) return std::nullopt;
      return value;
    case Kind::kDuration:
      if (!ParseDuration(value)) return std::nullopt;
      return value;
    case Kind::kAddress:
      if (!ParseAddress(value)) return std::nullopt;
      return value;
    case Kind::kSize:
      if (!ParseSize(value)) return std::nullopt;
      return value;
    case Kind::kEnum: {
      std::string v = Lower(value);
      for (const auto& choice : var.choices) {
        if (Lower(choice) == v) return v;
      }
      return std::nullopt;
    }
  }
  return std::nullopt;
}

Error Invalid(const std::string& name, std::string message, std::string expected) {
  return Error::InvalidArgument(name + ": " + message, {{name, std::move(expected)}});
}

// Reads a secret file, stripping one trailing newline (as `echo` leaves).
std::optional<std::string> ReadSecretFile(const std::string& path, std::string* why) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *why = std::strerror(errno);
    return std::nullopt;
  }
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) {
    *why = "read error";
    return std::nullopt;
  }
  if (!data.empty() && data.back() == '\n') data.pop_back();
  if (!data.empty() && data.back() == '\r') data.pop_back();
  return data;
}

[[noreturn]] void Die(std::string_view program, std::string_view message) {
  std::fflush(stdout);
  std::fprintf(stderr, "%.*s: %.*s\n", static_cast<int>(program.size()), program.data(),
               static_cast<int>(message.size()), message.data());
  std::exit(2);
}

}  // namespace

EnvLookup ProcessEnv() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

std::string Address::ToString() const {
  std::string h = host.empty() ? "0.0.0.0" : host;
  if (h.find(':') != std::string::npos) h = "[" + h + "]";
  return h + ":" + std::to_string(port);
}

const std::string& Config::Raw(std::string_view name, Kind kind) const {
  auto kind_it = kinds_.find(name);
  if (kind_it == kinds_.end()) {
    throw std::logic_error("config: undeclared variable " + std::string(name));
  }
  if (kind_it->second != kind) {
    throw std::logic_error("config: variable " + std::string(name) + " read as the wrong kind");
  }
  return raw_.find(name)->second;
}

const std::string& Config::GetString(std::string_view name) const {
  auto kind_it = kinds_.find(name);
  if (kind_it != kinds_.end() && kind_it->second == Kind::kEnum) return raw_.find(name)->second;
  return Raw(name, Kind::kString);
}

std::int64_t Config::GetInt(std::string_view name) const {
  return *ParseInt(Raw(name, Kind::kInt));
}

bool Config::GetBool(std::string_view name) const { return *ParseBool(Raw(name, Kind::kBool)); }

std::chrono::milliseconds Config::GetDuration(std::string_view name) const {
  return *ParseDuration(Raw(name, Kind::kDuration));
}

Address Config::GetAddress(std::string_view name) const {
  return *ParseAddress(Raw(name, Kind::kAddress));
}

std::uint64_t Config::GetSize(std::string_view name) const {
  return *ParseSize(Raw(name, Kind::kSize));
}

bool Config::IsSet(std::string_view name) const {
  auto it = set_.find(name);
  if (it == set_.end()) {
    throw std::logic_error("config: undeclared variable " + std::string(name));
  }
  return it->second;
}

Result<Config> Load(const std::vector<Var>& vars, const EnvLookup& env) {
  Config config;
  for (const Var& var : vars) {
    if (config.kinds_.count(var.name) != 0) {
      throw std::logic_error("config: variable " + var.name + " declared twice");
    }
    std::optional<std::string> value = env(var.name);
    bool from_file = false;
    if (var.secret) {
      const std::string file_var = var.name + "_FILE";
      if (auto path = env(file_var)) {
        if (value) {
          return Invalid(var.name, "both " + var.name + " and " + file_var + " are set; use one",
                         "only one of " + var.name + " and " + file_var);
        }
        std::string why;
        value = ReadSecretFile(*path, &why);
        if (!value) {
          return Invalid(file_var, "cannot read \"" + *path + "\": " + why, "a readable file");
        }
        from_file = true;
      }
    }
    const bool is_set = value.has_value();
    if (!is_set) {
      if (var.required) {
        return Invalid(var.name, "is required" + std::string(var.secret ? " (or " + var.name +
                                                                              "_FILE)"
                                                                        : ""),
                       ExpectedForm(var));
      }
      value = var.default_value;
    }
    std::optional<std::string> stored = Validate(var, *value);
    if (!stored) {
      const std::string expected = ExpectedForm(var);
      std::string shown = var.secret ? std::string(from_file ? "the file's content" : "the value")
                                     : "\"" + *value + "\"";
      if (!is_set) shown = "default " + shown;
      return Invalid(var.name, shown + " is not " + expected, expected);
    }
    config.raw_.emplace(var.name, std::move(*stored));
    config.set_.emplace(var.name, is_set);
    config.kinds_.emplace(var.name, var.kind);
  }
  return config;
}

std::string HelpText(std::string_view program, std::string_view summary,
                     const std::vector<Var>& vars,
                     const std::vector<std::pair<std::string, std::string>>& flags) {
  std::ostringstream out;
  out << "Usage: " << program << " [flags]\n\n";
  if (!summary.empty()) out << summary << "\n\n";
  out << "Configuration comes from environment variables:\n";
  for (const Var& var : vars) {
    std::string def;
    if (var.secret && !var.default_value.empty()) {
      def = "(secret)";
    } else if (var.required) {
      def = "(required)";
    } else if (var.default_value.empty()) {
      def = "(empty)";
    } else {
      def = var.default_value;
    }
    out << "  " << var.name << "\n";
    if (!var.help.empty()) out << "      " << var.help << "\n";
    out << "      " << ExpectedForm(var) << "; default: " << def << "\n";
    if (var.secret) {
      out << "      Secret: may instead be read from the file named by " << var.name
          << "_FILE.\n";
    }
  }
  out << "\nFlags:\n";
  std::size_t width = std::string_view("-h, --help").size();
  for (const auto& [flag, help] : flags) width = std::max(width, flag.size());
  auto flag_line = [&](std::string_view flag, std::string_view help) {
    out << "  " << flag << std::string(width - flag.size() + 2, ' ') << help << "\n";
  };
  flag_line("-h, --help", "Show this help and exit.");
  for (const auto& [flag, help] : flags) flag_line(flag, help);
  return out.str();
}

bool Startup::HasFlag(std::string_view flag) const {
  return std::find(present_flags.begin(), present_flags.end(), flag) != present_flags.end();
}

Startup LoadOrExit(int argc, char** argv, std::string_view program, std::string_view summary,
                   const std::vector<Var>& vars,
                   const std::vector<std::pair<std::string, std::string>>& flags,
                   bool allow_positional) {
  std::vector<std::string> present;
  std::vector<std::string> positional;
  bool only_positional = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (!only_positional && (arg == "--help" || arg == "-h")) {
      const std::string help = HelpText(program, summary, vars, flags);
      std::fwrite(help.data(), 1, help.size(), stdout);
      std::fflush(stdout);
      std::exit(0);
    }
    if (!only_positional && arg == "--") {
      only_positional = true;
      continue;
    }
    if (!only_positional && !arg.empty() && arg.front() == '-') {
      auto known = std::find_if(flags.begin(), flags.end(),
                                [&](const auto& flag) { return flag.first == arg; });
      if (known == flags.end()) Die(program, "unknown flag \"" + arg + "\" (see --help)");
      if (std::find(present.begin(), present.end(), arg) == present.end()) present.push_back(arg);
      continue;
    }
    if (!allow_positional) Die(program, "unexpected argument \"" + arg + "\" (see --help)");
    positional.push_back(arg);
  }
  Result<Config> config = Load(vars);
  if (!config) Die(program, config.error().message);
  return Startup{std::move(config).value(), std::move(present), std::move(positional)};
}

}  // namespace portico::config
