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
  s.grpc_threads = static_cast<int>(c.GetInt("PORTICO_GRPC_THREADS"));
  return s;
}

}  // namespace portico::data
