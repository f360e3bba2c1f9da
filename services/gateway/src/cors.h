#pragma once
// Cross-origin resource sharing (Fetch standard, CORS protocol) for browser
// clients on other origins: which origins may call, and the headers that say
// so on preflights and on actual responses.

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "http_types.h"
#include "portico/core/result.h"

namespace portico::gateway {

class CorsPolicy {
 public:
  /// Parses a comma-separated allowlist of exact origins
  /// ("https://app.example.com", "http://localhost:3000") and/or "*" (any
  /// origin, then without credentials). An empty list turns CORS off.
  /// kInvalidArgument naming an entry that is not "*" nor
  /// http(s)://host[:port] without path.
  static Result<CorsPolicy> Parse(std::string_view origins, std::chrono::seconds max_age);

  bool enabled() const { return any_ || !origins_.empty(); }
  /// True if requests from `origin` (an Origin header value) may be shared.
  bool Allows(std::string_view origin) const;

  /// The headers of any response to an allowed `origin`:
  /// Access-Control-Allow-Origin (the origin itself, or "*" when only the
  /// wildcard admits it), Access-Control-Allow-Credentials for an exactly
  /// listed origin, Access-Control-Expose-Headers.
  void AddResponseHeaders(std::string_view origin, HttpResponse& response) const;
  /// What a preflight answer adds for a path on which `methods` are routed:
  /// Access-Control-Allow-Methods, -Allow-Headers, -Max-Age.
  void AddPreflightHeaders(const std::vector<std::string>& methods, HttpResponse& response) const;

 private:
  bool Listed(std::string_view origin) const;

  bool any_ = false;
  std::vector<std::string> origins_;  // lower-case
  std::chrono::seconds max_age_{0};
};

}  // namespace portico::gateway
