#pragma once
// Passwords (Argon2id), opaque random tokens and their digests, on libsodium.

#include <cstdint>
#include <string>
#include <string_view>

#include "portico/core/result.h"

namespace portico::auth {

struct PasswordParams {
  std::uint64_t ops_limit = 2;                  // t
  std::size_t mem_limit = 19ull * 1024 * 1024;  // m, bytes (OWASP minimum for Argon2id)
};

/// Argon2id hash in the PHC string form ("$argon2id$v=19$m=...,t=...,p=1$...").
/// CPU- and memory-heavy (tens of ms): call it off latency-critical threads.
/// kInternal only if memory runs out. Parameters below libsodium's minimum
/// (t=1, m=8 KiB) are a bug: std::invalid_argument. Never truncates `password`.
Result<std::string> HashPassword(std::string_view password, const PasswordParams& params);

/// True if `password` matches `hash`. A malformed or non-Argon2id hash is
/// simply false. As costly as HashPassword with the hash's own parameters.
bool VerifyPassword(std::string_view hash, std::string_view password);

/// True if `hash` was made with parameters other than `params` (weaker or
/// stronger), or is not an Argon2id hash at all: rehash on the next sign-in.
bool PasswordNeedsRehash(std::string_view hash, const PasswordParams& params);

/// `bytes` random bytes from the OS CSPRNG, base64url without padding.
std::string RandomToken(std::size_t bytes = 32);

/// SHA-256 of `data`, lower-case hex.
std::string Sha256Hex(std::string_view data);

/// Constant-time equality of two strings of equal length (false if lengths differ).
bool ConstantTimeEquals(std::string_view a, std::string_view b);

}  // namespace portico::auth
