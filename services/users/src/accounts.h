#pragma once
// What accounts and sign-in mean, apart from any transport: validation,
// storage, password checks and token issuance. The gRPC classes in
// grpc_services.h decode requests and call this.

#include <string>
#include <string_view>

#include "portico/core/deadline.h"
#include "portico/core/result.h"
#include "portico/users/v1/users.pb.h"
#include "settings.h"

namespace portico::pg {
class Pool;
}

namespace portico::users {

class KeyRing;
class PasswordPool;

/// Trims and lower-cases an e-mail address and checks its syntax;
/// kInvalidArgument naming field "email" if it is not an address.
Result<std::string> NormalizeEmail(std::string_view email);
/// Length in code points within [min_length, 128]; never truncated.
Status ValidatePassword(std::string_view password, int min_length, std::string_view field);
/// 1-100 code points, valid UTF-8, no control characters.
Status ValidateDisplayName(std::string_view name);

struct ClientInfo {
  std::string user_agent;
  std::string address;
};

class Accounts {
 public:
  Accounts(pg::Pool& pool, KeyRing& keys, PasswordPool& passwords, const Settings& settings);

  /// Creates a USER account. kInvalidArgument naming each bad field;
  /// kAlreadyExists if the e-mail is taken. Blocks (hashing, database).
  Result<v1::User> Register(std::string_view email, std::string_view password,
                            std::string_view display_name, Deadline deadline);

  /// Checks the credentials and starts a session. Unknown e-mail and wrong
  /// password both give kUnauthenticated "invalid e-mail or password" after
  /// the same work (a dummy hash is checked); kPermissionDenied for a
  /// disabled account with the right password.
  Result<v1::TokenPair> Login(std::string_view email, std::string_view password,
                              const ClientInfo& client, Deadline deadline);

  /// One account by id; kNotFound if there is none (or `id` is no UUID).
  Result<v1::User> GetUser(std::string_view id, Deadline deadline);

  /// The public keys that verify access tokens, as JWKS.
  v1::Jwks Jwks() const;

 private:
  Result<std::string> IssueAccessToken(const std::string& user_id, const std::string& role);

  pg::Pool& pool_;
  KeyRing& keys_;
  PasswordPool& passwords_;
  const Settings& settings_;
  std::string dummy_hash_;  // checked for unknown e-mails so timing matches
};

}  // namespace portico::users
