#pragma once
// Versioned schema migrations, applied at start-up under an advisory lock so
// that any number of replicas can start at once.
//
// A service keeps its SQL files as `migrations/NNNN_description.sql` and
// embeds them at build time (libs/pg/cmake/PorticoMigrations.cmake):
//
//   portico_embed_migrations(portico_users_lib DIR migrations NAMESPACE portico::users)
//
// which defines, in a generated source file,
//
//   namespace portico::users {
//   std::span<const portico::pg::Migration> Migrations();
//   }
//
// The service declares that function itself (the line above) and calls
// `pg::Migrate(pool, Migrations(), "portico_users", deadline)`.

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "portico/core/deadline.h"
#include "portico/core/result.h"

namespace portico::pg {

class Pool;

struct Migration {
  int version;            // > 0; strictly increasing through the list
  std::string_view name;  // e.g. "create_users"
  std::string_view sql;   // one or more statements; runs in one transaction
};

struct MigrationReport {
  std::vector<int> applied;  // versions this call applied, in order
  int current_version = 0;   // highest version applied in the database now
};

/// Brings the database up to date: creates `schema_migrations(version int
/// primary key, name text, checksum text, applied_at timestamptz)` if
/// missing, takes a session-level `pg_advisory_lock` keyed by a hash of
/// `lock_name` (waiting for another process running migrations), then
/// applies each migration not yet recorded, in version order, each in its
/// own transaction together with its bookkeeping row, and releases the lock.
///
/// Errors, all before anything is applied unless said otherwise:
///   kInvalidArgument    versions not > 0, strictly increasing and unique;
///   kFailedPrecondition an applied migration's SQL changed (SHA-256 of the
///                       text differs; the message names the version), or a
///                       pending migration is older than one already applied;
///   kDeadlineExceeded / kUnavailable / ...  from the database (a failing
///                       migration stops the run; earlier ones stay applied).
/// Messages are for operators (start-up logs): a failed migration's error
/// carries the server's reason. Migration SQL must not contain BEGIN/COMMIT
/// or statements that refuse to run in a transaction (CREATE INDEX
/// CONCURRENTLY, VACUUM). Versions recorded in the database but absent from
/// `migrations` (a newer release ran) are ignored. Blocks; thread-safe (uses one pooled
/// connection).
Result<MigrationReport> Migrate(Pool& pool, std::span<const Migration> migrations,
                                std::string_view lock_name, Deadline deadline);

/// Lower-case hex SHA-256 of `sql`, as stored in schema_migrations.checksum.
std::string MigrationChecksum(std::string_view sql);

}  // namespace portico::pg
