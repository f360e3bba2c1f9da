#pragma once
// Routes the gateway answers itself, before the route table: the OpenAPI
// document of the current route table (GET /openapi.json) and Swagger UI
// (GET /docs, its assets under /docs/). Public; not in the document.

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "http_types.h"
#include "portico/transcode/openapi.h"
#include "portico/transcode/problem.h"
#include "portico/transcode/route_table.h"

namespace portico::gateway {

/// True if this build embeds Swagger UI (CMake option PORTICO_SWAGGER_UI
/// with npm found at configure time).
bool SwaggerUiBuiltIn();

/// The OpenAPI document of `routes`, with the comments of the Portico
/// contracts. Deterministic; takes a few milliseconds.
std::string OpenApiDocument(const transcode::RouteTable& routes);

struct BuiltinAnswer {
  std::string label;                          // route label for metrics and the access log
  HttpResponse response;                      // unless `problem` is set
  std::optional<transcode::Problem> problem;  // 404 (no Swagger UI), 405
  std::string allow;                          // with a 405
};

class BuiltinRoutes {
 public:
  /// Generates the document of `routes`.
  explicit BuiltinRoutes(const transcode::RouteTable& routes);

  /// Regenerates the document for another table (call it whenever the
  /// gateway swaps its route table). Thread-safe; requests in flight keep
  /// the document they started with.
  void SetRoutes(const transcode::RouteTable& routes);

  /// The answer for a built-in path (no query string), nullopt for any other
  /// path. Thread-safe; never blocks on generation.
  std::optional<BuiltinAnswer> Serve(std::string_view method, std::string_view path) const;

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const std::string> document_;  // guarded by mu_
};

}  // namespace portico::gateway
