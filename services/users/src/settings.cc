#include "settings.h"

#include <algorithm>
#include <thread>

#include "portico/runtime/runtime.h"

namespace portico::users {

const std::vector<config::Var>& Vars() {
  using config::Kind;
  static const std::vector<config::Var> vars = [] {
    auto v = runtime::ServiceVars("0.0.0.0:50051", "0.0.0.0:9091", "postgresql:///portico_users");
    for (auto& t : runtime::TokenVars("of issued access tokens")) v.push_back(std::move(t));
    std::vector<config::Var> own = {
        {.name = "PORTICO_DATA_TARGET", .default_value = "localhost:50052",
         .help = "gRPC target of the data service"},
        {.name = "PORTICO_ACCESS_TOKEN_TTL", .kind = Kind::kDuration, .default_value = "15m",
         .help = "lifetime of access tokens"},
        {.name = "PORTICO_REFRESH_TOKEN_TTL", .kind = Kind::kDuration, .default_value = "30d",
         .help = "lifetime of refresh tokens"},
        {.name = "PORTICO_PASSWORD_MIN_LENGTH", .kind = Kind::kInt, .default_value = "12",
         .help = "minimum password length in characters", .min = 8, .max = 128},
        {.name = "PORTICO_ARGON2_MEMORY", .kind = Kind::kSize, .default_value = "19MiB",
         .help = "Argon2id memory cost per hash"},
        {.name = "PORTICO_ARGON2_ITERATIONS", .kind = Kind::kInt, .default_value = "2",
         .help = "Argon2id time cost", .min = 1, .max = 10},
        {.name = "PORTICO_HASH_WORKERS", .kind = Kind::kInt, .default_value = "0",
         .help = "threads that hash passwords (bounds sign-in CPU use); 0 = half the CPUs, "
                 "at least 1",
         .min = 0, .max = 64},
        {.name = "PORTICO_HASH_QUEUE", .kind = Kind::kInt, .default_value = "16",
         .help = "calls that hash a password (sign-up, sign-in, password change) that may "
                 "wait for a hash worker; beyond: UNAVAILABLE (503) with a retry hint",
         .min = 1,
         .max = 10000},
        {.name = "PORTICO_REFRESH_REUSE_GRACE", .kind = Kind::kDuration, .default_value = "10s",
         .help = "window in which a rotated refresh token gets the same successor again"},
        {.name = "PORTICO_JWT_KEY_ROTATION", .kind = Kind::kDuration, .default_value = "30d",
         .help = "age at which the signing key is replaced (the previous stays published); "
                 "at least 2 x the longest token lifetime + PORTICO_JWT_KEY_CHECK_INTERVAL"},
        {.name = "PORTICO_JWT_KEY_CHECK_INTERVAL", .kind = Kind::kDuration, .default_value = "1m",
         .help = "how often the signing keys are reloaded and checked for rotation"},
        {.name = "PORTICO_JWT_KEY_FILE",
         .help = "file with a base64url Ed25519 secret key (64 bytes) that signs tokens; "
                 "no rotation when set"},
        {.name = "PORTICO_BOOTSTRAP_ADMIN_EMAIL",
         .help = "e-mail of an ADMIN account created at start if no account has it (an "
                 "existing account is never promoted: use create-admin)"},
        {.name = "PORTICO_BOOTSTRAP_ADMIN_PASSWORD",
         .help = "password of the bootstrap admin account", .secret = true},
        {.name = "PORTICO_LOGIN_MAX_FAILURES", .kind = Kind::kInt, .default_value = "5",
         .help = "failed sign-ins per account before it is throttled", .min = 1, .max = 1000},
        {.name = "PORTICO_LOGIN_LOCKOUT", .kind = Kind::kDuration, .default_value = "5m",
         .help = "how long a throttled account refuses sign-ins"},
        {.name = "PORTICO_LOGIN_ADDRESS_MAX_FAILURES", .kind = Kind::kInt, .default_value = "50",
         .help = "failed sign-ins per client address before it is throttled", .min = 1,
         .max = 1000000},
        {.name = "PORTICO_LOGIN_FAILURE_WINDOW", .kind = Kind::kDuration, .default_value = "15m",
         .help = "failures older than this are forgotten"},
        {.name = "PORTICO_PURGE_MAX_BACKOFF", .kind = Kind::kDuration, .default_value = "1m",
         .help = "longest pause between attempts to purge a deleted account's data"},
        {.name = "PORTICO_PAT_EXCHANGE_TTL", .kind = Kind::kDuration, .default_value = "5m",
         .help = "lifetime of the access token a personal access token is exchanged for"},
    };
    for (auto& o : own) v.push_back(std::move(o));
    return v;
  }();
  return vars;
}

Settings FromConfig(const config::Config& c) {
  Settings s;
  s.data_target = c.GetString("PORTICO_DATA_TARGET");
  s.jwt_issuer = c.GetString("PORTICO_JWT_ISSUER");
  s.jwt_audience = c.GetString("PORTICO_JWT_AUDIENCE");
  s.access_token_ttl =
      std::chrono::duration_cast<std::chrono::seconds>(c.GetDuration("PORTICO_ACCESS_TOKEN_TTL"));
  s.refresh_token_ttl =
      std::chrono::duration_cast<std::chrono::seconds>(c.GetDuration("PORTICO_REFRESH_TOKEN_TTL"));
  s.password_min_length = static_cast<int>(c.GetInt("PORTICO_PASSWORD_MIN_LENGTH"));
  s.password_params.mem_limit = c.GetSize("PORTICO_ARGON2_MEMORY");
  s.password_params.ops_limit = static_cast<std::uint64_t>(c.GetInt("PORTICO_ARGON2_ITERATIONS"));
  s.hash_workers = static_cast<int>(c.GetInt("PORTICO_HASH_WORKERS"));
  if (s.hash_workers == 0) {
    // Half the CPUs leaves the rest for every other RPC during a sign-in flood.
    s.hash_workers = std::max(1, static_cast<int>(std::thread::hardware_concurrency() / 2));
  }
  s.hash_queue = static_cast<int>(c.GetInt("PORTICO_HASH_QUEUE"));
  s.grpc_addr = c.GetAddress("PORTICO_GRPC_ADDR");
  auto secs = [&](std::string_view name) {
    return std::chrono::duration_cast<std::chrono::seconds>(c.GetDuration(name));
  };
  s.refresh_reuse_grace = secs("PORTICO_REFRESH_REUSE_GRACE");
  s.key_rotation = secs("PORTICO_JWT_KEY_ROTATION");
  s.key_check_interval = std::max(secs("PORTICO_JWT_KEY_CHECK_INTERVAL"), std::chrono::seconds(1));
  s.key_file = c.GetString("PORTICO_JWT_KEY_FILE");
  s.bootstrap_admin_email = c.GetString("PORTICO_BOOTSTRAP_ADMIN_EMAIL");
  s.bootstrap_admin_password = c.GetString("PORTICO_BOOTSTRAP_ADMIN_PASSWORD");
  s.login_max_failures = static_cast<int>(c.GetInt("PORTICO_LOGIN_MAX_FAILURES"));
  s.login_lockout = std::max(secs("PORTICO_LOGIN_LOCKOUT"), std::chrono::seconds(1));
  s.login_address_max_failures = static_cast<int>(c.GetInt("PORTICO_LOGIN_ADDRESS_MAX_FAILURES"));
  s.login_failure_window = secs("PORTICO_LOGIN_FAILURE_WINDOW");
  s.purge_max_backoff = std::max(secs("PORTICO_PURGE_MAX_BACKOFF"), std::chrono::seconds(1));
  s.pat_exchange_ttl =
      std::clamp(secs("PORTICO_PAT_EXCHANGE_TTL"), std::chrono::seconds(10), std::chrono::seconds(300));
  return s;
}

Status CheckSettings(const Settings& s) {
  if (!s.key_file.empty()) return {};
  const auto longest = std::max({s.access_token_ttl, s.pat_exchange_ttl, kServiceTokenTtl});
  const auto needed = 2 * longest + s.key_check_interval;
  if (s.key_rotation >= needed) return {};
  return Error::InvalidArgument(
      "PORTICO_JWT_KEY_ROTATION is " + std::to_string(s.key_rotation.count()) +
      " s but must be at least 2 x the longest token lifetime (" +
      std::to_string(longest.count()) +
      " s, from PORTICO_ACCESS_TOKEN_TTL, PORTICO_PAT_EXCHANGE_TTL or service tokens) + "
      "PORTICO_JWT_KEY_CHECK_INTERVAL (" + std::to_string(s.key_check_interval.count()) +
      " s) = " + std::to_string(needed.count()) +
      " s: a replaced key must stay published until every token it signed has expired");
}

}  // namespace portico::users
