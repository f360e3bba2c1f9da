#pragma once
// UUIDv7 (RFC 9562): time-ordered ids, so new rows land at the end of b-tree
// indexes and ids sort roughly by creation.

#include <string>
#include <string_view>

namespace portico {

/// A new random UUIDv7 in canonical lower-case text form. Thread-safe.
std::string NewUuidV7();

/// True if `s` is a UUID in canonical 8-4-4-4-12 hex form (any version).
bool IsUuid(std::string_view s);

}  // namespace portico
