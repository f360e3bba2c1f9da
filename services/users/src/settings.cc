#include "settings.h"

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
        {.name = "PORTICO_HASH_WORKERS", .kind = Kind::kInt, .default_value = "2",
         .help = "threads that hash passwords (bounds sign-in CPU use)", .min = 1, .max = 64},
        {.name = "PORTICO_HASH_QUEUE", .kind = Kind::kInt, .default_value = "16",
         .help = "sign-ins that may wait for a hash worker before RESOURCE_EXHAUSTED", .min = 1,
         .max = 10000},
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
  s.hash_queue = static_cast<int>(c.GetInt("PORTICO_HASH_QUEUE"));
  s.grpc_threads = static_cast<int>(c.GetInt("PORTICO_GRPC_THREADS"));
  s.grpc_addr = c.GetAddress("PORTICO_GRPC_ADDR");
  return s;
}

}  // namespace portico::users
