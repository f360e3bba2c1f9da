#include "handler.h"
#include "portico/core/strings.h"

#include <grpcpp/client_context.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/support/byte_buffer.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <exception>
#include <stdexcept>

#include <google/protobuf/message.h>

#include "builtin_routes.h"
#include "exchange.h"
#include "portico/admin/metrics.h"
#include "portico/auth/secrets.h"
#include "portico/core/uuid.h"
#include "portico/log/log.h"
#include "portico/rpc/call.h"
#include "portico/transcode/transcoder.h"
#include "portico/users/v1/users.pb.h"

namespace portico::gateway {

using Clock = std::chrono::steady_clock;

struct HandlerMetrics {
  prometheus::Family<prometheus::Counter>& requests;
  prometheus::Family<prometheus::Histogram>& duration;
  prometheus::Gauge& in_flight;

  explicit HandlerMetrics(prometheus::Registry& r)
      : requests(prometheus::BuildCounter()
                     .Name("portico_http_requests_total")
                     .Help("HTTP requests by route template, method and status.")
                     .Register(r)),
        duration(prometheus::BuildHistogram()
                     .Name("portico_http_request_duration_seconds")
                     .Help("HTTP request latency by route template and method.")
                     .Register(r)),
        in_flight(prometheus::BuildGauge()
                      .Name("portico_http_in_flight_requests")
                      .Help("HTTP requests being handled.")
                      .Register(r)
                      .Add({})) {}
};

namespace {

constexpr std::string_view kJson = "application/json";
constexpr std::string_view kProblemJson = "application/problem+json";

bool IsLowerHex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

bool AllZero(std::string_view s) { return s.find_first_not_of('0') == std::string_view::npos; }

bool IsBlank(std::string_view s) {
  return s.find_first_not_of(" \t\r\n") == std::string_view::npos;
}

// gRPC metadata values must be printable ASCII; anything else is dropped
// rather than failing the call.
bool IsMetadataSafe(std::string_view v) {
  for (char c : v) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

std::string MethodLabel(std::string_view method) {
  return transcode::ParseHttpMethod(method) ? std::string(method) : "OTHER";
}

std::string BufferToString(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  std::string out;
  if (!buffer.Dump(&slices).ok()) return out;
  for (const auto& s : slices) out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

// Response metadata that becomes HTTP headers as-is. (Retry-After is not
// among them: a service says it in ErrorDetails.retry_after_seconds, which
// the problem table turns into the header.)
constexpr std::string_view kPassThrough[] = {"etag", "location", "cache-control"};

void CopyMetadata(const std::multimap<grpc::string_ref, grpc::string_ref>& md,
                  std::vector<std::pair<std::string, std::string>>* headers,
                  std::string* http_status) {
  for (const auto& [k, v] : md) {
    const std::string_view key(k.data(), k.size());
    const std::string_view value(v.data(), v.size());
    if (!IsMetadataSafe(value)) continue;
    if (key == "x-http-status") {
      *http_status = std::string(value);
      continue;
    }
    for (auto allowed : kPassThrough) {
      if (key == allowed) headers->emplace_back(std::string(key), std::string(value));
    }
  }
}

bool HasHeader(const HttpResponse& r, std::string_view name) {
  for (const auto& [k, v] : r.headers) {
    if (AsciiLower(k) == name) return true;
  }
  return false;
}

bool HasAnyScope(const std::vector<std::string>& granted,
                 const std::vector<std::string>& accepted) {
  for (const auto& s : accepted) {
    if (std::find(granted.begin(), granted.end(), s) != granted.end()) return true;
  }
  return false;
}

// A personal access token as the users service makes them: "pat_" and the
// unpadded base64url of 32 random bytes (43 characters). Anything else is
// refused without asking the users service.
constexpr std::size_t kPatSecretLength = 43;
bool IsPatFormat(std::string_view token) {
  if (!token.starts_with("pat_")) return false;
  const std::string_view secret = token.substr(4);
  if (secret.size() != kPatSecretLength) return false;
  return std::all_of(secret.begin(), secret.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_';
  });
}

std::string MissingScopeDetail(const std::vector<std::string>& accepted) {
  if (accepted.empty()) return "this endpoint does not accept scoped tokens";
  if (accepted.size() == 1) return "this token lacks the scope " + accepted.front();
  std::string list;
  for (const auto& s : accepted) list += (list.empty() ? "" : ", ") + s;
  return "this token lacks the scope for this endpoint (one of: " + list + ")";
}

}  // namespace

bool IsJsonMediaType(std::string_view content_type) {
  const std::string type = AsciiLower(TrimBlanks(content_type.substr(0, content_type.find(';'))));
  if (type == kJson) return true;
  constexpr std::string_view kApp = "application/";
  constexpr std::string_view kSuffix = "+json";
  return type.size() > kApp.size() + kSuffix.size() && type.starts_with(kApp) &&
         type.ends_with(kSuffix);
}

void SplitTarget(std::string_view target, std::string* path, std::string* query) {
  if (!target.empty() && target.front() != '/') {
    if (const auto scheme = target.find("://"); scheme != std::string_view::npos) {
      const auto slash = target.find_first_of("/?", scheme + 3);
      target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
      if (!target.empty() && target.front() == '?') {
        *path = "/";
        *query = std::string(target.substr(1));
        return;
      }
    }
  }
  const auto q = target.find('?');
  *path = std::string(target.substr(0, q));
  *query = q == std::string_view::npos ? std::string() : std::string(target.substr(q + 1));
  if (const auto hash = query->find('#'); hash != std::string::npos) query->resize(hash);
}

bool IsSaneRequestId(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      return false;
    }
  }
  return true;
}

TraceContext ContinueTrace(std::string_view tp) {
  TraceContext t;
  // 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>
  if (tp.size() == 55 && tp.substr(0, 3) == "00-" && tp[35] == '-' && tp[52] == '-' &&
      IsLowerHex(tp.substr(3, 32)) && IsLowerHex(tp.substr(36, 16)) &&
      IsLowerHex(tp.substr(53, 2)) && !AllZero(tp.substr(3, 32)) && !AllZero(tp.substr(36, 16))) {
    t.trace_id = std::string(tp.substr(3, 32));
    t.flags = std::string(tp.substr(53, 2));
  } else {
    do {
      t.trace_id = rpc::NewTraceId();
    } while (AllZero(t.trace_id));
    t.flags = "00";
  }
  do {
    t.span_id = rpc::NewSpanId();
  } while (AllZero(t.span_id));
  return t;
}

RequestHandler::RequestHandler(const GatewayOptions& options, std::shared_ptr<RouteStore> routes,
                               std::shared_ptr<auth::KeySet> keys,
                               std::function<void()> refresh_keys)
    : options_(options),
      routes_(std::move(routes)),
      keys_(std::move(keys)),
      verifier_(std::make_unique<auth::Verifier>(
          keys_, auth::VerifierOptions{options.jwt_issuer, options.jwt_audience},
          std::move(refresh_keys))),
      metrics_(std::make_unique<HandlerMetrics>(*admin::Registry())),
      builtin_(std::make_unique<BuiltinRoutes>(*routes_->Get()->table)) {
  RegisterStreamMetrics();
}

RequestHandler::~RequestHandler() = default;

HttpResponse RequestHandler::ProblemResponse(const Exchange& ex,
                                             const transcode::Problem& problem) {
  HttpResponse r;
  r.status = problem.status;
  r.body = transcode::RenderProblem(problem, ex.request_id);
  r.headers.emplace_back("Content-Type", std::string(kProblemJson));
  if (problem.retry_after_seconds > 0) {
    r.headers.emplace_back("Retry-After", std::to_string(problem.retry_after_seconds));
  }
  return r;
}

void RequestHandler::Finish(Exchange& ex, HttpResponse& response) {
  response.headers.emplace_back("X-Request-Id", ex.request_id);
  response.headers.emplace_back("X-Content-Type-Options", "nosniff");
  if (!HasHeader(response, "cache-control")) response.headers.emplace_back("Cache-Control", "no-store");

  const double seconds = std::chrono::duration<double>(Clock::now() - ex.start).count();
  const std::string status = std::to_string(response.status);
  metrics_->requests
      .Add({{"route", ex.route_label}, {"method", ex.method_label}, {"status", status}})
      .Increment();
  metrics_->duration.Add({{"route", ex.route_label}, {"method", ex.method_label}},
                         admin::LatencyBuckets())
      .Observe(seconds);
  metrics_->in_flight.Decrement();

  log::ScopedContext scope(ex.LogContext());
  const double duration_ms = seconds * 1000.0;
  if (ex.user_id.empty()) {
    log::Info("request", {{"method", ex.request.method},
                          {"route", ex.route_label},
                          {"path", ex.path},
                          {"status", response.status},
                          {"duration_ms", duration_ms},
                          {"client", ex.request.client_address}});
  } else {
    log::Info("request", {{"method", ex.request.method},
                          {"route", ex.route_label},
                          {"path", ex.path},
                          {"status", response.status},
                          {"duration_ms", duration_ms},
                          {"client", ex.request.client_address},
                          {"user_id", ex.user_id}});
  }
}

void RequestHandler::Deliver(Exchange& ex, HttpResponse response, Done& done) noexcept {
  try {
    Finish(ex, response);
  } catch (const std::exception& e) {
    log::Error("unhandled exception while finishing a response", {{"error", e.what()}});
  } catch (...) {
    log::Error("unhandled exception while finishing a response", {{"error", "unknown"}});
  }
  try {
    if (done) done(std::move(response));
  } catch (const std::exception& e) {
    log::Error("unhandled exception while writing a response", {{"error", e.what()}});
  } catch (...) {
    log::Error("unhandled exception while writing a response", {{"error", "unknown"}});
  }
}

void RequestHandler::Begin(Exchange& ex) {
  metrics_->in_flight.Increment();
  const std::string_view id = ex.request.Header("x-request-id");
  ex.request_id = IsSaneRequestId(id) ? std::string(id) : NewUuidV7();
  ex.trace = ContinueTrace(ex.request.Header("traceparent"));
  ex.method_label = MethodLabel(ex.request.method);
}

HttpResponse RequestHandler::Reject(const HttpRequest& request, int status, std::string_view code,
                                    std::string detail) {
  Exchange ex;
  ex.request = request;
  Begin(ex);
  HttpResponse r = ProblemResponse(ex, transcode::MakeProblem(status, code, std::move(detail)));
  r.close = true;
  return Conclude(ex, std::move(r));
}

HttpResponse RequestHandler::Answer(const HttpRequest& request, HttpResponse response) {
  Exchange ex;
  ex.request = request;
  Begin(ex);
  return Conclude(ex, std::move(response));
}

HttpResponse RequestHandler::Conclude(Exchange& ex, HttpResponse response) {
  std::string query;
  SplitTarget(ex.request.target, &ex.path, &query);
  Finish(ex, response);
  return response;
}

std::vector<std::string> RequestHandler::AllowedMethods(std::string_view path) const {
  // No route has the method OPTIONS: the table answers with the path's methods.
  auto match = routes_->Get()->table->Match("OPTIONS", path);
  if (match.kind != transcode::MatchResult::Kind::kMethodNotAllowed) return {};
  return match.allowed;
}

void RequestHandler::Handle(HttpRequest request, const Post& post, Done done,
                            std::shared_ptr<ClientConnection> conn) {
  auto ex = std::make_shared<Exchange>();
  ex->request = std::move(request);
  ex->conn = std::move(conn);
  Begin(*ex);
  Route(ex, post, std::move(done), false);
}

void RequestHandler::Route(const std::shared_ptr<Exchange>& ex, const Post& post, Done done,
                           bool introspected) {
  // `done` runs exactly once: set as soon as it ran or was handed to the
  // backend call, so that a later exception cannot answer a second time.
  bool answered = false;
  auto answer = [&](HttpResponse r) {
    if (answered) return;
    answered = true;
    Deliver(*ex, std::move(r), done);
  };
  auto problem = [&](const transcode::Problem& p) { answer(ProblemResponse(*ex, p)); };

  try {
    log::ScopedContext scope(ex->LogContext());
    std::string query;
    SplitTarget(ex->request.target, &ex->path, &query);

    if (auto builtin = builtin_->Serve(ex->request.method, ex->path)) {
      ex->route_label = builtin->label;
      if (!builtin->problem) return answer(std::move(builtin->response));
      HttpResponse r = ProblemResponse(*ex, *builtin->problem);
      if (!builtin->allow.empty()) r.headers.emplace_back("Allow", builtin->allow);
      return answer(std::move(r));
    }
    // Kept from the first pass when a personal access token sends the
    // request through here a second time.
    if (!ex->routing) ex->routing = routes_->Get();
    auto match = ex->routing->table->Match(ex->request.method, ex->path);
    switch (match.kind) {
      case transcode::MatchResult::Kind::kFound:
        break;
      case transcode::MatchResult::Kind::kNotFound:
        return problem(transcode::MakeProblem(404, "NOT_FOUND", "no such endpoint: " + ex->path));
      case transcode::MatchResult::Kind::kBadPath:
        return problem(
            transcode::MakeProblem(400, "INVALID_ARGUMENT", "malformed percent-encoding in the path"));
      case transcode::MatchResult::Kind::kMethodNotAllowed: {
        std::string allow;
        for (const auto& m : match.allowed) allow += (allow.empty() ? "" : ", ") + m;
        HttpResponse r = ProblemResponse(
            *ex, transcode::MakeProblem(405, "UNIMPLEMENTED",
                                        "method " + ex->request.method + " is not allowed here; use " + allow));
        r.headers.emplace_back("Allow", allow);
        return answer(std::move(r));
      }
    }
    ex->route = match.route;
    ex->route_label = match.route->path.text();
    const transcode::Route& route = *match.route;

    // Access policy.
    if (route.access != transcode::Access::kPublic) {
      const std::string_view header = TrimBlanks(ex->request.Header("authorization"));
      auto unauthenticated = [&](std::string detail, bool presented) {
        HttpResponse r = ProblemResponse(
            *ex, transcode::ProblemFromError(Error::Unauthenticated(std::move(detail))));
        r.headers.emplace_back("WWW-Authenticate",
                               presented ? "Bearer error=\"invalid_token\"" : "Bearer");
        answer(std::move(r));
      };
      if (header.empty()) return unauthenticated("this endpoint needs a bearer access token", false);
      if (header.size() < 7 || AsciiLower(header.substr(0, 7)) != "bearer ") {
        return unauthenticated("the Authorization header must be \"Bearer <token>\"", true);
      }
      std::string_view token = TrimBlanks(header.substr(7));
      if (token.starts_with("pat_")) {
        // A personal access token: exchanged (through the users service,
        // cached briefly) for a short-lived access token limited to its
        // scopes, which is then checked and forwarded like any other.
        if (!IsPatFormat(token)) return unauthenticated("invalid personal access token", true);
        const std::string key = auth::Sha256Hex(token);
        std::optional<PatEntry> hit;
        {
          std::lock_guard lock(pat_mu_);
          auto it = pat_cache_.find(key);
          if (it != pat_cache_.end() && it->second.until > std::chrono::steady_clock::now()) {
            hit = it->second;
          }
        }
        if (!hit) {
          if (introspected) {
            auto p = transcode::MakeProblem(503, "UNAVAILABLE",
                                            "cannot check the personal access token now");
            p.retry_after_seconds = 1;
            return problem(p);
          }
          if (!StartIntrospect(ex, std::string(token), post, done)) {
            auto p = transcode::MakeProblem(503, "UNAVAILABLE", "the gateway is shutting down");
            p.retry_after_seconds = 1;
            return problem(p);
          }
          answered = true;  // `done` now belongs to the introspection call
          return;
        }
        if (!hit->active) return unauthenticated("invalid personal access token", true);
        ex->authorization = "Bearer " + hit->access_token;
        token = TrimBlanks(std::string_view(ex->authorization).substr(7));
      }
      auto claims = verifier_->Verify(token);
      if (!claims.ok()) {
        return unauthenticated("invalid access token: " + claims.error().message, true);
      }
      ex->user_id = claims->sub;
      if (route.access == transcode::Access::kAdmin && claims->role != "ADMIN") {
        return problem(transcode::ProblemFromError(
            Error::PermissionDenied("this operation requires the ADMIN role")));
      }
      // A token with scopes is limited to the routes accepting one of them.
      if (!claims->scopes.empty() && !HasAnyScope(claims->scopes, route.scopes)) {
        return problem(transcode::ProblemFromError(
            Error::PermissionDenied(MissingScopeDetail(route.scopes))));
      }
    }

    if (!IsBlank(ex->request.body) && !IsJsonMediaType(ex->request.Header("content-type"))) {
      return problem(transcode::MakeProblem(415, "INVALID_ARGUMENT",
                                            "the request body must be JSON (application/json)"));
    }
    if (route.server_streaming) {
      if (ex->conn == nullptr) {
        return problem(transcode::MakeProblem(501, "UNIMPLEMENTED", "streaming is not supported here"));
      }
      if (!StartStream(ex, match.vars, std::move(query), post, done)) {
        auto p = transcode::MakeProblem(503, "UNAVAILABLE", "the gateway is shutting down");
        p.retry_after_seconds = 1;
        return problem(p);
      }
      answered = true;  // `done` now belongs to the stream (or was used for its error)
      return;
    }

    auto message = transcode::BuildRequest(route, match.vars, query, ex->request.body);
    if (!message.ok()) return problem(transcode::ProblemFromError(message.error()));
    std::string bytes;
    if (!(*message)->SerializeToString(&bytes)) {
      return problem(transcode::ProblemFromError(Error::Internal("serialize request")));
    }
    grpc::Slice slice(std::move(bytes));
    ex->request_buffer = grpc::ByteBuffer(&slice, 1);
    if (!CallBackend(ex, post, done)) {
      auto p = transcode::MakeProblem(503, "UNAVAILABLE", "the gateway is shutting down");
      p.retry_after_seconds = 1;
      return problem(p);
    }
    answered = true;  // `done` now belongs to the backend call
  } catch (const std::exception& e) {
    log::ScopedContext scope(ex->LogContext());
    log::Error("unhandled exception while handling a request", {{"error", e.what()}});
    if (!answered) problem(transcode::ProblemFromError(Error::Internal("unexpected")));
  } catch (...) {
    log::ScopedContext scope(ex->LogContext());
    log::Error("unhandled exception while handling a request", {{"error", "unknown"}});
    if (!answered) problem(transcode::ProblemFromError(Error::Internal("unexpected")));
  }
}

void RequestHandler::AddCallMetadata(Exchange& ex_ref) {
  Exchange* ex = &ex_ref;
  grpc::ClientContext& ctx = ex->ctx;
  for (std::string_view name : {"authorization", "idempotency-key", "if-match", "if-none-match"}) {
    const std::string_view v = name == "authorization" && !ex->authorization.empty()
                                   ? std::string_view(ex->authorization)
                                   : ex->request.Header(name);
    if (!v.empty() && IsMetadataSafe(v)) ctx.AddMetadata(std::string(name), std::string(v));
  }
  ctx.AddMetadata("x-request-id", ex->request_id);
  ctx.AddMetadata("traceparent", ex->trace.Header());
  if (const auto ua = ex->request.Header("user-agent"); !ua.empty() && IsMetadataSafe(ua)) {
    ctx.AddMetadata("x-user-agent", std::string(ua));
  }
  if (!ex->request.client_address.empty() && IsMetadataSafe(ex->request.client_address)) {
    ctx.AddMetadata("x-client-address", ex->request.client_address);
  }
}

void RequestHandler::CancelOnClientGone(const std::shared_ptr<Exchange>& ex) {
  if (ex->conn == nullptr) return;
  // Weak: the connection must not keep the exchange alive; once the call is
  // over, TryCancel is a no-op.
  ex->conn->OnClientGone([weak = std::weak_ptr<Exchange>(ex)] {
    if (auto e = weak.lock()) e->ctx.TryCancel();
  });
}

void RequestHandler::CountUpstream(const Exchange& ex, int grpc_code) {
  ex.routing->upstreams->Observe(ex.route->service, ex.route->rpc->name(),
                                 static_cast<grpc::StatusCode>(grpc_code),
                                 Clock::now() - ex.call_start);
}

bool RequestHandler::Stopped() {
  std::lock_guard lock(calls_mu_);
  return calls_stopped_;
}

bool RequestHandler::CallBackend(std::shared_ptr<Exchange> ex, const Post& post, Done& done) {
  const transcode::Route& route = *ex->route;
  // A route's own deadline (its HTTP rule's timeout_ms) replaces the default.
  const auto timeout = route.timeout.count() > 0 ? route.timeout : options_.request_timeout;
  ex->ctx.set_deadline(std::chrono::system_clock::now() + timeout);
  AddCallMetadata(*ex);
  const std::weak_ptr<Exchange> weak_ex = ex;
  grpc::GenericStub* stub = ex->routing->upstreams->StubFor(route.service);
  if (stub == nullptr) throw std::logic_error("no upstream for routed service " + route.service);

  Exchange* raw = ex.get();
  {
    // Registered under the same lock that StopCalls takes, so CancelCalls
    // and WaitForCalls see every call that starts.
    std::lock_guard lock(calls_mu_);
    if (calls_stopped_) return false;
    calls_.emplace(raw, ex);
  }
  auto unregister = [this, raw] {
    std::lock_guard lock(calls_mu_);
    calls_.erase(raw);
    calls_cv_.notify_all();
  };
  try {
    // The completion owns nothing once it returns: it may be destroyed later
    // on a gRPC thread, when the server (and its io_context) may be gone.
    // `done` is captured last: if copying `post` throws, it is still ours.
    auto completion = [this, unregister, post = post, ex = std::move(ex),
                       done = std::move(done)](grpc::Status s) mutable {
      {
        auto call = std::move(ex);
        auto post_fn = std::move(post);
        auto done_fn = std::move(done);
        call->status = std::move(s);
        call->call_end = Clock::now();
        try {
          // On a gRPC thread: hand the rest to the connection's strand.
          post_fn([this, call, done_fn = std::move(done_fn)]() mutable {
            HttpResponse r;
            try {
              r = TranslateReply(*call);
            } catch (const std::exception& e) {
              log::ScopedContext scope(call->LogContext());
              log::Error("unhandled exception while translating a reply", {{"error", e.what()}});
              r = ProblemResponse(*call, transcode::ProblemFromError(Error::Internal("x")));
            }
            Deliver(*call, std::move(r), done_fn);
          });
        } catch (const std::exception& e) {
          log::ScopedContext scope(call->LogContext());
          log::Error("cannot hand a backend reply to its connection", {{"error", e.what()}});
        }
      }
      // The last use of `this`: once the entry is gone, Shutdown may destroy
      // the handler and the io_context.
      unregister();
    };
    raw->call_start = Clock::now();
    stub->UnaryCall(&raw->ctx, route.rpc_path, grpc::StubOptions(), &raw->request_buffer,
                    &raw->response_buffer, std::move(completion));
  } catch (...) {
    unregister();  // the call did not start
    throw;
  }
  // On the strand, before any completion can be handed back to it.
  if (auto live = weak_ex.lock()) CancelOnClientGone(live);
  return true;
}

bool RequestHandler::StartIntrospect(std::shared_ptr<Exchange> ex, const std::string& token,
                                     const Post& post, Done& done) {
  if (!ex->routing) ex->routing = routes_->Get();
  grpc::GenericStub* stub = ex->routing->upstreams->StubFor("portico.users.v1.AuthService");
  if (stub == nullptr) throw std::logic_error("no upstream for portico.users.v1.AuthService");
  users::v1::IntrospectRequest req;
  req.set_token(token);
  std::string bytes;
  if (!req.SerializeToString(&bytes)) throw std::runtime_error("serialize IntrospectRequest");
  grpc::Slice slice(std::move(bytes));
  ex->intro_request = grpc::ByteBuffer(&slice, 1);
  ex->intro_ctx = std::make_unique<grpc::ClientContext>();
  ex->intro_ctx->set_deadline(std::chrono::system_clock::now() +
                              std::min<std::chrono::milliseconds>(options_.request_timeout,
                                                                  std::chrono::seconds(5)));
  ex->intro_ctx->AddMetadata("x-request-id", ex->request_id);
  ex->intro_ctx->AddMetadata("traceparent", ex->trace.Header());

  Exchange* raw = ex.get();
  const void* entry_key = raw->intro_ctx.get();  // distinct from the backend call's key
  {
    std::lock_guard lock(calls_mu_);
    if (calls_stopped_) return false;
    calls_.emplace(entry_key, ex);
  }
  auto unregister = [this, entry_key] {
    std::lock_guard lock(calls_mu_);
    calls_.erase(entry_key);
    calls_cv_.notify_all();
  };
  try {
    auto completion = [this, unregister, key = auth::Sha256Hex(token), post = post,
                       started = Clock::now(), ex = std::move(ex),
                       done = std::move(done)](grpc::Status s) mutable {
      {
        auto call = std::move(ex);
        auto post_fn = std::move(post);
        auto done_fn = std::move(done);
        try {
          call->routing->upstreams->Observe("portico.users.v1.AuthService", "Introspect",
                                            s.error_code(), Clock::now() - started);
          users::v1::IntrospectResponse resp;
          std::vector<grpc::Slice> slices;
          std::string body;
          if (s.ok() && call->intro_response.Dump(&slices).ok()) {
            for (const auto& sl : slices) {
              body.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
            }
          }
          if (s.ok() && resp.ParseFromString(body)) {
            const auto now = std::chrono::steady_clock::now();
            PatEntry entry;
            entry.active = resp.active() && !resp.access_token().empty();
            entry.access_token = resp.access_token();
            auto keep = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                options_.pat_cache_ttl);
            if (entry.active) {
              // Never past the exchanged token's own expiry (with a margin).
              keep = std::min(keep, std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                        std::chrono::seconds(
                                            std::max(resp.access_token_expires_in() - 5, 1))));
            }
            entry.until = now + keep;
            std::lock_guard lock(pat_mu_);
            // Bounded (options_.pat_cache_size). When full, expired entries
            // go first, then every negative one, so a flood of made-up
            // tokens cannot push out the valid tokens' entries; only a cache
            // full of valid ones is cleared.
            if (pat_cache_.size() >= options_.pat_cache_size) {
              std::erase_if(pat_cache_, [&](const auto& kv) { return kv.second.until <= now; });
            }
            if (pat_cache_.size() >= options_.pat_cache_size) {
              std::erase_if(pat_cache_, [](const auto& kv) { return !kv.second.active; });
            }
            if (pat_cache_.size() >= options_.pat_cache_size) pat_cache_.clear();
            pat_cache_[key] = std::move(entry);
          } else if (!s.ok()) {
            log::ScopedContext scope(call->LogContext());
            log::Warn("personal access token introspection failed",
                      {{"code", transcode::GrpcCodeName(s.error_code())}});
          }
          post_fn([this, call, post_copy = post_fn, done_fn = std::move(done_fn)]() mutable {
            Route(call, post_copy, std::move(done_fn), true);
          });
        } catch (const std::exception& e) {
          log::ScopedContext scope(call->LogContext());
          log::Error("cannot hand an introspection reply to its connection", {{"error", e.what()}});
        }
      }
      unregister();
    };
    stub->UnaryCall(raw->intro_ctx.get(), "/portico.users.v1.AuthService/Introspect",
                    grpc::StubOptions(), &raw->intro_request, &raw->intro_response,
                    std::move(completion));
  } catch (...) {
    unregister();
    throw;
  }
  return true;
}

HttpResponse RequestHandler::TranslateReply(Exchange& ex) {
  const transcode::Route& route = *ex.route;
  const grpc::Status& status = ex.status;
  ex.routing->upstreams->Observe(route.service, route.rpc->name(), status.error_code(),
                                 ex.call_end - ex.call_start);

  std::vector<std::pair<std::string, std::string>> headers;
  std::string status_override;
  CopyMetadata(ex.ctx.GetServerInitialMetadata(), &headers, &status_override);
  CopyMetadata(ex.ctx.GetServerTrailingMetadata(), &headers, &status_override);

  HttpResponse r;
  if (!status.ok()) {
    const auto problem = transcode::ProblemFromRpcStatus(status.error_code(), status.error_message(),
                                                         status.error_details());
    if (problem.status >= 500) {
      log::ScopedContext scope(ex.LogContext());
      log::Warn("backend call failed", {{"rpc", route.rpc_path},
                                        {"code", transcode::GrpcCodeName(status.error_code())},
                                        {"error", status.error_message()}});
    }
    r = ProblemResponse(ex, problem);
    for (auto& h : headers) r.headers.push_back(std::move(h));
    return r;
  }

  auto response = transcode::NewResponse(route);
  if (!response->ParseFromString(BufferToString(ex.response_buffer))) {
    log::ScopedContext scope(ex.LogContext());
    log::Error("unparsable backend response", {{"rpc", route.rpc_path}});
    return ProblemResponse(ex, transcode::ProblemFromError(Error::Internal("bad response")));
  }
  auto body = transcode::RenderResponse(route, *response);
  if (!body.ok()) {
    log::ScopedContext scope(ex.LogContext());
    log::Error("cannot render backend response", {{"rpc", route.rpc_path},
                                                   {"error", body.error().message}});
    return ProblemResponse(ex, transcode::ProblemFromError(body.error()));
  }
  r.status = body->status;
  r.body = std::move(body->json);
  if (!status_override.empty()) {
    int code = 0;
    const auto* end = status_override.data() + status_override.size();
    if (auto [p, ec] = std::from_chars(status_override.data(), end, code);
        ec == std::errc() && p == end && ((code >= 200 && code <= 299) || code == 304)) {
      r.status = code;
    }
  }
  if (r.status == 204 || r.status == 304) {
    r.body.clear();
  } else {
    r.headers.emplace_back("Content-Type", std::string(kJson));
  }
  for (auto& h : headers) r.headers.push_back(std::move(h));
  return r;
}

void RequestHandler::StopCalls() {
  std::lock_guard lock(calls_mu_);
  calls_stopped_ = true;
}

void RequestHandler::CancelCalls() {
  // TryCancel may run the call's completion inline, which takes calls_mu_:
  // cancel outside the lock, keeping the exchanges alive meanwhile.
  std::vector<std::shared_ptr<Exchange>> live;
  {
    std::lock_guard lock(calls_mu_);
    for (const auto& [key, weak] : calls_) {
      if (auto ex = weak.lock()) live.push_back(std::move(ex));
    }
  }
  for (const auto& ex : live) {
    if (ex->intro_ctx) ex->intro_ctx->TryCancel();
    ex->ctx.TryCancel();
  }
}

void RequestHandler::CancelStreams() {
  std::vector<std::shared_ptr<Exchange>> live;
  {
    std::lock_guard lock(calls_mu_);
    for (const auto& [key, weak] : calls_) {
      if (auto ex = weak.lock(); ex && ex->streaming) live.push_back(std::move(ex));
    }
  }
  for (const auto& ex : live) ex->ctx.TryCancel();
}

bool RequestHandler::WaitForCalls(std::optional<std::chrono::milliseconds> timeout) {
  std::unique_lock lock(calls_mu_);
  if (!timeout) {
    calls_cv_.wait(lock, [this] { return calls_.empty(); });
    return true;
  }
  return calls_cv_.wait_for(lock, *timeout, [this] { return calls_.empty(); });
}

}  // namespace portico::gateway
