// portico-gateway: the public REST entry point. Routes HTTP/JSON to the gRPC
// services from the HTTP annotations of their contracts.
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include <pthread.h>

#include <csignal>
#include <iostream>
#include <cstdio>
#include <thread>

#include <string>
#include <vector>

#include "client_address.h"
#include "cors.h"
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

// An item's `data` may nest 64 levels (json_object fields), inside a few
// levels of request; deeper would reach the parsers' own limits (80 for
// the transcoder's Boost.JSON parses, protobuf's 100) before the gateway's.
constexpr std::int64_t kMaxJsonDepth = 72;

// "a.B=host:1, c.D=dns:///d:2" -> {{"a.B", "host:1"}, {"c.D", "dns:///d:2"}}.
// An ipv4:/ipv6: target keeps the further addresses that follow its commas.
portico::Result<std::vector<portico::gateway::ExtraService>> ParseExtraServices(
    std::string_view text) {
  std::vector<portico::gateway::ExtraService> out;
  auto trim = [](std::string_view s) {
    while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
    while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
    return s;
  };
  while (!trim(text).empty()) {
    const auto comma = text.find(',');
    const std::string_view item = trim(text.substr(0, comma));
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
    const auto eq = item.find('=');
    if (eq == std::string_view::npos && !out.empty() && !item.empty() &&
        out.back().target.starts_with("ipv")) {
      // "ipv4:10.0.0.1:50051,10.0.0.2:50051" lists addresses with commas too.
      out.back().target += "," + std::string(item);
      continue;
    }
    const std::string_view name = trim(item.substr(0, eq));
    const std::string_view target = eq == std::string_view::npos ? "" : trim(item.substr(eq + 1));
    if (name.empty() || target.empty() || name.find_first_of(" /") != std::string_view::npos) {
      return portico::Error::InvalidArgument(
          "expected comma-separated full.service.Name=grpc-target, got \"" + std::string(item) +
          "\"");
    }
    for (const auto& e : out) {
      if (e.name == name) {
        return portico::Error::InvalidArgument("service " + e.name + " is named twice");
      }
    }
    out.push_back({std::string(name), std::string(target)});
  }
  return out;
}

// SIGHUP (reload the routes) joins the shutdown signals that sigwait takes.
sigset_t GatewaySignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  return set;
}

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
      {.name = "PORTICO_MAX_CONNECTIONS", .kind = Kind::kInt, .default_value = "10000",
       .help = "open connections at most; a connection beyond is answered 503 and closed",
       .min = 1, .max = 1'000'000},
      {.name = "PORTICO_MAX_IN_FLIGHT", .kind = Kind::kInt, .default_value = "4096",
       .help = "requests handled at once at most; beyond: 503", .min = 1, .max = 1'000'000},
      {.name = "PORTICO_MAX_JSON_DEPTH", .kind = Kind::kInt, .default_value = "72",
       .help = "deepest nesting of arrays/objects in a request body (deeper: 400)", .min = 1,
       .max = kMaxJsonDepth},
      {.name = "PORTICO_RATE_LIMIT", .kind = Kind::kInt, .default_value = "0",
       .help = "requests per second per client address (token bucket); 0 turns it off",
       .min = 0, .max = 1'000'000},
      {.name = "PORTICO_RATE_BURST", .kind = Kind::kInt, .default_value = "50",
       .help = "requests a client may send at once above its rate", .min = 1,
       .max = 1'000'000},
      {.name = "PORTICO_TRUSTED_PROXIES", .default_value = "",
       .help = "comma-separated CIDRs of reverse proxies whose X-Forwarded-For is believed "
               "(e.g. 10.0.0.0/8,fd00::/8); empty: the peer is the client"},
      {.name = "PORTICO_CORS_ORIGINS", .default_value = "",
       .help = "comma-separated origins allowed to call from browsers "
               "(https://app.example.com), or * (then without credentials); empty: CORS off"},
      {.name = "PORTICO_CORS_MAX_AGE", .kind = Kind::kDuration, .default_value = "10m",
       .help = "how long browsers may cache a CORS preflight answer"},
      {.name = "PORTICO_GZIP", .kind = Kind::kBool, .default_value = "true",
       .help = "gzip response bodies for clients that accept it"},
      {.name = "PORTICO_GZIP_MIN_SIZE", .kind = Kind::kSize, .default_value = "1KiB",
       .help = "smallest response body that is gzipped"},

      {.name = "PORTICO_DESCRIPTOR_SET",
       .help = "binary FileDescriptorSet with more services to route (protoc --include_imports "
               "--descriptor_set_out); re-read on SIGHUP"},
      {.name = "PORTICO_EXTRA_SERVICES",
       .help = "services of PORTICO_DESCRIPTOR_SET to route: comma-separated "
               "full.service.Name=grpc-target"},
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

  // Shutdown and reload signals are taken by sigwait; block them before any
  // thread starts.
  {
    const sigset_t set = GatewaySignals();
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
  }
  portico::rpc::TuneGrpcRuntime();
  const auto startup = config::LoadOrExit(
      argc, argv, "portico-gateway",
      "The Portico REST gateway: routes HTTP/JSON requests to the gRPC services "
      "from the HTTP annotations of their contracts.",
      Vars(), {{"--openapi", "print the OpenAPI document of the routes (JSON) and exit"}});
  const config::Config& cfg = startup.config;
  if (startup.HasFlag("--openapi")) {
    // Before logging starts, so that stdout holds nothing but the document.
    auto doc = portico::gateway::OpenApiDocument(portico::gateway::GatewayOptions{});
    if (!doc.ok()) {
      std::cerr << "portico-gateway: " << doc.error().message << "\n";
      return 1;
    }
    std::cout << *doc << "\n";
    return std::cout.flush() ? 0 : 1;
  }
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
  options.max_connections = static_cast<std::size_t>(cfg.GetInt("PORTICO_MAX_CONNECTIONS"));
  options.max_in_flight = static_cast<std::size_t>(cfg.GetInt("PORTICO_MAX_IN_FLIGHT"));
  options.max_json_depth = static_cast<std::size_t>(cfg.GetInt("PORTICO_MAX_JSON_DEPTH"));
  options.rate_limit = static_cast<double>(cfg.GetInt("PORTICO_RATE_LIMIT"));
  options.rate_burst = static_cast<double>(cfg.GetInt("PORTICO_RATE_BURST"));
  options.trusted_proxies = cfg.GetString("PORTICO_TRUSTED_PROXIES");
  options.cors_origins = cfg.GetString("PORTICO_CORS_ORIGINS");
  options.cors_max_age =
      std::chrono::duration_cast<std::chrono::seconds>(cfg.GetDuration("PORTICO_CORS_MAX_AGE"));
  options.gzip = cfg.GetBool("PORTICO_GZIP");
  options.gzip_min_size = cfg.GetSize("PORTICO_GZIP_MIN_SIZE");
  // Lists the config library cannot check by kind: a bad one stops the start.
  std::vector<std::pair<std::string, std::string>> invalid;
  if (auto r = portico::gateway::CidrSet::Parse(options.trusted_proxies); !r.ok()) {
    invalid.emplace_back("PORTICO_TRUSTED_PROXIES", r.error().message);
  }
  if (auto r = portico::gateway::CorsPolicy::Parse(options.cors_origins, options.cors_max_age);
      !r.ok()) {
    invalid.emplace_back("PORTICO_CORS_ORIGINS", r.error().message);
  }
  for (const auto& [name, error] : invalid) {
    std::fprintf(stderr, "portico-gateway: %s: %s\n", name.c_str(), error.c_str());
    log::Error("invalid configuration", {{"variable", name}, {"error", error}});
    log::Flush();
    return 2;
  }
  options.jwt_issuer = cfg.GetString("PORTICO_JWT_ISSUER");
  options.jwt_audience = cfg.GetString("PORTICO_JWT_AUDIENCE");
  options.descriptor_set = cfg.GetString("PORTICO_DESCRIPTOR_SET");
  auto extra = ParseExtraServices(cfg.GetString("PORTICO_EXTRA_SERVICES"));
  if (!extra.ok()) {
    std::fprintf(stderr, "portico-gateway: PORTICO_EXTRA_SERVICES: %s\n",
                 extra.error().message.c_str());
    return 2;
  }
  options.extra_services = std::move(extra).value();
  if (options.descriptor_set.empty() != options.extra_services.empty()) {
    std::fprintf(stderr,
                 "portico-gateway: PORTICO_DESCRIPTOR_SET and PORTICO_EXTRA_SERVICES go "
                 "together: set both or neither\n");
    return 2;
  }

  portico::rpc::KeyFetcher keys(
      grpc::CreateChannel(users_target, grpc::InsecureChannelCredentials()));
  // The verifier calls the refresh on an I/O thread: it only wakes the
  // background loader and never waits for the fetch.
  auto gateway = Gateway::Create(options, keys.keys(), keys.RefreshCallback(/*wait=*/false));
  if (!gateway.ok()) {
    // A bad descriptor set or route table is a bad configuration value.
    log::Error("invalid route table", {{"error", gateway.error().message}});
    log::Flush();
    std::fprintf(stderr, "portico-gateway: invalid route table: %s\n",
                 gateway.error().message.c_str());
    return 2;
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

  int sig = 0;
  for (;;) {
    const sigset_t set = GatewaySignals();
    sigwait(&set, &sig);
    if (sig != SIGHUP) break;
    // Failures are logged and counted by the reload; the old routes stay.
    log::Info("SIGHUP: reloading the routes", {{"descriptor_set", options.descriptor_set}});
    (void)gw.ReloadRoutes();
  }
  log::Info("shutting down", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
  admin.SetDraining();
  gw.Shutdown(std::chrono::seconds(10));
  key_loader.request_stop();
  admin.Stop();
  log::Info("stopped");
  log::Flush();
  return 0;
}
