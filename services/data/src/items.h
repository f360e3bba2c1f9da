#pragma once
// What items mean, apart from any transport: validation, ownership,
// versions and cursor pages over the items table.

#include <cstdint>
#include <string>
#include <string_view>

#include "portico/core/deadline.h"
#include "portico/core/result.h"
#include "portico/data/v1/data.pb.h"

namespace portico::pg {
class Pool;
}

namespace portico::data {

/// `^[a-z][a-z0-9_-]{0,62}$`; kInvalidArgument naming "collection" otherwise.
Status ValidateCollection(std::string_view name);

struct ItemLimits {
  std::uint64_t max_data_bytes = 256 * 1024;  // `data` as compact JSON text
  int max_depth = 64;                         // nesting of objects and arrays
  int default_page_size = 50;
  int max_page_size = 1000;
  // A page stops early (with a next-page token) once its items' data reach
  // this many bytes of JSON, so a page of large items stays well inside
  // gRPC's message limits. A page always holds at least one item.
  std::uint64_t max_page_bytes = 2 << 20;
};

class Items {
 public:
  Items(pg::Pool& pool, ItemLimits limits) : pool_(pool), limits_(limits) {}

  /// Stores a new item owned by `owner` (version 1). kInvalidArgument
  /// naming "collection" or "data".
  Result<v1::Item> Create(std::string_view owner, std::string_view collection,
                          const google::protobuf::Struct& data, Deadline deadline);

  /// The owner's item; kNotFound if it does not exist or belongs to
  /// someone else (existence is never revealed).
  Result<v1::Item> Get(std::string_view owner, std::string_view collection, std::string_view id,
                       Deadline deadline);

  /// A page of the owner's items in `collection`, newest first: at most
  /// `page_size` items and, beyond the first, at most max_page_bytes of data.
  /// `page_token`
  /// is the opaque cursor from a previous page; a malformed one is
  /// kInvalidArgument naming "pageToken". Items inserted while paging never
  /// make an item appear twice or vanish.
  Result<v1::ListItemsResponse> List(std::string_view owner, std::string_view collection,
                                     int page_size, std::string_view page_token,
                                     Deadline deadline);

 private:
  Status ValidateData(const google::protobuf::Struct& data, std::string* json) const;

  pg::Pool& pool_;
  ItemLimits limits_;
};

}  // namespace portico::data
