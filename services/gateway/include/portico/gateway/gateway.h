#pragma once
// The REST gateway: an HTTP/1.1 server that routes and transcodes requests
// to gRPC backends generically, from the HTTP annotations of the compiled
// service descriptors (DESIGN §3, §4). Beast, Asio and gRPC stay in the .cc
// files.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "portico/admin/admin_server.h"
#include "portico/auth/jwt.h"
#include "portico/core/result.h"

namespace portico::transcode {
class RouteTable;
}

namespace portico::gateway {

/// Where the RPCs of services whose full name starts with `prefix` go, e.g.
/// {"portico.users.v1.", "localhost:50051"}. The longest prefix wins.
struct Upstream {
  std::string prefix;
  std::string target;  // gRPC target ("host:port", "dns:///...")
};

/// A service loaded at run time from a descriptor set, and the gRPC target
/// that serves it.
struct ExtraService {
  std::string name;    // full name, e.g. "acme.billing.v1.InvoiceService"
  std::string target;  // gRPC target
};

/// The services the gateway routes by default (every public Portico API).
std::vector<std::string> DefaultServices();

struct GatewayOptions {
  std::string host = "0.0.0.0";
  std::uint16_t port = 8080;  // 0 picks a free port (see Gateway::port())
  int threads = 2;            // io_context threads
  std::vector<std::string> services = DefaultServices();
  std::vector<Upstream> upstreams;
  /// Path of a binary FileDescriptorSet (protoc --include_imports
  /// --descriptor_set_out) defining more services to route; read by Create
  /// and again by every ReloadRoutes. Empty: none.
  std::string descriptor_set;
  /// The services of `descriptor_set` to route, each with its target.
  std::vector<ExtraService> extra_services;
  std::chrono::milliseconds request_timeout{10'000};  // gRPC deadline per request
  std::chrono::milliseconds header_timeout{10'000};   // to read one request (header and body)
  std::chrono::milliseconds idle_timeout{60'000};     // keep-alive wait for the next request
  std::size_t max_body_size = 1 << 20;                // larger bodies: 413
  std::size_t max_header_size = 16 << 10;             // larger headers: 431
  // Protection (src/protection.h). A connection beyond max_connections is
  // answered 503 + Retry-After and closed; a request beyond max_in_flight
  // (being handled at once, gateway-wide) is answered 503 + Retry-After.
  std::size_t max_connections = 10'000;
  std::size_t max_in_flight = 4'096;
  std::size_t max_json_depth = 72;  // deeper request bodies: 400
  double rate_limit = 0;            // requests per second per client; 0: off
  double rate_burst = 50;           // requests a client may save up
  std::string trusted_proxies;      // comma-separated CIDRs whose X-Forwarded-For is believed
  std::string cors_origins;         // comma-separated origins, or "*"; empty: CORS off
  std::chrono::seconds cors_max_age{600};
  std::size_t gzip_min_size = 1024;  // smaller bodies are sent as they are
  bool gzip = true;
  // Server-streaming routes: the longest a stream stays open (its gRPC
  // deadline; a client reconnects with Last-Event-ID), and how often an idle
  // SSE stream sends a keep-alive comment.
  std::chrono::milliseconds stream_max_duration{3'600'000};
  std::chrono::milliseconds stream_keepalive{15'000};
  // Introspection answers for personal access tokens: how many are kept and
  // for how long (revoking a token takes effect within the time).
  std::size_t pat_cache_size = 10'000;
  std::chrono::seconds pat_cache_ttl{30};
  std::string jwt_issuer = "portico";
  std::string jwt_audience = "portico-api";
};

/// The OpenAPI 3.1 document (JSON) of the routes a gateway with `options`
/// serves at /openapi.json. kInvalidArgument for a bad route table.
Result<std::string> OpenApiDocument(const GatewayOptions& options);

class Gateway {
 public:
  /// Builds the route table and the upstream channels (no connection yet).
  /// `keys` verifies access tokens; `refresh_keys` (may be null) is called by
  /// the verifier on an unknown key id, on an I/O thread: it must not block
  /// (e.g. only wake a background loader).
  /// kInvalidArgument for a bad route table (a conflict names both RPCs), a
  /// bad descriptor set, or a service without upstream; kUnavailable if the
  /// descriptor set cannot be read.
  static Result<std::unique_ptr<Gateway>> Create(GatewayOptions options,
                                                 std::shared_ptr<auth::KeySet> keys,
                                                 std::function<void()> refresh_keys = nullptr);
  ~Gateway();  // Shuts down (grace 0) if still running.
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  /// Binds and starts serving on the io threads. kUnavailable if the address
  /// cannot be bound.
  Status Start();
  /// The bound port (after Start).
  std::uint16_t port() const;

  /// Stops accepting, ends open streamed responses (each with a final 503
  /// error event), closes idle connections, answers requests that would
  /// start a backend call from now on 503, lets in-flight requests finish for
  /// up to `grace`, then cancels the rest (answered 499) and joins the
  /// threads. Returns only once no backend call is in flight, so the gateway
  /// may be destroyed right after. Idempotent; blocks.
  void Shutdown(std::chrono::milliseconds grace);

  /// gRPC health (grpc.health.v1.Health/Check) of every upstream target,
  /// each bounded by `timeout`. Thread-safe; blocks.
  std::vector<admin::Check> CheckUpstreams(std::chrono::milliseconds timeout) const;

  /// Re-reads `descriptor_set` and rebuilds the route table and upstream
  /// channels; on success new requests use them while requests in flight
  /// finish on the old ones. On failure (unreadable file, bad descriptors,
  /// conflicting routes, a service without a target) returns why and the
  /// routes in force stay. Logged and counted either way. Thread-safe;
  /// blocks (file I/O).
  Status ReloadRoutes();

  /// The route table in force. It stays valid while held, even across
  /// reloads; every successful reload installs a new table (a different
  /// pointer), so what is derived from it (e.g. an OpenAPI document) can be
  /// cached by this pointer and made again when it changes. Thread-safe.
  std::shared_ptr<const transcode::RouteTable> routes() const;

  struct Impl;

 private:
  explicit Gateway(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace portico::gateway
