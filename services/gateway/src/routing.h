#pragma once
// The gateway's routing state: the route table and the upstream channels it
// calls, built together and swapped together when the routes are reloaded
// (SIGHUP re-reads the descriptor set of services loaded at run time).
//
// Lifetime: a request takes a shared_ptr to the Routing in force when it is
// matched and keeps it until its response is written, so a reload never
// frees the route, descriptors, prototypes or channel a request still uses;
// the old Routing is released once no request holds it any more, by
// RouteStore::ReleaseRetired on a thread of ours (never on a gRPC callback
// thread, where the last request may finish: a channel must not be destroyed
// inside its own callback).

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "portico/core/result.h"
#include "portico/gateway/gateway.h"
#include "portico/transcode/route_table.h"
#include "upstream.h"

namespace portico::gateway {

struct Routing {
  std::shared_ptr<const transcode::RouteTable> table;
  std::shared_ptr<const Upstreams> upstreams;
  std::uint64_t generation = 0;  // 1 for the table built at start, +1 per reload
};

/// Builds the routing for `options`: the compiled-in `services`, plus the
/// `extra_services` defined in the `descriptor_set` file (read now).
/// kInvalidArgument for a bad route table (naming both RPCs of a conflict),
/// an extra service missing from the set, a service of the set that has
/// HTTP rules but no target, or a service without an upstream; kUnavailable
/// if the file cannot be read. `previous` (may be null) lends the channels
/// that stay the same. Blocks (file I/O).
Result<std::shared_ptr<const Routing>> BuildRouting(const GatewayOptions& options,
                                                    const Routing* previous);

/// The routing in force, and its reload. Thread-safe.
class RouteStore {
 public:
  /// Builds the first routing (see BuildRouting).
  static Result<std::shared_ptr<RouteStore>> Create(GatewayOptions options);

  /// The routing in force; never null. Cheap (a mutex and a shared_ptr copy).
  std::shared_ptr<const Routing> Get() const;

  /// Re-reads the descriptor set and rebuilds the routing; on success swaps
  /// it in for new requests (in-flight ones finish on the old one) and logs
  /// it, else logs why and keeps the routing in force. Counts both in
  /// portico_route_reloads_total{result}. Reloads are serialized. Blocks.
  Status Reload();

  /// Frees the routings replaced by reloads that no request holds any more
  /// (their channels close). Called by Reload and by the readiness probe;
  /// never call it from a gRPC callback. Thread-safe.
  void ReleaseRetired();

 private:
  explicit RouteStore(GatewayOptions options) : options_(std::move(options)) {}
  void Publish(std::shared_ptr<const Routing> routing);

  const GatewayOptions options_;
  std::mutex reload_mu_;  // one reload at a time
  mutable std::mutex mu_;
  std::shared_ptr<const Routing> current_;  // guarded by mu_
  std::vector<std::shared_ptr<const Routing>> retired_;  // guarded by mu_
};

}  // namespace portico::gateway
