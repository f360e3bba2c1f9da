#pragma once
// RFC 9457 problem details, and THE translation of gRPC statuses to HTTP
// (DESIGN §4). Nothing else in the codebase maps gRPC codes to HTTP.

#include <string>
#include <string_view>
#include <vector>

#include "portico/core/result.h"

namespace portico::transcode {

struct Problem {
  int status = 500;
  std::string code;    // gRPC code name, e.g. "NOT_FOUND"
  std::string detail;  // safe to show to the client
  std::vector<FieldViolation> errors;
  int retry_after_seconds = 0;  // > 0: send Retry-After
};

/// "OK", "CANCELLED", ... "UNAUTHENTICATED" for gRPC code numbers 0..16;
/// "UNKNOWN" otherwise.
std::string_view GrpcCodeName(int code);

/// The HTTP status for a gRPC code. `reason` from ErrorDetails refines
/// FAILED_PRECONDITION: "VERSION_MISMATCH" 412, "SINCE_TOO_OLD" 410,
/// "IDEMPOTENCY_KEY_REUSED" 422, anything else 400.
int HttpStatusForGrpc(int code, std::string_view reason = {});

/// Builds the problem for a non-OK gRPC status. `error_details` is the
/// status' binary details (a serialized portico.api.v1.ErrorDetails, or
/// empty): it supplies the field violations, the 412 refinement and
/// Retry-After (default 1 s for RESOURCE_EXHAUSTED). The backend's message is
/// shown for 4xx codes only; 5xx and 499 get a generic detail.
Problem ProblemFromRpcStatus(int grpc_code, std::string_view message,
                             std::string_view error_details);

/// A problem raised by the gateway itself or by transcoding (`error`'s code
/// goes through the same table; its message and fields are shown except for
/// kInternal).
Problem ProblemFromError(const Error& error);

/// A problem with an explicit HTTP status (404 unknown path, 405, 413, 415, 431, ...).
Problem MakeProblem(int http_status, std::string_view code, std::string detail);

/// Standard reason phrase ("Not Found"); "Error" for unknown statuses.
std::string_view ReasonPhrase(int status);

/// The `type` URI: "https://portico.dev/problems/<slug>", one per HTTP status.
std::string ProblemType(int status);

/// application/problem+json body: {"type","title","status","detail","code",
/// "requestId","errors":[{"field","message"}]}.
std::string RenderProblem(const Problem& problem, std::string_view request_id);

}  // namespace portico::transcode
