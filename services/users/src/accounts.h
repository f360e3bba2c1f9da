#pragma once
// What accounts and sign-in mean, apart from any transport: validation,
// storage, password checks and token issuance. The gRPC classes in
// grpc_services.h decode requests and call this.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

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

/// Who is calling, as read from a verified access token.
struct Caller {
  std::string user_id;
  std::string session_id;  // "" for tokens not tied to a session (PAT exchange)
  bool admin = false;
};

/// The session an access token belongs to: its `jti` is "<session id>.<unique id>".
std::string SessionIdFromJti(std::string_view jti);

/// The scopes a personal access token may carry.
bool IsKnownScope(std::string_view scope);


enum class AdminPolicy { kCreateOnly, kCreateOrPromote };
enum class AdminOutcome {
  kCreated,         // a new ADMIN account
  kAlreadyAdmin,    // the account exists and is an admin: nothing changed
  kPromoted,        // an existing account became ADMIN (kCreateOrPromote only)
  kExistsNotAdmin,  // an existing non-admin account was left alone (kCreateOnly)
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
  /// Failed sign-ins are counted per account (in the database) and per
  /// client address (in this process); past the limits the answer is
  /// kResourceExhausted, whose retry_after_seconds says for how long.
  Result<v1::TokenPair> Login(std::string_view email, std::string_view password,
                              const ClientInfo& client, Deadline deadline);

  /// Rotates a refresh token. kUnauthenticated for an unknown, expired or
  /// revoked one. A token already rotated more than the grace window ago
  /// revokes its whole session (reuse means theft) and is kUnauthenticated;
  /// within the window the caller gets the same successor again.
  Result<v1::TokenPair> Refresh(std::string_view refresh_token, Deadline deadline);
  /// Revokes the session of `refresh_token`; an unknown token is fine (idempotent).
  Status Logout(std::string_view refresh_token, Deadline deadline);

  Result<v1::User> UpdateMe(const Caller& caller, std::string_view display_name,
                            Deadline deadline);
  /// kInvalidArgument naming currentPassword if it is wrong, newPassword if
  /// it is invalid. Revokes every session but the caller's. A wrong current
  /// password counts as a failed sign-in of the account: past the limit the
  /// answer is kResourceExhausted, whose retry_after_seconds says for how long.
  Status ChangePassword(const Caller& caller, std::string_view current_password,
                        std::string_view new_password, Deadline deadline);
  Result<v1::ListSessionsResponse> ListSessions(const Caller& caller, Deadline deadline);
  /// kNotFound unless it is one of the caller's live sessions.
  Status RevokeSession(const Caller& caller, std::string_view session_id, Deadline deadline);

  /// Deletes an account (the actor may be the account itself) and queues
  /// the purge of its data in the same transaction. kNotFound if there is
  /// no such account; kFailedPrecondition for the last enabled admin.
  Status DeleteUser(const Caller& actor, std::string_view id, Deadline deadline);
  /// Accounts in creation order; page_size 1-1000 (0 = 50), opaque page token.
  Result<v1::ListUsersResponse> ListUsers(const v1::ListUsersRequest& request,
                                          Deadline deadline);
  /// Changes display name, role, disabled. Disabling revokes every session;
  /// demoting or disabling the last enabled admin is kFailedPrecondition.
  Result<v1::User> UpdateUser(const Caller& actor, const v1::UpdateUserRequest& request,
                              Deadline deadline);
  /// Creates an ADMIN account with this e-mail and password if no account has
  /// the e-mail. An existing account is promoted (its password left alone)
  /// only with kCreateOrPromote, the explicit operator command; the start-up
  /// bootstrap uses kCreateOnly, so whoever registered the e-mail first never
  /// becomes an admin by a restart.
  Result<AdminOutcome> EnsureAdmin(std::string_view email, std::string_view password,
                                   AdminPolicy policy, Deadline deadline);

  /// Personal access tokens.
  Result<v1::PersonalToken> CreateToken(const Caller& caller, std::string_view name,
                                        const std::vector<std::string>& scopes,
                                        std::int64_t ttl_seconds, Deadline deadline);
  Result<v1::ListTokensResponse> ListTokens(const Caller& caller, Deadline deadline);
  Status RevokeToken(const Caller& caller, std::string_view id, Deadline deadline);
  /// Resolves a `pat_` token: active=false for unknown, revoked, expired or
  /// disabled-owner tokens; else the owner, scopes and a short-lived access
  /// token limited to those scopes.
  Result<v1::IntrospectResponse> Introspect(std::string_view token, Deadline deadline);

  /// Deletes what no longer matters: refresh tokens expired a day ago,
  /// sessions left without tokens, sign-in failures past their window.
  /// Returns the rows deleted. Blocks.
  Result<std::int64_t> Housekeeping(Deadline deadline);

  /// Called after a transaction queued a purge (wakes the dispatcher).
  void set_on_purge_queued(std::function<void()> f) { on_purge_queued_ = std::move(f); }

  /// One account by id; kNotFound if there is none (or `id` is no UUID).
  Result<v1::User> GetUser(std::string_view id, Deadline deadline);

  /// The public keys that verify access tokens, as JWKS.
  v1::Jwks Jwks() const;

 private:
  Result<std::string> IssueAccessToken(const std::string& user_id, const std::string& role,
                                       const std::string& session_id,
                                       std::chrono::seconds ttl,
                                       std::vector<std::string> scopes = {});
  Result<v1::TokenPair> MakePair(const std::string& user_id, const std::string& role,
                                 const std::string& session_id, std::string refresh);
  // Reserves one password check for the account `email` (known or not)
  // before the hash runs, atomically in the database: 0 if it may go ahead,
  // else the seconds the account stays locked. At most login_max_failures
  // checks run per window however many arrive at once.
  Result<std::int64_t> ReserveAttempt(const std::string& email, Deadline deadline);
  Status ClearAttempts(const std::string& email, Deadline deadline);
  // Seconds to wait if `address` is throttled, else 0; and the failure count.
  std::int64_t AddressRetryAfter(const std::string& address);
  void NoteAddressFailure(const std::string& address);

  struct AddressFailures {
    int count = 0;
    std::chrono::steady_clock::time_point first;
    std::chrono::steady_clock::time_point locked_until;
  };
  std::mutex address_mu_;
  std::map<std::string, AddressFailures> address_failures_;  // guarded by address_mu_
  std::function<void()> on_purge_queued_;

  pg::Pool& pool_;
  KeyRing& keys_;
  PasswordPool& passwords_;
  const Settings& settings_;
  std::string dummy_hash_;  // checked for unknown e-mails so timing matches
};

}  // namespace portico::users
