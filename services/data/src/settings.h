#pragma once
// The data service's configuration: the variable table (which also makes
// --help) and the typed settings read from it.

#include <cstdint>
#include <string>
#include <vector>

#include "portico/config/config.h"

namespace portico::data {

struct Settings {
  config::Address grpc_addr;
  std::string users_target;
  std::string jwt_issuer = "portico";
  std::string jwt_audience = "portico-api";
  std::uint64_t max_item_bytes = 256 * 1024;
  int grpc_threads = 32;
};

const std::vector<config::Var>& Vars();
/// Addresses, database and logging are read by portico::runtime.
Settings FromConfig(const config::Config& config);

}  // namespace portico::data
