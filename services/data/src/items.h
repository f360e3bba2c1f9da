#pragma once
// What items mean, apart from any transport: validation, ownership,
// versions and preconditions, idempotent creates, the change feed and
// cursor pages over the items table.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "filter.h"
#include "portico/core/deadline.h"
#include "portico/core/result.h"
#include "portico/data/v1/data.pb.h"

namespace portico::pg {
class Pool;
class Lease;
}

namespace portico::data {

/// Error::reason values Items sets (the gateway's problem table maps them).
inline constexpr char kReasonSinceTooOld[] = "SINCE_TOO_OLD";                   // 410
inline constexpr char kReasonIdempotencyKeyReused[] = "IDEMPOTENCY_KEY_REUSED";  // 422
inline constexpr char kReasonIdempotencyInFlight[] = "IDEMPOTENCY_IN_FLIGHT";    // 409

/// The NOTIFY channel every write and purge signals, with the owner id as
/// payload, once it commits.
inline constexpr char kChangesChannel[] = "portico_changes";

/// `^[a-z][a-z0-9_-]{0,62}$`; kInvalidArgument naming "collection" otherwise.
Status ValidateCollection(std::string_view name);

/// An If-Match precondition. Absent: the write is unconditional.
struct Precondition {
  bool present = false;
  bool any = false;                     // "*": the item must exist
  std::vector<std::int64_t> versions;   // from strong entity tags "\"<n>\""
  bool Matches(std::int64_t version) const;
};

/// Parses an If-Match header value: "" (absent), "*", or a comma-separated
/// list of entity tags. Tags that are not ours (weak, not a number) never
/// match, but still make the precondition present, so such a header still
/// guards the write. With `weak_comparison` (If-None-Match) W/"n" counts as
/// "n". Pure.
Precondition ParseIfMatch(std::string_view header, bool weak_comparison = false);

/// The strong ETag of a version: "\"<version>\"".
std::string ETagOf(std::int64_t version);

struct ItemLimits {
  std::uint64_t max_data_bytes = 256 * 1024;  // `data` as JSON text
  // Nesting of objects and arrays: transcode::kMaxJsonObjectDepth (64).
  int default_page_size = 50;
  int max_page_size = 1000;
  // A page stops early (with a next-page token) once its items' data reach
  // this many bytes of JSON, so a page of large items stays well inside
  // gRPC's message limits. A page always holds at least one item.
  std::uint64_t max_page_bytes = 2 << 20;
  // Tombstones older than this leave the change feed (Prune).
  std::chrono::seconds change_retention = std::chrono::hours(24 * 30);
  // How long an Idempotency-Key remembers its first result.
  std::chrono::seconds idempotency_ttl = std::chrono::hours(24);
  // HMAC key of page tokens. Every replica must use the same one.
  std::string page_token_key = "portico-local-page-token-key";
  FilterLimits filter;
};

/// What Create did: a new item, or the first result of an earlier request
/// with the same Idempotency-Key (replayed).
struct CreateResult {
  v1::Item item;
  bool replayed = false;
};

struct ListQuery {
  int page_size = 0;  // 0: the default
  std::string page_token;
  std::string order_by;
  std::string filter;
};

/// Most tombstones, and most idempotency keys, one Prune call removes.
inline constexpr std::int64_t kPruneBatchSize = 10000;

/// What Prune removed.
struct PruneReport {
  std::int64_t tombstones = 0;
  std::int64_t idempotency_keys = 0;
};

/// Thread-safe: every method may be called from many threads at once. Every
/// method blocks on the database; kUnavailable / kDeadlineExceeded come from
/// the pool (no connection before `deadline`, statement timeout).
///
/// Every write (create, replace, update, delete) runs in one transaction
/// that also records the item's change in the feed, and bumps the version.
/// Writes of one owner are serialized (a per-owner sequence row), which is
/// what keeps the feed's order equal to commit order. Every write of an
/// owner that PurgeOwner removed fails with kUnauthenticated ("the account
/// no longer exists") and stores nothing, even one that was already waiting
/// when the purge ran; reads of such an owner find nothing.
class Items {
 public:
  Items(pg::Pool& pool, ItemLimits limits);

  /// Stores a new item owned by `owner` (version 1). `data` is a JSON
  /// object's text, stored as jsonb and returned as PostgreSQL prints it
  /// (every digit kept; see transcode/json_object.h for the rules it must
  /// obey, and max_data_bytes). kInvalidArgument naming "collection",
  /// "data" or "idempotencyKey". With an
  /// `idempotency_key` (1-255 printable ASCII characters): the first result
  /// for (owner, key) is kept for idempotency_ttl; a retry with the same
  /// collection and data returns it (replayed = true); with other ones
  /// kFailedPrecondition (IDEMPOTENCY_KEY_REUSED); while the first request
  /// is still running kAlreadyExists (IDEMPOTENCY_IN_FLIGHT).
  Result<CreateResult> Create(std::string_view owner, std::string_view collection,
                              std::string_view data, std::string_view idempotency_key,
                              Deadline deadline);
  Result<v1::Item> Create(std::string_view owner, std::string_view collection,
                          std::string_view data, Deadline deadline);

  /// The owner's item; kNotFound if it does not exist or belongs to
  /// someone else (existence is never revealed).
  Result<v1::Item> Get(std::string_view owner, std::string_view collection, std::string_view id,
                       Deadline deadline);

  /// Replaces the item's data. kNotFound as Get; kVersionMismatch (nothing
  /// changes) if `precondition` does not match the current version;
  /// kInvalidArgument naming "data".
  Result<v1::Item> Replace(std::string_view owner, std::string_view collection,
                           std::string_view id, std::string_view data,
                           const Precondition& precondition, Deadline deadline);

  /// Applies a JSON merge patch (RFC 7396) to the item's data: a null value
  /// deletes its key, an object merges recursively, anything else replaces.
  /// Errors as Replace (the patched data must obey the limits).
  Result<v1::Item> Update(std::string_view owner, std::string_view collection,
                          std::string_view id, std::string_view patch,
                          const Precondition& precondition, Deadline deadline);

  /// Deletes the item, leaving a tombstone in the feed. Errors as Replace.
  Status Delete(std::string_view owner, std::string_view collection, std::string_view id,
                const Precondition& precondition, Deadline deadline);

  /// A page of the owner's items in `collection`: at most page_size items
  /// and, beyond the first, at most max_page_bytes of data. Ordered by
  /// query.order_by (see ParseOrderBy; default newest first), the id
  /// breaking ties; filtered by query.filter (see CompileFilter). Page
  /// tokens are opaque, HMAC-checked and bound to the collection, order and
  /// filter: a forged, altered or foreign token is kInvalidArgument naming
  /// "pageToken". Items inserted or deleted while paging never make another
  /// item appear twice or vanish. kInvalidArgument naming "pageSize",
  /// "orderBy" or "filter" for bad input.
  Result<v1::ListItemsResponse> List(std::string_view owner, std::string_view collection,
                                     const ListQuery& query, Deadline deadline);
  Result<v1::ListItemsResponse> List(std::string_view owner, std::string_view collection,
                                     int page_size, std::string_view page_token,
                                     Deadline deadline);

  /// The owner's collections (those with at least one item), by name, with
  /// their item counts.
  Result<v1::ListCollectionsResponse> ListCollections(std::string_view owner, Deadline deadline);

  /// The changes to `collection` with seq > `since`, in commit order: the
  /// latest change of each item (an upsert with the item, or a tombstone with
  /// the item's id, collection, last version and times but no data), at most
  /// page_size of them; next_since is the last seq returned (or `since`).
  /// Seqs count per owner. Applying every change from since = 0 on reproduces
  /// the collection. kFailedPrecondition (SINCE_TOO_OLD) if `since` > 0 is
  /// older than a tombstone removed by retention, or newer than any change
  /// (the client must sync again from 0); kInvalidArgument naming "since" or
  /// "pageSize".
  Result<v1::ListChangesResponse> ListChanges(std::string_view owner, std::string_view collection,
                                              std::int64_t since, int page_size,
                                              Deadline deadline);

  /// One read of a live watch: ListChanges, except that an owner whose
  /// account was purged meanwhile gets kUnauthenticated ("the account no
  /// longer exists") instead of an empty page or SINCE_TOO_OLD.
  Result<v1::ListChangesResponse> WatchPage(std::string_view owner, std::string_view collection,
                                            std::int64_t since, int page_size, Deadline deadline);

  /// Deletes every item, change and idempotency record of `owner` and
  /// records the owner as purged, so no later write can bring data back.
  /// Idempotent. kInvalidArgument naming "ownerId" if it is not a UUID.
  Status PurgeOwner(std::string_view owner, Deadline deadline);

  /// Housekeeping, safe to call from many replicas (one at a time does the
  /// work): removes up to kPruneBatchSize tombstones older than
  /// change_retention and up to kPruneBatchSize expired idempotency keys.
  /// Takes the owners' sequence rows before their changes, as writes do.
  Result<PruneReport> Prune(Deadline deadline);

 private:
  Status ValidateData(std::string_view data) const;
  Status ValidateChangesQuery(std::string_view collection, std::int64_t since,
                              int* page_size) const;
  Result<v1::ListChangesResponse> ReadChanges(pg::Lease& lease, std::string_view owner,
                                              std::string_view collection, std::int64_t since,
                                              int page_size);
  Result<v1::Item> Write(std::string_view owner, std::string_view collection, std::string_view id,
                         const Precondition& precondition, Deadline deadline,
                         std::string_view new_data_sql, std::string_view data);

  pg::Pool& pool_;
  ItemLimits limits_;
};

}  // namespace portico::data
