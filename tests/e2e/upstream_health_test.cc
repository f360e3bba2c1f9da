// End-to-end: the gateway's /readyz follows its upstreams. A backend that
// stops makes the gateway not ready, naming that backend; once it is back,
// the gateway is ready again by itself, with no restart.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <chrono>
#include <string>
#include <thread>

#include "e2e_client.h"

namespace portico::testing {
namespace {

namespace json = boost::json;

const auto* const kEnv = InstallStackEnvironment();

// Polls the gateway's /readyz until it answers `status`, for up to 30 s;
// returns the last answer.
HttpResponse WaitForReadyz(int status) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  HttpResponse r;
  for (;;) {
    r = HttpRequest(RunningStack().ports().gateway_admin, "GET", "/readyz");
    if (r.status == status || std::chrono::steady_clock::now() > until) return r;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

TEST(UpstreamHealth, ReadyzFollowsABackendThatStopsAndComesBack) {
  Stack& stack = RunningStack();
  const std::string data = "upstream 127.0.0.1:" + std::to_string(stack.ports().data_grpc);
  const std::string users = "upstream 127.0.0.1:" + std::to_string(stack.ports().users_grpc);
  ASSERT_EQ(WaitForReadyz(200).status, 200);

  stack.StopData();
  auto down = WaitForReadyz(503);
  ASSERT_EQ(down.status, 503) << down.body;
  // The failing check names the data service's target; users stays healthy.
  bool data_failing = false, users_ok = false;
  const json::object body = Json(down);
  for (const auto& c : body.at("checks").as_array()) {
    const auto& check = c.as_object();
    if (Str(check, "name") == data) data_failing = !check.at("ok").as_bool();
    if (Str(check, "name") == users) users_ok = check.at("ok").as_bool();
  }
  EXPECT_TRUE(data_failing) << down.body;
  EXPECT_TRUE(users_ok) << down.body;
  // Requests for the stopped backend fail as unavailable, not as a hang.
  Account a = SignUp("health");
  ExpectProblem(Call("GET", "/v1/collections", "", a.Auth()), 503, "UNAVAILABLE");

  stack.StartData();
  auto up = WaitForReadyz(200);
  EXPECT_EQ(up.status, 200) << up.body << "\n" << stack.Logs();
  auto listed = Call("GET", "/v1/collections", "", a.Auth());
  EXPECT_EQ(listed.status, 200) << listed.body;
}

}  // namespace
}  // namespace portico::testing
