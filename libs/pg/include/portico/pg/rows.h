#pragma once
// The outcome of one statement: the rows it returned (text format) and, for
// INSERT/UPDATE/DELETE, how many rows it touched.

#include <cstdint>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace portico::pg {

class Rows;

/// A view of one row of a Rows; valid while that Rows lives. Columns are
/// addressed by index (0-based) or by name (as the query's select list names
/// them). Typed getters on a NULL value, on text that is not of that type, or
/// on a column that does not exist are bugs in the caller's SQL and throw
/// std::logic_error; use IsNull / GetOptional* where NULL is expected.
/// Integer columns (int2/int4/int8) read with GetInt64, bool with GetBool,
/// float4/float8/numeric with GetDouble; anything reads with GetString (for
/// timestamps, select e.g. `to_char(t AT TIME ZONE 'UTC', ...)` or
/// `(extract(epoch from t) * 1000000)::int8` and read the integer).
class Row {
 public:
  bool IsNull(int column) const;
  bool IsNull(std::string_view column) const;
  /// The raw text of a non-NULL value, valid while the Rows lives.
  std::string_view GetView(int column) const;
  std::string_view GetView(std::string_view column) const;
  std::string GetString(int column) const { return std::string(GetView(column)); }
  std::string GetString(std::string_view column) const { return std::string(GetView(column)); }
  std::int64_t GetInt64(int column) const;
  std::int64_t GetInt64(std::string_view column) const;
  bool GetBool(int column) const;
  bool GetBool(std::string_view column) const;
  double GetDouble(int column) const;
  double GetDouble(std::string_view column) const;
  std::optional<std::string> GetOptionalString(int column) const;
  std::optional<std::string> GetOptionalString(std::string_view column) const;
  std::optional<std::int64_t> GetOptionalInt64(int column) const;
  std::optional<std::int64_t> GetOptionalInt64(std::string_view column) const;

  int index() const { return row_; }

 private:
  friend class Rows;
  Row(const Rows* rows, int row) : rows_(rows), row_(row) {}
  int Column(std::string_view name) const;
  const Rows* rows_;
  int row_;
};

/// Rows returned by Exec. Move-only; owns the server's result. Not
/// thread-safe to share while moving, read-only use from several threads is
/// fine. `rows[i]` and range-for give Row views.
class Rows {
 public:
  Rows();
  ~Rows();
  Rows(Rows&&) noexcept;
  Rows& operator=(Rows&&) noexcept;

  /// Number of rows returned (0 for commands without RETURNING).
  int size() const;
  bool empty() const { return size() == 0; }
  /// Number of columns in each row.
  int columns() const;
  /// Rows touched by INSERT/UPDATE/DELETE/MERGE (with or without RETURNING),
  /// rows returned by SELECT; 0 for other commands.
  std::int64_t affected() const;
  /// Index of the column with this name, or -1.
  int ColumnIndex(std::string_view name) const;
  std::string_view ColumnName(int column) const;

  /// Row `row` (0 <= row < size(); out of range throws std::out_of_range).
  Row operator[](int row) const;
  /// The first row; throws std::out_of_range when empty.
  Row front() const { return (*this)[0]; }

  class Iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = Row;
    using difference_type = std::ptrdiff_t;
    using pointer = void;
    using reference = Row;
    Iterator() = default;
    Row operator*() const { return (*rows_)[row_]; }
    Iterator& operator++() {
      ++row_;
      return *this;
    }
    Iterator operator++(int) {
      Iterator old = *this;
      ++row_;
      return old;
    }
    friend bool operator==(const Iterator& a, const Iterator& b) { return a.row_ == b.row_; }

   private:
    friend class Rows;
    Iterator(const Rows* rows, int row) : rows_(rows), row_(row) {}
    const Rows* rows_ = nullptr;
    int row_ = 0;
  };
  Iterator begin() const { return Iterator(this, 0); }
  Iterator end() const { return Iterator(this, size()); }

  struct Impl;  // Holds the libpq result; defined in the library.
  explicit Rows(std::unique_ptr<Impl> impl);

 private:
  friend class Row;
  std::unique_ptr<Impl> impl_;
};

}  // namespace portico::pg
