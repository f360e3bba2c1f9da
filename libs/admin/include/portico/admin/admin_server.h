#pragma once
// The admin HTTP endpoint every Portico process serves (never public):
// GET /healthz (process alive), GET /readyz (dependencies answer),
// GET /metrics (Prometheus text format). Beast stays inside the .cc.

#include <chrono>
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

/// Reports the state of the process's dependencies; ready means every check
/// is ok. Runs on the admin server's probe thread, one call at a time, never
/// on a request's path, so it may block (a database ping, upstream health
/// checks), but it should bound that with its own timeout: Stop() waits for a
/// call in progress. An exception counts as not ready.
using ReadinessProbe = std::function<std::vector<Check>()>;

/// How the readiness probe is scheduled.
struct ReadinessOptions {
  /// Pause between the end of one probe call and the start of the next.
  std::chrono::milliseconds interval{1000};
  /// A probe call still running after this long makes /readyz not ready
  /// (check "probe": "readiness probe stalled") until it returns.
  std::chrono::milliseconds stall_after{10000};
};

/// Serves the admin endpoints on one io thread. /readyz answers from the
/// result of the last completed probe call, which a separate probe thread
/// refreshes every `ReadinessOptions::interval`, so no request waits for the
/// probe and /readyz costs the dependencies nothing. Until the first probe
/// call completes, /readyz is 503.
class AdminServer {
 public:
  /// `probe` may be empty: then /readyz is ready unless draining. Throws
  /// std::invalid_argument if an option is not positive.
  AdminServer(std::shared_ptr<prometheus::Registry> registry, ReadinessProbe probe,
              ReadinessOptions options = {});
  ~AdminServer();  // Stops the server.
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  /// Binds `host:port` (port 0 picks a free one), serves on its own thread
  /// and starts probing on another. kUnavailable if the address cannot be
  /// bound; kFailedPrecondition if already started. Not concurrent with Stop().
  Status Start(const std::string& host, std::uint16_t port);
  /// The bound port (after Start).
  std::uint16_t port() const;
  /// Marks the process as shutting down: /readyz answers 503 from the next
  /// request on. Thread-safe.
  void SetDraining();
  /// Starts a probe call now (or right after the one in progress) and waits
  /// until it completes, so the next /readyz reflects the state at the time
  /// of this call. True once done, or at once if there is no probe; false if
  /// `timeout` passes first or the server is not running. Thread-safe.
  bool WaitForProbe(std::chrono::milliseconds timeout);
  /// Stops serving and probing, and joins both threads; waits for a probe
  /// call in progress to return. Idempotent.
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace portico::admin
