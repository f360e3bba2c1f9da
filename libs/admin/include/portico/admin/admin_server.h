#pragma once
// The admin HTTP endpoint every Portico process serves (never public):
// GET /healthz (process alive), GET /readyz (dependencies answer),
// GET /metrics (Prometheus text format). Beast stays inside the .cc.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "portico/core/result.h"

namespace prometheus {
class Registry;
}

namespace portico::admin {

/// One dependency's state, shown in the /readyz JSON body.
struct Check {
  std::string name;  // e.g. "database", "users", "keys"
  bool ok = false;
  std::string detail;  // short, no secrets
};

/// Called on every /readyz request, on the admin server's thread; must be
/// quick and thread-safe. Ready means every check is ok.
using ReadinessProbe = std::function<std::vector<Check>()>;

class AdminServer {
 public:
  AdminServer(std::shared_ptr<prometheus::Registry> registry, ReadinessProbe probe);
  ~AdminServer();  // Stops the server.
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  /// Binds `host:port` (port 0 picks a free one) and serves on its own
  /// thread. kUnavailable if the address cannot be bound.
  Status Start(const std::string& host, std::uint16_t port);
  /// The bound port (after Start).
  std::uint16_t port() const;
  /// Marks the process as shutting down: /readyz answers 503 from now on.
  void SetDraining();
  /// Stops serving and joins the thread. Idempotent.
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace portico::admin
