#include "users_main.h"

#include <grpcpp/grpcpp.h>

#include <condition_variable>
#include <cstring>
#include <iostream>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

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
#include "purge_dispatcher.h"
#include "settings.h"

namespace portico::users {

std::span<const pg::Migration> Migrations();  // generated from migrations/*.sql

namespace {

// `portico-users create-admin [email]`: reads the password from stdin and
// creates (or promotes) an admin account. Exit 0 on success.
int CreateAdmin(Accounts& accounts, std::string email) {
  std::string password;
  std::getline(std::cin, password);
  if (!password.empty() && password.back() == '\r') password.pop_back();
  auto made = accounts.EnsureAdmin(email, password, DeadlineIn(std::chrono::seconds(60)));
  if (!made.ok()) {
    std::cerr << "create-admin: " << made.error().message;
    for (const auto& f : made.error().fields) std::cerr << "; " << f.field << " " << f.message;
    std::cerr << "\n";
    return 1;
  }
  std::cout << (*made ? "created admin " : "promoted existing account to admin ") << email
            << "\n";
  return 0;
}

}  // namespace

int Main(int argc, char** argv) {
  // `create-admin [email]` is a sub-command; the rest are the usual flags.
  std::vector<char*> args(argv, argv + argc);
  bool create_admin = false;
  std::string admin_email;
  if (args.size() >= 2 && std::strcmp(args[1], "create-admin") == 0) {
    create_admin = true;
    args.erase(args.begin() + 1);
    if (args.size() >= 2 && args[1][0] != '-') {
      admin_email = args[1];
      args.erase(args.begin() + 1);
    }
  }
  runtime::Service service = runtime::StartService(
      static_cast<int>(args.size()), args.data(), "users",
      "Portico users service: accounts, sign-in and tokens over gRPC.\n"
      "Sub-command: create-admin [email] (the password is read from stdin; the e-mail "
      "defaults to PORTICO_BOOTSTRAP_ADMIN_EMAIL).",
      Vars(), Migrations());
  const Settings settings = FromConfig(service.startup.config);
  pg::Pool& pool = service.db->pool();

  KeyRing keys(pool);
  PasswordPool passwords(settings.password_params, settings.hash_workers, settings.hash_queue);
  Accounts accounts(pool, keys, passwords, settings);
  if (create_admin) {
    if (admin_email.empty()) admin_email = settings.bootstrap_admin_email;
    const int rc = CreateAdmin(accounts, admin_email);
    log::Flush();
    return rc;
  }

  Status loaded = settings.key_file.empty() ? keys.Load(DeadlineIn(std::chrono::seconds(30)))
                                            : keys.UseKeyFile(settings.key_file);
  if (loaded.ok() && settings.key_file.empty()) {
    auto rotated = keys.RotateIfDue(settings.key_rotation, DeadlineIn(std::chrono::seconds(30)));
    if (!rotated.ok()) loaded = std::move(rotated).error();
  }
  if (!loaded.ok()) {
    log::Error("cannot load signing keys", {{"error", loaded.error().message}});
    log::Flush();
    return 1;
  }
  if (!settings.bootstrap_admin_email.empty()) {
    auto made = accounts.EnsureAdmin(settings.bootstrap_admin_email,
                                     settings.bootstrap_admin_password,
                                     DeadlineIn(std::chrono::seconds(60)));
    if (!made.ok()) {
      std::string detail = made.error().message;
      for (const auto& f : made.error().fields) detail += "; " + f.field + " " + f.message;
      log::Error("cannot create the bootstrap admin", {{"error", detail}});
      log::Flush();
      return 1;
    }
  }
  // Every key_check_interval: rotate the key when due (and pick up other
  // replicas' rotations), and delete expired sessions and stale counters.
  std::jthread maintenance([&keys, &accounts, &settings](std::stop_token stop) {
    std::mutex mu;
    std::condition_variable_any cv;
    while (!stop.stop_requested()) {
      {
        std::unique_lock lock(mu);
        cv.wait_for(lock, stop, settings.key_check_interval, [] { return false; });
      }
      if (stop.stop_requested()) break;
      if (settings.key_file.empty()) {
        auto r = keys.RotateIfDue(settings.key_rotation, DeadlineIn(std::chrono::seconds(10)));
        if (!r.ok()) log::Warn("signing key check failed", {{"error", r.error().message}});
      }
      auto h = accounts.Housekeeping(DeadlineIn(std::chrono::seconds(30)));
      if (!h.ok()) log::Warn("housekeeping failed", {{"error", h.error().message}});
    }
  });

  // Another replica may have rotated the keys: reload on an unknown kid.
  auth::Verifier verifier(keys.keyset(),
                          {.issuer = settings.jwt_issuer, .audience = settings.jwt_audience},
                          [&keys] { (void)keys.Load(DeadlineIn(std::chrono::seconds(2))); });

  grpc::ChannelArguments channel_args;
  // Retry a data service that was down soon after it is back.
  channel_args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  channel_args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  PurgeDispatcher purges(pool, keys, settings,
                         grpc::CreateCustomChannel(settings.data_target,
                                                   grpc::InsecureChannelCredentials(),
                                                   channel_args));
  accounts.set_on_purge_queued([&purges] { purges.Wake(); });
  purges.Start();

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
