#pragma once
// The data service's configuration: the variable table (which also makes
// --help) and the typed settings read from it.

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "portico/config/config.h"
#include "portico/core/result.h"

namespace portico::data {

/// PORTICO_PAGE_TOKEN_KEY's default. It is public, so with it anyone can
/// forge page tokens (see Main's warning).
inline constexpr const char* kDefaultPageTokenKey = "portico-local-page-token-key";

struct Settings {
  config::Address grpc_addr;
  std::string users_target;
  std::string jwt_issuer = "portico";
  std::string jwt_audience = "portico-api";
  std::uint64_t max_item_bytes = 256 * 1024;
  std::chrono::seconds change_retention = std::chrono::hours(24 * 30);
  std::chrono::seconds idempotency_ttl = std::chrono::hours(24);
  std::chrono::milliseconds prune_interval = std::chrono::minutes(10);
  std::string page_token_key;
  int max_watches = 10000;
  std::chrono::milliseconds watch_poll_interval = std::chrono::seconds(5);
};

const std::vector<config::Var>& Vars();
/// Addresses, database and logging are read by portico::runtime.
Settings FromConfig(const config::Config& config);
/// Checks that settings agree with each other (the table checks each one);
/// kInvalidArgument naming the variable otherwise.
Status CheckSettings(const Settings& settings);

}  // namespace portico::data
