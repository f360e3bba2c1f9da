#include "items.h"

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>
#include <sodium.h>

#include <algorithm>
#include <charconv>
#include <optional>
#include <stdexcept>

#include "portico/auth/jwt.h"
#include "portico/core/uuid.h"
#include "portico/pg/pool.h"
#include "portico/transcode/json_object.h"

// The change feed, and why it never skips a change.
//
// A reader asks for changes with seq > since and remembers the last seq it
// got. If seqs came from a plain sequence, transaction A could take seq 7,
// B seq 8, B commit, a reader see 8 and move on, and A commit 7 later: the
// reader would never see 7. Here every write first takes its owner's row in
// owner_seqs (INSERT ... ON CONFLICT DO UPDATE SET last_seq = last_seq + 1
// RETURNING) and holds that row lock until it commits or rolls back. So
// another writer of the same owner gets its seq only after the previous one
// has finished: seqs of one owner commit in increasing order, and a rolled
// back write gives its seq back (no gaps either). A reader that sees seq n
// therefore sees every smaller seq of that owner: nothing committed later
// can have a smaller seq. The price is that one owner's writes run one at a
// time, which per-user data can afford (a write holds the lock for a few
// round trips); different owners never wait for each other. The alternative,
// exposing only changes below pg_snapshot_xmin of in-flight writers, keeps
// writers parallel but makes readers wait behind any slow writer of any
// owner.
//
// The `changes` table keeps only the latest change of each item, so the feed
// holds one row per live item plus tombstones: replaying it from 0 yields
// the current collection, and a newer change of an item always gets a larger
// seq than anything a reader has already passed.
//
// Live watchers (watches.h) are woken by NOTIFY on kChangesChannel with the
// owner id as payload, sent from inside every write (with its seq, in
// kNextSeq) and every purge: PostgreSQL delivers it only once the
// transaction commits, and drops it if it rolls back. A wake-up only tells a
// watcher to read the feed again from its last seq, so the guarantee above
// carries over; a lost notification costs latency (the watchers re-poll),
// never a change.

namespace portico::data {
namespace {

using google::protobuf::util::TimeUtil;

constexpr std::string_view kItemColumns =
    "id, collection, owner_id, data::text AS data, version, "
    "(extract(epoch FROM create_time) * 1000000)::int8 AS create_us, "
    "(extract(epoch FROM update_time) * 1000000)::int8 AS update_us";

// NOTIFY on kChangesChannel (spelled out: the SQL is a constant).
static_assert(std::string_view(kChangesChannel) == "portico_changes");
constexpr std::string_view kNextSeq =
    "INSERT INTO owner_seqs (owner_id, last_seq) VALUES ($1, 1) "
    "ON CONFLICT (owner_id) DO UPDATE SET last_seq = owner_seqs.last_seq + 1 "
    "RETURNING last_seq, pg_notify('portico_changes', owner_id::text)";

// Records an upsert of the item(s) returned by the CTE `item`.
constexpr std::string_view kUpsertChange =
    "INSERT INTO changes (item_id, owner_id, collection, seq, deleted, version, create_time, "
    "update_time) SELECT id, owner_id, collection, $SEQ, false, version, create_time, update_time "
    "FROM item ON CONFLICT (item_id) DO UPDATE SET seq = excluded.seq, deleted = false, "
    "version = excluded.version, update_time = excluded.update_time";

std::string WithSeqParam(std::string_view sql, int n) {
  std::string out(sql);
  const auto at = out.find("$SEQ");
  out.replace(at, 4, "$" + std::to_string(n));
  return out;
}

// Takes the owner's sequence row (see the top of this file) and returns the
// write's seq; kUnauthenticated if the owner was purged (their account is
// gone, though their access token may still be valid). The purge check is a
// statement of its own, after the row lock: in READ COMMITTED it then reads
// a snapshot taken after any purge that held the row has committed (a CTE of
// the locking statement would use that statement's older snapshot). A purge
// that gets the row after us waits for us and then deletes what we wrote.
Result<std::int64_t> NextSeq(pg::Transaction& tx, std::string_view owner) {
  auto seq = tx.Exec(kNextSeq, {owner});
  if (!seq.ok()) return std::move(seq).error();
  auto purged = tx.Exec("SELECT 1 FROM purged_owners WHERE owner_id = $1", {owner});
  if (!purged.ok()) return std::move(purged).error();
  if (!purged->empty()) return Error::Unauthenticated("the account no longer exists");
  return seq->front().GetInt64(0);
}

Result<v1::Item> ItemFromRow(const pg::Row& row) {
  v1::Item item;
  item.set_id(row.GetString("id"));
  item.set_collection(row.GetString("collection"));
  item.set_owner_id(row.GetString("owner_id"));
  if (!row.IsNull("data")) item.set_data(row.GetString("data"));
  item.set_version(row.GetInt64("version"));
  *item.mutable_create_time() = TimeUtil::MicrosecondsToTimestamp(row.GetInt64("create_us"));
  *item.mutable_update_time() = TimeUtil::MicrosecondsToTimestamp(row.GetInt64("update_us"));
  return item;
}

Error VersionMismatch() {
  return {ErrorCode::kVersionMismatch, "the item has changed (If-Match does not match)", {}};
}

Status ValidatePageSize(int* page_size, const ItemLimits& limits) {
  if (*page_size == 0) *page_size = limits.default_page_size;
  if (*page_size < 1 || *page_size > limits.max_page_size) {
    return Error::InvalidArgument(
        "invalid page size",
        {{"pageSize", "must be between 1 and " + std::to_string(limits.max_page_size)}});
  }
  return {};
}

Status ValidateIdempotencyKey(std::string_view key) {
  bool ok = !key.empty() && key.size() <= 255;
  for (char c : key) ok = ok && c >= 0x21 && c <= 0x7e;
  if (ok) return {};
  return Error::InvalidArgument(
      "invalid Idempotency-Key",
      {{"idempotencyKey", "must be 1 to 255 printable ASCII characters without spaces"}});
}

std::string Seconds(std::chrono::seconds s) { return std::to_string(s.count()) + " seconds"; }

// Page tokens: base64url(payload || HMAC-SHA256(key, payload || context)[:16]).
// The context (collection, order, filter) is not in the token but in the MAC,
// so a token only works for the query that made it. The key comes from
// configuration so that all replicas accept each other's tokens; it guards
// the token's integrity, not any data: the owner always comes from the
// caller's credentials and every value reaches SQL as a parameter.
constexpr std::size_t kMacBytes = 16;

std::string Mac(std::string_view key, std::string_view payload, std::string_view context) {
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, reinterpret_cast<const unsigned char*>(key.data()), key.size());
  crypto_auth_hmacsha256_update(&st, reinterpret_cast<const unsigned char*>(payload.data()),
                                payload.size());
  const unsigned char sep = 0;
  crypto_auth_hmacsha256_update(&st, &sep, 1);
  crypto_auth_hmacsha256_update(&st, reinterpret_cast<const unsigned char*>(context.data()),
                                context.size());
  unsigned char out[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_final(&st, out);
  return std::string(reinterpret_cast<const char*>(out), kMacBytes);
}

struct Cursor {
  std::string key;  // sort key text ("" for the default order)
  std::string id;
};

std::string EncodePageToken(std::string_view mac_key, std::string_view context,
                            const Cursor& cursor) {
  const std::string payload = "c2\n" + cursor.id + "\n" + cursor.key;
  return auth::Base64UrlEncode(payload + Mac(mac_key, payload, context));
}

Result<Cursor> DecodePageToken(std::string_view mac_key, std::string_view context,
                               std::string_view token) {
  const Error bad = Error::InvalidArgument(
      "invalid page token",
      {{"pageToken", "is not a token from a previous page of this query"}});
  auto raw = auth::Base64UrlDecode(token);
  if (!raw || raw->size() < kMacBytes + 3) return bad;
  const std::string payload = raw->substr(0, raw->size() - kMacBytes);
  const std::string mac = raw->substr(raw->size() - kMacBytes);
  const std::string expected = Mac(mac_key, payload, context);
  if (sodium_memcmp(mac.data(), expected.data(), kMacBytes) != 0) return bad;
  if (!payload.starts_with("c2\n") || payload.size() < 3 + 36 + 1 || payload[39] != '\n') {
    return bad;
  }
  Cursor c{payload.substr(40), payload.substr(3, 36)};
  if (!IsUuid(c.id)) return bad;
  return c;
}

}  // namespace

bool Precondition::Matches(std::int64_t version) const {
  if (!present || any) return true;
  return std::find(versions.begin(), versions.end(), version) != versions.end();
}

Precondition ParseIfMatch(std::string_view header, bool weak_comparison) {
  Precondition p;
  auto trim = [](std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
  };
  header = trim(header);
  if (header.empty()) return p;
  p.present = true;
  if (header == "*") {
    p.any = true;
    return p;
  }
  while (!header.empty()) {
    const auto comma = header.find(',');
    std::string_view tag = trim(header.substr(0, comma));
    if (weak_comparison && tag.starts_with("W/")) tag.remove_prefix(2);
    header = comma == std::string_view::npos ? std::string_view() : header.substr(comma + 1);
    if (tag.size() < 3 || tag.front() != '"' || tag.back() != '"') continue;
    tag = tag.substr(1, tag.size() - 2);
    std::int64_t v = 0;
    auto [end, ec] = std::from_chars(tag.data(), tag.data() + tag.size(), v);
    if (ec == std::errc() && end == tag.data() + tag.size() && v > 0) p.versions.push_back(v);
  }
  return p;
}

std::string ETagOf(std::int64_t version) { return "\"" + std::to_string(version) + "\""; }

Status ValidateCollection(std::string_view name) {
  bool ok = !name.empty() && name.size() <= 63 && name[0] >= 'a' && name[0] <= 'z';
  for (char c : name) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-');
  }
  if (ok) return {};
  return Error::InvalidArgument(
      "invalid collection name",
      {{"collection",
        "must start with a lower-case letter and have up to 63 of a-z, 0-9, '_' and '-'"}});
}

Items::Items(pg::Pool& pool, ItemLimits limits) : pool_(pool), limits_(std::move(limits)) {
  if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialize");
}

Status Items::ValidateData(std::string_view data) const {
  // The gateway checked it already; this is for callers that come over gRPC
  // directly, and for the size limit, which is this service's setting.
  return transcode::ValidateJsonObject(data, "data", limits_.max_data_bytes);
}

Result<v1::Item> Items::Create(std::string_view owner, std::string_view collection,
                               std::string_view data, Deadline deadline) {
  auto r = Create(owner, collection, data, "", deadline);
  if (!r.ok()) return std::move(r).error();
  return std::move(r->item);
}

Result<CreateResult> Items::Create(std::string_view owner, std::string_view collection,
                                   std::string_view data, std::string_view idempotency_key,
                                   Deadline deadline) {
  if (auto st = ValidateCollection(collection); !st.ok()) return std::move(st).error();
  if (!idempotency_key.empty()) {
    if (auto st = ValidateIdempotencyKey(idempotency_key); !st.ok()) return std::move(st).error();
  }
  if (auto st = ValidateData(data); !st.ok()) return std::move(st).error();
  const std::string_view json = data;
  // The request's fingerprint: jsonb text is canonical (sorted keys, one
  // spelling per number), so equal requests hash equally however their JSON
  // was written.
  constexpr std::string_view kRequestHash =
      "sha256(convert_to(jsonb_build_array($3::text, $4::jsonb)::text, 'UTF8'))";
  return pool_.InTransaction(deadline, [&](pg::Transaction& tx) -> Result<CreateResult> {
    if (!idempotency_key.empty()) {
      // A transaction-scoped advisory lock per (owner, key): a second request
      // with the key while the first runs does not wait, it is told 409. The
      // lock is released only after the first commits, so whoever takes it
      // next sees the stored result. (A 64-bit hash collision with another
      // key in flight at the same instant only costs a spurious 409.)
      auto locked = tx.Exec(
          "SELECT pg_try_advisory_xact_lock(hashtextextended($1::text || '/' || $2, 0))",
          {owner, idempotency_key});
      if (!locked.ok()) return std::move(locked).error();
      if (!locked->front().GetBool(0)) {
        return Error{ErrorCode::kAlreadyExists,
                     "a request with this Idempotency-Key is still in progress",
                     {},
                     kReasonIdempotencyInFlight};
      }
      auto earlier = tx.Exec("SELECT request_hash = " + std::string(kRequestHash) +
                                 " AS same, response FROM idempotency_keys"
                                 " WHERE owner_id = $1 AND key = $2 AND expire_time > now()",
                             {owner, idempotency_key, collection, json});
      if (!earlier.ok()) return std::move(earlier).error();
      if (!earlier->empty()) {
        if (!earlier->front().GetBool("same")) {
          return Error{ErrorCode::kFailedPrecondition,
                       "this Idempotency-Key was used with a different request",
                       {},
                       kReasonIdempotencyKeyReused};
        }
        CreateResult replay{{}, true};
        if (!google::protobuf::util::JsonStringToMessage(earlier->front().GetString("response"),
                                                         &replay.item)
                 .ok()) {
          return Error::Internal("stored idempotent response is not an item");
        }
        return replay;
      }
    }
    auto seq = NextSeq(tx, owner);
    if (!seq.ok()) return std::move(seq).error();
    auto rows = tx.Exec(
        "WITH item AS (INSERT INTO items (owner_id, collection, id, data, create_time, "
        "update_time) VALUES ($1, $2, $3, $4::jsonb, clock_timestamp(), clock_timestamp()) "
        "RETURNING *), change AS (" + WithSeqParam(kUpsertChange, 5) + ") SELECT " +
            std::string(kItemColumns) + " FROM item",
        {owner, collection, NewUuidV7(), json, *seq});
    if (!rows.ok()) return std::move(rows).error();
    auto item = ItemFromRow(rows->front());
    if (!item.ok()) return std::move(item).error();
    if (!idempotency_key.empty()) {
      std::string response;
      (void)google::protobuf::util::MessageToJsonString(*item, &response);
      auto stored = tx.Exec(
          "INSERT INTO idempotency_keys (owner_id, key, request_hash, response, expire_time) "
          "VALUES ($1, $2, " + std::string(kRequestHash) + ", $5, now() + $6::interval) "
          "ON CONFLICT (owner_id, key) DO UPDATE SET request_hash = excluded.request_hash, "
          "response = excluded.response, expire_time = excluded.expire_time",
          {owner, idempotency_key, collection, json, response, Seconds(limits_.idempotency_ttl)});
      if (!stored.ok()) return std::move(stored).error();
    }
    return CreateResult{std::move(*item), false};
  });
}

Result<v1::Item> Items::Get(std::string_view owner, std::string_view collection,
                            std::string_view id, Deadline deadline) {
  if (auto st = ValidateCollection(collection); !st.ok()) return std::move(st).error();
  if (!IsUuid(id)) return Error::NotFound("no such item");
  auto lease = pool_.Acquire(deadline);
  if (!lease.ok()) return std::move(lease).error();
  auto rows = lease->Exec("SELECT " + std::string(kItemColumns) +
                              " FROM items WHERE owner_id = $1 AND collection = $2 AND id = $3",
                          {owner, collection, id});
  if (!rows.ok()) return std::move(rows).error();
  if (rows->empty()) return Error::NotFound("no such item");
  return ItemFromRow(rows->front());
}

// Check-and-write under the owner's sequence lock: the item's data becomes
// `new_data_sql` (SQL over the current `data` and $4, the request's JSON),
// computed on jsonb so that no number is rounded.
Result<v1::Item> Items::Write(std::string_view owner, std::string_view collection,
                              std::string_view id, const Precondition& precondition,
                              Deadline deadline, std::string_view new_data_sql,
                              std::string_view data) {
  if (auto st = ValidateCollection(collection); !st.ok()) return std::move(st).error();
  if (!IsUuid(id)) return Error::NotFound("no such item");
  if (auto st = ValidateData(data); !st.ok()) return std::move(st).error();
  return pool_.InTransaction(deadline, [&](pg::Transaction& tx) -> Result<v1::Item> {
    auto seq = NextSeq(tx, owner);
    if (!seq.ok()) return std::move(seq).error();
    // Redundant while every writer takes the owner's row first, but it keeps
    // this check-and-write correct on its own.
    auto current = tx.Exec("SELECT version FROM items"
                           " WHERE owner_id = $1 AND collection = $2 AND id = $3 FOR UPDATE",
                           {owner, collection, id});
    if (!current.ok()) return std::move(current).error();
    if (current->empty()) return Error::NotFound("no such item");
    if (!precondition.Matches(current->front().GetInt64("version"))) return VersionMismatch();
    auto rows = tx.Exec(
        "WITH item AS (UPDATE items SET data = " + std::string(new_data_sql) +
            ", version = version + 1, update_time = greatest(clock_timestamp(), update_time) "
            "WHERE owner_id = $1 AND collection = $2 AND id = $3 RETURNING *), change AS (" +
            WithSeqParam(kUpsertChange, 5) + ") SELECT " + std::string(kItemColumns) +
            " FROM item",
        {owner, collection, id, data, *seq});
    if (!rows.ok()) return std::move(rows).error();
    const pg::Row row = rows->front();
    // A merge can grow the data past the limit; the transaction then rolls back.
    if (row.GetView("data").size() > limits_.max_data_bytes) {
      return Error::InvalidArgument(
          "data is too large",
          {{"data", "must be at most " + std::to_string(limits_.max_data_bytes) +
                        " bytes of JSON once the patch is applied"}});
    }
    return ItemFromRow(row);
  });
}

Result<v1::Item> Items::Replace(std::string_view owner, std::string_view collection,
                                std::string_view id, std::string_view data,
                                const Precondition& precondition, Deadline deadline) {
  return Write(owner, collection, id, precondition, deadline, "$4::jsonb", data);
}

Result<v1::Item> Items::Update(std::string_view owner, std::string_view collection,
                               std::string_view id, std::string_view patch,
                               const Precondition& precondition, Deadline deadline) {
  // portico_merge_patch: RFC 7396, in migrations/0004_merge_patch.sql.
  return Write(owner, collection, id, precondition, deadline,
               "portico_merge_patch(data, $4::jsonb)", patch);
}

Status Items::Delete(std::string_view owner, std::string_view collection, std::string_view id,
                     const Precondition& precondition, Deadline deadline) {
  if (auto st = ValidateCollection(collection); !st.ok()) return std::move(st).error();
  if (!IsUuid(id)) return Error::NotFound("no such item");
  return pool_.InTransaction(deadline, [&](pg::Transaction& tx) -> Status {
    auto seq = NextSeq(tx, owner);
    if (!seq.ok()) return std::move(seq).error();
    auto current = tx.Exec("SELECT version FROM items"
                           " WHERE owner_id = $1 AND collection = $2 AND id = $3 FOR UPDATE",
                           {owner, collection, id});
    if (!current.ok()) return std::move(current).error();
    if (current->empty()) return Error::NotFound("no such item");
    if (!precondition.Matches(current->front().GetInt64("version"))) return VersionMismatch();
    // The tombstone carries the version the delete bumped to.
    auto rows = tx.Exec(
        "WITH gone AS (DELETE FROM items WHERE owner_id = $1 AND collection = $2 AND id = $3 "
        "RETURNING *) INSERT INTO changes (item_id, owner_id, collection, seq, deleted, version, "
        "create_time, update_time) SELECT id, owner_id, collection, $4, true, version + 1, "
        "create_time, greatest(clock_timestamp(), update_time) FROM gone "
        "ON CONFLICT (item_id) DO UPDATE SET seq = excluded.seq, deleted = true, "
        "version = excluded.version, update_time = excluded.update_time",
        {owner, collection, id, *seq});
    if (!rows.ok()) return std::move(rows).error();
    return {};
  });
}

Result<v1::ListItemsResponse> Items::List(std::string_view owner, std::string_view collection,
                                          int page_size, std::string_view page_token,
                                          Deadline deadline) {
  return List(owner, collection,
              ListQuery{.page_size = page_size, .page_token = std::string(page_token)}, deadline);
}

Result<v1::ListItemsResponse> Items::List(std::string_view owner, std::string_view collection,
                                          const ListQuery& query, Deadline deadline) {
  if (auto st = ValidateCollection(collection); !st.ok()) return std::move(st).error();
  int page_size = query.page_size;
  if (auto st = ValidatePageSize(&page_size, limits_); !st.ok()) return std::move(st).error();
  auto order = ParseOrderBy(query.order_by);
  if (!order.ok()) return std::move(order).error();
  // The MAC context binds a token to this exact query.
  std::string context(collection);
  context += '\0';
  context += order->Normalized();
  context += '\0';
  context += query.filter;
  std::optional<Cursor> after;
  if (!query.page_token.empty()) {
    auto decoded = DecodePageToken(limits_.page_token_key, context, query.page_token);
    if (!decoded.ok()) return std::move(decoded).error();
    after = std::move(*decoded);
  }

  std::vector<pg::Param> params = {owner, collection, page_size + 1};
  auto add = [&params](pg::Param p) {
    params.push_back(std::move(p));
    return "$" + std::to_string(params.size());
  };
  std::string key_sql;      // the sort expression
  std::string key_select;   // the same, as text for the next token
  std::string cursor_key;   // the cursor's sort value, as the same type
  switch (order->key) {
    case OrderBy::Key::kDefault: break;
    case OrderBy::Key::kCreateTime:
    case OrderBy::Key::kUpdateTime: {
      const bool create = order->key == OrderBy::Key::kCreateTime;
      key_sql = create ? "create_time" : "update_time";
      key_select = create ? "create_us" : "update_us";
      if (after) {
        std::int64_t us = 0;
        auto [end, ec] =
            std::from_chars(after->key.data(), after->key.data() + after->key.size(), us);
        // A token is only as secret as its key (a public default makes it
        // forgeable), so its values are checked like input: a time outside
        // 0001..9999 would overflow PostgreSQL's interval arithmetic below.
        constexpr std::int64_t kMinUs = TimeUtil::kTimestampMinSeconds * 1000000;
        constexpr std::int64_t kMaxUs = TimeUtil::kTimestampMaxSeconds * 1000000 + 999999;
        if (ec != std::errc() || end != after->key.data() + after->key.size() || us < kMinUs ||
            us > kMaxUs) {
          return Error::InvalidArgument("invalid page token", {{"pageToken", "is malformed"}});
        }
        // Exact: timestamptz is an integer count of microseconds.
        cursor_key = "('epoch'::timestamptz + " + add(us) + "::int8 * interval '1 microsecond')";
      }
      break;
    }
    case OrderBy::Key::kData: {
      // A missing value sorts as JSON null (the lowest jsonb), so the order
      // is total and the cursor comparison below never meets SQL NULL.
      key_sql = "COALESCE(data #> " + add(PgTextArray(order->path)) + "::text[], 'null'::jsonb)";
      key_select = "sort_key";
      if (after) {
        // Checked like input, as the time above: text that is not JSON
        // would fail the ::jsonb cast in PostgreSQL.
        if (!transcode::IsJsonValue(after->key)) {
          return Error::InvalidArgument("invalid page token", {{"pageToken", "is malformed"}});
        }
        cursor_key = add(after->key) + "::jsonb";
      }
      break;
    }
  }
  const char* dir = order->descending ? "DESC" : "ASC";
  const char* cmp = order->descending ? "<" : ">";
  std::string where = "owner_id = $1 AND collection = $2";
  if (after) {
    const std::string id = add(after->id) + "::uuid";
    if (key_sql.empty()) {
      where += std::string(" AND id ") + cmp + " " + id;
    } else {
      where += " AND (" + key_sql + ", id) " + cmp + " (" + cursor_key + ", " + id + ")";
    }
  }
  auto filter = CompileFilter(query.filter, static_cast<int>(params.size()) + 1, limits_.filter);
  if (!filter.ok()) return std::move(filter).error();
  for (auto& p : filter->params) params.emplace_back(std::move(p));
  where += " AND " + filter->sql;
  std::string sql = "SELECT " + std::string(kItemColumns);
  if (order->key == OrderBy::Key::kData) sql += ", " + key_sql + "::text AS sort_key";
  sql += " FROM items WHERE " + where + " ORDER BY ";
  if (!key_sql.empty()) sql += key_sql + " " + dir + ", ";
  sql += std::string("id ") + dir + " LIMIT $3";

  auto lease = pool_.Acquire(deadline);
  if (!lease.ok()) return std::move(lease).error();
  auto rows = lease->Exec(sql, params);
  if (!rows.ok()) return std::move(rows).error();
  v1::ListItemsResponse response;
  std::uint64_t bytes = 0;
  int taken = 0;
  for (; taken < rows->size() && taken < page_size; ++taken) {
    const pg::Row row = (*rows)[taken];
    bytes += row.GetView("data").size();
    if (taken > 0 && bytes > limits_.max_page_bytes) break;
    auto item = ItemFromRow(row);
    if (!item.ok()) return std::move(item).error();
    *response.add_items() = std::move(*item);
  }
  if (taken < rows->size()) {
    const pg::Row last = (*rows)[taken - 1];
    Cursor c{key_select.empty() ? std::string() : last.GetString(key_select),
             last.GetString("id")};
    response.set_next_page_token(EncodePageToken(limits_.page_token_key, context, c));
  }
  return response;
}

Result<v1::ListCollectionsResponse> Items::ListCollections(std::string_view owner,
                                                           Deadline deadline) {
  auto lease = pool_.Acquire(deadline);
  if (!lease.ok()) return std::move(lease).error();
  // Served by the primary key (owner_id, collection, id).
  auto rows = lease->Exec("SELECT collection, count(*) AS n FROM items WHERE owner_id = $1"
                          " GROUP BY collection ORDER BY collection",
                          {owner});
  if (!rows.ok()) return std::move(rows).error();
  v1::ListCollectionsResponse response;
  for (pg::Row row : *rows) {
    auto* c = response.add_collections();
    c->set_name(row.GetString("collection"));
    c->set_item_count(row.GetInt64("n"));
  }
  return response;
}

Result<v1::ListChangesResponse> Items::ListChanges(std::string_view owner,
                                                   std::string_view collection,
                                                   std::int64_t since, int page_size,
                                                   Deadline deadline) {
  if (auto st = ValidateChangesQuery(collection, since, &page_size); !st.ok()) return st.error();
  auto lease = pool_.Acquire(deadline);
  if (!lease.ok()) return std::move(lease).error();
  return ReadChanges(*lease, owner, collection, since, page_size);
}

Result<v1::ListChangesResponse> Items::WatchPage(std::string_view owner,
                                                 std::string_view collection, std::int64_t since,
                                                 int page_size, Deadline deadline) {
  if (auto st = ValidateChangesQuery(collection, since, &page_size); !st.ok()) return st.error();
  auto lease = pool_.Acquire(deadline);
  if (!lease.ok()) return std::move(lease).error();
  auto page = ReadChanges(*lease, owner, collection, since, page_size);
  if (!page.ok() && page.error().code != ErrorCode::kFailedPrecondition) return page;
  // A purge deletes the owner's sequence row, which a feed position then
  // fails against (SINCE_TOO_OLD); a watcher is told what really happened.
  auto purged = lease->Exec("SELECT 1 FROM purged_owners WHERE owner_id = $1", {owner});
  if (!purged.ok()) return std::move(purged).error();
  if (!purged->empty()) return Error::Unauthenticated("the account no longer exists");
  return page;
}

Status Items::ValidateChangesQuery(std::string_view collection, std::int64_t since,
                                   int* page_size) const {
  if (auto st = ValidateCollection(collection); !st.ok()) return st;
  if (since < 0) {
    return Error::InvalidArgument("invalid since",
                                  {{"since", "must be 0 or a nextSince from an earlier page"}});
  }
  return ValidatePageSize(page_size, limits_);
}

Result<v1::ListChangesResponse> Items::ReadChanges(pg::Lease& lease, std::string_view owner,
                                                   std::string_view collection,
                                                   std::int64_t since, int page_size) {
  auto rows = lease.Exec(
      "SELECT c.seq, c.deleted, c.item_id AS id, c.collection, c.owner_id, i.data::text AS data, "
      "c.version, (extract(epoch FROM c.create_time) * 1000000)::int8 AS create_us, "
      "(extract(epoch FROM c.update_time) * 1000000)::int8 AS update_us "
      "FROM changes c LEFT JOIN items i ON i.id = c.item_id AND NOT c.deleted "
      "WHERE c.owner_id = $1 AND c.collection = $2 AND c.seq > $3 ORDER BY c.seq LIMIT $4",
      {owner, collection, since, page_size});
  if (!rows.ok()) return std::move(rows).error();
  // Checked after reading the page: retention deletes tombstones and raises
  // pruned_seq in one statement, so if the page missed a pruned tombstone,
  // this read sees the raised mark.
  if (since > 0) {
    auto mark = lease.Exec("SELECT last_seq, pruned_seq FROM owner_seqs WHERE owner_id = $1",
                           {owner});
    if (!mark.ok()) return std::move(mark).error();
    const std::int64_t last = mark->empty() ? 0 : mark->front().GetInt64("last_seq");
    const std::int64_t pruned = mark->empty() ? 0 : mark->front().GetInt64("pruned_seq");
    if (since < pruned || since > last) {
      return Error{ErrorCode::kFailedPrecondition,
                   "since is older than the retained changes or not a position of this feed; "
                   "sync again from since=0",
                   {},
                   kReasonSinceTooOld};
    }
  }
  v1::ListChangesResponse response;
  response.set_next_since(since);
  for (pg::Row row : *rows) {
    auto* change = response.add_changes();
    change->set_seq(row.GetInt64("seq"));
    change->set_kind(row.GetBool("deleted") ? v1::Change::DELETE : v1::Change::UPSERT);
    auto item = ItemFromRow(row);
    if (!item.ok()) return std::move(item).error();
    *change->mutable_item() = std::move(*item);
    response.set_next_since(change->seq());
  }
  return response;
}

Status Items::PurgeOwner(std::string_view owner, Deadline deadline) {
  if (!IsUuid(owner)) {
    return Error::InvalidArgument("invalid owner id", {{"ownerId", "must be a UUID"}});
  }
  return pool_.InTransaction(deadline, [&](pg::Transaction& tx) -> Status {
    // Takes the owner's sequence row first, like every write, creating it if
    // the owner never wrote (a plain SELECT ... FOR UPDATE would lock nothing
    // then, and a first write in flight could commit its items after this
    // purge). So a write in flight either finishes before the purge, which
    // then deletes what it wrote, or runs after it and finds the owner in
    // purged_owners (NextSeq) without writing anything.
    for (const char* sql :
         {"INSERT INTO owner_seqs (owner_id, last_seq) VALUES ($1, 0) "
          "ON CONFLICT (owner_id) DO UPDATE SET last_seq = owner_seqs.last_seq",
          "INSERT INTO purged_owners (owner_id, purge_time) VALUES ($1, now()) "
          "ON CONFLICT (owner_id) DO NOTHING",
          "DELETE FROM items WHERE owner_id = $1", "DELETE FROM changes WHERE owner_id = $1",
          "DELETE FROM idempotency_keys WHERE owner_id = $1",
          "DELETE FROM owner_seqs WHERE owner_id = $1",
          // Watchers of the owner wake up and end (see Items::WatchPage).
          "SELECT pg_notify('portico_changes', $1::text)"}) {
      auto r = tx.Exec(sql, {owner});
      if (!r.ok()) return std::move(r).error();
    }
    return {};
  });
}

Result<PruneReport> Items::Prune(Deadline deadline) {
  return pool_.InTransaction(deadline, [&](pg::Transaction& tx) -> Result<PruneReport> {
    PruneReport report;
    auto locked = tx.Exec("SELECT pg_try_advisory_xact_lock(hashtextextended('portico_data_prune', 0))");
    if (!locked.ok()) return std::move(locked).error();
    if (!locked->front().GetBool(0)) return report;  // another replica is at it
    // Lock order: every writer and PurgeOwner take an owner's owner_seqs
    // row before touching that owner's changes; taking the changes rows
    // first here (and owner_seqs only to raise pruned_seq) could deadlock
    // with them (40P01). So the owners of the batch are locked first, in
    // owner_id order (a writer holds one owner row at a time, so no order
    // among owners can cycle with it; other Prunes are excluded by the
    // advisory lock above), and only their tombstones are deleted.
    const std::string cutoff = Seconds(limits_.change_retention);
    const std::string limit = " LIMIT " + std::to_string(kPruneBatchSize);
    auto owners = tx.Exec(
        "SELECT owner_id::text FROM owner_seqs WHERE owner_id IN (SELECT owner_id FROM changes "
        "WHERE deleted AND update_time < clock_timestamp() - $1::interval" + limit + ") "
        "ORDER BY owner_id FOR UPDATE",
        {cutoff});
    if (!owners.ok()) return std::move(owners).error();
    std::string owner_ids = "{";
    for (pg::Row row : *owners) {
      if (owner_ids.size() > 1) owner_ids += ',';
      owner_ids += row.GetString(0);
    }
    owner_ids += '}';
    auto tombstones = tx.Exec(
        "WITH gone AS (DELETE FROM changes WHERE item_id IN (SELECT item_id FROM changes "
        "WHERE deleted AND update_time < clock_timestamp() - $1::interval "
        "AND owner_id = ANY($2::uuid[])" + limit + ") "
        "RETURNING owner_id, seq), marks AS (SELECT owner_id, max(seq) AS seq FROM gone "
        "GROUP BY owner_id), raised AS (UPDATE owner_seqs o SET pruned_seq = "
        "greatest(o.pruned_seq, m.seq) FROM marks m WHERE o.owner_id = m.owner_id RETURNING 1) "
        "SELECT (SELECT count(*) FROM gone) AS n",
        {cutoff, owner_ids});
    if (!tombstones.ok()) return std::move(tombstones).error();
    report.tombstones = tombstones->front().GetInt64("n");
    auto keys = tx.Exec(
        "DELETE FROM idempotency_keys WHERE (owner_id, key) IN (SELECT owner_id, key FROM "
        "idempotency_keys WHERE expire_time < now()" + limit + ")");
    if (!keys.ok()) return std::move(keys).error();
    report.idempotency_keys = keys->affected();
    return report;
  });
}

}  // namespace portico::data
