#pragma once
// The gateway's protection against too much or too deep: connection and
// in-flight limits, a per-client token-bucket rate limit, a JSON nesting
// limit, CORS, response compression. Beast-free: the HTTP server calls it
// around the request handler.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "client_address.h"
#include "cors.h"
#include "http_types.h"
#include "portico/gateway/gateway.h"

namespace portico::gateway {

class RequestHandler;
struct ProtectionMetrics;

/// One token bucket per client: each holds up to `burst` tokens and gains
/// `rate` per second; a request takes one. A full bucket says no more than a
/// new one would, so full buckets are dropped (at most every few seconds),
/// which bounds memory by the clients active within a refill period. If
/// `max_clients` buckets are still live, further clients share one overflow
/// bucket until some go idle: under a flood of distinct addresses they are
/// throttled together instead of growing the map.
class TokenBuckets {
 public:
  using Clock = std::chrono::steady_clock;
  /// rate <= 0 turns the limit off (Take always succeeds, nothing is stored).
  TokenBuckets(double rate, double burst, std::size_t max_clients = 100'000);

  /// Takes a token for `client` at `now`. Returns 0 if there was one, else
  /// the whole seconds (>= 1) until the bucket holds one again: the
  /// Retry-After. A `now` slightly before a previous call's (threads racing
  /// to the lock) counts as that call's time. Thread-safe.
  std::int64_t Take(const std::string& client, Clock::time_point now);
  /// Buckets stored. Thread-safe.
  std::size_t size() const;

 private:
  struct Bucket {
    double tokens = 0;
    Clock::time_point at;
  };
  void Sweep(Clock::time_point now);  // needs mu_

  double rate_, burst_;
  std::size_t max_clients_;
  Clock::duration refill_;  // time to refill an empty bucket
  mutable std::mutex mu_;
  std::unordered_map<std::string, Bucket> buckets_;  // guarded by mu_
  Clock::time_point next_sweep_{};                   // guarded by mu_
};

/// True if arrays and objects in `json` nest deeper than `limit` levels (a
/// top-level object is level 1). Reads no further than needed and does not
/// validate (the JSON parser does, after this check), but skips strings,
/// escapes included, so brackets inside them do not count.
bool JsonDeeperThan(std::string_view json, std::size_t limit);

/// What the answer to a request must know about it.
struct ResponseContext {
  std::string origin;  // Origin header, "" if none
  bool accepts_gzip = false;
  bool head = false;  // HEAD request: nothing to compress
};

/// The limits of one gateway, shared by its connections. Thread-safe.
class Protection {
 public:
  /// kInvalidArgument for a bad trusted-proxy list or CORS origin list.
  static Result<std::unique_ptr<Protection>> Create(const GatewayOptions& options,
                                                    RequestHandler& handler);

  // ---- connections ----
  enum class Admission {
    kServe,   // counted against max_connections
    kReject,  // over the limit: read the request, answer 503 + Retry-After, close
    kRefuse,  // even the rejecting connections are too many: close at once
  };
  Admission AdmitConnection();
  /// When a connection admitted with `a` ends.
  void ReleaseConnection(Admission a);
  /// The 503 for a connection over the limit (`request` may be partial).
  HttpResponse OverCapacity(const HttpRequest& request);

  // ---- requests ----
  /// The client of a request from `peer` (see ResolveClientAddress).
  std::string ClientAddress(std::string_view peer, const HttpRequest& request) const;
  ResponseContext ContextOf(const HttpRequest& request) const;
  /// Screens a complete request before the handler sees it: rate limit
  /// (429), CORS preflight (204, or 403 for an origin not allowed), JSON
  /// nesting (400), in-flight limit (503). nullopt: admitted, and one
  /// in-flight slot is taken, to be given back with EndRequest once the
  /// request is answered. Otherwise the answer to write (with request id and
  /// access log, like any other).
  std::optional<HttpResponse> Screen(const HttpRequest& request);
  void EndRequest();
  /// On every response: CORS headers for an allowed origin, and gzip when
  /// the client accepts it and the body is large enough.
  void Decorate(const ResponseContext& context, HttpResponse& response) const;

 private:
  Protection(const GatewayOptions& options, RequestHandler& handler, CidrSet trusted,
             CorsPolicy cors);
  HttpResponse Rejection(const HttpRequest& request, int status, std::string_view code,
                         std::string detail, std::int64_t retry_after);
  void Shed(std::string_view reason) const;

  GatewayOptions options_;
  RequestHandler& handler_;
  CidrSet trusted_;
  CorsPolicy cors_;
  TokenBuckets buckets_;
  std::size_t max_rejecting_;
  std::atomic<std::size_t> connections_{0};
  std::atomic<std::size_t> rejecting_{0};
  std::atomic<std::size_t> in_flight_{0};
  std::shared_ptr<ProtectionMetrics> metrics_;
};

}  // namespace portico::gateway
