#pragma once
// A query parameter in PostgreSQL's text format. Values are always sent as
// parameters ($1, $2, ...), never spliced into SQL text.

#include <concepts>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

namespace portico::pg {

/// Integer types a Param accepts: not bool (its own case) and not char (a
/// character is not a number; pass a string).
template <typename T>
concept SqlInteger = std::integral<T> && !std::same_as<T, bool> && !std::same_as<T, char>;

/// One parameter of Exec: a string, integer, bool, double or SQL NULL
/// (std::nullopt, or an empty std::optional). Converts implicitly, so calls
/// read `lease.Exec("... WHERE id = $1 AND n > $2", {id, 5})`. Owns a copy of
/// its text; cheap to build, immutable after construction.
class Param {
 public:
  Param(std::nullopt_t) {}                              // NOLINT: SQL NULL
  Param(const char* s) : text_(s) {}                    // NOLINT; `s` must not be null
  Param(std::string_view s) : text_(std::string(s)) {}  // NOLINT
  Param(const std::string& s) : text_(s) {}             // NOLINT
  Param(std::string&& s) : text_(std::move(s)) {}       // NOLINT
  Param(bool b) : text_(b ? "true" : "false") {}        // NOLINT
  template <SqlInteger T>
  Param(T n) : text_(std::to_string(n)) {}  // NOLINT
  Param(double d);                          // NOLINT; NaN and infinities as PostgreSQL spells them
  template <typename T>
  Param(const std::optional<T>& v) : Param(v ? Param(*v) : Param(std::nullopt)) {}  // NOLINT

  bool is_null() const { return !text_.has_value(); }
  /// The text sent to the server; empty for NULL.
  std::string_view text() const { return text_ ? std::string_view(*text_) : std::string_view(); }

 private:
  std::optional<std::string> text_;
};

}  // namespace portico::pg
