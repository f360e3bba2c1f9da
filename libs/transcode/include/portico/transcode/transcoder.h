#pragma once
// HTTP request parts -> gRPC request message, and gRPC response message ->
// HTTP status and JSON body, driven by a Route. Messages are created from the
// route's prototypes (generated or dynamic), so no code knows any endpoint.

#include <memory>
#include <string>
#include <string_view>

#include "portico/core/result.h"
#include "portico/transcode/route_table.h"

namespace google::protobuf {
class Message;
}

namespace portico::transcode {

/// Builds the request message of `route` from an HTTP request:
/// - the body (proto3 JSON; proto names and lowerCamelCase accepted; unknown
///   fields rejected) fills the whole message for body "*", the named field
///   for body "<field>"; with no body rule the body must be empty. An empty
///   body counts as "{}".
/// - then path variables set their fields; a path variable wins over the
///   same field given in the body, so a body cannot redirect a request to
///   another resource than its URL names.
/// - then query parameters (`a.b=1&tags=x&tags=y`, '+' is a space) set fields
///   that neither the path nor the body binds; names may be proto or JSON
///   names, dotted into nested messages; repeated fields by repetition.
///   Enums take a name (any case) or a number; bools true/false/1/0;
///   int64 and floats as decimal text; bytes as base64; Timestamp as RFC 3339;
///   Duration as "1.5s"; wrappers as their value.
/// kInvalidArgument with a message naming the field (and one FieldViolation)
/// for bad JSON, an unknown query parameter, a bad value, a non-repeated
/// field given twice, or a body where none is expected.
Result<std::unique_ptr<google::protobuf::Message>> BuildRequest(const Route& route,
                                                                const PathVars& vars,
                                                                std::string_view query,
                                                                std::string_view body);

/// A new, empty message of the route's response type.
std::unique_ptr<google::protobuf::Message> NewResponse(const Route& route);

struct HttpBody {
  int status = 200;
  std::string json;  // empty when the status carries no body (204, 304)
};

/// Renders a response: proto3 JSON with lowerCamelCase names and default
/// values printed; `response_body` selects one field. The status is the rule's
/// success_status, else 204 (no body) when the response type is
/// google.protobuf.Empty, else 200. kInternal if printing fails.
Result<HttpBody> RenderResponse(const Route& route, const google::protobuf::Message& response);

/// Parses a `key=value&...` query string into decoded pairs, in order ('+'
/// is a space). kInvalidArgument on a malformed escape.
Result<std::vector<std::pair<std::string, std::string>>> ParseQuery(std::string_view query);

}  // namespace portico::transcode
