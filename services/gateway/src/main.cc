// portico-gateway: the public REST entry point. Routes HTTP/JSON to the gRPC
// services from the HTTP annotations of their contracts.
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include <csignal>
#include <cstdio>
#include <thread>

#include <string>
#include <vector>

#include "portico/admin/admin_server.h"
#include "portico/admin/metrics.h"
#include "portico/config/config.h"
#include "portico/gateway/gateway.h"
#include "portico/log/log.h"
#include "portico/rpc/key_fetcher.h"
#include "portico/rpc/server.h"
#include "portico/runtime/runtime.h"

namespace {

using portico::config::Kind;
using portico::config::Var;

std::vector<Var> Vars() {
  std::vector<Var> vars = {
      {.name = "PORTICO_HTTP_ADDR", .kind = Kind::kAddress, .default_value = "0.0.0.0:8080",
       .help = "public REST listen address"},
      {.name = "PORTICO_ADMIN_ADDR", .kind = Kind::kAddress, .default_value = "0.0.0.0:9090",
       .help = "admin listen address (/healthz, /readyz, /metrics); never expose publicly"},
      {.name = "PORTICO_USERS_TARGET", .default_value = "localhost:50051",
       .help = "gRPC target of portico-users"},
      {.name = "PORTICO_DATA_TARGET", .default_value = "localhost:50052",
       .help = "gRPC target of portico-data"},
      {.name = "PORTICO_REQUEST_TIMEOUT", .kind = Kind::kDuration, .default_value = "10s",
       .help = "deadline of each backend call"},
      {.name = "PORTICO_STREAM_MAX_DURATION", .kind = Kind::kDuration, .default_value = "1h",
       .help = "longest a streamed response (e.g. changes:watch) stays open; it then ends "
               "cleanly and the client reconnects with Last-Event-ID (at least 1s)"},
      {.name = "PORTICO_STREAM_KEEPALIVE", .kind = Kind::kDuration, .default_value = "15s",
       .help = "how often an idle Server-Sent Events stream sends a keep-alive comment "
               "(at least 100ms)"},
      {.name = "PORTICO_MAX_BODY_SIZE", .kind = Kind::kSize, .default_value = "1MiB",
       .help = "largest accepted request body (larger: 413)"},
      {.name = "PORTICO_HTTP_THREADS", .kind = Kind::kInt, .default_value = "2",
       .help = "HTTP server threads", .min = 1, .max = 256},
      {.name = "PORTICO_HEADER_TIMEOUT", .kind = Kind::kDuration, .default_value = "10s",
       .help = "time allowed to read one request (header and body)"},
      {.name = "PORTICO_IDLE_TIMEOUT", .kind = Kind::kDuration, .default_value = "60s",
       .help = "how long an idle keep-alive connection stays open"},
  };
  for (auto& v : portico::runtime::TokenVars("required of access tokens")) {
    vars.push_back(std::move(v));
  }
  for (auto& v : portico::runtime::LogVars()) vars.push_back(std::move(v));
  return vars;
}

}  // namespace

int main(int argc, char** argv) {
  namespace config = portico::config;
  namespace log = portico::log;
  using portico::gateway::Gateway;

  // Shutdown signals are taken by sigwait; block them before any thread starts.
  portico::rpc::BlockShutdownSignals();
  const auto startup = config::LoadOrExit(
      argc, argv, "portico-gateway",
      "The Portico REST gateway: routes HTTP/JSON requests to the gRPC services "
      "from the HTTP annotations of their contracts.",
      Vars());
  const config::Config& cfg = startup.config;
  portico::runtime::InitLogging("gateway", cfg);

  const auto http_addr = cfg.GetAddress("PORTICO_HTTP_ADDR");
  const auto admin_addr = cfg.GetAddress("PORTICO_ADMIN_ADDR");
  const std::string users_target = cfg.GetString("PORTICO_USERS_TARGET");
  const std::string data_target = cfg.GetString("PORTICO_DATA_TARGET");

  portico::gateway::GatewayOptions options;
  options.host = http_addr.host.empty() ? "0.0.0.0" : http_addr.host;
  options.port = http_addr.port;
  options.threads = static_cast<int>(cfg.GetInt("PORTICO_HTTP_THREADS"));
  options.upstreams = {{"portico.users.v1.", users_target}, {"portico.data.v1.", data_target}};
  options.request_timeout = cfg.GetDuration("PORTICO_REQUEST_TIMEOUT");
  options.stream_max_duration = cfg.GetDuration("PORTICO_STREAM_MAX_DURATION");
  options.stream_keepalive = cfg.GetDuration("PORTICO_STREAM_KEEPALIVE");
  if (options.stream_max_duration < std::chrono::seconds(1) ||
      options.stream_keepalive < std::chrono::milliseconds(100)) {
    std::fprintf(stderr,
                 "portico-gateway: PORTICO_STREAM_MAX_DURATION must be at least 1s and "
                 "PORTICO_STREAM_KEEPALIVE at least 100ms\n");
    return 2;
  }
  options.header_timeout = cfg.GetDuration("PORTICO_HEADER_TIMEOUT");
  options.idle_timeout = cfg.GetDuration("PORTICO_IDLE_TIMEOUT");
  options.max_body_size = cfg.GetSize("PORTICO_MAX_BODY_SIZE");
  options.jwt_issuer = cfg.GetString("PORTICO_JWT_ISSUER");
  options.jwt_audience = cfg.GetString("PORTICO_JWT_AUDIENCE");

  portico::rpc::KeyFetcher keys(
      grpc::CreateChannel(users_target, grpc::InsecureChannelCredentials()));
  // The verifier calls the refresh on an I/O thread: it only wakes the
  // background loader and never waits for the fetch.
  auto gateway = Gateway::Create(options, keys.keys(), keys.RefreshCallback(/*wait=*/false));
  if (!gateway.ok()) {
    log::Error("invalid route table", {{"error", gateway.error().message}});
    log::Flush();
    return 1;
  }
  if (auto st = (*gateway)->Start(); !st.ok()) {
    log::Error("cannot start the HTTP server", {{"error", st.error().message}});
    log::Flush();
    return 1;
  }

  Gateway& gw = **gateway;
  portico::admin::AdminServer admin(portico::admin::Registry(), [&] {
    std::vector<portico::admin::Check> checks;
    checks.push_back({"keys", keys.loaded(), keys.loaded() ? "" : "signing keys not fetched yet"});
    for (auto& c : gw.CheckUpstreams(std::chrono::seconds(1))) checks.push_back(std::move(c));
    return checks;
  });
  if (auto st = admin.Start(admin_addr.host, admin_addr.port); !st.ok()) {
    log::Error("cannot start the admin server", {{"error", st.error().message}});
    gw.Shutdown(std::chrono::milliseconds(0));
    log::Flush();
    return 1;
  }
  std::jthread key_loader = keys.LoadInBackground();
  log::Info("portico-gateway started", {{"http_port", gw.port()},
                                        {"admin_port", admin.port()},
                                        {"users", users_target},
                                        {"data", data_target}});

  const int sig = portico::rpc::WaitForShutdownSignal();
  log::Info("shutting down", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
  admin.SetDraining();
  gw.Shutdown(std::chrono::seconds(10));
  key_loader.request_stop();
  admin.Stop();
  log::Info("stopped");
  log::Flush();
  return 0;
}
