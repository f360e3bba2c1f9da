#pragma once
// The `filter` and `orderBy` languages of ListItems, compiled to
// parameterized SQL over the items table (columns data, create_time,
// update_time). Values never enter the SQL text: every literal becomes a
// parameter.
//
//   filter  := or
//   or      := and ("OR" and)*
//   and     := not ("AND" not)*
//   not     := "NOT" not | "(" or ")" | field op literal | field "IN" "(" literal ("," literal)* ")"
//   op      := "=" | "!=" | "<" | "<=" | ">" | ">="
//   field   := "createTime" | "updateTime" | "data" ("." name)+     name := [A-Za-z_][A-Za-z0-9_]*
//   literal := JSON string | JSON number | true | false | null | RFC 3339 time (bare or quoted)
//
// Any other operator spelling (==, <>, =>, ...) is an error at its position,
// as is a time outside 0001-01-01..9999-12-31 UTC: whatever compiles is SQL
// PostgreSQL accepts. Keywords are case-insensitive. Comparisons are two-valued: a comparison on
// a missing field is false, so `!=` and NOT match items without the field.
// `=` on data compiles to containment (`data @> $n::jsonb`), which is exact
// equality for a scalar below an object key, so the GIN index on data serves
// it; `<`..`>=` compare values of the literal's JSON type only.

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "portico/core/result.h"

namespace portico::data {

struct FilterLimits {
  std::size_t max_bytes = 4096;  // of the filter text
  int max_depth = 32;            // nesting of parentheses and NOT
  int max_terms = 200;           // comparisons and IN values together
};

/// A SQL boolean expression and its parameters (text format), numbered
/// $first_param, $first_param + 1, ...
struct SqlCondition {
  std::string sql;
  std::vector<std::string> params;
};

/// Compiles a filter. An empty filter is "TRUE". kInvalidArgument with a
/// field violation on "filter" naming the 1-based byte position of the
/// problem. Pure; thread-safe.
Result<SqlCondition> CompileFilter(std::string_view filter, int first_param,
                                   const FilterLimits& limits = {});

/// A parsed orderBy: "" (default: newest first by id), "createTime",
/// "updateTime" or "data.a.b", each optionally followed by "asc" or "desc".
struct OrderBy {
  enum class Key { kDefault, kCreateTime, kUpdateTime, kData };
  Key key = Key::kDefault;
  std::vector<std::string> path;  // for kData
  bool descending = true;
  std::string Normalized() const;  // e.g. "data.a.b asc"
};

/// kInvalidArgument naming "orderBy" for anything else. Pure; thread-safe.
Result<OrderBy> ParseOrderBy(std::string_view order_by);

/// `{"a","b"}`: a PostgreSQL text[] literal for `data #> $n::text[]`.
std::string PgTextArray(const std::vector<std::string>& path);

}  // namespace portico::data
