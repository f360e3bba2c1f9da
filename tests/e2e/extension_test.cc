// End-to-end: a service the gateway was not compiled with. This test serves
// portico.test.v1.EchoService (tests/e2e/proto) in-process; the real gateway
// loads its contracts from a descriptor set (PORTICO_DESCRIPTOR_SET) and
// routes it next to the built-in services, reloads them on SIGHUP without
// failing a request, keeps its routes when a reload is bad, and retries
// UNAVAILABLE on GET routes only.
#include <gtest/gtest.h>

#include <signal.h>
#include <stdlib.h>

#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <google/protobuf/descriptor.pb.h>
#include <grpcpp/grpcpp.h>

#include "e2e_client.h"
#include "portico/api/v1/annotations.pb.h"
#include "portico/rpc/server.h"
#include "portico/test/v1/echo.grpc.pb.h"

namespace portico::testing {
namespace {

namespace pb = google::protobuf;
namespace echo = portico::test::v1;
using Clock = std::chrono::steady_clock;

// What the flaky methods remember, shared by every replica of the echo
// service (as a database would be), so a retry that lands on the other
// replica still counts as the second attempt.
struct FlakyState {
  std::mutex mu;
  std::map<std::string, int> attempts;  // guarded by mu
};

class EchoImpl final : public echo::EchoService::Service {
 public:
  explicit EchoImpl(FlakyState& flaky) : flaky_(flaky) {}

  grpc::Status Echo(grpc::ServerContext*, const echo::EchoRequest* req,
                    echo::EchoReply* reply) override {
    ++echoes_;
    std::string text;
    for (int i = 0; i < std::max(1, req->repeat()); ++i) text += req->text();
    reply->set_channel(req->channel());
    reply->set_text(text);
    reply->set_length(static_cast<std::int64_t>(text.size()));
    reply->mutable_time()->set_seconds(1700000000);
    return grpc::Status::OK;
  }

  grpc::Status Post(grpc::ServerContext*, const echo::PostRequest* req,
                    echo::EchoReply* reply) override {
    reply->set_channel(req->channel());
    reply->set_text(req->message().text());
    *reply->mutable_tags() = req->message().tags();
    reply->set_length(static_cast<std::int64_t>(req->message().text().size()));
    return grpc::Status::OK;
  }

  grpc::Status Fail(grpc::ServerContext*, const echo::FailRequest* req, echo::EchoReply*) override {
    static const std::map<std::string, grpc::StatusCode> kCodes = {
        {"NOT_FOUND", grpc::StatusCode::NOT_FOUND},
        {"ALREADY_EXISTS", grpc::StatusCode::ALREADY_EXISTS},
        {"PERMISSION_DENIED", grpc::StatusCode::PERMISSION_DENIED},
        {"INTERNAL", grpc::StatusCode::INTERNAL}};
    auto it = kCodes.find(req->code());
    if (it == kCodes.end()) return {grpc::StatusCode::INVALID_ARGUMENT, "unknown code"};
    return {it->second, "echo failed with " + req->code()};
  }

  grpc::Status FlakyRead(grpc::ServerContext*, const echo::FlakyRequest* req,
                         echo::FlakyReply* reply) override {
    return Flaky(*req, reply);
  }
  grpc::Status FlakyWrite(grpc::ServerContext*, const echo::FlakyRequest* req,
                          echo::FlakyReply* reply) override {
    return Flaky(*req, reply);
  }

  grpc::Status Reverse(grpc::ServerContext*, const echo::EchoRequest* req,
                       echo::EchoReply* reply) override {
    reply->set_channel(req->channel());
    reply->set_text(std::string(req->text().rbegin(), req->text().rend()));
    return grpc::Status::OK;
  }

  int echoes() const { return echoes_; }

 private:
  // The first call for a key fails as an unreachable replica would.
  grpc::Status Flaky(const echo::FlakyRequest& req, echo::FlakyReply* reply) {
    int n = 0;
    {
      std::lock_guard lock(flaky_.mu);
      n = ++flaky_.attempts[req.key()];
    }
    if (n == 1) return {grpc::StatusCode::UNAVAILABLE, "not yet"};
    reply->set_key(req.key());
    reply->set_attempts(n);
    return grpc::Status::OK;
  }

  FlakyState& flaky_;
  std::atomic<int> echoes_{0};
};

// Two replicas of the echo service, one gRPC target naming both, and the
// descriptor-set files, alive for the whole binary.
struct Fixture {
  FlakyState flaky;
  EchoImpl replicas[2] = {EchoImpl(flaky), EchoImpl(flaky)};
  std::unique_ptr<rpc::Server> servers[2];
  std::string dir;
  std::string active;  // the file PORTICO_DESCRIPTOR_SET names
  std::string target;  // "ipv4:127.0.0.1:<a>,127.0.0.1:<b>"

  int Attempts(const std::string& key) {
    std::lock_guard lock(flaky.mu);
    return flaky.attempts[key];
  }
};
Fixture* g_fixture = nullptr;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

pb::FileDescriptorSet EchoSet() {
  pb::FileDescriptorSet set;
  if (!set.ParseFromString(ReadFile(PORTICO_ECHO_DESCRIPTOR_SET))) {
    throw std::runtime_error("cannot parse " + std::string(PORTICO_ECHO_DESCRIPTOR_SET));
  }
  return set;
}

pb::ServiceDescriptorProto* EchoService(pb::FileDescriptorSet* set) {
  for (auto& file : *set->mutable_file()) {
    for (auto& service : *file.mutable_service()) {
      if (service.name() == "EchoService") return &service;
    }
  }
  throw std::runtime_error("no EchoService in the descriptor set");
}

// The set as first deployed: without the Reverse RPC.
pb::FileDescriptorSet SetWithoutReverse() {
  pb::FileDescriptorSet set = EchoSet();
  auto* methods = EchoService(&set)->mutable_method();
  for (int i = 0; i < methods->size(); ++i) {
    if (methods->Get(i).name() == "Reverse") {
      methods->DeleteSubrange(i, 1);
      break;
    }
  }
  return set;
}

// Replaces the active file atomically (as an operator's `mv` would), so the
// gateway never reads half of it.
void Deploy(const std::string& bytes) {
  const std::string tmp = g_fixture->active + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << bytes;
  }
  std::filesystem::rename(tmp, g_fixture->active);
}

const auto* const kEnv = InstallStackEnvironment(
    [] {
      g_fixture = new Fixture();
      g_fixture->target = "ipv4:";
      for (int i = 0; i < 2; ++i) {
        rpc::ServerOptions options;
        options.address = "127.0.0.1:0";
        auto& server = g_fixture->servers[i];
        server = std::make_unique<rpc::Server>(options);
        server->AddService(&g_fixture->replicas[i]);
        if (!server->Start().ok()) throw std::runtime_error("cannot start echo");
        g_fixture->target +=
            std::string(i == 0 ? "" : ",") + "127.0.0.1:" + std::to_string(server->port());
      }
      char tmpl[] = "/tmp/portico-extension-XXXXXX";
      g_fixture->dir = mkdtemp(tmpl);
      g_fixture->active = g_fixture->dir + "/services.binpb";
      Deploy(SetWithoutReverse().SerializeAsString());
      StackOptions stack;
      stack.gateway_env = {"PORTICO_DESCRIPTOR_SET=" + g_fixture->active,
                           "PORTICO_EXTRA_SERVICES=portico.test.v1.EchoService=" +
                               g_fixture->target};
      return stack;
    },
    [] {
      for (auto& server : g_fixture->servers) server->Shutdown(std::chrono::milliseconds(0));
      std::error_code ec;
      std::filesystem::remove_all(g_fixture->dir, ec);
      delete g_fixture;
      g_fixture = nullptr;
    });

// The value of the first sample of `name` whose labels contain every one of
// `labels` (e.g. `result="success"`), or 0 if there is none.
double Metric(const std::string& name, const std::vector<std::string>& labels = {}) {
  auto r = HttpRequest(RunningStack().ports().gateway_admin, "GET", "/metrics");
  std::istringstream in(r.body);
  for (std::string line; std::getline(in, line);) {
    if (!line.starts_with(name + "{") && !line.starts_with(name + " ")) continue;
    bool all = true;
    for (const auto& l : labels) all = all && line.find(l) != std::string::npos;
    if (all) return std::stod(line.substr(line.rfind(' ') + 1));
  }
  return 0;
}

// Polls until `done` holds, for up to 30 s.
template <typename F>
bool Eventually(F done) {
  const auto until = Clock::now() + std::chrono::seconds(30);
  while (Clock::now() < until) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return done();
}

// Sends SIGHUP and waits until the reload has been counted as `result`.
void ReloadAndWait(const std::string& result) {
  const std::string label = "result=\"" + result + "\"";
  const double before = Metric("portico_route_reloads_total", {label});
  ASSERT_TRUE(RunningStack().gateway().Signal(SIGHUP));
  ASSERT_TRUE(Eventually([&] { return Metric("portico_route_reloads_total", {label}) > before; }))
      << "no " << result << " reload counted\n"
      << RunningStack().Logs();
}

TEST(Extension, EchoRoutesTranscodeLikeBuiltInOnes) {
  // Path variable and query parameters; int64 as a string; a Timestamp.
  auto echoed = Call("GET", "/v1/echo/news?text=hi&repeat=2");
  ASSERT_EQ(echoed.status, 200) << echoed.body;
  auto body = Json(echoed);
  EXPECT_EQ(Str(body, "channel"), "news");
  EXPECT_EQ(Str(body, "text"), "hihi");
  EXPECT_EQ(Str(body, "length"), "4");
  EXPECT_EQ(Str(body, "time"), "2023-11-14T22:13:20Z");
  EXPECT_FALSE(echoed.Header("x-request-id").empty());

  // A body field, and the annotation's success status.
  auto posted = Call("POST", "/v1/echo/news/messages", R"({"text":"hello","tags":["a","b"]})",
                     {{"Content-Type", "application/json"}});
  ASSERT_EQ(posted.status, 201) << posted.body;
  EXPECT_EQ(Str(Json(posted), "text"), "hello");
  EXPECT_EQ(Json(posted).at("tags").as_array().size(), 2u);

  // Errors: the backend's code through the one problem table, and the
  // gateway's own checks against the loaded descriptors.
  ExpectProblem(Call("GET", "/v1/echo-failures/NOT_FOUND"), 404, "NOT_FOUND");
  ExpectProblem(Call("GET", "/v1/echo-failures/ALREADY_EXISTS"), 409, "ALREADY_EXISTS");
  ExpectProblem(Call("GET", "/v1/echo/news?nope=1"), 400, "INVALID_ARGUMENT");
  ExpectProblem(Call("POST", "/v1/echo/news/messages", R"({"text":1x})",
                     {{"Content-Type", "application/json"}}),
                400, "INVALID_ARGUMENT");
  auto wrong_method = Call("DELETE", "/v1/echo/news/messages");
  ExpectProblem(wrong_method, 405, "UNIMPLEMENTED");
  EXPECT_EQ(wrong_method.Header("allow"), "POST");

  // The built-in routes are still there.
  EXPECT_EQ(Call("GET", "/v1/auth/jwks").status, 200);

  // Upstream metrics by target, service, method and code.
  const std::vector<std::string> labels = {"target=\"" + g_fixture->target + "\"",
                                           "service=\"portico.test.v1.EchoService\"",
                                           "method=\"Echo\""};
  auto with_code = labels;
  with_code.push_back("code=\"OK\"");
  EXPECT_GE(Metric("portico_upstream_requests_total", with_code), 1);
  EXPECT_GE(Metric("portico_upstream_request_duration_seconds_count", labels), 1);
}

TEST(Extension, CallsAreSpreadOverEveryAddressOfATarget) {
  const int before[2] = {g_fixture->replicas[0].echoes(), g_fixture->replicas[1].echoes()};
  for (int i = 0; i < 20; ++i) ASSERT_EQ(Call("GET", "/v1/echo/rr?text=x").status, 200);
  // round_robin: each replica gets its share (pick_first would send all to one).
  EXPECT_GE(g_fixture->replicas[0].echoes() - before[0], 5);
  EXPECT_GE(g_fixture->replicas[1].echoes() - before[1], 5);
}

TEST(Extension, UnavailableIsRetriedForGetOnly) {
  // GET: the first attempt fails UNAVAILABLE, the channel's retry policy
  // makes a second one, the client sees only the success.
  auto read = Call("GET", "/v1/flaky/read-1");
  ASSERT_EQ(read.status, 200) << read.body;
  EXPECT_EQ(Json(read).at("attempts").as_int64(), 2);
  EXPECT_EQ(g_fixture->Attempts("read-1"), 2);

  // POST is not safe to repeat: one attempt, and the client gets the 503.
  auto write = Call("POST", "/v1/flaky/write-1", "{}", {{"Content-Type", "application/json"}});
  ExpectProblem(write, 503, "UNAVAILABLE");
  EXPECT_EQ(g_fixture->Attempts("write-1"), 1);
}

TEST(Extension, SighupAddsARouteWithoutFailingARequest) {
  ExpectProblem(Call("GET", "/v1/echo/abc/reversed?text=abc"), 404, "NOT_FOUND");

  // Clients keep calling an extension route and a built-in one throughout.
  std::atomic<bool> stop{false};
  std::atomic<int> sent{0};
  std::mutex failures_mu;
  std::vector<std::string> failures;  // guarded by failures_mu
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&, t] {
      for (int i = 0; !stop && i < 100000; ++i) {
        const bool builtin = (i + t) % 4 == 0;
        const std::string target = builtin ? "/v1/auth/jwks" : "/v1/echo/load?text=x";
        try {
          auto r = Call("GET", target);
          if (r.status != 200) {
            std::lock_guard lock(failures_mu);
            failures.push_back(target + " -> " + std::to_string(r.status) + " " + r.body);
          }
        } catch (const std::exception& e) {
          std::lock_guard lock(failures_mu);
          failures.push_back(target + " -> " + e.what());
        }
        ++sent;
      }
    });
  }
  auto wait_sent = [&](int n) {
    const int target = sent + n;
    return Eventually([&] { return sent >= target; });
  };

  EXPECT_TRUE(wait_sent(50));
  Deploy(EchoSet().SerializeAsString());
  ReloadAndWait("success");
  // A few more swaps back and forth while the load goes on: each changes
  // the echo target's retry list, so each also replaces its channel.
  for (int i = 0; i < 4; ++i) {
    Deploy((i % 2 == 0 ? SetWithoutReverse() : EchoSet()).SerializeAsString());
    ReloadAndWait("success");
    EXPECT_TRUE(wait_sent(20));
  }
  auto reversed = Call("GET", "/v1/echo/abc/reversed?text=abc");
  EXPECT_EQ(reversed.status, 200) << reversed.body;
  EXPECT_EQ(Str(Json(reversed), "text"), "cba");
  EXPECT_TRUE(wait_sent(50));
  stop = true;
  for (auto& c : clients) c.join();

  EXPECT_GT(sent.load(), 100);
  std::lock_guard lock(failures_mu);
  EXPECT_TRUE(failures.empty()) << failures.size() << " requests failed, the first: "
                                << failures.front();
  EXPECT_GE(Metric("portico_route_table_generation"), 2);
}

TEST(Extension, ABadReloadKeepsTheRoutesInForce) {
  const int reverse_before = Call("GET", "/v1/echo/abc/reversed?text=abc").status;

  // Not a descriptor set at all.
  Deploy("this is not a FileDescriptorSet");
  ReloadAndWait("failure");
  EXPECT_EQ(Call("GET", "/v1/echo/news?text=hi").status, 200);

  // A route that collides with a built-in one: refused, naming both RPCs.
  pb::FileDescriptorSet conflicting = EchoSet();
  for (auto& m : *EchoService(&conflicting)->mutable_method()) {
    if (m.name() == "Echo") {
      m.mutable_options()->MutableExtension(api::v1::http)->set_get("/v1/users/{channel}");
    }
  }
  Deploy(conflicting.SerializeAsString());
  ReloadAndWait("failure");
  const std::string logs = RunningStack().gateway().Log();
  EXPECT_NE(logs.find("portico.users.v1.UserService.GetUser"), std::string::npos);
  EXPECT_NE(logs.find("portico.test.v1.EchoService.Echo"), std::string::npos);

  // The file is gone.
  std::filesystem::remove(g_fixture->active);
  ReloadAndWait("failure");

  EXPECT_EQ(Call("GET", "/v1/echo/news?text=hi").status, 200);
  EXPECT_EQ(Call("GET", "/v1/echo/abc/reversed?text=abc").status, reverse_before);
  auto user = Call("GET", "/v1/users/someone");
  ExpectProblem(user, 401, "UNAUTHENTICATED");  // still the users service's route

  // A good set again is taken.
  Deploy(SetWithoutReverse().SerializeAsString());
  ReloadAndWait("success");
  ExpectProblem(Call("GET", "/v1/echo/abc/reversed?text=abc"), 404, "NOT_FOUND");
}

}  // namespace
}  // namespace portico::testing
