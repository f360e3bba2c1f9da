#include "cors.h"
#include "portico/core/strings.h"

#include <algorithm>
#include <cctype>

namespace portico::gateway {
namespace {

// scheme "://" host [":" port], the serialization browsers send in Origin.
bool IsOrigin(std::string_view o) {
  std::string_view rest;
  if (o.starts_with("https://")) {
    rest = o.substr(8);
  } else if (o.starts_with("http://")) {
    rest = o.substr(7);
  } else {
    return false;
  }
  if (rest.empty()) return false;
  return std::all_of(rest.begin(), rest.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == ':' ||
           c == '[' || c == ']';
  });
}

// The request headers a browser may send cross-origin: the allowlist that
// crosses into gRPC metadata (DESIGN §4; user-agent and the client address
// are not the script's to set) plus content-type.
constexpr std::string_view kAllowHeaders =
    "Authorization, Content-Type, Idempotency-Key, If-Match, If-None-Match, X-Request-Id, "
    "Traceparent";
constexpr std::string_view kExposeHeaders = "ETag, Location, Retry-After, X-Request-Id";

}  // namespace

Result<CorsPolicy> CorsPolicy::Parse(std::string_view origins, std::chrono::seconds max_age) {
  CorsPolicy p;
  p.max_age_ = max_age;
  while (!origins.empty()) {
    const auto comma = origins.find(',');
    const std::string_view entry = TrimBlanks(origins.substr(0, comma));
    origins = comma == std::string_view::npos ? std::string_view() : origins.substr(comma + 1);
    if (entry.empty()) continue;
    if (entry == "*") {
      p.any_ = true;
      continue;
    }
    const std::string lower = AsciiLower(entry);
    if (!IsOrigin(lower)) {
      return Error::InvalidArgument("\"" + std::string(entry) +
                                    "\" is not an origin: expected \"*\" or "
                                    "http(s)://host[:port], without a path or a trailing slash");
    }
    p.origins_.push_back(lower);
  }
  return p;
}

bool CorsPolicy::Listed(std::string_view origin) const {
  const std::string lower = AsciiLower(origin);
  return std::find(origins_.begin(), origins_.end(), lower) != origins_.end();
}

bool CorsPolicy::Allows(std::string_view origin) const {
  if (origin.empty()) return false;
  return any_ || Listed(origin);
}

void CorsPolicy::AddResponseHeaders(std::string_view origin, HttpResponse& response) const {
  if (Listed(origin)) {
    response.headers.emplace_back("Access-Control-Allow-Origin", std::string(origin));
    response.headers.emplace_back("Access-Control-Allow-Credentials", "true");
  } else {
    response.headers.emplace_back("Access-Control-Allow-Origin", "*");
  }
  response.headers.emplace_back("Access-Control-Expose-Headers", std::string(kExposeHeaders));
}

void CorsPolicy::AddPreflightHeaders(const std::vector<std::string>& methods,
                                     HttpResponse& response) const {
  std::string list;
  for (const auto& m : methods) list += (list.empty() ? "" : ", ") + m;
  response.headers.emplace_back("Access-Control-Allow-Methods", list);
  response.headers.emplace_back("Access-Control-Allow-Headers", std::string(kAllowHeaders));
  response.headers.emplace_back("Access-Control-Max-Age", std::to_string(max_age_.count()));
}

}  // namespace portico::gateway
