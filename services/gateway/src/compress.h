#pragma once
// gzip for response bodies (zlib).

#include <string>
#include <string_view>

namespace portico::gateway {

/// True if an Accept-Encoding value accepts gzip: a "gzip" or "x-gzip"
/// coding, or "*", with a q-value above 0. An explicit "gzip;q=0" refuses
/// gzip even if "*" is accepted. Case-insensitive.
bool AcceptsGzip(std::string_view accept_encoding);

/// `data` as one gzip member (RFC 1952). Throws std::runtime_error if zlib
/// fails (it does not for valid input short of memory).
std::string Gzip(std::string_view data);

}  // namespace portico::gateway
