#include "portico/pg/rows.h"

#include <charconv>
#include <stdexcept>
#include <string>

#include "connection.h"

namespace portico::pg {
namespace {

[[noreturn]] void Bug(const std::string& what) { throw std::logic_error("portico::pg: " + what); }

}  // namespace

Rows::Rows() = default;
Rows::~Rows() = default;
Rows::Rows(Rows&&) noexcept = default;
Rows& Rows::operator=(Rows&&) noexcept = default;
Rows::Rows(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

int Rows::size() const { return impl_ ? PQntuples(impl_->result.get()) : 0; }

int Rows::columns() const { return impl_ ? PQnfields(impl_->result.get()) : 0; }

std::int64_t Rows::affected() const {
  if (!impl_) return 0;
  const char* tuples = PQcmdTuples(impl_->result.get());
  std::int64_t n = 0;
  std::from_chars(tuples, tuples + std::char_traits<char>::length(tuples), n);
  return n;
}

int Rows::ColumnIndex(std::string_view name) const {
  if (!impl_) return -1;
  // PQfnumber folds unquoted names to lower case, like SQL does.
  return PQfnumber(impl_->result.get(), std::string(name).c_str());
}

std::string_view Rows::ColumnName(int column) const {
  if (column < 0 || column >= columns()) Bug("column index out of range");
  return PQfname(impl_->result.get(), column);
}

Row Rows::operator[](int row) const {
  if (row < 0 || row >= size()) throw std::out_of_range("portico::pg: row index out of range");
  return Row(this, row);
}

int Row::Column(std::string_view name) const {
  int column = rows_->ColumnIndex(name);
  if (column < 0) Bug("no column named \"" + std::string(name) + "\"");
  return column;
}

bool Row::IsNull(int column) const {
  if (column < 0 || column >= rows_->columns()) Bug("column index out of range");
  return PQgetisnull(rows_->impl_->result.get(), row_, column) != 0;
}

bool Row::IsNull(std::string_view column) const { return IsNull(Column(column)); }

std::string_view Row::GetView(int column) const {
  if (IsNull(column)) Bug("column " + std::to_string(column) + " is NULL");
  const PGresult* r = rows_->impl_->result.get();
  return {PQgetvalue(r, row_, column), static_cast<size_t>(PQgetlength(r, row_, column))};
}

std::string_view Row::GetView(std::string_view column) const { return GetView(Column(column)); }

std::int64_t Row::GetInt64(int column) const {
  std::string_view text = GetView(column);
  std::int64_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || end != text.data() + text.size()) {
    Bug("column " + std::to_string(column) + " is not an integer");
  }
  return n;
}

std::int64_t Row::GetInt64(std::string_view column) const { return GetInt64(Column(column)); }

bool Row::GetBool(int column) const {
  std::string_view text = GetView(column);
  if (text == "t") return true;
  if (text == "f") return false;
  Bug("column " + std::to_string(column) + " is not a bool");
}

bool Row::GetBool(std::string_view column) const { return GetBool(Column(column)); }

double Row::GetDouble(int column) const {
  std::string_view text = GetView(column);
  double d = 0;
  // from_chars accepts "NaN", "Infinity" and "-Infinity", PostgreSQL's spellings.
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), d);
  if (ec != std::errc() || end != text.data() + text.size()) {
    Bug("column " + std::to_string(column) + " is not a number");
  }
  return d;
}

double Row::GetDouble(std::string_view column) const { return GetDouble(Column(column)); }

std::optional<std::string> Row::GetOptionalString(int column) const {
  if (IsNull(column)) return std::nullopt;
  return GetString(column);
}

std::optional<std::string> Row::GetOptionalString(std::string_view column) const {
  return GetOptionalString(Column(column));
}

std::optional<std::int64_t> Row::GetOptionalInt64(int column) const {
  if (IsNull(column)) return std::nullopt;
  return GetInt64(column);
}

std::optional<std::int64_t> Row::GetOptionalInt64(std::string_view column) const {
  return GetOptionalInt64(Column(column));
}

}  // namespace portico::pg
