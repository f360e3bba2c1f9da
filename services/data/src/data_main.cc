#include "data_main.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cstdio>
#include <span>
#include <thread>

#include "grpc_services.h"
#include "items.h"
#include "portico/admin/admin_server.h"
#include "portico/admin/metrics.h"
#include "portico/auth/jwt.h"
#include "portico/log/log.h"
#include "portico/rpc/key_fetcher.h"
#include "portico/rpc/executor.h"
#include "portico/rpc/server.h"
#include "portico/runtime/runtime.h"
#include "pruner.h"
#include "settings.h"
#include "watches.h"

namespace portico::data {

std::span<const pg::Migration> Migrations();  // generated from migrations/*.sql

int Main(int argc, char** argv) {
  runtime::Service service = runtime::StartService(
      argc, argv, "data",
      "Portico data service: per-user JSON items in named collections over gRPC.", Vars(),
      Migrations());
  const Settings settings = FromConfig(service.startup.config);
  if (auto st = CheckSettings(settings); !st.ok()) {
    std::fprintf(stderr, "portico-data: %s\n", st.error().message.c_str());
    log::Error("invalid configuration", {{"error", st.error().message}});
    log::Flush();
    return 2;
  }
  pg::Pool& pool = service.db->pool();

  // Access tokens are signed by users; its public keys verify them here.
  rpc::KeyFetcher keys(
      grpc::CreateChannel(settings.users_target, grpc::InsecureChannelCredentials()));
  auth::Verifier verifier(keys.keys(),
                          {.issuer = settings.jwt_issuer, .audience = settings.jwt_audience},
                          keys.RefreshCallback(/*wait=*/true));
  std::jthread key_loader = keys.LoadInBackground();

  if (settings.page_token_key == kDefaultPageTokenKey) {
    // The key is public, so page tokens can be forged. The damage is
    // limited: the owner always comes from the access token and a cursor's
    // values reach SQL only as parameters, so a forged token can only move
    // the caller within their own items (or make the request fail).
    log::Warn(
        "PORTICO_PAGE_TOKEN_KEY is the public default: set PORTICO_PAGE_TOKEN_KEY to a "
        "random secret shared by all replicas");
  }

  Items items(pool, {.max_data_bytes = settings.max_item_bytes,
                     .change_retention = settings.change_retention,
                     .idempotency_ttl = settings.idempotency_ttl,
                     .page_token_key = settings.page_token_key});
  // Calls (and watch reads) run on workers, never on gRPC's threads.
  rpc::Executor calls(runtime::CallExecutorOptions(service.startup.config));
  Watches watches(items, calls, service.startup.config.GetString("PORTICO_DATABASE_URL"),
                  {.max_watches = settings.max_watches,
                   .poll_interval = settings.watch_poll_interval});
  watches.Start();
  DataServiceImpl data_service(items, verifier, calls, &watches);
  DataAdminImpl data_admin(items, verifier, calls);

  // Housekeeping: expired tombstones and idempotency keys. Any replica may
  // run it; Prune lets one at a time do the work.
  const auto prune_interval = std::max<std::chrono::milliseconds>(settings.prune_interval,
                                                                   std::chrono::seconds(1));
  std::jthread pruner([&items, interval = prune_interval](std::stop_token stop) {
    RunPruner([&items](Deadline deadline) { return items.Prune(deadline); }, interval, stop);
  });

  rpc::Server server({.address = settings.grpc_addr.ToString()});
  server.AddService(&data_service);
  server.AddService(&data_admin);
  admin::AdminServer admin(admin::Registry(), [&pool, &keys] {
    auto ping = pool.Ping(DeadlineIn(std::chrono::seconds(1)));
    return std::vector<admin::Check>{
        {"database", ping.ok(), ping.ok() ? "" : ping.error().message},
        {"keys", keys.loaded(), keys.loaded() ? "" : "users has not answered yet"}};
  });
  // Watches end first (UNAVAILABLE), so they do not hold the drain's grace.
  return runtime::Run("data", server, admin, service.startup.config, [&watches] { watches.Stop(); });
}

}  // namespace portico::data
