#include "data_main.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <span>
#include <stop_token>
#include <thread>

#include "grpc_services.h"
#include "items.h"
#include "portico/admin/admin_server.h"
#include "portico/admin/metrics.h"
#include "portico/auth/jwt.h"
#include "portico/log/log.h"
#include "portico/rpc/key_fetcher.h"
#include "portico/rpc/server.h"
#include "portico/runtime/runtime.h"
#include "settings.h"

namespace portico::data {

std::span<const pg::Migration> Migrations();  // generated from migrations/*.sql

int Main(int argc, char** argv) {
  runtime::Service service = runtime::StartService(
      argc, argv, "data",
      "Portico data service: per-user JSON items in named collections over gRPC.", Vars(),
      Migrations());
  const Settings settings = FromConfig(service.startup.config);
  pg::Pool& pool = service.db->pool();

  // Access tokens are signed by users; its public keys verify them here.
  rpc::KeyFetcher keys(
      grpc::CreateChannel(settings.users_target, grpc::InsecureChannelCredentials()));
  auth::Verifier verifier(keys.keys(),
                          {.issuer = settings.jwt_issuer, .audience = settings.jwt_audience},
                          keys.RefreshCallback(/*wait=*/true));
  std::jthread key_loader = keys.LoadInBackground();

  Items items(pool, {.max_data_bytes = settings.max_item_bytes,
                     .change_retention = settings.change_retention,
                     .idempotency_ttl = settings.idempotency_ttl,
                     .page_token_key = settings.page_token_key});
  DataServiceImpl data_service(items, verifier);
  DataAdminImpl data_admin(items, verifier);

  // Housekeeping: expired tombstones and idempotency keys. Any replica may
  // run it; Prune lets one at a time do the work.
  const auto prune_interval = std::max<std::chrono::milliseconds>(settings.prune_interval,
                                                                   std::chrono::seconds(1));
  std::jthread pruner([&items, interval = prune_interval](std::stop_token stop) {
    std::mutex mu;  // guards nothing; condition_variable_any needs one to wait on
    std::condition_variable_any wake;
    while (!stop.stop_requested()) {
      for (int batch = 0; batch < 100; ++batch) {
        auto report = items.Prune(DeadlineIn(std::chrono::seconds(30)));
        if (!report.ok()) {
          log::Warn("pruning the change feed failed", {{"error", report.error().message}});
          break;
        }
        if (report->tombstones > 0 || report->idempotency_keys > 0) {
          log::Info("pruned", {{"tombstones", report->tombstones},
                               {"idempotency_keys", report->idempotency_keys}});
        }
        if (report->tombstones < 10000 && report->idempotency_keys < 10000) break;
      }
      std::unique_lock lock(mu);
      wake.wait_for(lock, stop, interval, [] { return false; });
    }
  });

  rpc::Server server({.address = settings.grpc_addr.ToString(),
                      .max_threads = settings.grpc_threads});
  server.AddService(&data_service);
  server.AddService(&data_admin);
  admin::AdminServer admin(admin::Registry(), [&pool, &keys] {
    auto ping = pool.Ping(DeadlineIn(std::chrono::seconds(1)));
    return std::vector<admin::Check>{
        {"database", ping.ok(), ping.ok() ? "" : ping.error().message},
        {"keys", keys.loaded(), keys.loaded() ? "" : "users has not answered yet"}};
  });
  return runtime::Run("data", server, admin, service.startup.config);
}

}  // namespace portico::data
