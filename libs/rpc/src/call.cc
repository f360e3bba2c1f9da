#include "portico/rpc/call.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <google/protobuf/descriptor.h>
#include <sodium.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <exception>

#include "portico/admin/metrics.h"
#include "portico/api/v1/annotations.pb.h"
#include "portico/auth/jwt.h"
#include "portico/core/uuid.h"
#include "portico/log/log.h"
#include "portico/rpc/executor.h"
#include "portico/rpc/status.h"

namespace portico::rpc {
namespace {

constexpr auto kMaxBudget = std::chrono::seconds(30);

std::string RandomHex(std::size_t bytes) {
  static const bool ready = sodium_init() >= 0;
  (void)ready;
  std::string raw(bytes, '\0');
  randombytes_buf(raw.data(), raw.size());
  std::string hex(bytes * 2 + 1, '\0');
  sodium_bin2hex(hex.data(), hex.size(), reinterpret_cast<const unsigned char*>(raw.data()),
                 raw.size());
  hex.pop_back();
  return hex;
}

bool IsLowerHex(std::string_view s, std::size_t len) {
  return s.size() == len && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

bool SaneRequestId(std::string_view id) {
  return !id.empty() && id.size() <= 128 && std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

struct RpcMetrics {
  prometheus::Family<prometheus::Counter>& requests;
  prometheus::Family<prometheus::Histogram>& duration;
  prometheus::Gauge& in_flight;
  static RpcMetrics& Get() {
    static RpcMetrics m{
        prometheus::BuildCounter()
            .Name("portico_grpc_requests_total")
            .Help("gRPC calls handled, by method and status code")
            .Register(*admin::Registry()),
        prometheus::BuildHistogram()
            .Name("portico_grpc_request_duration_seconds")
            .Help("gRPC handler latency, by method")
            .Register(*admin::Registry()),
        prometheus::BuildGauge()
            .Name("portico_grpc_in_flight_requests")
            .Help("gRPC calls being handled")
            .Register(*admin::Registry())
            .Add({})};
    return m;
  }
};

// Keeps the in-flight gauge right however the handler leaves.
class InFlight {
 public:
  explicit InFlight(prometheus::Gauge& g) : gauge_(g) { gauge_.Increment(); }
  ~InFlight() { gauge_.Decrement(); }
  InFlight(const InFlight&) = delete;
  InFlight& operator=(const InFlight&) = delete;

 private:
  prometheus::Gauge& gauge_;
};

const char* GrpcCodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return "OK";
    case grpc::StatusCode::CANCELLED: return "CANCELLED";
    case grpc::StatusCode::UNKNOWN: return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND: return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case grpc::StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED: return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL: return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS: return "DATA_LOSS";
    default: return "UNKNOWN";
  }
}

}  // namespace

std::string NewTraceId() { return RandomHex(16); }
std::string NewSpanId() { return RandomHex(8); }

std::optional<TraceParent> ParseTraceParent(std::string_view tp) {
  // 00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>
  if (tp.size() != 55 || tp.substr(0, 3) != "00-" || tp[35] != '-' || tp[52] != '-') {
    return std::nullopt;
  }
  const auto trace = tp.substr(3, 32);
  const auto span = tp.substr(36, 16);
  const auto flags = tp.substr(53, 2);
  if (!IsLowerHex(trace, 32) || !IsLowerHex(span, 16) || !IsLowerHex(flags, 2) ||
      trace == std::string(32, '0') || span == std::string(16, '0')) {
    return std::nullopt;
  }
  return TraceParent{std::string(trace), std::string(span), std::string(flags)};
}

std::string FormatTraceParent(const TraceParent& tp) {
  return "00-" + tp.trace_id + "-" + tp.span_id + "-" + tp.flags;
}

std::string CurrentTraceParent() {
  const log::Context& ctx = log::CurrentContext();
  if (ctx.trace_id.empty() || ctx.span_id.empty()) return {};
  return FormatTraceParent(
      {ctx.trace_id, ctx.span_id, ctx.trace_flags.size() == 2 ? ctx.trace_flags : "01"});
}

std::vector<std::string> AcceptedScopes(std::string_view method) {
  const auto slash = method.find('/');
  if (slash == std::string_view::npos) return {};
  const auto* service = google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
      std::string(method.substr(0, slash)));
  if (service == nullptr) return {};
  const auto* rpc = service->FindMethodByName(std::string(method.substr(slash + 1)));
  if (rpc == nullptr || !rpc->options().HasExtension(api::v1::access)) return {};
  const auto& scopes = rpc->options().GetExtension(api::v1::access).scopes();
  return {scopes.begin(), scopes.end()};
}

Call::Call(grpc::ServerContextBase* ctx, std::string_view method) : ctx_(ctx), method_(method) {
  request_id_ = Metadata("x-request-id");
  if (!SaneRequestId(request_id_)) request_id_ = NewUuidV7();
  if (auto tp = ParseTraceParent(Metadata("traceparent"))) {
    trace_id_ = std::move(tp->trace_id);
    parent_span_id_ = std::move(tp->span_id);
    trace_flags_ = std::move(tp->flags);
  } else {
    trace_id_ = NewTraceId();
  }
  span_id_ = NewSpanId();
  const auto now_sys = std::chrono::system_clock::now();
  auto budget = ctx_->deadline() - now_sys;
  if (ctx_->deadline() == std::chrono::system_clock::time_point::max() || budget > kMaxBudget) {
    budget = kMaxBudget;
  }
  deadline_ = Clock::now() + std::chrono::duration_cast<Clock::duration>(budget);
}

std::string Call::Metadata(std::string_view key) const {
  const auto& md = ctx_->client_metadata();
  auto it = md.find(grpc::string_ref(key.data(), key.size()));
  if (it == md.end()) return {};
  return std::string(it->second.data(), it->second.size());
}

std::string Call::client_address() const {
  std::string forwarded = Metadata("x-client-address");
  return forwarded.empty() ? ctx_->peer() : forwarded;
}

Result<Principal> Call::Authenticate(const auth::Verifier& verifier) {
  const std::string header = Metadata("authorization");
  constexpr std::string_view kBearer = "Bearer ";
  if (header.size() <= kBearer.size() ||
      !std::equal(kBearer.begin(), kBearer.end(), header.begin(),
                  [](char a, char b) { return std::tolower(a) == std::tolower(b); })) {
    return Error::Unauthenticated("missing bearer token");
  }
  auto claims = verifier.Verify(std::string_view(header).substr(kBearer.size()));
  if (!claims.ok()) return std::move(claims).error();
  if (!claims->scopes.empty()) {
    const std::vector<std::string> accepted = AcceptedScopes(method_);
    const bool allowed = std::any_of(claims->scopes.begin(), claims->scopes.end(),
                                     [&](const std::string& s) {
                                       return std::find(accepted.begin(), accepted.end(), s) !=
                                              accepted.end();
                                     });
    if (!allowed) {
      return Error::PermissionDenied(accepted.empty()
                                         ? "this call does not accept scoped tokens"
                                         : "the token lacks a scope this call needs");
    }
  }
  subject_ = claims->sub;
  return Principal{claims->sub, claims->role, claims->scopes, claims->jti};
}

Result<Principal> Call::Authorize(const auth::Verifier& verifier,
                                  std::initializer_list<std::string_view> roles) {
  auto principal = Authenticate(verifier);
  if (!principal.ok()) return principal;
  if (std::find(roles.begin(), roles.end(), principal->role) == roles.end()) {
    return Error::PermissionDenied("this call needs another role");
  }
  return principal;
}

void Call::SetHeader(const std::string& key, const std::string& value) {
  ctx_->AddInitialMetadata(key, value);
}

void Call::PropagateTo(grpc::ClientContext* downstream) const {
  downstream->AddMetadata("x-request-id", request_id_);
  downstream->AddMetadata("traceparent", FormatTraceParent({trace_id_, span_id_, trace_flags_}));
  const auto left = TimeLeft(deadline_);
  downstream->set_deadline(std::chrono::system_clock::now() +
                           std::chrono::duration_cast<std::chrono::system_clock::duration>(left));
}

Error ServiceBusy() {
  Error busy = Error::Unavailable("the service is busy; try again shortly");
  busy.retry_after_seconds = 1;
  return busy;
}

grpc::Status RecordCall(grpc::ServerContextBase* ctx, std::string_view method, Deadline start,
                        grpc::Status status, const std::string& user_id) {
  // A call the client gave up on is recorded as such, whatever the handler
  // made of it (the client never sees the status).
  if (ctx->IsCancelled() && status.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) {
    status = grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client");
  }
  auto& metrics = RpcMetrics::Get();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const char* code = GrpcCodeName(status.error_code());
  const std::string method_label(method);
  metrics.requests.Add({{"method", method_label}, {"code", code}}).Increment();
  metrics.duration.Add({{"method", method_label}}, admin::LatencyBuckets()).Observe(seconds);
  log::Info("rpc", {{"method", method},
                    {"code", code},
                    {"duration_ms", seconds * 1000.0},
                    {"user_id", user_id}});
  return status;
}

namespace {

grpc::Status Run(grpc::ServerContextBase* ctx, std::string_view method, Deadline start,
                 const std::function<Status(Call&)>& handler) {
  InFlight in_flight(RpcMetrics::Get().in_flight);
  Call call(ctx, method);
  log::ScopedContext scope(
      {call.request_id(), call.trace_id(), call.span_id(), call.trace_flags()});
  grpc::Status status;
  if (Clock::now() >= call.deadline()) {
    // It waited in the queue past its deadline: nobody wants the answer.
    // (gRPC has cancelled such a call too; its deadline is the reason.)
    status = grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "deadline exceeded");
  } else if (ctx->IsCancelled()) {
    status = grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client");
  } else {
    try {
      status = ToGrpcStatus(handler(call));
    } catch (const std::exception& e) {
      log::Error("unhandled exception in handler", {{"method", method}, {"error", e.what()}});
      status = grpc::Status(grpc::StatusCode::INTERNAL, "internal error");
    } catch (...) {
      log::Error("unhandled exception in handler", {{"method", method}});
      status = grpc::Status(grpc::StatusCode::INTERNAL, "internal error");
    }
  }
  return RecordCall(ctx, method, start, std::move(status), call.principal_subject());
}

}  // namespace

grpc::Status Handle(grpc::ServerContextBase* ctx, std::string_view method,
                    const std::function<Status(Call&)>& handler) {
  return Run(ctx, method, Clock::now(), handler);
}

grpc::ServerUnaryReactor* Serve(grpc::CallbackServerContext* ctx, std::string_view method,
                                Executor& executor, std::function<Status(Call&)> handler) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const Deadline start = Clock::now();
  const bool queued =
      executor.TrySubmit([ctx, method, reactor, start, handler = std::move(handler)] {
        reactor->Finish(Run(ctx, method, start, handler));
      });
  if (!queued) {
    reactor->Finish(RecordCall(ctx, method, start, ToGrpcStatus(ServiceBusy()), {}));
  }
  return reactor;
}

}  // namespace portico::rpc
