#pragma once
// The gateway's routes, built from the `portico.api.v1.http` and
// `portico.api.v1.access` options of compiled service descriptors. One route
// per HTTP binding (the rule and each of its additional_bindings); RPCs
// without an `http` option are internal and never routed.

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "portico/core/result.h"
#include "portico/transcode/path_template.h"

namespace google::protobuf {
class DescriptorPool;
class MethodDescriptor;
}  // namespace google::protobuf

namespace portico::transcode {

enum class HttpMethod { kGet, kPut, kPost, kDelete, kPatch };
/// "GET", "PUT", ... (upper-case).
std::string_view HttpMethodName(HttpMethod m);
/// Case-sensitive, as HTTP methods are; nullopt for any other method.
std::optional<HttpMethod> ParseHttpMethod(std::string_view s);

/// Access policy of a route. ACCESS_UNSPECIFIED in the proto is kUser.
enum class Access { kPublic, kUser, kAdmin };

struct Route {
  HttpMethod method = HttpMethod::kGet;
  PathTemplate path;
  const google::protobuf::MethodDescriptor* rpc = nullptr;  // owned by the pool
  std::string rpc_path;       // "/portico.users.v1.UserService/GetMe", for gRPC
  std::string service;        // "portico.users.v1.UserService"
  std::string body;           // "", "*" or a field name of the request
  std::string response_body;  // "" or a field name of the response
  int success_status = 0;     // 0 = default (200, or 204 for Empty)
  Access access = Access::kUser;
  std::vector<std::string> scopes;
  bool server_streaming = false;
  /// The rule's own deadline for the backend call (timeout_ms); zero: the
  /// gateway's default. Additional bindings share their RPC's.
  std::chrono::milliseconds timeout{0};
  std::string stream_event_id;  // "" or a field of the response (SSE `id:`)
  std::string stream_resume;    // "" or a request field that Last-Event-ID fills
};

/// Variables captured from a path: (field path, percent-decoded value).
using PathVars = std::vector<std::pair<std::string, std::string>>;

struct MatchResult {
  enum class Kind {
    kFound,
    kNotFound,          // no route has this path
    kMethodNotAllowed,  // routes exist for the path, none for the method
    kBadPath,           // malformed percent-encoding
  };
  Kind kind = Kind::kNotFound;
  const Route* route = nullptr;       // kFound; owned by the table
  PathVars vars;                      // kFound
  std::vector<std::string> allowed;  // kMethodNotAllowed: sorted method names
};

class RouteTable {
 public:
  /// Builds the table from the named services (full names, e.g.
  /// "portico.data.v1.DataService") in `pool` (default: the generated pool).
  /// kInvalidArgument for an unknown service, a malformed template, a
  /// template variable or body/response_body naming no field (or a field
  /// that cannot be set from text), a client-streaming RPC with a rule, or
  /// two rules with the same method and path shape (naming both RPCs).
  static Result<RouteTable> Build(const std::vector<std::string>& services,
                                  const google::protobuf::DescriptorPool* pool = nullptr);

  /// Finds the route for `method` and the request `path` (no query string).
  /// Among routes of the method whose template matches, the most specific
  /// wins, segment by segment: a literal beats '*', which beats '**'; a
  /// template with a custom verb beats one without. Declaration order never
  /// matters. Segments are split on '/' first and then percent-decoded once,
  /// so "%2F" inside a variable stays in its value. Thread-safe (const).
  MatchResult Match(std::string_view method, std::string_view path) const;

  const std::vector<std::unique_ptr<Route>>& routes() const { return routes_; }

 private:
  std::vector<std::unique_ptr<Route>> routes_;
};

}  // namespace portico::transcode
