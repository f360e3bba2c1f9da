// Load check: while sign-ins saturate the users service's Argon2id pool,
// GET /v1/users/me must stay within 2x of its idle latency. Starts the real
// stack (PostgreSQL + users + data + gateway) like the end-to-end tests, with
// production hashing cost. Prints the figures; exits 1 if the median under
// load exceeds twice the idle median.
//
//   users_bench [--requests N] [--login-threads T] [--hash-workers W]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "e2e_client.h"

namespace {

using portico::testing::Bearer;
using portico::testing::HttpRequest;
using Clock = std::chrono::steady_clock;

struct Figures {
  double p50_ms = 0, p95_ms = 0, p99_ms = 0;
};

Figures Measure(std::uint16_t port, const std::string& token, int n) {
  std::vector<double> ms;
  ms.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    const auto start = Clock::now();
    auto r = HttpRequest(port, "GET", "/v1/users/me", "", Bearer(token));
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
    if (r.status != 200) {
      std::fprintf(stderr, "GET /v1/users/me answered %d: %s\n", r.status, r.body.c_str());
      std::exit(2);
    }
  }
  std::sort(ms.begin(), ms.end());
  auto at = [&](double q) { return ms[static_cast<std::size_t>(q * (ms.size() - 1))]; };
  return {at(0.50), at(0.95), at(0.99)};
}

}  // namespace

int main(int argc, char** argv) {
  int requests = 300, login_threads = 8, hash_workers = 0;  // 0: the service default
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--requests")) requests = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--login-threads")) login_threads = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--hash-workers")) hash_workers = std::atoi(argv[i + 1]);
  }
  portico::testing::Stack stack(
      {.users_env = {"PORTICO_ARGON2_MEMORY=19MiB", "PORTICO_ARGON2_ITERATIONS=2",
                     "PORTICO_HASH_WORKERS=" + std::to_string(hash_workers),
                     "PORTICO_HASH_QUEUE=16", "PORTICO_LOG_LEVEL=warn"}});
  const std::uint16_t port = stack.ports().http;
  const std::string email = "bench@example.com", password = portico::testing::kPassword;
  const std::string token =
      portico::testing::RegisterAndSignIn(port, email, password, "Bench").tokens.access;
  const std::string login_body = R"({"email":")" + email + R"(","password":")" + password + R"("})";
  if (token.empty()) {
    std::fprintf(stderr, "cannot sign in\n%s", stack.Logs().c_str());
    return 2;
  }
  Measure(port, token, 50);  // warm up connections and caches
  const Figures idle = Measure(port, token, requests);

  std::atomic<bool> stop{false};
  std::atomic<long> logins{0}, refused{0};
  std::vector<std::thread> flood;
  for (int t = 0; t < login_threads; ++t) {
    flood.emplace_back([&] {
      while (!stop.load()) {
        auto r = HttpRequest(port, "POST", "/v1/auth/login", login_body);
        (r.status == 200 ? logins : refused).fetch_add(1);
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // let the pool fill
  const auto start = Clock::now();
  const Figures loaded = Measure(port, token, requests);
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  stop = true;
  for (auto& t : flood) t.join();

  std::printf("GET /v1/users/me idle:            p50 %.2f ms  p95 %.2f ms  p99 %.2f ms\n",
              idle.p50_ms, idle.p95_ms, idle.p99_ms);
  std::printf("GET /v1/users/me under login flood: p50 %.2f ms  p95 %.2f ms  p99 %.2f ms\n",
              loaded.p50_ms, loaded.p95_ms, loaded.p99_ms);
  std::printf("login flood: %d threads, %ld sign-ins ok, %ld refused (pool full), %.1f/s\n",
              login_threads, logins.load(), refused.load(),
              static_cast<double>(logins.load() + refused.load()) / seconds);
  std::printf("p50 ratio %.2fx (limit 2x)\n", loaded.p50_ms / idle.p50_ms);
  return loaded.p50_ms <= 2 * idle.p50_ms ? 0 : 1;
}
