#pragma once
// Request handling without Beast: route, authenticate, transcode, call the
// backend, translate the answer. The HTTP server feeds it parsed requests
// and writes what it answers.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "http_types.h"
#include "portico/auth/jwt.h"
#include "portico/gateway/gateway.h"
#include "portico/transcode/problem.h"
#include "portico/transcode/route_table.h"
#include "routing.h"

namespace grpc {
class ClientContext;
}

namespace portico::gateway {

struct HandlerMetrics;
class BuiltinRoutes;

class RequestHandler {
 public:
  /// Runs a closure on the connection's strand (may be called from any thread).
  using Post = std::function<void(std::function<void()>)>;
  /// Receives the response, on the strand.
  using Done = std::function<void(HttpResponse)>;

  RequestHandler(const GatewayOptions& options, std::shared_ptr<RouteStore> routes,
                 std::shared_ptr<auth::KeySet> keys, std::function<void()> refresh_keys);
  ~RequestHandler();

  /// Handles one request. `done` runs exactly once: directly (for answers
  /// the gateway gives itself) or through `post` once the backend answers.
  /// Never throws. With a `conn` (on whose strand `post` runs), a backend
  /// call is cancelled if the client goes away, and a server-streaming route
  /// answers through conn's stream instead of `done` once its first message
  /// arrives (before that, errors still go to `done`); without one, such
  /// routes answer 501.
  void Handle(HttpRequest request, const Post& post, Done done,
              std::shared_ptr<ClientConnection> conn = nullptr);

  /// An answer the HTTP layer gives itself (413, 431, 400 for unparsable
  /// requests), with request id, access log and metrics like any other.
  /// `request` may be partially filled.
  HttpResponse Reject(const HttpRequest& request, int status, std::string_view code,
                      std::string detail);
  /// An answer the HTTP layer composes itself (e.g. a CORS preflight's 204),
  /// given request id, common headers, access log and metrics like any other.
  HttpResponse Answer(const HttpRequest& request, HttpResponse response);
  /// The methods routed on `path` (no query), sorted; empty if none.
  /// Thread-safe.
  std::vector<std::string> AllowedMethods(std::string_view path) const;

  /// From now on no backend call starts: requests that would need one are
  /// answered 503 UNAVAILABLE. Irreversible; thread-safe.
  void StopCalls();
  /// Cancels every backend call in flight (each still answers, 499).
  /// Thread-safe.
  void CancelCalls();
  /// Cancels every streamed response in flight; each ends with a final
  /// error event (503). Thread-safe.
  void CancelStreams();
  /// Waits until no backend call is in flight, for at most `timeout`
  /// (nullopt: as long as it takes). True if none is. After StopCalls and
  /// CancelCalls, an unbounded wait ends promptly: gRPC runs the completion
  /// of every cancelled call. Once it returns true no backend completion runs
  /// any more, so the `post` functions given to Handle are no longer called.
  bool WaitForCalls(std::optional<std::chrono::milliseconds> timeout);

  /// /openapi.json and /docs; call its SetRoutes after swapping the table.
  BuiltinRoutes& builtin_routes() { return *builtin_; }
  /// The routing in force and its reload.
  RouteStore& routes() const { return *routes_; }

 private:
  // Serves the stream metrics (at 0) before the first stream opens.
  static void RegisterStreamMetrics();
  struct Exchange;  // one request's state across the backend call
  // Counts the request in flight and sets its ids and trace (ex.request set).
  void Begin(Exchange& ex);
  // For answers the gateway composes without routing: the path for the
  // access log, then Finish.
  HttpResponse Conclude(Exchange& ex, HttpResponse response);
  // Adds the headers every response carries, records metrics and the access log.
  void Finish(Exchange& ex, HttpResponse& response);
  // Finish, then `done`; never throws (failures are logged).
  void Deliver(Exchange& ex, HttpResponse response, Done& done) noexcept;
  HttpResponse ProblemResponse(const Exchange& ex, const transcode::Problem& problem);
  // Everything after the request's ids are set: route, authenticate, call.
  // `introspected`: a personal access token was just looked up (a second
  // cache miss then means the users service could not answer).
  void Route(const std::shared_ptr<Exchange>& ex, const Post& post, Done done, bool introspected);
  // Asks users' AuthService/Introspect about a `pat_` token, caches the
  // answer, then runs Route again on the strand. Same ownership rules as
  // CallBackend.
  bool StartIntrospect(std::shared_ptr<Exchange> ex, const std::string& token, const Post& post,
                       Done& done);
  // Starts the backend call and moves `done` into its completion. False
  // (with `done` untouched) once StopCalls has run. May throw before it
  // takes `done`, never after.
  bool CallBackend(std::shared_ptr<Exchange> ex, const Post& post, Done& done);
  HttpResponse TranslateReply(Exchange& ex);
  // The allow-listed request headers, ids and trace as call metadata.
  void AddCallMetadata(Exchange& ex);
  // Cancels `ex`'s backend call if its client goes away (on the strand).
  static void CancelOnClientGone(const std::shared_ptr<Exchange>& ex);
  void CountUpstream(const Exchange& ex, int grpc_code);
  bool Stopped();
  // Starts a server-streaming call (stream_call.cc); `query` may gain the
  // route's stream_resume field from Last-Event-ID. Ownership as CallBackend.
  bool StartStream(std::shared_ptr<Exchange> ex, const transcode::PathVars& vars,
                   std::string query, const Post& post, Done& done);
  friend class StreamCall;

  GatewayOptions options_;
  std::shared_ptr<RouteStore> routes_;
  std::shared_ptr<auth::KeySet> keys_;
  std::unique_ptr<auth::Verifier> verifier_;
  std::unique_ptr<HandlerMetrics> metrics_;
  std::unique_ptr<BuiltinRoutes> builtin_;  // answered before the route table

  std::mutex calls_mu_;
  std::condition_variable calls_cv_;
  // Backend calls in flight, guarded by calls_mu_. An entry leaves the map as
  // the very last step of the call's completion. Keyed by the Exchange for
  // the backend call and by its intro_ctx for a personal access token's
  // Introspect call, so the two never share an entry.
  std::map<const void*, std::weak_ptr<Exchange>> calls_;
  bool calls_stopped_ = false;  // guarded by calls_mu_

  // Introspection answers for personal access tokens, by the token's
  // SHA-256, kept up to options_.pat_cache_ttl: revoking a token takes effect within it.
  struct PatEntry {
    bool active = false;
    std::string access_token;  // short-lived JWT forwarded instead of the PAT
    std::chrono::steady_clock::time_point until;
  };
  std::mutex pat_mu_;
  std::unordered_map<std::string, PatEntry> pat_cache_;  // guarded by pat_mu_
};

/// The path and query (without any fragment) of an origin-form or
/// absolute-form request target; neither is decoded.
void SplitTarget(std::string_view target, std::string* path, std::string* query);

/// True for application/json, application/merge-patch+json and any
/// application/<name>+json, parameters and case ignored.
bool IsJsonMediaType(std::string_view content_type);

/// True if `id` is 1-128 characters of [A-Za-z0-9._-].
bool IsSaneRequestId(std::string_view id);

/// W3C trace context for the hop to the backend: keeps the trace id and the
/// trace flags of a valid version-00 `traceparent` and makes a new span id;
/// starts a new trace (flags 00) otherwise, including for any other version.
struct TraceContext {
  std::string trace_id;  // 32 lower-case hex
  std::string span_id;   // 16 lower-case hex
  std::string flags;     // 2 hex
  std::string Header() const { return "00-" + trace_id + "-" + span_id + "-" + flags; }
};
TraceContext ContinueTrace(std::string_view traceparent);

}  // namespace portico::gateway
