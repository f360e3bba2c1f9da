#pragma once
// Ed25519 JSON Web Tokens (RFC 7519, RFC 8037 "EdDSA") on libsodium, and the
// key sets that verify them. Only EdDSA with a known `kid` is accepted.

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "portico/core/result.h"

namespace portico::auth {

using PublicKeyBytes = std::array<std::uint8_t, 32>;
using SecretKeyBytes = std::array<std::uint8_t, 64>;  // libsodium's seed||public form

struct PublicKey {
  std::string kid;
  PublicKeyBytes key{};
};

struct SigningKey {
  std::string kid;
  PublicKeyBytes public_key{};
  SecretKeyBytes secret_key{};
};

/// A new random Ed25519 key with a random `kid` (16 url-safe chars).
SigningKey GenerateSigningKey();

/// Access-token claims. `role` is "USER", "ADMIN" or "SERVICE".
struct Claims {
  std::string iss;
  std::string aud;
  std::string sub;
  std::string role;
  std::int64_t iat = 0;  // seconds since the epoch
  std::int64_t exp = 0;
  std::int64_t nbf = 0;  // 0 = absent
  std::string jti;
  std::vector<std::string> scopes;  // empty for full access tokens
};

/// Signs `claims` as a compact JWS with header {"alg":"EdDSA","typ":"JWT","kid"}.
std::string Sign(const Claims& claims, const SigningKey& key);

/// Public keys by kid. Thread-safe (readers share, Replace is atomic).
class KeySet {
 public:
  void Replace(std::vector<PublicKey> keys);
  std::optional<PublicKeyBytes> Find(std::string_view kid) const;
  std::vector<PublicKey> All() const;
  bool empty() const;

 private:
  mutable std::mutex mu_;
  std::vector<PublicKey> keys_;  // guarded by mu_
};

struct VerifierOptions {
  std::string issuer;    // required `iss`
  std::string audience;  // required `aud`
  std::chrono::seconds leeway{30};
  std::size_t cache_size = 10000;  // verified tokens kept until they expire
  /// Current time in seconds since the epoch; empty = the system clock.
  std::function<std::int64_t()> clock;
};

/// Verifies compact JWS tokens against a KeySet. On an unknown `kid` it calls
/// `refresh` (if set) at most once per `refresh_interval`, then retries once.
/// Every failure is kUnauthenticated with a short reason ("expired",
/// "bad signature", "unknown key", "malformed", ...). Thread-safe.
/// `refresh` runs on the verifying thread, one call at a time; threads that
/// meet an unknown `kid` meanwhile wait for it. It must not call Verify.
/// Verified tokens are cached (bounded LRU); a cached token is still checked
/// against the clock and against the KeySet, so it stops verifying once it
/// expires or once its key leaves the set. Required claims: iss, aud (string
/// or array), sub, role, iat, exp; iat beyond now + leeway is rejected.
/// A null KeySet or a leeway outside [0, 24h] is a bug: std::invalid_argument.
class Verifier {
 public:
  using Refresh = std::function<void()>;
  Verifier(std::shared_ptr<KeySet> keys, VerifierOptions options, Refresh refresh = nullptr,
           std::chrono::seconds refresh_interval = std::chrono::seconds(5));
  ~Verifier();
  Result<Claims> Verify(std::string_view token) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Unpadded base64url (RFC 4648 §5).
std::string Base64UrlEncode(std::string_view bytes);
/// Accepts unpadded or padded base64url; nullopt on any invalid character.
std::optional<std::string> Base64UrlDecode(std::string_view text);

/// JWKS (RFC 7517) with OKP/Ed25519 keys: {"keys":[{"kty":"OKP","crv":"Ed25519",
/// "x":..., "kid":..., "alg":"EdDSA", "use":"sig"}]}.
std::string EncodeJwks(const std::vector<PublicKey>& keys);
/// Keys of other types are skipped; malformed JSON or an OKP key with a bad
/// `x` is kInvalidArgument.
Result<std::vector<PublicKey>> DecodeJwks(std::string_view json);
/// One OKP/Ed25519 JWK from its members; kInvalidArgument if it is not one.
Result<PublicKey> PublicKeyFromJwk(std::string_view kty, std::string_view crv, std::string_view x,
                                   std::string_view kid);

}  // namespace portico::auth
