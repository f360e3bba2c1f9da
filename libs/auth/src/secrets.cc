// Argon2id password hashes, random tokens and digests on libsodium.

#include "portico/auth/secrets.h"

#include <sodium.h>

#include <stdexcept>

#include "internal.h"
#include "portico/auth/jwt.h"

namespace portico::auth {
namespace {

constexpr std::string_view kArgon2idPrefix = "$argon2id$";

void CheckParams(const PasswordParams& params) {
  if (params.ops_limit < crypto_pwhash_argon2id_OPSLIMIT_MIN ||
      params.ops_limit > crypto_pwhash_argon2id_OPSLIMIT_MAX ||
      params.mem_limit < crypto_pwhash_argon2id_MEMLIMIT_MIN ||
      params.mem_limit > crypto_pwhash_argon2id_MEMLIMIT_MAX) {
    throw std::invalid_argument("Argon2id parameters out of libsodium's range");
  }
}

// The hash as the NUL-terminated string libsodium reads, or nullopt if it
// cannot be an Argon2id hash. An embedded NUL would make libsodium read a
// prefix of what is stored, so it is refused.
std::optional<std::string> Argon2idString(std::string_view hash) {
  if (hash.size() >= crypto_pwhash_STRBYTES || hash.substr(0, kArgon2idPrefix.size()) != kArgon2idPrefix ||
      hash.find('\0') != std::string_view::npos) {
    return std::nullopt;
  }
  return std::string(hash);
}

}  // namespace

Result<std::string> HashPassword(std::string_view password, const PasswordParams& params) {
  CheckParams(params);
  internal::EnsureSodium();
  char out[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str_alg(out, password.data(), password.size(), params.ops_limit,
                            params.mem_limit, crypto_pwhash_ALG_ARGON2ID13) != 0) {
    return Error::Internal("out of memory hashing a password");
  }
  return std::string(out);
}

bool VerifyPassword(std::string_view hash, std::string_view password) {
  const auto str = Argon2idString(hash);
  if (!str) return false;
  internal::EnsureSodium();
  return crypto_pwhash_str_verify(str->c_str(), password.data(), password.size()) == 0;
}

bool PasswordNeedsRehash(std::string_view hash, const PasswordParams& params) {
  CheckParams(params);
  const auto str = Argon2idString(hash);
  if (!str) return true;
  internal::EnsureSodium();
  // 1: other parameters; -1: not a well-formed Argon2id hash.
  return crypto_pwhash_str_needs_rehash(str->c_str(), params.ops_limit, params.mem_limit) != 0;
}

std::string RandomToken(std::size_t bytes) {
  internal::EnsureSodium();
  std::string raw(bytes, '\0');
  randombytes_buf(raw.data(), raw.size());
  std::string token = Base64UrlEncode(raw);
  sodium_memzero(raw.data(), raw.size());
  return token;
}

std::string Sha256Hex(std::string_view data) {
  internal::EnsureSodium();
  unsigned char digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(digest, reinterpret_cast<const unsigned char*>(data.data()), data.size());
  char hex[crypto_hash_sha256_BYTES * 2 + 1];
  sodium_bin2hex(hex, sizeof hex, digest, sizeof digest);
  return std::string(hex, crypto_hash_sha256_BYTES * 2);
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  internal::EnsureSodium();
  return sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace portico::auth
