// End-to-end: /healthz and /readyz as dependencies come and go (PostgreSQL
// stopped and started, a backend down), and graceful shutdown on SIGTERM
// with a request in flight that the test holds up with a row lock.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <functional>
#include <sstream>
#include <future>
#include <string>
#include <thread>

#include "e2e_client.h"
#include "portico/pg/pool.h"
#include "portico/testing/pg_cluster.h"

namespace portico::testing {
namespace {

const auto* const kEnv = InstallStackEnvironment();

int Status(std::uint16_t port, const std::string& target) {
  try {
    return HttpRequest(port, "GET", target).status;
  } catch (const std::exception&) {
    return 0;  // not accepting connections
  }
}

// The named check of a /readyz answer ("" if absent), as "ok" or "failing".
std::string ReadyCheck(std::uint16_t admin_port, const std::string& name_prefix) {
  try {
    auto r = HttpRequest(admin_port, "GET", "/readyz");
    const json::value body = json::parse(r.body);
    for (const auto& c : body.at("checks").as_array()) {
      const auto& o = c.as_object();
      if (Str(o.at("name")).starts_with(name_prefix)) {
        return o.at("ok").as_bool() ? "ok" : "failing";
      }
    }
  } catch (const std::exception&) {
  }
  return "";
}

// True if a TCP connection to 127.0.0.1:`port` is accepted.
bool Connects(std::uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return ok;
}

// Holds the lock on an owner's owner_seqs row in the data database, which
// every write of that owner must take first: a create for that owner waits
// until Release. Uses its own connection, as another client would.
class OwnerLock {
 public:
  explicit OwnerLock(const std::string& owner_id) {
    auto pool = pg::Pool::Create({.url = RunningStack().data_database_url(), .size = 2});
    if (!pool.ok()) throw std::runtime_error(pool.error().message);
    pool_ = std::move(*pool);
    auto lease = pool_->Acquire(pg::kNoDeadline);
    if (!lease.ok()) throw std::runtime_error(lease.error().message);
    lease_.emplace(std::move(*lease));
    auto tx = lease_->Begin();
    if (!tx.ok()) throw std::runtime_error(tx.error().message);
    tx_.emplace(std::move(*tx));
    auto rows = tx_->Exec("SELECT last_seq FROM owner_seqs WHERE owner_id = $1 FOR UPDATE",
                          {owner_id});
    if (!rows.ok() || rows->empty()) throw std::runtime_error("no owner_seqs row to lock");
  }

  /// True once another session waits for a lock in the data database.
  bool SomeoneWaits() {
    auto lease = pool_->Acquire(DeadlineIn(std::chrono::seconds(5)));
    if (!lease.ok()) return false;
    auto rows = lease->Exec(
        "SELECT count(*) AS n FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'");
    return rows.ok() && rows->front().GetInt64("n") > 0;
  }

  void Release() {
    if (tx_) {
      EXPECT_TRUE(tx_->Commit().ok());
      tx_.reset();
    }
  }

 private:
  std::unique_ptr<pg::Pool> pool_;
  std::optional<pg::Lease> lease_;
  std::optional<pg::Transaction> tx_;
};

// An owner with one item (so the owner's sequence row exists) and a create
// for it sent in the background, to be held up by an OwnerLock.
struct SlowCreate {
  Account owner = SignUp("slow");
  SlowCreate() {
    EXPECT_EQ(Call("POST", "/v1/collections/slow/items", R"({"data":{"n":0}})",
                   Bearer(owner.tokens.access))
                  .status,
              201);
  }
  std::future<HttpResponse> Send() {
    const std::uint16_t port = RunningStack().ports().http;
    const std::string token = owner.tokens.access;
    return std::async(std::launch::async, [port, token] {
      return HttpRequest(port, "POST", "/v1/collections/slow/items", R"({"data":{"n":1}})",
                         {{"Authorization", "Bearer " + token}});
    });
  }
};

TEST(Health, HealthzAnswersAndReadyzListsTheChecks) {
  const StackPorts& p = RunningStack().ports();
  for (auto port : {p.gateway_admin, p.users_admin, p.data_admin}) {
    EXPECT_EQ(Status(port, "/healthz"), 200);
    EXPECT_EQ(Status(port, "/readyz"), 200);
  }
  EXPECT_EQ(ReadyCheck(p.users_admin, "database"), "ok");
  EXPECT_EQ(ReadyCheck(p.data_admin, "database"), "ok");
  EXPECT_EQ(ReadyCheck(p.data_admin, "keys"), "ok");
  EXPECT_EQ(ReadyCheck(p.gateway_admin, "keys"), "ok");
  EXPECT_EQ(ReadyCheck(p.gateway_admin, "upstream 127.0.0.1:" + std::to_string(p.data_grpc)),
            "ok");
}

TEST(Health, GatewayIsNotReadyWhileABackendIsDown) {
  Stack& stack = RunningStack();
  const StackPorts& p = stack.ports();
  const std::string data_check = "upstream 127.0.0.1:" + std::to_string(p.data_grpc);
  stack.StopData();
  EXPECT_TRUE(Eventually([&] { return Status(p.gateway_admin, "/readyz") == 503; }))
      << HttpRequest(p.gateway_admin, "GET", "/readyz").body;
  EXPECT_EQ(ReadyCheck(p.gateway_admin, data_check), "failing");
  EXPECT_EQ(Status(p.gateway_admin, "/healthz"), 200);  // alive all the same
  stack.StartData();
  EXPECT_TRUE(Eventually([&] { return Status(p.gateway_admin, "/readyz") == 200; }))
      << HttpRequest(p.gateway_admin, "GET", "/readyz").body;
  EXPECT_EQ(ReadyCheck(p.gateway_admin, data_check), "ok");
}

TEST(Health, ServicesAreNotReadyWhileTheDatabaseIsDownAndRecoverWithoutRestart) {
  Stack& stack = RunningStack();
  const StackPorts& p = stack.ports();
  Account a = SignUp("dbdown");
  PgCluster& pg = SharedPgCluster();
  pg.Stop();
  for (auto port : {p.users_admin, p.data_admin}) {
    EXPECT_TRUE(Eventually([&] { return Status(port, "/readyz") == 503; }))
        << HttpRequest(port, "GET", "/readyz").body;
    EXPECT_EQ(ReadyCheck(port, "database"), "failing");
    EXPECT_EQ(Status(port, "/healthz"), 200);
  }
  // Requests fail cleanly meanwhile (503 problem), and nothing crashes.
  auto down = Call("GET", "/v1/collections", "", Bearer(a.tokens.access));
  EXPECT_EQ(down.status, 503) << down.body;
  pg.Start();
  for (auto port : {p.users_admin, p.data_admin}) {
    EXPECT_TRUE(Eventually([&] { return Status(port, "/readyz") == 200; }, 60))
        << HttpRequest(port, "GET", "/readyz").body;
  }
  EXPECT_TRUE(stack.users().Running());
  EXPECT_TRUE(stack.data().Running());
  EXPECT_TRUE(Eventually([&] { return Status(p.gateway_admin, "/readyz") == 200; }));
  EXPECT_EQ(Call("GET", "/v1/collections", "", Bearer(a.tokens.access)).status, 200);
  EXPECT_EQ(LoginRaw(a.email, kPassword).status, 200);
}

TEST(Health, DataFinishesTheCallInFlightOnSigtermAndRefusesNewOnes) {
  Stack& stack = RunningStack();
  const StackPorts& p = stack.ports();
  SlowCreate slow;
  OwnerLock lock(slow.owner.id);
  auto pending = slow.Send();
  ASSERT_TRUE(Eventually([&] { return lock.SomeoneWaits(); })) << stack.Logs();

  stack.data().Signal(SIGTERM);
  // Draining: not ready, no new connections, the held call still runs.
  EXPECT_TRUE(Eventually([&] { return Status(p.data_admin, "/readyz") == 503; }));
  EXPECT_TRUE(Eventually([&] { return !Connects(p.data_grpc); }))
      << "data still accepts connections while draining";
  EXPECT_TRUE(stack.data().Running());
  EXPECT_EQ(pending.wait_for(std::chrono::milliseconds(0)), std::future_status::timeout);

  lock.Release();
  const HttpResponse r = pending.get();
  EXPECT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(stack.data().WaitForExit(20000), 0) << stack.Logs();
  stack.StartData();
  // The write that was in flight is stored.
  // The gateway's channel may still be reconnecting to the new process: a
  // read can be retried.
  HttpResponse list;
  EXPECT_TRUE(Eventually([&] {
    list = Call("GET", "/v1/collections/slow/items", "", Bearer(slow.owner.tokens.access));
    return list.status == 200;
  })) << list.body;
  EXPECT_EQ(Json(list).at("items").as_array().size(), 2u);
}

TEST(Health, GatewayFinishesTheRequestInFlightOnSigtermAndRefusesNewOnes) {
  Stack& stack = RunningStack();
  const StackPorts& p = stack.ports();
  SlowCreate slow;
  OwnerLock lock(slow.owner.id);
  auto pending = slow.Send();
  ASSERT_TRUE(Eventually([&] { return lock.SomeoneWaits(); })) << stack.Logs();

  stack.gateway().Signal(SIGTERM);
  EXPECT_TRUE(Eventually([&] { return !Connects(p.http); }))
      << "the gateway still accepts connections while draining";
  EXPECT_EQ(Status(p.gateway_admin, "/readyz"), 503);
  EXPECT_TRUE(stack.gateway().Running());
  EXPECT_EQ(pending.wait_for(std::chrono::milliseconds(0)), std::future_status::timeout);

  lock.Release();
  const HttpResponse r = pending.get();
  EXPECT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(stack.gateway().WaitForExit(20000), 0) << stack.Logs();
  stack.StartGateway();
  // The gateway's channel may still be reconnecting to the new process: a
  // read can be retried.
  HttpResponse list;
  EXPECT_TRUE(Eventually([&] {
    list = Call("GET", "/v1/collections/slow/items", "", Bearer(slow.owner.tokens.access));
    return list.status == 200;
  })) << list.body;
  EXPECT_EQ(Json(list).at("items").as_array().size(), 2u);
}

}  // namespace
}  // namespace portico::testing

namespace portico::testing {
namespace {

// Last: what the outages above made the processes write is still one JSON
// object per line (gRPC's own diagnostics included).
TEST(Health, LogsStayJsonLinesThroughOutagesAndRestarts) {
  std::istringstream in(RunningStack().Logs());
  std::string line;
  int lines = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line.starts_with("----- ")) continue;
    boost::system::error_code ec;
    const json::value v = json::parse(line, ec);
    EXPECT_TRUE(!ec && v.is_object()) << line;
    ++lines;
  }
  EXPECT_GT(lines, 0);
}

}  // namespace
}  // namespace portico::testing
