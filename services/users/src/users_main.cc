#include "users_main.h"

#include <grpcpp/grpcpp.h>

#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <exception>
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
#include "portico/rpc/executor.h"
#include "portico/rpc/server.h"
#include "portico/runtime/runtime.h"
#include "purge_dispatcher.h"
#include "settings.h"

namespace portico::users {

std::span<const pg::Migration> Migrations();  // generated from migrations/*.sql

namespace {

// `portico-users create-admin [email]`: reads the password from stdin and
// creates an admin account, or promotes the existing account with that
// e-mail (an explicit operator action). Exit 0 on success.
int CreateAdmin(Accounts& accounts, std::string email) {
  std::string password;
  std::getline(std::cin, password);
  if (!password.empty() && password.back() == '\r') password.pop_back();
  auto made = accounts.EnsureAdmin(email, password, AdminPolicy::kCreateOrPromote,
                                   DeadlineIn(std::chrono::seconds(60)));
  if (!made.ok()) {
    std::cerr << "create-admin: " << made.error().message;
    for (const auto& f : made.error().fields) std::cerr << "; " << f.field << " " << f.message;
    std::cerr << "\n";
    return 1;
  }
  switch (*made) {
    case AdminOutcome::kCreated: std::cout << "created admin "; break;
    case AdminOutcome::kPromoted: std::cout << "promoted existing account to admin "; break;
    case AdminOutcome::kAlreadyAdmin:
    case AdminOutcome::kExistsNotAdmin: std::cout << "already an admin: "; break;
  }
  std::cout << email << "\n";
  return 0;
}

// Runs one pass of a background loop; an exception (a bug) is logged and the
// loop goes on rather than terminating the process.
template <typename F>
void Guarded(std::string_view what, F&& pass) {
  try {
    pass();
  } catch (const std::exception& e) {
    log::Error("background task failed", {{"task", std::string(what)}, {"error", e.what()}});
  } catch (...) {
    log::Error("background task failed", {{"task", std::string(what)}, {"error", "unknown"}});
  }
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
  if (auto st = CheckSettings(settings); !st.ok()) {
    std::fprintf(stderr, "portico-users: %s\n", st.error().message.c_str());
    log::Error("invalid configuration", {{"error", st.error().message}});
    log::Flush();
    return 2;
  }
  pg::Pool& pool = service.db->pool();

  KeyRing keys(pool);
  // A new key signs only after every replica has reloaded (and so publishes)
  // it: one check interval, plus a margin for a slow reload.
  keys.set_activation_delay(settings.key_check_interval + std::chrono::seconds(5));
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
    // Only ever creates: an existing account with that e-mail may belong to
    // anyone who registered it, so promoting it is left to create-admin.
    auto made = accounts.EnsureAdmin(settings.bootstrap_admin_email,
                                     settings.bootstrap_admin_password, AdminPolicy::kCreateOnly,
                                     DeadlineIn(std::chrono::seconds(60)));
    if (!made.ok()) {
      std::string detail = made.error().message;
      for (const auto& f : made.error().fields) detail += "; " + f.field + " " + f.message;
      log::Error("cannot create the bootstrap admin", {{"error", detail}});
      log::Flush();
      return 1;
    }
    if (*made == AdminOutcome::kExistsNotAdmin) {
      log::Warn("PORTICO_BOOTSTRAP_ADMIN_EMAIL belongs to an existing account that is not an "
                "admin; it was NOT promoted (use `portico-users create-admin` to promote it)",
                {{"event", "user.bootstrap_admin_skipped"}});
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
        Guarded("signing key check", [&] {
          auto r = keys.RotateIfDue(settings.key_rotation, DeadlineIn(std::chrono::seconds(10)));
          if (!r.ok()) log::Warn("signing key check failed", {{"error", r.error().message}});
        });
      }
      if (stop.stop_requested()) break;
      Guarded("housekeeping", [&] {
        auto h = accounts.Housekeeping(DeadlineIn(std::chrono::seconds(30)));
        if (!h.ok()) log::Warn("housekeeping failed", {{"error", h.error().message}});
      });
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
  channel_args.SetLoadBalancingPolicyName("round_robin");  // every data replica
  PurgeDispatcher purges(pool, keys, settings,
                         grpc::CreateCustomChannel(settings.data_target,
                                                   grpc::InsecureChannelCredentials(),
                                                   channel_args));
  accounts.set_on_purge_queued([&purges] { purges.Wake(); });
  purges.Start();

  // Calls run on workers, never on gRPC's threads; those that hash a
  // password on their own few, so a flood of sign-ins waits (or is shed
  // with 503) apart from every other call.
  rpc::Executor calls(runtime::CallExecutorOptions(service.startup.config));
  rpc::Executor sign_ins({.name = "sign-in",
                          .threads = settings.hash_workers,
                          .max_queue = static_cast<std::size_t>(settings.hash_queue)});
  AuthServiceImpl auth_service(accounts, calls, sign_ins);
  UserServiceImpl user_service(accounts, verifier, calls, sign_ins);

  rpc::Server server({.address = settings.grpc_addr.ToString()});
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
