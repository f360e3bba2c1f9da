// Load check of the data API on a large collection: get-by-id and
// list-with-filter throughput and latency over HTTP through the real stack
// (PostgreSQL + users + data + gateway, as in the end-to-end tests). The
// collection is bulk-loaded straight into the data service's database (one
// INSERT ... SELECT; through the API it would take minutes), then every
// measured request goes through the gateway. Each request opens its own TCP
// connection, as tests/e2e/http_client does, so figures include connect time.
// Prints the figures; exits 2 if a request fails.
//
//   data_bench [--items N] [--threads T] [--requests R]
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
#include "portico/pg/pool.h"
#include "portico/testing/pg_cluster.h"

namespace {

using portico::testing::Bearer;
using portico::testing::HttpRequest;
using portico::testing::UrlEscape;
using Clock = std::chrono::steady_clock;

struct Figures {
  double per_second = 0, p50_ms = 0, p99_ms = 0;
};

// `threads` clients send `requests` requests in all; target(i) names the i-th.
template <typename Target>
Figures Measure(std::uint16_t port, const std::string& token, int threads, int requests,
                Target target) {
  std::vector<std::vector<double>> per_thread(static_cast<std::size_t>(threads));
  std::atomic<int> next{0};
  const auto start = Clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (int i = next++; i < requests; i = next++) {
        const std::string path = target(i);
        const auto begin = Clock::now();
        auto r = HttpRequest(port, "GET", path, "", Bearer(token));
        per_thread[static_cast<std::size_t>(t)].push_back(
            std::chrono::duration<double, std::milli>(Clock::now() - begin).count());
        if (r.status != 200) {
          std::fprintf(stderr, "GET %s answered %d: %s\n", path.c_str(), r.status,
                       r.body.c_str());
          std::exit(2);
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  std::vector<double> ms;
  for (auto& v : per_thread) ms.insert(ms.end(), v.begin(), v.end());
  std::sort(ms.begin(), ms.end());
  auto at = [&](double q) { return ms[static_cast<std::size_t>(q * (ms.size() - 1))]; };
  return {static_cast<double>(ms.size()) / seconds, at(0.50), at(0.99)};
}

void Print(const char* what, const Figures& f) {
  std::printf("%-58s %8.0f req/s  p50 %7.2f ms  p99 %7.2f ms\n", what, f.per_second, f.p50_ms,
              f.p99_ms);
}

}  // namespace

int main(int argc, char** argv) {
  int items = 100000, threads = 8, requests = 4000;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--items")) items = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--requests")) requests = std::atoi(argv[i + 1]);
  }
  portico::testing::Stack stack;
  const std::uint16_t port = stack.ports().http;
  const auto account = portico::testing::RegisterAndSignIn(port, "bench@example.com",
                                                           portico::testing::kPassword, "Bench");
  const std::string& owner = account.id;
  const std::string& token = account.tokens.access;
  if (owner.empty() || token.empty()) {
    std::fprintf(stderr, "cannot sign in\n%s", stack.Logs().c_str());
    return 2;
  }

  // This process's cluster holds exactly one data database: the stack's.
  auto& cluster = portico::testing::SharedPgCluster();
  auto admin = portico::pg::Pool::Create({.url = cluster.AdminUrl(), .size = 1});
  const auto deadline = portico::DeadlineIn(std::chrono::minutes(10));
  auto dbs = (*admin)->Acquire(deadline)->Exec(
      "SELECT datname FROM pg_database WHERE datname LIKE 'e2e\\_data\\_%'");
  if (!dbs.ok() || dbs->size() != 1) {
    std::fprintf(stderr, "cannot find the stack's data database\n");
    return 2;
  }
  auto pool = portico::pg::Pool::Create({.url = cluster.Url(dbs->front().GetString(0)), .size = 1});
  auto lease = (*pool)->Acquire(deadline);
  const auto load_start = Clock::now();
  auto loaded = lease->Exec(
      "WITH item AS (INSERT INTO items (owner_id, collection, id, data, create_time, update_time) "
      "SELECT $1::uuid, 'bench', gen_random_uuid(), jsonb_build_object('n', i, 'status', "
      "(ARRAY['open','closed','review','blocked'])[1 + i % 4], 'priority', i % 10, "
      "'title', 'item number ' || i, 'tags', jsonb_build_array('t' || (i % 17), 'all')), "
      "now() - (($2 - i) * interval '1 ms'), now() - (($2 - i) * interval '1 ms') "
      "FROM generate_series(1, $2::int) AS i RETURNING *) "
      "INSERT INTO changes (item_id, owner_id, collection, seq, deleted, version, create_time, "
      "update_time) SELECT id, owner_id, collection, row_number() OVER (ORDER BY create_time), "
      "false, version, create_time, update_time FROM item",
      {owner, items});
  if (!loaded.ok()) {
    std::fprintf(stderr, "bulk load failed: %s\n", lease->last_error_message().c_str());
    return 2;
  }
  (void)lease->Exec("INSERT INTO owner_seqs (owner_id, last_seq) VALUES ($1, $2)", {owner, items});
  // VACUUM refuses transaction blocks, which a statement deadline implies.
  lease->set_deadline(portico::pg::kNoDeadline);
  for (const char* sql : {"VACUUM ANALYZE items", "VACUUM ANALYZE changes"}) {
    if (!lease->ExecScript(sql).ok()) {
      std::fprintf(stderr, "%s failed: %s\n", sql, lease->last_error_message().c_str());
      return 2;
    }
  }
  lease->set_deadline(deadline);
  auto sample = lease->Exec(
      "SELECT id::text FROM items WHERE owner_id = $1 ORDER BY random() LIMIT 2000", {owner});
  if (!sample.ok() || sample->empty()) {
    std::fprintf(stderr, "no items loaded: %s\n", lease->last_error_message().c_str());
    return 2;
  }
  std::vector<std::string> ids;
  for (portico::pg::Row row : *sample) ids.push_back(row.GetString(0));
  std::printf("loaded %d items in %.1f s; %d client threads, %d requests per figure\n", items,
              std::chrono::duration<double>(Clock::now() - load_start).count(), threads, requests);

  const std::string base = "/v1/collections/bench/items";
  // Warm up connections, caches and the planner.
  Measure(port, token, threads, 200, [&](int i) { return base + "/" + ids[i % ids.size()]; });

  Print("GET item by id", Measure(port, token, threads, requests, [&](int i) {
          return base + "/" + ids[static_cast<std::size_t>(i) % ids.size()];
        }));
  Print("list, no filter, pageSize=50", Measure(port, token, threads, requests / 4, [&](int) {
          return base + "?pageSize=50";
        }));
  Print("list, filter data.n = <k> (1 match, GIN)",
        Measure(port, token, threads, requests, [&](int i) {
          return base + "?pageSize=50&filter=" +
                 UrlEscape("data.n = " + std::to_string(1 + (i * 7919) % items));
        }));
  Print("list, filter status = open AND priority >= 5, pageSize=50",
        Measure(port, token, threads, requests / 4, [&](int) {
          return base + "?pageSize=50&filter=" +
                 UrlEscape(R"(data.status = "open" AND data.priority >= 5)");
        }));
  Print("list, same filter, orderBy=data.n desc, pageSize=50",
        Measure(port, token, threads, requests / 4, [&](int) {
          return base + "?pageSize=50&orderBy=" + UrlEscape("data.n desc") + "&filter=" +
                 UrlEscape(R"(data.status = "open" AND data.priority >= 5)");
        }));
  return 0;
}
