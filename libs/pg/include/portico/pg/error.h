#pragma once
// How PostgreSQL failures become portico::Error. Messages are generic and
// safe to return to clients: no SQL, no server text. Code that needs the
// precise cause reads the SQLSTATE from Lease::last_sqlstate().

#include <string_view>

#include "portico/core/result.h"

namespace portico::pg {

/// Maps a five-character SQLSTATE to an Error:
///   23505                       -> kAlreadyExists     "already exists"
///   other class 23, class 22    -> kInvalidArgument   (e.g. "invalid value")
///   57014 (statement timeout)   -> kDeadlineExceeded  "deadline exceeded"
///   40001, 40P01, 55P03         -> kUnavailable       "transaction conflict, retry"
///                                  (serialization failure, deadlock, lock
///                                  timeout: retrying the transaction may work;
///                                  see IsRetryableSqlState)
///   class 08, 53, 57P01-57P05   -> kUnavailable       "database unavailable"
///   anything else (42xxx, ...)  -> kInternal          "database error"
/// An empty `sqlstate` means a client-side failure (lost connection):
/// kUnavailable. Pure function; thread-safe.
Error ErrorFromSqlState(std::string_view sqlstate);

/// True for 40001 (serialization failure) and 40P01 (deadlock detected):
/// the whole transaction can be retried from its start.
bool IsRetryableSqlState(std::string_view sqlstate);

}  // namespace portico::pg
