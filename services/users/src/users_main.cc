#include "users_main.h"

#include <span>

#include "accounts.h"
#include "grpc_services.h"
#include "key_ring.h"
#include "password_pool.h"
#include "portico/admin/admin_server.h"
#include "portico/admin/metrics.h"
#include "portico/auth/jwt.h"
#include "portico/log/log.h"
#include "portico/rpc/server.h"
#include "portico/runtime/runtime.h"
#include "settings.h"

namespace portico::users {

std::span<const pg::Migration> Migrations();  // generated from migrations/*.sql

int Main(int argc, char** argv) {
  runtime::Service service = runtime::StartService(
      argc, argv, "users", "Portico users service: accounts, sign-in and tokens over gRPC.",
      Vars(), Migrations());
  const Settings settings = FromConfig(service.startup.config);
  pg::Pool& pool = service.db->pool();

  KeyRing keys(pool);
  if (auto st = keys.Load(DeadlineIn(std::chrono::seconds(30))); !st.ok()) {
    log::Error("cannot load signing keys", {{"error", st.error().message}});
    log::Flush();
    return 1;
  }
  // Another replica may have rotated the keys: reload on an unknown kid.
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
  admin::AdminServer admin(admin::Registry(), [&pool, &keys] {
    auto ping = pool.Ping(DeadlineIn(std::chrono::seconds(1)));
    const bool have_keys = keys.Current().has_value();
    return std::vector<admin::Check>{
        {"database", ping.ok(), ping.ok() ? "" : ping.error().message},
        {"keys", have_keys, have_keys ? "" : "no signing key"}};
  });
  return runtime::Run("users", server, admin, service.startup.config);
}

}  // namespace portico::users
