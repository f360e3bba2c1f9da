#pragma once
// The users service's configuration: the variable table (which also makes
// --help) and the typed settings read from it.

#include <chrono>
#include <string>
#include <vector>

#include "portico/auth/secrets.h"
#include "portico/core/result.h"
#include "portico/config/config.h"

namespace portico::users {

/// Lifetime of the service tokens users signs for its internal calls.
inline constexpr std::chrono::seconds kServiceTokenTtl{60};

struct Settings {
  config::Address grpc_addr;
  std::string data_target;
  std::string jwt_issuer = "portico";
  std::string jwt_audience = "portico-api";
  std::chrono::seconds access_token_ttl{900};
  std::chrono::seconds refresh_token_ttl{30 * 24 * 3600};
  int password_min_length = 12;
  auth::PasswordParams password_params;
  int hash_workers = 2;
  int hash_queue = 16;
  /// A rotated refresh token presented again within this window gets the
  /// same successor instead of revoking its session (concurrent refreshes).
  std::chrono::seconds refresh_reuse_grace{10};
  /// Age after which a new signing key is made (the old one stays published).
  std::chrono::seconds key_rotation{30 * 24 * 3600};
  /// How often replicas check whether the key must rotate or was rotated.
  std::chrono::seconds key_check_interval{60};
  /// Optional file with the signing key; disables rotation when set.
  std::string key_file;
  std::string bootstrap_admin_email;
  std::string bootstrap_admin_password;
  /// Failed sign-ins per account before it is throttled, and for how long.
  int login_max_failures = 5;
  std::chrono::seconds login_lockout{300};
  /// Failed sign-ins per client address (per process) before throttling.
  int login_address_max_failures = 50;
  std::chrono::seconds login_failure_window{900};
  /// Longest pause between two attempts to purge a deleted owner's data.
  std::chrono::seconds purge_max_backoff{60};
  /// Lifetime of the access token a personal access token is exchanged for.
  std::chrono::seconds pat_exchange_ttl{300};
};

/// Every PORTICO_* variable the users service reads.
const std::vector<config::Var>& Vars();

/// Typed settings from a loaded config (the table's kinds make this total).
/// Addresses, database and logging are read by portico::runtime.
Settings FromConfig(const config::Config& config);

/// Checks what the variable table cannot: with rotation on (no key file),
/// PORTICO_JWT_KEY_ROTATION must be at least 2 x the longest token lifetime
/// (access, PAT exchange or service token) + PORTICO_JWT_KEY_CHECK_INTERVAL,
/// since a key is dropped one rotation after it was replaced and must outlive
/// every token it signed. kInvalidArgument with a message naming the variables.
Status CheckSettings(const Settings& settings);

}  // namespace portico::users
