#include "settings.h"

#include "portico/runtime/runtime.h"

namespace portico::data {

const std::vector<config::Var>& Vars() {
  using config::Kind;
  static const std::vector<config::Var> vars = [] {
    auto v = runtime::ServiceVars("0.0.0.0:50052", "0.0.0.0:9092", "postgresql:///portico_data");
    for (auto& t : runtime::TokenVars("required of access tokens")) v.push_back(std::move(t));
    v.push_back({.name = "PORTICO_USERS_TARGET", .default_value = "localhost:50051",
                 .help = "gRPC target of the users service (token keys)"});
    v.push_back({.name = "PORTICO_MAX_ITEM_SIZE", .kind = Kind::kSize, .default_value = "256KiB",
                 .help = "largest item `data`, as JSON text"});
    v.push_back({.name = "PORTICO_CHANGE_RETENTION", .kind = Kind::kDuration,
                 .default_value = "30d",
                 .help = "how long deletions stay in the change feed; a client whose `since` "
                         "is older must sync again from 0 (410)"});
    v.push_back({.name = "PORTICO_IDEMPOTENCY_TTL", .kind = Kind::kDuration,
                 .default_value = "24h",
                 .help = "how long an Idempotency-Key remembers the first result of a create"});
    v.push_back({.name = "PORTICO_PRUNE_INTERVAL", .kind = Kind::kDuration,
                 .default_value = "10m",
                 .help = "how often expired tombstones and idempotency keys are deleted (at least 1s)"});
    v.push_back({.name = "PORTICO_PAGE_TOKEN_KEY",
                 .default_value = kDefaultPageTokenKey,
                 .help = "HMAC key of list page tokens; set the same random value on every "
                         "replica in production",
                 .secret = true});
    v.push_back({.name = "PORTICO_MAX_WATCHES", .kind = Kind::kInt, .default_value = "10000",
                 .help = "live change-feed watches open at once (a watch holds no thread); "
                         "beyond: 429",
                 .min = 0, .max = 1'000'000});
    v.push_back({.name = "PORTICO_WATCH_POLL_INTERVAL", .kind = Kind::kDuration,
                 .default_value = "5s",
                 .help = "how often a watch re-reads the feed without a notification (at "
                         "least 100ms); bounds the delay if a notification is lost"});
    return v;
  }();
  return vars;
}

Settings FromConfig(const config::Config& c) {
  Settings s;
  s.grpc_addr = c.GetAddress("PORTICO_GRPC_ADDR");
  s.users_target = c.GetString("PORTICO_USERS_TARGET");
  s.jwt_issuer = c.GetString("PORTICO_JWT_ISSUER");
  s.jwt_audience = c.GetString("PORTICO_JWT_AUDIENCE");
  s.max_item_bytes = c.GetSize("PORTICO_MAX_ITEM_SIZE");
  s.change_retention =
      std::chrono::duration_cast<std::chrono::seconds>(c.GetDuration("PORTICO_CHANGE_RETENTION"));
  s.idempotency_ttl =
      std::chrono::duration_cast<std::chrono::seconds>(c.GetDuration("PORTICO_IDEMPOTENCY_TTL"));
  s.prune_interval = c.GetDuration("PORTICO_PRUNE_INTERVAL");
  s.page_token_key = c.GetString("PORTICO_PAGE_TOKEN_KEY");
  s.max_watches = static_cast<int>(c.GetInt("PORTICO_MAX_WATCHES"));
  s.watch_poll_interval = c.GetDuration("PORTICO_WATCH_POLL_INTERVAL");
  return s;
}

Status CheckSettings(const Settings& s) {
  if (s.watch_poll_interval < std::chrono::milliseconds(100)) {
    return Error::InvalidArgument("PORTICO_WATCH_POLL_INTERVAL must be at least 100ms");
  }
  return {};
}

}  // namespace portico::data
