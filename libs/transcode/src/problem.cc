#include "portico/transcode/problem.h"

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "fields.h"
#include "portico/api/v1/error_details.pb.h"

namespace portico::transcode {
namespace {

// gRPC's canonical code numbers (grpc::StatusCode), without including gRPC.
enum GrpcCode {
  kOk = 0,
  kCancelled = 1,
  kUnknown = 2,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kAlreadyExists = 6,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kAborted = 10,
  kOutOfRange = 11,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kDataLoss = 15,
  kUnauthenticated = 16,
};

constexpr std::string_view kVersionMismatch = "VERSION_MISMATCH";
// A change-feed position older than retention: the client must sync again.
constexpr std::string_view kSinceTooOld = "SINCE_TOO_OLD";
// An Idempotency-Key sent again with another request (IETF Idempotency-Key draft).
constexpr std::string_view kIdempotencyKeyReused = "IDEMPOTENCY_KEY_REUSED";

int FailedPreconditionStatus(std::string_view reason) {
  if (reason == kVersionMismatch) return 412;
  if (reason == kSinceTooOld) return 410;
  if (reason == kIdempotencyKeyReused) return 422;
  return 400;
}

std::string GenericDetail(int status) {
  switch (status) {
    case 499: return "the request was cancelled";
    case 501: return "this operation is not implemented";
    case 503: return "the service is temporarily unavailable; try again later";
    case 504: return "the request took too long to complete";
    default: return "an internal error occurred";
  }
}

}  // namespace

std::string_view GrpcCodeName(int code) {
  static constexpr std::string_view kNames[] = {
      "OK",        "CANCELLED",          "UNKNOWN",           "INVALID_ARGUMENT",
      "DEADLINE_EXCEEDED", "NOT_FOUND",  "ALREADY_EXISTS",    "PERMISSION_DENIED",
      "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
      "UNIMPLEMENTED", "INTERNAL",       "UNAVAILABLE",       "DATA_LOSS",
      "UNAUTHENTICATED"};
  if (code < 0 || code > 16) return "UNKNOWN";
  return kNames[code];
}

int HttpStatusForGrpc(int code, std::string_view reason) {
  switch (code) {
    case kOk: return 200;
    case kInvalidArgument:
    case kOutOfRange: return 400;
    case kUnauthenticated: return 401;
    case kPermissionDenied: return 403;
    case kNotFound: return 404;
    case kAlreadyExists:
    case kAborted: return 409;
    case kFailedPrecondition: return FailedPreconditionStatus(reason);
    case kResourceExhausted: return 429;
    case kCancelled: return 499;
    case kUnimplemented: return 501;
    case kUnavailable: return 503;
    case kDeadlineExceeded: return 504;
    default: return 500;  // INTERNAL, UNKNOWN, DATA_LOSS, anything else
  }
}

Problem ProblemFromRpcStatus(int grpc_code, std::string_view message,
                             std::string_view error_details) {
  portico::api::v1::ErrorDetails details;
  if (!error_details.empty() &&
      !details.ParseFromArray(error_details.data(), static_cast<int>(error_details.size()))) {
    details.Clear();
  }
  Problem p;
  p.code = std::string(GrpcCodeName(grpc_code));
  p.status = HttpStatusForGrpc(grpc_code, details.reason());
  if (p.status >= 400 && p.status < 499) {
    p.detail = std::string(message);
    for (const auto& v : details.field_violations()) {
      p.errors.push_back({v.field(), v.description()});
    }
  } else {
    p.detail = GenericDetail(p.status);
  }
  // Both "slow down" (429) and "we are overloaded" (503) say when to come back.
  if (p.status == 429 || p.status == 503) {
    p.retry_after_seconds = details.retry_after_seconds() > 0 ? details.retry_after_seconds() : 1;
  }
  return p;
}

Problem ProblemFromError(const Error& error) {
  int code = kInternal;
  switch (error.code) {
    case ErrorCode::kInvalidArgument: code = kInvalidArgument; break;
    case ErrorCode::kNotFound: code = kNotFound; break;
    case ErrorCode::kAlreadyExists: code = kAlreadyExists; break;
    case ErrorCode::kVersionMismatch: code = kFailedPrecondition; break;
    case ErrorCode::kFailedPrecondition: code = kFailedPrecondition; break;
    case ErrorCode::kUnauthenticated: code = kUnauthenticated; break;
    case ErrorCode::kPermissionDenied: code = kPermissionDenied; break;
    case ErrorCode::kResourceExhausted: code = kResourceExhausted; break;
    case ErrorCode::kUnavailable: code = kUnavailable; break;
    case ErrorCode::kDeadlineExceeded: code = kDeadlineExceeded; break;
    case ErrorCode::kUnimplemented: code = kUnimplemented; break;
    case ErrorCode::kInternal: code = kInternal; break;
  }
  Problem p;
  p.code = std::string(GrpcCodeName(code));
  p.status = HttpStatusForGrpc(
      code, error.code == ErrorCode::kVersionMismatch ? kVersionMismatch : std::string_view());
  if (p.status >= 400 && p.status < 499) {
    p.detail = error.message;
    p.errors = error.fields;
  } else {
    p.detail = GenericDetail(p.status);
  }
  if (p.status == 429 || p.status == 503) {
    p.retry_after_seconds = error.retry_after_seconds > 0 ? error.retry_after_seconds : 1;
  }
  return p;
}

Problem MakeProblem(int http_status, std::string_view code, std::string detail) {
  Problem p;
  p.status = http_status;
  p.code = std::string(code);
  p.detail = std::move(detail);
  return p;
}

std::string_view ReasonPhrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 499: return "Client Closed Request";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Error";
  }
}

std::string ProblemType(int status) {
  std::string slug;
  for (char c : ReasonPhrase(status)) {
    if (c == ' ') {
      slug += '-';
    } else {
      slug += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    }
  }
  return "https://portico.dev/problems/" + slug;
}

std::string RenderProblem(const Problem& problem, std::string_view request_id) {
  // Details may quote client input (a query parameter name, a path): keep
  // the document valid UTF-8 whatever it was.
  using internal::ToValidUtf8;
  boost::json::object o;
  o["type"] = ProblemType(problem.status);
  o["title"] = ReasonPhrase(problem.status);
  o["status"] = problem.status;
  o["detail"] = ToValidUtf8(problem.detail);
  o["code"] = problem.code;
  o["requestId"] = ToValidUtf8(request_id);
  boost::json::array errors;
  for (const auto& e : problem.errors) {
    errors.push_back(
        boost::json::object{{"field", ToValidUtf8(e.field)}, {"message", ToValidUtf8(e.message)}});
  }
  o["errors"] = std::move(errors);
  return boost::json::serialize(o);
}

}  // namespace portico::transcode
