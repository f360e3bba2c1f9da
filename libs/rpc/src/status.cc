#include "portico/rpc/status.h"

#include "portico/api/v1/error_details.pb.h"

namespace portico::rpc {
namespace {

grpc::StatusCode CodeFor(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return grpc::StatusCode::INVALID_ARGUMENT;
    case ErrorCode::kNotFound: return grpc::StatusCode::NOT_FOUND;
    case ErrorCode::kAlreadyExists: return grpc::StatusCode::ALREADY_EXISTS;
    case ErrorCode::kVersionMismatch: return grpc::StatusCode::FAILED_PRECONDITION;
    case ErrorCode::kFailedPrecondition: return grpc::StatusCode::FAILED_PRECONDITION;
    case ErrorCode::kUnauthenticated: return grpc::StatusCode::UNAUTHENTICATED;
    case ErrorCode::kPermissionDenied: return grpc::StatusCode::PERMISSION_DENIED;
    case ErrorCode::kResourceExhausted: return grpc::StatusCode::RESOURCE_EXHAUSTED;
    case ErrorCode::kUnavailable: return grpc::StatusCode::UNAVAILABLE;
    case ErrorCode::kDeadlineExceeded: return grpc::StatusCode::DEADLINE_EXCEEDED;
    case ErrorCode::kUnimplemented: return grpc::StatusCode::UNIMPLEMENTED;
    case ErrorCode::kInternal: return grpc::StatusCode::INTERNAL;
  }
  return grpc::StatusCode::INTERNAL;
}

}  // namespace

grpc::Status ToGrpcStatus(const Error& error) {
  api::v1::ErrorDetails details;
  if (!error.reason.empty()) {
    details.set_reason(error.reason);
  } else if (error.code == ErrorCode::kVersionMismatch) {
    details.set_reason("VERSION_MISMATCH");
  }
  if (error.retry_after_seconds > 0) details.set_retry_after_seconds(error.retry_after_seconds);
  for (const auto& f : error.fields) {
    auto* v = details.add_field_violations();
    v->set_field(f.field);
    v->set_description(f.message);
  }
  // Internal errors never carry their message across a process boundary.
  const std::string message =
      error.code == ErrorCode::kInternal ? std::string("internal error") : error.message;
  if (details.reason().empty() && details.field_violations().empty() &&
      details.retry_after_seconds() == 0) {
    return grpc::Status(CodeFor(error.code), message);
  }
  return grpc::Status(CodeFor(error.code), message, details.SerializeAsString());
}

grpc::Status ToGrpcStatus(const Status& status) {
  return status.ok() ? grpc::Status::OK : ToGrpcStatus(status.error());
}

Error FromGrpcStatus(const grpc::Status& status) {
  Error e;
  e.message = status.error_message();
  api::v1::ErrorDetails details;
  if (!status.error_details().empty()) details.ParseFromString(status.error_details());
  for (const auto& v : details.field_violations()) e.fields.push_back({v.field(), v.description()});
  e.reason = details.reason();
  e.retry_after_seconds = details.retry_after_seconds();
  switch (status.error_code()) {
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE: e.code = ErrorCode::kInvalidArgument; break;
    case grpc::StatusCode::NOT_FOUND: e.code = ErrorCode::kNotFound; break;
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::ABORTED: e.code = ErrorCode::kAlreadyExists; break;
    case grpc::StatusCode::FAILED_PRECONDITION:
      e.code = details.reason() == "VERSION_MISMATCH" ? ErrorCode::kVersionMismatch
                                                      : ErrorCode::kFailedPrecondition;
      break;
    case grpc::StatusCode::UNAUTHENTICATED: e.code = ErrorCode::kUnauthenticated; break;
    case grpc::StatusCode::PERMISSION_DENIED: e.code = ErrorCode::kPermissionDenied; break;
    case grpc::StatusCode::RESOURCE_EXHAUSTED: e.code = ErrorCode::kResourceExhausted; break;
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::CANCELLED: e.code = ErrorCode::kUnavailable; break;
    case grpc::StatusCode::DEADLINE_EXCEEDED: e.code = ErrorCode::kDeadlineExceeded; break;
    case grpc::StatusCode::UNIMPLEMENTED: e.code = ErrorCode::kUnimplemented; break;
    default: e.code = ErrorCode::kInternal; break;
  }
  return e;
}

}  // namespace portico::rpc
