#include "protection.h"
#include "portico/core/strings.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <cctype>
#include <cmath>

#include "compress.h"
#include "handler.h"
#include "portico/admin/metrics.h"

namespace portico::gateway {

// ---- TokenBuckets ----

TokenBuckets::TokenBuckets(double rate, double burst, std::size_t max_clients)
    : rate_(rate),
      burst_(std::max(burst, 1.0)),
      max_clients_(std::max<std::size_t>(max_clients, 1)),
      refill_(rate > 0 ? std::chrono::duration_cast<Clock::duration>(
                             std::chrono::duration<double>(burst_ / rate))
                       : Clock::duration::zero()) {}

std::size_t TokenBuckets::size() const {
  std::lock_guard lock(mu_);
  return buckets_.size();
}

void TokenBuckets::Sweep(Clock::time_point now) {
  // A bucket untouched for a whole refill period is full again.
  std::erase_if(buckets_, [&](const auto& kv) {
    const Bucket& b = kv.second;
    return b.tokens + rate_ * std::chrono::duration<double>(now - b.at).count() >= burst_;
  });
  // Sweeping costs a pass over the map: at most once per refill period (and
  // at least once a minute, so a long period cannot pin memory).
  next_sweep_ =
      now + std::clamp<Clock::duration>(refill_, std::chrono::seconds(1), std::chrono::seconds(60));
}

std::int64_t TokenBuckets::Take(const std::string& client, Clock::time_point now) {
  if (rate_ <= 0) return 0;
  std::lock_guard lock(mu_);
  if (now >= next_sweep_) Sweep(now);
  auto it = buckets_.find(client);
  if (it == buckets_.end()) {
    if (buckets_.size() >= max_clients_) Sweep(now);
    const std::string& key = buckets_.size() >= max_clients_ ? std::string() : client;
    it = buckets_.try_emplace(key, Bucket{burst_, now}).first;
  }
  Bucket& b = it->second;
  const double elapsed = std::chrono::duration<double>(now - b.at).count();
  b.tokens = std::min(burst_, b.tokens + std::max(elapsed, 0.0) * rate_);
  b.at = std::max(b.at, now);
  if (b.tokens >= 1) {
    b.tokens -= 1;
    return 0;
  }
  return std::max<std::int64_t>(1, static_cast<std::int64_t>(std::ceil((1 - b.tokens) / rate_)));
}

// ---- JSON depth ----

bool JsonDeeperThan(std::string_view json, std::size_t limit) {
  std::size_t depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < json.size(); ++i) {
    const char c = json[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // the escaped character cannot end the string
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    switch (c) {
      case '"':
        in_string = true;
        break;
      case '{':
      case '[':
        if (++depth > limit) return true;
        break;
      case '}':
      case ']':
        if (depth > 0) --depth;
        break;
      default:
        break;
    }
  }
  return false;
}

// ---- Protection ----

struct ProtectionMetrics {
  prometheus::Family<prometheus::Counter>& shed;
  prometheus::Gauge& connections;

  explicit ProtectionMetrics(prometheus::Registry& r)
      : shed(prometheus::BuildCounter()
                 .Name("portico_http_shed_total")
                 .Help("Requests and connections the gateway turned away, by reason.")
                 .Register(r)),
        connections(prometheus::BuildGauge()
                        .Name("portico_http_open_connections")
                        .Help("Client connections being served (not those told 503).")
                        .Register(r)
                        .Add({})) {
    // Every reason is served from the start (at 0), so a rate() over it
    // exists before the first request is shed.
    for (const char* reason : {"connections", "connections_refused", "rate_limit", "cors_origin",
                               "json_depth", "in_flight"}) {
      shed.Add({{"reason", reason}});
    }
  }
};

namespace {

bool IsBlank(std::string_view s) {
  return s.find_first_not_of(" \t\r\n") == std::string_view::npos;
}

bool HasHeader(const HttpResponse& r, std::string_view name) {
  for (const auto& [k, v] : r.headers) {
    if (k.size() == name.size() && std::equal(k.begin(), k.end(), name.begin(), [](char a, char b) {
          return std::tolower(static_cast<unsigned char>(a)) == b;
        })) {
      return true;
    }
  }
  return false;
}

// Adds `token` to the response's Vary header (one header, comma-joined).
void AddVary(HttpResponse& r, std::string_view token) {
  for (auto& [k, v] : r.headers) {
    if (k == "Vary" || k == "vary") {
      v += ", " + std::string(token);
      return;
    }
  }
  r.headers.emplace_back("Vary", std::string(token));
}

// Path of an origin-form target (absolute-form requests are not preflighted
// by browsers, which send origin-form).
std::string_view PathOf(std::string_view target) {
  return target.substr(0, target.find_first_of("?#"));
}

}  // namespace

Result<std::unique_ptr<Protection>> Protection::Create(const GatewayOptions& options,
                                                       RequestHandler& handler) {
  auto trusted = CidrSet::Parse(options.trusted_proxies);
  if (!trusted.ok()) {
    return Error::InvalidArgument("trusted proxies: " + trusted.error().message);
  }
  auto cors = CorsPolicy::Parse(options.cors_origins, options.cors_max_age);
  if (!cors.ok()) return Error::InvalidArgument("CORS origins: " + cors.error().message);
  return std::unique_ptr<Protection>(
      new Protection(options, handler, std::move(trusted).value(), std::move(cors).value()));
}

Protection::Protection(const GatewayOptions& options, RequestHandler& handler, CidrSet trusted,
                       CorsPolicy cors)
    : options_(options),
      handler_(handler),
      trusted_(std::move(trusted)),
      cors_(std::move(cors)),
      buckets_(options.rate_limit, options.rate_burst),
      // Connections over the limit still cost a socket and a header read
      // (bounded by the header timeout) to be told 503; past this many more,
      // they are closed unanswered.
      max_rejecting_(std::max<std::size_t>(16, options.max_connections / 8)),
      metrics_(std::make_shared<ProtectionMetrics>(*admin::Registry())) {}

void Protection::Shed(std::string_view reason) const {
  metrics_->shed.Add({{"reason", std::string(reason)}}).Increment();
}

Protection::Admission Protection::AdmitConnection() {
  if (connections_.fetch_add(1) < options_.max_connections) {
    metrics_->connections.Increment();
    return Admission::kServe;
  }
  connections_.fetch_sub(1);
  if (rejecting_.fetch_add(1) < max_rejecting_) {
    Shed("connections");
    return Admission::kReject;
  }
  rejecting_.fetch_sub(1);
  Shed("connections_refused");
  return Admission::kRefuse;
}

void Protection::ReleaseConnection(Admission a) {
  if (a == Admission::kServe) {
    connections_.fetch_sub(1);
    metrics_->connections.Decrement();
  }
  if (a == Admission::kReject) rejecting_.fetch_sub(1);
}

HttpResponse Protection::Rejection(const HttpRequest& request, int status, std::string_view code,
                                   std::string detail, std::int64_t retry_after) {
  HttpResponse r = handler_.Reject(request, status, code, std::move(detail));
  if (retry_after > 0) r.headers.emplace_back("Retry-After", std::to_string(retry_after));
  return r;
}

HttpResponse Protection::OverCapacity(const HttpRequest& request) {
  return Rejection(request, 503, "UNAVAILABLE",
                   "the gateway has " + std::to_string(options_.max_connections) +
                       " connections open, its limit; retry later",
                   1);
}

std::string Protection::ClientAddress(std::string_view peer, const HttpRequest& request) const {
  if (trusted_.empty()) return ResolveClientAddress(peer, {}, trusted_);
  std::vector<std::string_view> xff;
  for (const auto& [k, v] : request.headers) {
    if (k == "x-forwarded-for") xff.push_back(v);
  }
  return ResolveClientAddress(peer, xff, trusted_);
}

ResponseContext Protection::ContextOf(const HttpRequest& request) const {
  ResponseContext c;
  c.origin = std::string(TrimBlanks(request.Header("origin")));
  c.accepts_gzip = options_.gzip && AcceptsGzip(request.Header("accept-encoding"));
  c.head = request.method == "HEAD";
  return c;
}

std::optional<HttpResponse> Protection::Screen(const HttpRequest& request) {
  if (const auto wait =
          buckets_.Take(RateLimitKey(request.client_address), TokenBuckets::Clock::now());
      wait > 0) {
    Shed("rate_limit");
    HttpResponse r = Rejection(
        request, 429, "RESOURCE_EXHAUSTED",
        "too many requests from this client; retry in " + std::to_string(wait) + " s", wait);
    r.close = false;  // the request was read whole: the connection stays usable
    return r;
  }

  const std::string_view origin = TrimBlanks(request.Header("origin"));
  if (request.method == "OPTIONS" && cors_.enabled() && !origin.empty()) {
    const auto methods = handler_.AllowedMethods(PathOf(request.target));
    if (!methods.empty()) {
      if (!cors_.Allows(origin)) {
        Shed("cors_origin");
        HttpResponse r =
            Rejection(request, 403, "PERMISSION_DENIED",
                      "cross-origin requests from " + std::string(origin) + " are not allowed", 0);
        r.close = false;
        return r;
      }
      HttpResponse r;
      r.status = 204;
      cors_.AddPreflightHeaders(methods, r);
      return handler_.Answer(request, std::move(r));
    }
  }

  if (!IsBlank(request.body) && JsonDeeperThan(request.body, options_.max_json_depth)) {
    Shed("json_depth");
    HttpResponse r = Rejection(
        request, 400, "INVALID_ARGUMENT",
        "the JSON body nests deeper than " + std::to_string(options_.max_json_depth) + " levels",
        0);
    r.close = false;
    return r;
  }

  if (in_flight_.fetch_add(1) >= options_.max_in_flight) {
    in_flight_.fetch_sub(1);
    Shed("in_flight");
    HttpResponse r = Rejection(request, 503, "UNAVAILABLE",
                               "the gateway is handling " + std::to_string(options_.max_in_flight) +
                                   " requests, its limit; retry later",
                               1);
    r.close = false;
    return r;
  }
  return std::nullopt;
}

void Protection::EndRequest() { in_flight_.fetch_sub(1); }

void Protection::Decorate(const ResponseContext& context, HttpResponse& response) const {
  if (cors_.enabled()) {
    // The CORS headers depend on Origin: caches must key on it.
    AddVary(response, "Origin");
    if (cors_.Allows(context.origin)) cors_.AddResponseHeaders(context.origin, response);
  }
  if (!options_.gzip || response.status == 204 || response.status == 304 ||
      response.body.size() < options_.gzip_min_size || HasHeader(response, "content-encoding")) {
    return;
  }
  AddVary(response, "Accept-Encoding");
  if (!context.accepts_gzip || context.head) return;
  std::string zipped = Gzip(response.body);
  if (zipped.size() >= response.body.size()) return;  // incompressible: send as is
  response.body = std::move(zipped);
  response.headers.emplace_back("Content-Encoding", "gzip");
}

}  // namespace portico::gateway
