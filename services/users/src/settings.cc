#include "settings.h"

namespace portico::users {

const std::vector<config::Var>& Vars() {
  using config::Kind;
  static const std::vector<config::Var> vars = {
      {"PORTICO_GRPC_ADDR", Kind::kAddress, "0.0.0.0:50051", "gRPC listen address"},
      {"PORTICO_ADMIN_ADDR", Kind::kAddress, "0.0.0.0:9091",
       "admin listen address (/healthz, /readyz, /metrics)"},
      {"PORTICO_DATABASE_URL", Kind::kString, "postgresql:///portico_users",
       "libpq connection URI of the users database", true},
      {"PORTICO_DATA_TARGET", Kind::kString, "localhost:50052",
       "gRPC target of the data service"},
      {"PORTICO_LOG_LEVEL", Kind::kEnum, "info", "log level",
       false, false, INT64_MIN, INT64_MAX,
       {"trace", "debug", "info", "warn", "error", "critical", "off"}},
      {"PORTICO_LOG_FORMAT", Kind::kEnum, "json", "log format", false, false, INT64_MIN,
       INT64_MAX, {"json", "text"}},
      {"PORTICO_JWT_ISSUER", Kind::kString, "portico", "`iss` of issued access tokens"},
      {"PORTICO_JWT_AUDIENCE", Kind::kString, "portico-api", "`aud` of issued access tokens"},
      {"PORTICO_ACCESS_TOKEN_TTL", Kind::kDuration, "15m", "lifetime of access tokens"},
      {"PORTICO_REFRESH_TOKEN_TTL", Kind::kDuration, "30d", "lifetime of refresh tokens"},
      {"PORTICO_PASSWORD_MIN_LENGTH", Kind::kInt, "12", "minimum password length (8-128)", false,
       false, 8, 128},
      {"PORTICO_ARGON2_MEMORY", Kind::kSize, "19MiB", "Argon2id memory cost per hash"},
      {"PORTICO_ARGON2_ITERATIONS", Kind::kInt, "2", "Argon2id time cost", false, false, 1, 10},
      {"PORTICO_HASH_WORKERS", Kind::kInt, "2",
       "threads that hash passwords (bounds sign-in CPU use)", false, false, 1, 64},
      {"PORTICO_HASH_QUEUE", Kind::kInt, "16",
       "sign-ins that may wait for a hash worker before RESOURCE_EXHAUSTED", false, false, 1,
       10000},
      {"PORTICO_DB_POOL_SIZE", Kind::kInt, "10", "PostgreSQL connections", false, false, 1, 1000},
      {"PORTICO_GRPC_THREADS", Kind::kInt, "32", "gRPC handler threads", false, false, 2, 1024},
  };
  return vars;
}

Settings FromConfig(const config::Config& c) {
  Settings s;
  s.grpc_addr = c.GetAddress("PORTICO_GRPC_ADDR");
  s.admin_addr = c.GetAddress("PORTICO_ADMIN_ADDR");
  s.database_url = c.GetString("PORTICO_DATABASE_URL");
  s.data_target = c.GetString("PORTICO_DATA_TARGET");
  s.log_level = c.GetString("PORTICO_LOG_LEVEL");
  s.log_format = c.GetString("PORTICO_LOG_FORMAT");
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
  s.db_pool_size = static_cast<int>(c.GetInt("PORTICO_DB_POOL_SIZE"));
  s.grpc_threads = static_cast<int>(c.GetInt("PORTICO_GRPC_THREADS"));
  return s;
}

}  // namespace portico::users
