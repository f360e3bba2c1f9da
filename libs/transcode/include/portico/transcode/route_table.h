#pragma once
// The gateway's routes, built from the `portico.api.v1.http` and
// `portico.api.v1.access` options of compiled service descriptors. One route
// per HTTP binding (the rule and each of its additional_bindings); RPCs
// without an `http` option are internal and never routed.

#include <chrono>
#include <map>
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
class Message;
class MessageFactory;
class MethodDescriptor;
}  // namespace google::protobuf

namespace portico::transcode {

class DescriptorSet;

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
  /// "" or a singular google.protobuf.FieldMask field of the request that
  /// BuildRequest fills from the body's keys (body_field_mask).
  std::string body_field_mask;
  // Empty messages of the request and response types, from the factory of
  // the pool that defines the RPC (generated or dynamic); owned like `rpc`.
  const google::protobuf::Message* request_prototype = nullptr;
  const google::protobuf::Message* response_prototype = nullptr;
};

/// Services to route and where they are defined.
struct ServiceSource {
  std::vector<std::string> services;  // full names
  /// null: the compiled-in (generated) pool. Otherwise the table keeps the
  /// set alive, so its routes, descriptors and prototypes stay valid for as
  /// long as the table lives.
  std::shared_ptr<const DescriptorSet> descriptors;
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
  /// that cannot be set from text), a body_field_mask naming no singular
  /// FieldMask field or on a rule without a body (or whose body field is not
  /// a singular message), a client-streaming RPC with a rule, or
  /// two rules with the same method and path shape (naming both RPCs).
  static Result<RouteTable> Build(const std::vector<std::string>& services,
                                  const google::protobuf::DescriptorPool* pool = nullptr);
  /// The same over services from several pools (e.g. the compiled-in ones
  /// and those of a descriptor set loaded at run time), checked for
  /// conflicts across all of them. The annotations are read from the method
  /// options whether protobuf parsed them as extensions or, for options of a
  /// dynamically built file, left them as unknown fields.
  static Result<RouteTable> BuildFrom(const std::vector<ServiceSource>& sources);

  /// Finds the route for `method` and the request `path` (no query string).
  /// Among routes of the method whose template matches, the most specific
  /// wins, segment by segment: a literal beats '*', which beats '**'; a
  /// template with a custom verb beats one without. Declaration order never
  /// matters. Segments are split on '/' first and then percent-decoded once,
  /// so "%2F" inside a variable stays in its value. Thread-safe (const).
  MatchResult Match(std::string_view method, std::string_view path) const;

  const std::vector<std::unique_ptr<Route>>& routes() const { return routes_; }
  /// The distinct services that have routes, in table order.
  std::vector<std::string> Services() const;

 private:
  Status AddService(const std::string& name, const google::protobuf::DescriptorPool* pool,
                    google::protobuf::MessageFactory* factory,
                    std::map<std::pair<HttpMethod, std::string>, std::string>* owners);

  std::vector<std::unique_ptr<Route>> routes_;
  std::vector<std::shared_ptr<const DescriptorSet>> descriptors_;  // keeps routes' pools alive
};

}  // namespace portico::transcode
