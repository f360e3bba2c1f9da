#pragma once
// Protocol-neutral errors and Result<T>, the way expected failures cross
// library boundaries. Transports translate Error exactly once: services to
// grpc::Status (portico/rpc/status.h), the gateway to an HTTP problem.

#include <cassert>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace portico {

enum class ErrorCode {
  kInvalidArgument,
  kNotFound,
  kAlreadyExists,
  kVersionMismatch,
  kFailedPrecondition,
  kUnauthenticated,
  kPermissionDenied,
  kResourceExhausted,
  kUnavailable,
  kDeadlineExceeded,
  kUnimplemented,
  kInternal,
};

/// Stable name of a code, e.g. "kNotFound" -> "NOT_FOUND" (the gRPC spelling).
const char* ErrorCodeName(ErrorCode code);

/// One invalid input field and why, e.g. {"email", "must be a valid address"}.
struct FieldViolation {
  std::string field;
  std::string message;
  friend bool operator==(const FieldViolation&, const FieldViolation&) = default;
};

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;                 // Safe to show to the caller.
  std::vector<FieldViolation> fields;  // For kInvalidArgument.
  // A machine-readable refinement of `code` that clients may act on, e.g.
  // "SINCE_TOO_OLD" (the gateway answers it with 410). Empty for most errors.
  std::string reason;
  int retry_after_seconds = 0;  // For kResourceExhausted and kUnavailable: when to try again.

  static Error InvalidArgument(std::string msg, std::vector<FieldViolation> f = {}) {
    return {ErrorCode::kInvalidArgument, std::move(msg), std::move(f)};
  }
  static Error NotFound(std::string msg) { return {ErrorCode::kNotFound, std::move(msg), {}}; }
  static Error AlreadyExists(std::string msg) {
    return {ErrorCode::kAlreadyExists, std::move(msg), {}};
  }
  static Error Unauthenticated(std::string msg) {
    return {ErrorCode::kUnauthenticated, std::move(msg), {}};
  }
  static Error PermissionDenied(std::string msg) {
    return {ErrorCode::kPermissionDenied, std::move(msg), {}};
  }
  static Error Unavailable(std::string msg) {
    return {ErrorCode::kUnavailable, std::move(msg), {}};
  }
  static Error Internal(std::string msg) { return {ErrorCode::kInternal, std::move(msg), {}}; }
};

/// Either a value or an Error. Accessing the wrong alternative is a bug
/// (asserted in debug builds).
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & {
    assert(ok());
    return std::get<0>(v_);
  }
  const T& value() const& {
    assert(ok());
    return std::get<0>(v_);
  }
  T&& value() && {
    assert(ok());
    return std::get<0>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }

  const Error& error() const& {
    assert(!ok());
    return std::get<1>(v_);
  }
  Error&& error() && {
    assert(!ok());
    return std::get<1>(std::move(v_));
  }

 private:
  std::variant<T, Error> v_;
};

/// Result of an operation with no value.
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const& {
    assert(!ok_);
    return error_;
  }
  Error&& error() && {
    assert(!ok_);
    return std::move(error_);
  }

 private:
  Error error_;
  bool ok_ = true;
};

using Status = Result<void>;

}  // namespace portico
