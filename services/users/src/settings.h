#pragma once
// The users service's configuration: the variable table (which also makes
// --help) and the typed settings read from it.

#include <chrono>
#include <string>
#include <vector>

#include "portico/auth/secrets.h"
#include "portico/config/config.h"

namespace portico::users {

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
  int grpc_threads = 32;
};

/// Every PORTICO_* variable the users service reads.
const std::vector<config::Var>& Vars();

/// Typed settings from a loaded config (the table's kinds make this total).
/// Addresses, database and logging are read by portico::runtime.
Settings FromConfig(const config::Config& config);

}  // namespace portico::users
