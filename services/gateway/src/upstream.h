#pragma once
// One gRPC channel per backend target, and the service -> target table.
//
// Every channel balances round-robin over all the addresses its target
// resolves to (so "dns:///users:50051" spreads over every replica), keeps
// its connections alive with HTTP/2 pings, skips replicas whose gRPC health
// says NOT_SERVING, and retries UNAVAILABLE on the safe methods only: the
// RPCs whose HTTP binding is GET, listed by name in the channel's service
// config. A set of Upstreams is immutable; a route reload makes a new one
// that reuses every channel whose configuration did not change.

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "portico/admin/admin_server.h"
#include "portico/core/result.h"
#include "portico/gateway/gateway.h"

#include <grpcpp/channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/support/status.h>

namespace portico::transcode {
class RouteTable;
}

namespace portico::gateway {

/// Keepalive of upstream channels (documented in docs/architecture.md): a
/// ping after 30 s without activity, the connection is dead if its answer
/// takes over 10 s. Portico's servers accept pings that often
/// (libs/rpc/server.cc); a server that does not answers GOAWAY
/// "too_many_pings", after which gRPC doubles the interval on its own.
inline constexpr std::chrono::milliseconds kKeepaliveTime{30'000};
inline constexpr std::chrono::milliseconds kKeepaliveTimeout{10'000};
/// Retry policy of safe methods: up to 3 attempts in all, backoff 50 ms
/// doubling up to 500 ms (with gRPC's jitter), within the request deadline.
inline constexpr int kRetryMaxAttempts = 3;

/// The gRPC service config of a channel: round_robin, client-side health
/// checking, and the retry policy for `safe_methods` ("pkg.Service/Method").
std::string ServiceConfigJson(const std::vector<std::string>& safe_methods);

class Upstreams {
 public:
  /// Channels for every target that one of `services` resolves to: an exact
  /// entry of `exact` (full service name -> target) first, else the longest
  /// matching prefix of `upstreams`. Channels of `previous` (may be null)
  /// whose target and service config are unchanged are shared, not rebuilt.
  /// kInvalidArgument if a service has no target. Makes no connection.
  static Result<std::shared_ptr<const Upstreams>> Create(
      const std::vector<Upstream>& upstreams, const std::map<std::string, std::string>& exact,
      const std::vector<std::string>& services, const transcode::RouteTable& routes,
      const Upstreams* previous);
  ~Upstreams();

  /// The stub for a service given to Create, else null. Thread-safe.
  grpc::GenericStub* StubFor(const std::string& service) const;
  /// The target a service given to Create goes to ("" if none).
  const std::string& TargetOf(const std::string& service) const;
  /// Health of every distinct target (grpc.health.v1.Health/Check of the
  /// server as a whole; a target without the health service is not healthy).
  /// Blocks up to `timeout`. Thread-safe.
  std::vector<admin::Check> Check(std::chrono::milliseconds timeout) const;
  /// Records one finished call of `method` ("Name") of `service` in the
  /// upstream metrics. Thread-safe.
  void Observe(const std::string& service, std::string_view method, grpc::StatusCode code,
               std::chrono::steady_clock::duration elapsed) const;

  struct Target {
    std::string name;            // the gRPC target
    std::string service_config;  // the JSON it was created with
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<grpc::GenericStub> stub;
  };

 private:
  Upstreams() = default;
  // Shared with the Upstreams of later reloads while the channel stays the same.
  std::vector<std::shared_ptr<const Target>> targets_;
  std::map<std::string, const Target*> by_service_;
};

}  // namespace portico::gateway
