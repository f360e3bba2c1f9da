#include "portico/runtime/runtime.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "portico/admin/admin_server.h"
#include "portico/admin/metrics.h"
#include "portico/log/log.h"
#include "portico/rpc/executor.h"
#include "portico/rpc/server.h"

namespace portico::runtime {
namespace {

struct DbMetrics {
  prometheus::Gauge& idle;
  prometheus::Gauge& in_use;
  prometheus::Gauge& size;
  prometheus::Gauge& waiting;
  prometheus::Counter& wait_seconds;
  prometheus::Histogram& query_seconds;
  prometheus::Counter& query_errors;

  static DbMetrics& Get() {
    auto& reg = *admin::Registry();
    auto& conns = prometheus::BuildGauge()
                      .Name("portico_db_pool_connections")
                      .Help("Database connections by state (size = the configured maximum)")
                      .Register(reg);
    static DbMetrics m{
        conns.Add({{"state", "idle"}}),
        conns.Add({{"state", "in_use"}}),
        conns.Add({{"state", "size"}}),
        prometheus::BuildGauge()
            .Name("portico_db_pool_waiting")
            .Help("Callers waiting for a database connection")
            .Register(reg)
            .Add({}),
        prometheus::BuildCounter()
            .Name("portico_db_pool_acquire_wait_seconds_total")
            .Help("Total time spent waiting for a database connection")
            .Register(reg)
            .Add({}),
        prometheus::BuildHistogram()
            .Name("portico_db_query_duration_seconds")
            .Help("Database statement latency")
            .Register(reg)
            .Add({}, admin::LatencyBuckets()),
        prometheus::BuildCounter()
            .Name("portico_db_query_errors_total")
            .Help("Database statements that failed")
            .Register(reg)
            .Add({}),
    };
    return m;
  }
};

}  // namespace

std::vector<config::Var> LogVars() {
  using config::Kind;
  return {
      {.name = "PORTICO_LOG_LEVEL", .kind = Kind::kEnum, .default_value = "info",
       .help = "log level",
       .choices = {"trace", "debug", "info", "warn", "error", "critical", "off"}},
      {.name = "PORTICO_LOG_FORMAT", .kind = Kind::kEnum, .default_value = "json",
       .help = "log format: one JSON object per line, or text for humans",
       .choices = {"json", "text"}},
  };
}

std::vector<config::Var> TokenVars(std::string_view what) {
  return {
      {.name = "PORTICO_JWT_ISSUER", .default_value = "portico",
       .help = "`iss` " + std::string(what)},
      {.name = "PORTICO_JWT_AUDIENCE", .default_value = "portico-api",
       .help = "`aud` " + std::string(what)},
  };
}

std::vector<config::Var> ServiceVars(std::string_view grpc_addr, std::string_view admin_addr,
                                     std::string_view database_url) {
  using config::Kind;
  std::vector<config::Var> vars = {
      {.name = "PORTICO_GRPC_ADDR", .kind = Kind::kAddress,
       .default_value = std::string(grpc_addr), .help = "gRPC listen address"},
      {.name = "PORTICO_ADMIN_ADDR", .kind = Kind::kAddress,
       .default_value = std::string(admin_addr),
       .help = "admin listen address (/healthz, /readyz, /metrics); never expose publicly"},
      {.name = "PORTICO_DATABASE_URL", .default_value = std::string(database_url),
       .help = "libpq connection URI of this service's database", .secret = true},
      {.name = "PORTICO_DB_POOL_SIZE", .kind = Kind::kInt, .default_value = "10",
       .help = "PostgreSQL connections", .min = 1, .max = 1000},
      {.name = "PORTICO_MAX_QUEUED_CALLS", .kind = Kind::kInt, .default_value = "4096",
       .help = "calls waiting for a worker at most (one worker per database connection); "
               "beyond: UNAVAILABLE (503) with a retry hint",
       .min = 1, .max = 1'000'000},
  };
  for (auto& v : LogVars()) vars.push_back(std::move(v));
  return vars;
}

rpc::ExecutorOptions CallExecutorOptions(const config::Config& config) {
  return {.name = "calls",
          .threads = static_cast<int>(config.GetInt("PORTICO_DB_POOL_SIZE")),
          .max_queue = static_cast<std::size_t>(config.GetInt("PORTICO_MAX_QUEUED_CALLS"))};
}

void InitLogging(std::string_view service, const config::Config& config) {
  log::Level level = log::Level::kInfo;
  log::Format format = log::Format::kJson;
  log::ParseLevel(config.GetString("PORTICO_LOG_LEVEL"), &level);
  log::ParseFormat(config.GetString("PORTICO_LOG_FORMAT"), &format);
  log::Init(service, level, format);
}

Result<std::unique_ptr<Database>> Database::Open(std::string url, int pool_size) {
  DbMetrics& metrics = DbMetrics::Get();
  pg::PoolOptions options;
  options.url = std::move(url);
  options.size = pool_size;
  options.on_query = [&metrics](std::chrono::nanoseconds elapsed, bool ok) {
    metrics.query_seconds.Observe(std::chrono::duration<double>(elapsed).count());
    if (!ok) metrics.query_errors.Increment();
  };
  auto pool = pg::Pool::Create(std::move(options));
  if (!pool.ok()) return std::move(pool).error();
  std::unique_ptr<Database> db(new Database());
  db->pool_ = std::move(*pool);
  db->refresher_ = std::jthread([raw = db.get()](std::stop_token stop) {
    std::mutex mu;
    std::condition_variable_any cv;
    while (!stop.stop_requested()) {
      raw->RefreshMetrics();
      std::unique_lock lock(mu);
      cv.wait_for(lock, stop, std::chrono::seconds(2), [] { return false; });
    }
  });
  return db;
}

Database::~Database() {
  refresher_.request_stop();
  if (refresher_.joinable()) refresher_.join();
}

void Database::RefreshMetrics() {
  DbMetrics& m = DbMetrics::Get();
  const pg::Pool::Stats s = pool_->GetStats();
  m.idle.Set(s.idle);
  m.in_use.Set(s.in_use);
  m.size.Set(s.size);
  m.waiting.Set(s.waiting);
  const double total = std::chrono::duration<double>(s.acquire_wait).count();
  const double delta = total - m.wait_seconds.Value();
  if (delta > 0) m.wait_seconds.Increment(delta);
}

Status Database::Migrate(std::span<const pg::Migration> migrations, std::string_view lock_name,
                         Deadline deadline) {
  for (int attempt = 1;; ++attempt) {
    auto report = pg::Migrate(*pool_, migrations, lock_name, deadline);
    if (report.ok()) {
      log::Info("database schema up to date", {{"applied", report->applied.size()}});
      return {};
    }
    if (report.error().code != ErrorCode::kUnavailable || Clock::now() >= deadline) {
      return std::move(report).error();
    }
    log::Warn("database not reachable yet, retrying",
              {{"attempt", attempt}, {"error", pool_->LastConnectError()}});
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
}

Service StartService(int argc, char** argv, std::string_view service, std::string_view summary,
                     const std::vector<config::Var>& vars,
                     std::span<const pg::Migration> migrations) {
  rpc::BlockShutdownSignals();
  rpc::TuneGrpcRuntime();
  const std::string program = "portico-" + std::string(service);
  Service out{config::LoadOrExit(argc, argv, program, summary, vars,
                                 {{"--migrate-only", "apply database migrations and exit"}}),
              nullptr};
  InitLogging(service, out.startup.config);
  const config::Config& c = out.startup.config;
  auto db = Database::Open(c.GetString("PORTICO_DATABASE_URL"),
                           static_cast<int>(c.GetInt("PORTICO_DB_POOL_SIZE")));
  if (!db.ok()) {
    std::fprintf(stderr, "%s: PORTICO_DATABASE_URL: %s\n", program.c_str(),
                 db.error().message.c_str());
    std::exit(2);
  }
  out.db = std::move(*db);
  if (auto st = out.db->Migrate(migrations, "portico_" + std::string(service),
                                DeadlineIn(std::chrono::seconds(60)));
      !st.ok()) {
    log::Error("migrations failed", {{"error", st.error().message}});
    log::Flush();
    std::exit(1);
  }
  if (out.startup.HasFlag("--migrate-only")) {
    log::Flush();
    std::exit(0);
  }
  return out;
}

int Run(std::string_view service, rpc::Server& server, admin::AdminServer& admin,
        const config::Config& config, const std::function<void()>& on_drain) {
  if (auto st = server.Start(); !st.ok()) {
    log::Error("cannot start gRPC server", {{"error", st.error().message}});
    log::Flush();
    return 1;
  }
  const config::Address admin_addr = config.GetAddress("PORTICO_ADMIN_ADDR");
  if (auto st = admin.Start(admin_addr.host, admin_addr.port); !st.ok()) {
    log::Error("cannot start admin server", {{"error", st.error().message}});
    log::Flush();
    return 1;
  }
  log::Info("portico-" + std::string(service) + " started",
            {{"grpc_port", server.port()}, {"admin_port", admin.port()}});
  return ServeUntilSignal(server, admin, std::chrono::seconds(10), on_drain);
}

int ServeUntilSignal(rpc::Server& server, admin::AdminServer& admin,
                     std::chrono::milliseconds grace, const std::function<void()>& on_drain) {
  const int sig = rpc::WaitForShutdownSignal();
  log::Info("shutting down", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
  admin.SetDraining();
  if (on_drain) on_drain();
  server.Shutdown(grace);
  admin.Stop();
  log::Info("stopped");
  log::Flush();
  return 0;
}

}  // namespace portico::runtime
