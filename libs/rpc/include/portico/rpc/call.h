#pragma once
// Per-RPC plumbing shared by every service handler: request/trace ids from
// metadata into the log context, the caller's deadline, bearer-token
// authentication, one access-log line and metrics per RPC, and one top-level
// catch so nothing escapes a handler. Serve runs a callback-API call's
// handler on an Executor's worker, so gRPC's threads never block.

#include <grpcpp/client_context.h>
#include <grpcpp/server_context.h>
#include <grpcpp/support/server_callback.h>

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "portico/core/deadline.h"
#include "portico/core/result.h"

namespace portico::auth {
class Verifier;
}

namespace portico::rpc {

class Executor;

/// The authenticated caller.
struct Principal {
  std::string subject;  // user id, or the service name for role SERVICE
  std::string role;     // "USER", "ADMIN" or "SERVICE"
  std::vector<std::string> scopes;
  std::string token_id;  // the token's `jti`
  bool IsAdmin() const { return role == "ADMIN"; }
};

/// What a handler knows about its call, decoded once from the metadata.
class Call {
 public:
  /// `method` is the full RPC name ("portico.data.v1.DataService/GetItem");
  /// its `portico.api.v1.access` option says which token scopes it accepts.
  explicit Call(grpc::ServerContextBase* ctx, std::string_view method = {});

  grpc::ServerContextBase* context() const { return ctx_; }
  const std::string& request_id() const { return request_id_; }
  const std::string& trace_id() const { return trace_id_; }
  const std::string& span_id() const { return span_id_; }
  const std::string& trace_flags() const { return trace_flags_; }
  /// The caller's deadline, capped at `max_budget` from now (default 30 s)
  /// so a call without one cannot hold a database connection forever.
  Deadline deadline() const { return deadline_; }
  /// Metadata value or "" (first value only).
  std::string Metadata(std::string_view key) const;
  std::string user_agent() const { return Metadata("x-user-agent"); }
  /// The end client's address as forwarded by the gateway, else the peer.
  std::string client_address() const;

  /// Verifies the `authorization: Bearer <jwt>` metadata. kUnauthenticated
  /// if it is missing or invalid. A scoped token (one a personal access token
  /// was exchanged for) is kPermissionDenied unless one of its scopes is among
  /// those the method's access policy accepts — the same rule the gateway
  /// applies, read from the same annotation, so a backend reached directly
  /// enforces it too. The principal is remembered for the access log.
  Result<Principal> Authenticate(const auth::Verifier& verifier);
  /// As Authenticate, then kPermissionDenied unless the role is one of `roles`.
  Result<Principal> Authorize(const auth::Verifier& verifier,
                              std::initializer_list<std::string_view> roles);

  /// Adds response metadata that the gateway turns into an HTTP header
  /// (e.g. "etag", "location") or status ("x-http-status").
  void SetHeader(const std::string& key, const std::string& value);

  /// Copies request id, trace (as a new child span) and deadline into a
  /// downstream call's context.
  void PropagateTo(grpc::ClientContext* downstream) const;

  const std::string& principal_subject() const { return subject_; }

 private:
  grpc::ServerContextBase* ctx_;
  std::string method_;
  std::string request_id_;
  std::string trace_id_;
  std::string span_id_;
  std::string parent_span_id_;
  std::string trace_flags_ = "01";  // the caller's (sampled, if we started the trace)
  Deadline deadline_;
  std::string subject_;
};

/// Runs `handler` for an RPC named `method` ("portico.users.v1.AuthService/Login"):
/// sets the log context, converts a returned Error with ToGrpcStatus, turns
/// any exception into INTERNAL (logged once, message not leaked), writes one
/// access-log line and records `portico_grpc_requests_total{method,code}` and
/// `portico_grpc_request_duration_seconds{method}`.
grpc::Status Handle(grpc::ServerContextBase* ctx, std::string_view method,
                    const std::function<Status(Call&)>& handler);

/// The answer to a call no worker can take: kUnavailable "the service is
/// busy", retry after 1 s (the server's overload, never kResourceExhausted).
Error ServiceBusy();

/// What Handle does once a call has finished, for calls that do not go
/// through it (streams): turns the status into CANCELLED if the client went
/// away, counts it, writes the access-log line (in the current log
/// context). Returns the status as recorded.
grpc::Status RecordCall(grpc::ServerContextBase* ctx, std::string_view method, Deadline start,
                        grpc::Status status, const std::string& user_id);

/// The callback-API form of Handle: queues `handler` on `executor` and
/// returns the reactor gRPC waits on; a worker runs it as Handle does and
/// finishes the call. `method` must outlive the call (a string literal).
/// The handler must capture the request and response pointers by value.
/// Not run, and finished at once, when: the queue is full (UNAVAILABLE
/// "the service is busy", retry after 1 s — the server's overload, never
/// RESOURCE_EXHAUSTED); the client cancelled or the deadline passed while
/// the call waited (CANCELLED / DEADLINE_EXCEEDED). Never blocks.
grpc::ServerUnaryReactor* Serve(grpc::CallbackServerContext* ctx, std::string_view method,
                                Executor& executor, std::function<Status(Call&)> handler);

/// The token scopes the RPC `method` ("pkg.Service/Method") accepts, from its
/// `portico.api.v1.access` option in the generated descriptors; empty if it
/// has none or is unknown. Thread-safe.
std::vector<std::string> AcceptedScopes(std::string_view method);

/// Starts a W3C trace-context for a call that arrived without one (or a
/// process-initiated job): 32-hex trace id and 16-hex span id.
std::string NewTraceId();
std::string NewSpanId();

/// A W3C `traceparent` (version 00): the trace, the span that sent it, flags.
struct TraceParent {
  std::string trace_id;  // 32 lower-case hex, not all zero
  std::string span_id;   // 16 lower-case hex, not all zero
  std::string flags;     // 2 lower-case hex
};

/// Parses "00-<trace id>-<span id>-<flags>"; nullopt if malformed or an id
/// is all zeros (the caller then starts a new trace).
std::optional<TraceParent> ParseTraceParent(std::string_view header);
/// The header value for `tp`.
std::string FormatTraceParent(const TraceParent& tp);

/// The current thread's log context (request id, trace, span, flags — "01"
/// if unknown) as the `traceparent` a later, asynchronous continuation of
/// the same work should carry (e.g. stored with an outbox row); "" outside
/// a request.
std::string CurrentTraceParent();

}  // namespace portico::rpc
