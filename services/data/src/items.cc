#include "items.h"

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>

#include "portico/auth/jwt.h"
#include "portico/core/uuid.h"
#include "portico/pg/pool.h"

namespace portico::data {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;
using google::protobuf::util::TimeUtil;

constexpr std::string_view kItemColumns =
    "id, collection, owner_id, data::text AS data, version, "
    "(extract(epoch FROM create_time) * 1000000)::int8 AS create_us, "
    "(extract(epoch FROM update_time) * 1000000)::int8 AS update_us";

// Nesting depth of a JSON value: a scalar is 0, `{}` or `[]` is 1.
int Depth(const Value& v, int limit);
int Depth(const Struct& s, int limit) {
  int deepest = 0;
  for (const auto& [key, value] : s.fields()) {
    deepest = std::max(deepest, Depth(value, limit - 1));
    if (deepest >= limit) break;
  }
  return 1 + deepest;
}
int Depth(const Value& v, int limit) {
  if (limit <= 0) return 1;
  if (v.has_struct_value()) return Depth(v.struct_value(), limit);
  if (v.has_list_value()) {
    int deepest = 0;
    for (const auto& e : v.list_value().values()) deepest = std::max(deepest, Depth(e, limit - 1));
    return 1 + deepest;
  }
  return 0;
}

Result<v1::Item> ItemFromRow(const pg::Row& row) {
  v1::Item item;
  item.set_id(row.GetString("id"));
  item.set_collection(row.GetString("collection"));
  item.set_owner_id(row.GetString("owner_id"));
  const auto json = row.GetView("data");
  if (!google::protobuf::util::JsonStringToMessage(
           google::protobuf::StringPiece(json.data(), json.size()), item.mutable_data())
           .ok()) {
    return Error::Internal("stored item data is not a JSON object");
  }
  item.set_version(row.GetInt64("version"));
  *item.mutable_create_time() = TimeUtil::MicrosecondsToTimestamp(row.GetInt64("create_us"));
  *item.mutable_update_time() = TimeUtil::MicrosecondsToTimestamp(row.GetInt64("update_us"));
  return item;
}

// Page tokens are opaque to clients: today the base64url of the last id.
std::string EncodePageToken(const std::string& last_id) {
  return auth::Base64UrlEncode("i1:" + last_id);
}

Result<std::string> DecodePageToken(std::string_view token) {
  auto raw = auth::Base64UrlDecode(token);
  if (!raw || raw->size() != 39 || raw->compare(0, 3, "i1:") != 0 || !IsUuid(raw->substr(3))) {
    return Error::InvalidArgument("invalid page token",
                                  {{"pageToken", "is not a token from a previous page"}});
  }
  return raw->substr(3);
}

}  // namespace

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

Status Items::ValidateData(const Struct& data, std::string* json) const {
  if (Depth(data, limits_.max_depth + 1) > limits_.max_depth) {
    return Error::InvalidArgument(
        "item data is nested too deeply",
        {{"data", "must not nest deeper than " + std::to_string(limits_.max_depth) + " levels"}});
  }
  if (!google::protobuf::util::MessageToJsonString(data, json).ok()) {
    return Error::InvalidArgument("item data is not valid JSON", {{"data", "is not valid JSON"}});
  }
  if (json->size() > limits_.max_data_bytes) {
    return Error::InvalidArgument(
        "item data is too large",
        {{"data", "must be at most " + std::to_string(limits_.max_data_bytes) + " bytes of JSON"}});
  }
  return {};
}

Result<v1::Item> Items::Create(std::string_view owner, std::string_view collection,
                               const Struct& data, Deadline deadline) {
  if (auto st = ValidateCollection(collection); !st.ok()) return std::move(st).error();
  std::string json;
  if (auto st = ValidateData(data, &json); !st.ok()) return std::move(st).error();
  auto lease = pool_.Acquire(deadline);
  if (!lease.ok()) return std::move(lease).error();
  auto rows = lease->Exec("INSERT INTO items (owner_id, collection, id, data) "
                          "VALUES ($1, $2, $3, $4::jsonb) RETURNING " + std::string(kItemColumns),
                          {owner, collection, NewUuidV7(), json});
  if (!rows.ok()) return std::move(rows).error();
  return ItemFromRow(rows->front());
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

Result<v1::ListItemsResponse> Items::List(std::string_view owner, std::string_view collection,
                                          int page_size, std::string_view page_token,
                                          Deadline deadline) {
  if (auto st = ValidateCollection(collection); !st.ok()) return std::move(st).error();
  if (page_size == 0) page_size = limits_.default_page_size;
  if (page_size < 1 || page_size > limits_.max_page_size) {
    return Error::InvalidArgument(
        "invalid page size",
        {{"pageSize", "must be between 1 and " + std::to_string(limits_.max_page_size)}});
  }
  std::optional<std::string> after;
  if (!page_token.empty()) {
    auto decoded = DecodePageToken(page_token);
    if (!decoded.ok()) return std::move(decoded).error();
    after = std::move(*decoded);
  }
  auto lease = pool_.Acquire(deadline);
  if (!lease.ok()) return std::move(lease).error();
  // One row more than asked tells whether another page follows.
  auto rows = lease->Exec("SELECT " + std::string(kItemColumns) +
                              " FROM items WHERE owner_id = $1 AND collection = $2"
                              " AND ($3::uuid IS NULL OR id < $3::uuid)"
                              " ORDER BY id DESC LIMIT $4",
                          {owner, collection, after, page_size + 1});
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
    response.set_next_page_token(EncodePageToken(response.items(taken - 1).id()));
  }
  return response;
}

}  // namespace portico::data
