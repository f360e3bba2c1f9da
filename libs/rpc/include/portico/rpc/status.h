#pragma once
// The one translation from Portico's protocol-neutral Error to grpc::Status
// (the gateway holds the other table, grpc::Status -> HTTP problem).

#include <grpcpp/support/status.h>

#include "portico/core/result.h"

namespace portico::rpc {

/// Maps `error` to a status whose message is `error.message` and whose
/// binary details carry portico.api.v1.ErrorDetails: field violations,
/// retry_after_seconds, and the reason (error.reason, else "VERSION_MISMATCH"
/// for kVersionMismatch, which the gateway answers with 412).
grpc::Status ToGrpcStatus(const Error& error);

/// OK for an ok Status, else ToGrpcStatus(error).
grpc::Status ToGrpcStatus(const Status& status);

/// The reverse, for clients of other Portico services: keeps the code
/// (FAILED_PRECONDITION with reason VERSION_MISMATCH -> kVersionMismatch),
/// message, field violations, reason and retry_after_seconds.
Error FromGrpcStatus(const grpc::Status& status);

}  // namespace portico::rpc
