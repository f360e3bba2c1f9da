#include "data_main.h"

#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <span>
#include <thread>

#include "grpc_services.h"
#include "items.h"
#include "portico/admin/admin_server.h"
#include "portico/admin/metrics.h"
#include "portico/auth/jwt.h"
#include "portico/log/log.h"
#include "portico/pg/migrate.h"
#include "portico/rpc/key_fetcher.h"
#include "portico/rpc/server.h"
#include "portico/runtime/runtime.h"
#include "settings.h"

namespace portico::data {

std::span<const pg::Migration> Migrations();  // generated from migrations/*.sql

int Main(int argc, char** argv) {
  rpc::BlockShutdownSignals();
  auto startup = config::LoadOrExit(
      argc, argv, "portico-data",
      "Portico data service: per-user JSON items in named collections over gRPC.", Vars(),
      {{"--migrate-only", "apply database migrations and exit"}});
  const Settings settings = FromConfig(startup.config);
  runtime::InitLogging("data", startup.config);

  auto db = runtime::Database::Open(settings.database_url, settings.db_pool_size);
  if (!db.ok()) {
    std::fprintf(stderr, "portico-data: PORTICO_DATABASE_URL: %s\n", db.error().message.c_str());
    return 2;
  }
  pg::Pool& pool = (*db)->pool();
  if (auto st = (*db)->Migrate(Migrations(), "portico_data", DeadlineIn(std::chrono::seconds(60)));
      !st.ok()) {
    log::Error("migrations failed", {{"error", st.error().message}});
    log::Flush();
    return 1;
  }
  if (startup.HasFlag("--migrate-only")) return 0;

  // Access tokens are signed by users; its public keys verify them here.
  rpc::KeyFetcher keys(
      grpc::CreateChannel(settings.users_target, grpc::InsecureChannelCredentials()));
  auth::Verifier verifier(keys.keys(),
                          {.issuer = settings.jwt_issuer, .audience = settings.jwt_audience},
                          keys.RefreshCallback());
  std::jthread key_loader([&keys](std::stop_token stop) {
    while (!stop.stop_requested() && !keys.loaded()) {
      if (keys.Refresh(DeadlineIn(std::chrono::seconds(2))).ok()) break;
      for (int i = 0; i < 20 && !stop.stop_requested(); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
  });

  Items items(pool, {.max_data_bytes = settings.max_item_bytes});
  DataServiceImpl data_service(items, verifier);
  v1::DataAdmin::Service data_admin;  // PurgeOwner: UNIMPLEMENTED until account deletion lands

  rpc::Server server({.address = settings.grpc_addr.ToString(),
                      .max_threads = settings.grpc_threads});
  server.AddService(&data_service);
  server.AddService(&data_admin);
  if (auto st = server.Start(); !st.ok()) {
    log::Error("cannot start gRPC server", {{"error", st.error().message}});
    log::Flush();
    return 1;
  }
  admin::AdminServer admin(admin::Registry(), [&pool, &keys] {
    std::vector<admin::Check> checks;
    auto ping = pool.Ping(DeadlineIn(std::chrono::seconds(1)));
    checks.push_back({"database", ping.ok(), ping.ok() ? "" : ping.error().message});
    checks.push_back({"keys", keys.loaded(), keys.loaded() ? "" : "users has not answered yet"});
    return checks;
  });
  if (auto st = admin.Start(settings.admin_addr.host, settings.admin_addr.port); !st.ok()) {
    log::Error("cannot start admin server", {{"error", st.error().message}});
    log::Flush();
    return 1;
  }
  log::Info("portico-data started", {{"grpc_port", server.port()}, {"admin_port", admin.port()}});
  return runtime::ServeUntilSignal(server, admin, std::chrono::seconds(10));
}

}  // namespace portico::data
