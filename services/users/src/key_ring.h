#pragma once
// The Ed25519 keys that sign access tokens, kept in the users database so
// every replica signs and verifies with the same keys without configuration.
// The first replica to start creates the first key.

#include <chrono>
#include <memory>
#include <string>
#include <mutex>
#include <optional>
#include <vector>

#include "portico/auth/jwt.h"
#include "portico/core/deadline.h"
#include "portico/core/result.h"

namespace portico::pg {
class Pool;
}

namespace portico::users {

class KeyRing {
 public:
  explicit KeyRing(pg::Pool& pool);

  /// Uses one fixed key read from `path` (base64url of the 64-byte libsodium
  /// secret key, or of its 32-byte seed) instead of the database; Load then
  /// does nothing and RotateIfDue never rotates. kInvalidArgument if the
  /// file cannot be read or holds no key.
  Status UseKeyFile(const std::string& path);

  /// Makes a new signing key if the newest is older than `max_age` (under
  /// the same advisory lock, so replicas rotate once), then reloads. The
  /// previous key stays published, so tokens it signed keep verifying.
  /// True if this call rotated. Thread-safe; blocks.
  Result<bool> RotateIfDue(std::chrono::seconds max_age, Deadline deadline);

  /// Reads the keys; if there are none, creates one (under a transaction-level
  /// advisory lock, so replicas starting together make exactly one). Errors
  /// from the database. Thread-safe; blocks.
  Status Load(Deadline deadline);

  /// A new key signs only once it is `delay` old, so that every replica has
  /// published it (each reloads the keys every key-check interval) before a
  /// token signed with it can reach a verifier. Set before the first Load.
  void set_activation_delay(std::chrono::seconds delay) { activation_delay_ = delay; }

  /// The key that signs new tokens: the newest one that is at least the
  /// activation delay old, else the oldest loaded (so the very first key
  /// signs at once); nullopt before a successful Load.
  std::optional<auth::SigningKey> Current() const;
  /// Signs `claims` with the Current() key, setting `iat` to now and `exp` to
  /// now + `ttl`. kUnavailable before a successful Load. Thread-safe.
  Result<std::string> Sign(auth::Claims claims, std::chrono::seconds ttl) const;
  /// The newest two public keys (what JWKS publishes and what verifies).
  std::vector<auth::PublicKey> Published() const;
  /// Key set for verifying tokens in this process; refilled by every Load.
  std::shared_ptr<auth::KeySet> keyset() const { return keyset_; }

 private:
  pg::Pool& pool_;
  mutable std::mutex mu_;
  std::vector<auth::SigningKey> keys_;  // newest first; guarded by mu_
  std::vector<std::chrono::steady_clock::time_point> active_from_;  // per key; guarded by mu_
  std::chrono::seconds activation_delay_{0};
  bool from_file_ = false;              // set once before use
  std::shared_ptr<auth::KeySet> keyset_ = std::make_shared<auth::KeySet>();
};

}  // namespace portico::users
