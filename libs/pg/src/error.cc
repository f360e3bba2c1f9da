#include "portico/pg/error.h"

namespace portico::pg {
namespace {

bool HasClass(std::string_view sqlstate, std::string_view cls) {
  return sqlstate.substr(0, 2) == cls;
}

}  // namespace

bool IsRetryableSqlState(std::string_view sqlstate) {
  return sqlstate == "40001" || sqlstate == "40P01";
}

Error ErrorFromSqlState(std::string_view s) {
  if (s.empty()) return Error::Unavailable("database connection lost");
  if (s == "23505") return Error::AlreadyExists("already exists");
  if (s == "23503") return Error::InvalidArgument("refers to a record that does not exist");
  if (s == "23502") return Error::InvalidArgument("a required value is missing");
  if (s == "23514") return Error::InvalidArgument("a value is out of the allowed range");
  if (HasClass(s, "23") || HasClass(s, "22")) return Error::InvalidArgument("invalid value");
  if (s == "57014") return Error{ErrorCode::kDeadlineExceeded, "deadline exceeded", {}};
  if (IsRetryableSqlState(s) || s == "55P03") {
    return Error::Unavailable("transaction conflict, retry");
  }
  if (HasClass(s, "08") || HasClass(s, "53") || s == "57P01" || s == "57P02" || s == "57P03" ||
      s == "57P04" || s == "57P05") {
    return Error::Unavailable("database unavailable");
  }
  return Error::Internal("database error");
}

}  // namespace portico::pg
