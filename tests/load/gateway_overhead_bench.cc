// The gateway's own cost: the same RPC called through the gateway (REST over
// HTTP/1.1) and directly over gRPC to the backend, from this one process,
// with the same number of concurrent clients, each on its own keep-alive
// connection. Starts the real stack (PostgreSQL + users + data + gateway)
// like the end-to-end tests, every process at the production log level.
//
// The RPC is AuthService/GetJwks (GET /v1/auth/jwks): public, so neither
// path verifies a token, and the users service answers it from its in-memory
// key ring without touching the database. What differs between the two rows
// is therefore the gateway: HTTP parsing, routing, transcoding both ways,
// the extra hop and its access log line.
//
// Each benchmark runs once (one "iteration" is a timed run of all clients);
// the figures are in its counters, and a summary with the ratios follows.
//
//   gateway_overhead_bench [--seconds S] [google benchmark flags]
#include <benchmark/benchmark.h>
#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "e2e_client.h"
#include "portico/users/v1/users.grpc.pb.h"

namespace {

using Clock = std::chrono::steady_clock;
namespace v1 = portico::users::v1;

double g_seconds = 5.0;          // measured time per benchmark
constexpr double kWarmup = 0.5;  // seconds of calls before measuring
portico::testing::Stack* g_stack = nullptr;

struct Figures {
  double rps = 0, p50_us = 0, p99_us = 0;
  long requests = 0;
};
std::map<std::pair<std::string, int>, Figures> g_results;  // (path, clients)

// One client's way to make the call; returns false on a wrong answer.
class Client {
 public:
  virtual ~Client() = default;
  virtual bool Call() = 0;
};

class GatewayClient : public Client {
 public:
  explicit GatewayClient(std::uint16_t port) : conn_(port) {}
  bool Call() override {
    auto r = conn_.Request("GET", "/v1/auth/jwks");
    return r.status == 200 && r.body.find("\"keys\"") != std::string::npos;
  }

 private:
  portico::testing::HttpConnection conn_;
};

class DirectClient : public Client {
 public:
  explicit DirectClient(std::uint16_t port) {
    // Its own connection per client, as each HTTP client has its own socket.
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    stub_ = v1::AuthService::NewStub(grpc::CreateCustomChannel(
        "127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials(), args));
  }
  bool Call() override {
    grpc::ClientContext ctx;
    // The gateway's default per-request deadline, which it sets on its call too.
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::GetJwksRequest req;
    v1::Jwks resp;
    return stub_->GetJwks(&ctx, req, &resp).ok() && resp.keys_size() > 0;
  }

 private:
  std::unique_ptr<v1::AuthService::Stub> stub_;
};

template <typename C>
void Run(benchmark::State& state, const std::string& path, std::uint16_t port) {
  const int clients = static_cast<int>(state.range(0));
  for (auto _ : state) {
    std::vector<std::unique_ptr<Client>> conns;
    for (int i = 0; i < clients; ++i) conns.push_back(std::make_unique<C>(port));
    std::vector<std::vector<double>> samples(static_cast<std::size_t>(clients));
    std::atomic<bool> failed{false};
    std::barrier sync(clients + 1);
    Clock::time_point measure_from, measure_to;
    std::vector<std::thread> threads;
    for (int i = 0; i < clients; ++i) {
      threads.emplace_back([&, i] {
        Client& c = *conns[static_cast<std::size_t>(i)];
        auto& mine = samples[static_cast<std::size_t>(i)];
        // Never throws, so that every thread reaches both barriers.
        auto call = [&] {
          try {
            if (c.Call()) return;
          } catch (const std::exception& e) {
            if (!failed.exchange(true)) std::fprintf(stderr, "%s: %s\n", path.c_str(), e.what());
          }
          failed = true;
        };
        sync.arrive_and_wait();  // warm-up starts
        const auto warm_until = Clock::now() + std::chrono::duration<double>(kWarmup);
        while (Clock::now() < warm_until) call();
        sync.arrive_and_wait();  // measurement starts (measure_to is set)
        for (;;) {
          const auto start = Clock::now();
          if (start >= measure_to) break;
          call();
          mine.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
        }
      });
    }
    sync.arrive_and_wait();
    std::this_thread::sleep_for(std::chrono::duration<double>(kWarmup));
    measure_from = Clock::now();
    measure_to = measure_from + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(g_seconds));
    sync.arrive_and_wait();
    for (auto& t : threads) t.join();
    // Calls in flight at measure_to finish after it; count the real span.
    const double elapsed = std::chrono::duration<double>(Clock::now() - measure_from).count();
    if (failed) {
      state.SkipWithError("a call failed (see stderr)");
      return;
    }
    std::vector<double> all;
    for (auto& s : samples) all.insert(all.end(), s.begin(), s.end());
    if (all.empty()) {
      state.SkipWithError("no call completed");
      return;
    }
    std::sort(all.begin(), all.end());
    auto at = [&](double q) { return all[static_cast<std::size_t>(q * (all.size() - 1))]; };
    Figures f{static_cast<double>(all.size()) / elapsed, at(0.50), at(0.99),
              static_cast<long>(all.size())};
    g_results[{path, clients}] = f;
    state.counters["req_per_s"] = f.rps;
    state.counters["p50_us"] = f.p50_us;
    state.counters["p99_us"] = f.p99_us;
    state.counters["requests"] = static_cast<double>(f.requests);
  }
}

void BM_ViaGateway(benchmark::State& state) {
  Run<GatewayClient>(state, "gateway", g_stack->ports().http);
}
void BM_DirectGrpc(benchmark::State& state) {
  Run<DirectClient>(state, "direct", g_stack->ports().users_grpc);
}

BENCHMARK(BM_DirectGrpc)
    ->ArgName("clients")
    ->Arg(1)
    ->Arg(16)
    ->Iterations(1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ViaGateway)
    ->ArgName("clients")
    ->Arg(1)
    ->Arg(16)
    ->Iterations(1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    if (i > 0 && !std::strcmp(argv[i], "--seconds") && i + 1 < argc) {
      g_seconds = std::atof(argv[++i]);
      continue;
    }
    rest.push_back(argv[i]);
  }
  int rest_argc = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_argc, rest.data());
  if (benchmark::ReportUnrecognizedArguments(rest_argc, rest.data())) return 2;

  const std::vector<std::string> info = {"PORTICO_LOG_LEVEL=info"};
  portico::testing::Stack stack({.users_env = info, .data_env = info, .gateway_env = info});
  g_stack = &stack;
  // The gateway loads the keys and reaches users before it is ready; one call
  // through it proves the whole path answers before anything is measured.
  if (portico::testing::HttpRequest(stack.ports().http, "GET", "/v1/auth/jwks").status != 200) {
    std::fprintf(stderr, "GET /v1/auth/jwks does not answer 200\n%s", stack.Logs().c_str());
    return 2;
  }
  benchmark::RunSpecifiedBenchmarks();

  std::printf("\nGetJwks, %.1f s per row: gateway (HTTP/1.1) vs direct gRPC to users\n", g_seconds);
  std::printf("%-8s %-8s %12s %10s %10s\n", "clients", "path", "req/s", "p50 us", "p99 us");
  for (int clients : {1, 16}) {
    for (const char* path : {"direct", "gateway"}) {
      auto it = g_results.find({path, clients});
      if (it == g_results.end()) continue;
      std::printf("%-8d %-8s %12.0f %10.0f %10.0f\n", clients, path, it->second.rps,
                  it->second.p50_us, it->second.p99_us);
    }
    auto d = g_results.find({"direct", clients});
    auto g = g_results.find({"gateway", clients});
    if (d != g_results.end() && g != g_results.end()) {
      std::printf(
          "%-8d %-8s %11.2fx %9.2fx %9.2fx   (gateway / direct; gateway adds %.0f us at p50)\n",
          clients, "ratio", g->second.rps / d->second.rps, g->second.p50_us / d->second.p50_us,
          g->second.p99_us / d->second.p99_us, g->second.p50_us - d->second.p50_us);
    }
  }
  return 0;
}
