#include "users_main.h"

#include <cstdio>
#include <span>
#include <thread>

#include "accounts.h"
#include "grpc_services.h"
#include "key_ring.h"
#include "password_pool.h"
#include "portico/admin/admin_server.h"
#include "portico/admin/metrics.h"
#include "portico/auth/jwt.h"
#include "portico/log/log.h"
#include "portico/pg/migrate.h"
#include "portico/rpc/server.h"
#include "portico/runtime/runtime.h"
#include "settings.h"

namespace portico::users {

std::span<const pg::Migration> Migrations();  // generated from migrations/*.sql

int Main(int argc, char** argv) {
  rpc::BlockShutdownSignals();
  auto startup = config::LoadOrExit(
      argc, argv, "portico-users",
      "Portico users service: accounts, sign-in and tokens over gRPC.", Vars(),
      {{"--migrate-only", "apply database migrations and exit"}});
  const Settings settings = FromConfig(startup.config);
  runtime::InitLogging("users", startup.config);

  auto db = runtime::Database::Open(settings.database_url, settings.db_pool_size);
  if (!db.ok()) {
    std::fprintf(stderr, "portico-users: PORTICO_DATABASE_URL: %s\n", db.error().message.c_str());
    return 2;
  }
  pg::Pool& pool = (*db)->pool();
  if (auto st = (*db)->Migrate(Migrations(), "portico_users", DeadlineIn(std::chrono::seconds(60)));
      !st.ok()) {
    log::Error("migrations failed", {{"error", st.error().message}});
    log::Flush();
    return 1;
  }
  if (startup.HasFlag("--migrate-only")) return 0;

  KeyRing keys(pool);
  if (auto st = keys.Load(DeadlineIn(std::chrono::seconds(30))); !st.ok()) {
    log::Error("cannot load signing keys", {{"error", st.error().message}});
    log::Flush();
    return 1;
  }
  auth::Verifier verifier(keys.keyset(),
                          {.issuer = settings.jwt_issuer, .audience = settings.jwt_audience},
                          [&keys] { (void)keys.Load(DeadlineIn(std::chrono::seconds(2))); });
  PasswordPool passwords(settings.password_params, settings.hash_workers, settings.hash_queue);
  Accounts accounts(pool, keys, passwords, settings);
  AuthServiceImpl auth_service(accounts);
  UserServiceImpl user_service(accounts, verifier);

  rpc::Server server({.address = settings.grpc_addr.ToString(),
                      .max_threads = settings.grpc_threads});
  server.AddService(&auth_service);
  server.AddService(&user_service);
  if (auto st = server.Start(); !st.ok()) {
    log::Error("cannot start gRPC server", {{"error", st.error().message}});
    log::Flush();
    return 1;
  }
  admin::AdminServer admin(admin::Registry(), [&pool, &keys] {
    std::vector<admin::Check> checks;
    auto ping = pool.Ping(DeadlineIn(std::chrono::seconds(1)));
    checks.push_back({"database", ping.ok(), ping.ok() ? "" : ping.error().message});
    const bool have_keys = keys.Current().has_value();
    checks.push_back({"keys", have_keys, have_keys ? "" : "no signing key"});
    return checks;
  });
  if (auto st = admin.Start(settings.admin_addr.host, settings.admin_addr.port); !st.ok()) {
    log::Error("cannot start admin server", {{"error", st.error().message}});
    log::Flush();
    return 1;
  }
  log::Info("portico-users started", {{"grpc_port", server.port()}, {"admin_port", admin.port()}});
  return runtime::ServeUntilSignal(server, admin, std::chrono::seconds(10));
}

}  // namespace portico::users
