#include "portico/pg/migrate.h"

#include <sodium.h>

#include <array>
#include <cstring>
#include <map>

#include "portico/pg/pool.h"

namespace portico::pg {
namespace {

constexpr const char* kCreateTable = R"sql(
CREATE TABLE IF NOT EXISTS schema_migrations (
  version    integer PRIMARY KEY,
  name       text NOT NULL,
  checksum   text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
))sql";

// Time allowed for releasing the advisory lock even when the caller's
// deadline has passed: holding it would stall every other replica.
constexpr auto kUnlockTime = std::chrono::seconds(5);

Error Precondition(std::string message) {
  return Error{ErrorCode::kFailedPrecondition, std::move(message), {}};
}

std::string Describe(const Migration& m) {
  return "migration " + std::to_string(m.version) + " (" + std::string(m.name) + ")";
}

// Migrate reports to operators (start-up logs), not to clients, so its
// errors may carry the server's reason.
Error WithReason(const Migration& m, Error error, const Lease& lease) {
  error.message = Describe(m) + " failed: " + error.message;
  if (!lease.last_error_message().empty()) error.message += ": " + lease.last_error_message();
  while (!error.message.empty() && error.message.back() == '\n') error.message.pop_back();
  return error;
}

std::array<unsigned char, crypto_hash_sha256_BYTES> Sha256(std::string_view data) {
  std::array<unsigned char, crypto_hash_sha256_BYTES> digest;
  crypto_hash_sha256(digest.data(), reinterpret_cast<const unsigned char*>(data.data()),
                     data.size());
  return digest;
}

// The advisory lock key: the first 8 bytes of SHA-256(lock_name).
std::int64_t LockKey(std::string_view lock_name) {
  auto digest = Sha256(lock_name);
  std::int64_t key;
  std::memcpy(&key, digest.data(), sizeof key);
  return key;
}

Result<MigrationReport> ApplyLocked(Lease& lease, std::span<const Migration> migrations) {
  if (Status created = lease.ExecScript(kCreateTable); !created.ok()) {
    return std::move(created).error();
  }
  auto rows = lease.Exec("SELECT version, checksum FROM schema_migrations");
  if (!rows.ok()) return std::move(rows).error();
  std::map<int, std::string> applied;
  for (Row row : *rows) applied[static_cast<int>(row.GetInt64(0))] = row.GetString(1);
  const int newest_applied = applied.empty() ? 0 : applied.rbegin()->first;

  // Check everything before changing anything.
  std::vector<const Migration*> pending;
  for (const Migration& m : migrations) {
    auto it = applied.find(m.version);
    if (it != applied.end()) {
      if (it->second != MigrationChecksum(m.sql)) {
        return Precondition(Describe(m) + " was changed after it was applied (checksum differs)");
      }
    } else if (m.version < newest_applied) {
      return Precondition(Describe(m) + " is older than the applied migration " +
                          std::to_string(newest_applied));
    } else {
      pending.push_back(&m);
    }
  }

  MigrationReport report;
  report.current_version = newest_applied;
  for (const Migration* m : pending) {
    auto tx = lease.Begin();
    if (!tx.ok()) return WithReason(*m, std::move(tx).error(), lease);
    if (Status ran = lease.ExecScript(m->sql); !ran.ok()) {
      return WithReason(*m, std::move(ran).error(), lease);
    }
    auto recorded =
        tx->Exec("INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                 {m->version, m->name, MigrationChecksum(m->sql)});
    if (!recorded.ok()) return WithReason(*m, std::move(recorded).error(), lease);
    if (Status committed = tx->Commit(); !committed.ok()) {
      return WithReason(*m, std::move(committed).error(), lease);
    }
    report.applied.push_back(m->version);
    report.current_version = m->version;
  }
  return report;
}

}  // namespace

std::string MigrationChecksum(std::string_view sql) {
  auto digest = Sha256(sql);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(digest.size() * 2);
  for (unsigned char b : digest) {
    hex.push_back(kHex[b >> 4]);
    hex.push_back(kHex[b & 0xf]);
  }
  return hex;
}

Result<MigrationReport> Migrate(Pool& pool, std::span<const Migration> migrations,
                                std::string_view lock_name, Deadline deadline) {
  int previous = 0;
  for (const Migration& m : migrations) {
    if (m.version <= previous) {
      return Error::InvalidArgument(Describe(m) +
                                    ": versions must be positive, unique and increasing");
    }
    previous = m.version;
  }

  auto lease = pool.Acquire(deadline);
  if (!lease.ok()) return std::move(lease).error();
  const std::int64_t key = LockKey(lock_name);
  // Session-level: held across the per-migration transactions below, and
  // released by the server if this connection dies.
  auto locked = lease->Exec("SELECT pg_advisory_lock($1)", {key});
  if (!locked.ok()) return std::move(locked).error();

  auto report = ApplyLocked(*lease, migrations);

  lease->set_deadline(DeadlineIn(kUnlockTime));
  auto unlocked = lease->Exec("SELECT pg_advisory_unlock($1)", {key});
  if (!unlocked.ok() || unlocked->empty() || !unlocked->front().GetBool(0)) {
    lease->Discard();  // closing the session releases the lock for sure
  }
  return report;
}

}  // namespace portico::pg
