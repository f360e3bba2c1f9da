#pragma once
// Start-up and shutdown glue shared by the gRPC services (users, data):
// logging from config, the database pool with its metrics and migrations,
// and the signal-driven graceful shutdown. The gateway uses the parts that
// apply to it.

#include <chrono>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "portico/config/config.h"
#include "portico/core/deadline.h"
#include "portico/core/result.h"
#include "portico/pg/migrate.h"
#include "portico/pg/pool.h"

namespace portico::admin {
class AdminServer;
}
namespace portico::rpc {
class Server;
struct ExecutorOptions;
}

namespace portico::runtime {

/// PORTICO_LOG_LEVEL and PORTICO_LOG_FORMAT, the same in every binary.
std::vector<config::Var> LogVars();
/// PORTICO_JWT_ISSUER and PORTICO_JWT_AUDIENCE (`what` completes the help,
/// e.g. "of issued access tokens").
std::vector<config::Var> TokenVars(std::string_view what);
/// The variables every gRPC service has: PORTICO_GRPC_ADDR, PORTICO_ADMIN_ADDR,
/// PORTICO_DATABASE_URL (secret), PORTICO_DB_POOL_SIZE, PORTICO_MAX_QUEUED_CALLS,
/// then LogVars().
std::vector<config::Var> ServiceVars(std::string_view grpc_addr, std::string_view admin_addr,
                                     std::string_view database_url);

/// The executor that runs a service's calls: one worker per database
/// connection (PORTICO_DB_POOL_SIZE), so a running call never waits for a
/// connection, and PORTICO_MAX_QUEUED_CALLS waiting at most.
rpc::ExecutorOptions CallExecutorOptions(const config::Config& config);

/// Installs the process logger from PORTICO_LOG_LEVEL / PORTICO_LOG_FORMAT.
void InitLogging(std::string_view service, const config::Config& config);

/// The pool of a service's database plus its metrics
/// (portico_db_pool_connections{state}, portico_db_pool_waiting,
/// portico_db_pool_acquire_wait_seconds_total,
/// portico_db_query_duration_seconds), refreshed every few seconds.
class Database {
 public:
  /// Creates the pool (no connection yet). kInvalidArgument for a bad URL.
  static Result<std::unique_ptr<Database>> Open(std::string url, int pool_size);
  ~Database();

  pg::Pool& pool() { return *pool_; }

  /// Applies `migrations` under an advisory lock named `lock_name`, retrying
  /// while the database is unavailable until `deadline` (a database that
  /// starts after the service is normal under docker-compose/Kubernetes).
  /// Checksum mismatches and SQL errors are not retried.
  Status Migrate(std::span<const pg::Migration> migrations, std::string_view lock_name,
                 Deadline deadline);

 private:
  Database() = default;
  void RefreshMetrics();
  std::unique_ptr<pg::Pool> pool_;
  std::jthread refresher_;
};

class Database;

/// What the common start of a gRPC service produced.
struct Service {
  config::Startup startup;
  std::unique_ptr<Database> db;
};

/// The common start of users and data: blocks shutdown signals, parses the
/// configuration (`--help` exits 0, a bad value exits 2), starts logging as
/// `service`, opens the database and applies `migrations`. With
/// `--migrate-only` it exits 0 once migrated; if migrating fails it logs and
/// exits 1.
Service StartService(int argc, char** argv, std::string_view service, std::string_view summary,
                     const std::vector<config::Var>& vars,
                     std::span<const pg::Migration> migrations);

/// Starts `server` and `admin` (on PORTICO_GRPC_ADDR's server and
/// PORTICO_ADMIN_ADDR), logs the ports, serves until SIGTERM/SIGINT and
/// drains (see ServeUntilSignal). Returns the exit code: 1 if either cannot
/// start.
int Run(std::string_view service, rpc::Server& server, admin::AdminServer& admin,
        const config::Config& config, const std::function<void()>& on_drain = {});

/// Blocks until SIGTERM/SIGINT (call rpc::BlockShutdownSignals() first in
/// main), then drains: /readyz turns 503, `on_drain` (if any) runs (e.g. to
/// end long-lived streams, which would otherwise hold the grace period),
/// the gRPC server stops accepting and gives in-flight calls up to `grace`,
/// the admin server stops. Returns 0.
int ServeUntilSignal(rpc::Server& server, admin::AdminServer& admin,
                     std::chrono::milliseconds grace,
                     const std::function<void()>& on_drain = {});

}  // namespace portico::runtime
