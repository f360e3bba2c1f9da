#include "settings.h"

namespace portico::data {

const std::vector<config::Var>& Vars() {
  using config::Kind;
  static const std::vector<config::Var> vars = {
      {"PORTICO_GRPC_ADDR", Kind::kAddress, "0.0.0.0:50052", "gRPC listen address"},
      {"PORTICO_ADMIN_ADDR", Kind::kAddress, "0.0.0.0:9092",
       "admin listen address (/healthz, /readyz, /metrics)"},
      {"PORTICO_DATABASE_URL", Kind::kString, "postgresql:///portico_data",
       "libpq connection URI of the data database", true},
      {"PORTICO_USERS_TARGET", Kind::kString, "localhost:50051",
       "gRPC target of the users service (token keys)"},
      {"PORTICO_LOG_LEVEL", Kind::kEnum, "info", "log level", false, false, INT64_MIN, INT64_MAX,
       {"trace", "debug", "info", "warn", "error", "critical", "off"}},
      {"PORTICO_LOG_FORMAT", Kind::kEnum, "json", "log format", false, false, INT64_MIN,
       INT64_MAX, {"json", "text"}},
      {"PORTICO_JWT_ISSUER", Kind::kString, "portico", "required `iss` of access tokens"},
      {"PORTICO_JWT_AUDIENCE", Kind::kString, "portico-api", "required `aud` of access tokens"},
      {"PORTICO_MAX_ITEM_SIZE", Kind::kSize, "256KiB", "largest item `data` (as JSON text)"},
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
  s.users_target = c.GetString("PORTICO_USERS_TARGET");
  s.jwt_issuer = c.GetString("PORTICO_JWT_ISSUER");
  s.jwt_audience = c.GetString("PORTICO_JWT_AUDIENCE");
  s.max_item_bytes = c.GetSize("PORTICO_MAX_ITEM_SIZE");
  s.db_pool_size = static_cast<int>(c.GetInt("PORTICO_DB_POOL_SIZE"));
  s.grpc_threads = static_cast<int>(c.GetInt("PORTICO_GRPC_THREADS"));
  return s;
}

}  // namespace portico::data
