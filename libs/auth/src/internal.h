#pragma once
// Helpers shared by the auth sources; not part of the public API.

#include <optional>
#include <string>
#include <string_view>

namespace portico::auth::internal {

/// Initializes libsodium once per process (thread-safe). Aborts if the
/// library cannot initialize: without a CSPRNG nothing safe can be done.
void EnsureSodium();

/// Unpadded, canonical base64url only (as JWS and JWK require): no '=', no
/// characters outside the url-safe alphabet, unused trailing bits zero.
std::optional<std::string> Base64UrlDecodeStrict(std::string_view text);

}  // namespace portico::auth::internal
