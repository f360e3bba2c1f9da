// End-to-end: tombstone retention in the change feed, with a data service
// whose retention is zero and whose pruner runs every second. A client that
// last synced before a pruned deletion gets 410 and starts again from 0.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <chrono>
#include <string>
#include <thread>

#include "e2e_client.h"

namespace portico::testing {
namespace {

namespace json = boost::json;

const auto* const kEnv = InstallStackEnvironment([] {
  StackOptions options;
  options.data_env = {"PORTICO_CHANGE_RETENTION=0s", "PORTICO_PRUNE_INTERVAL=1s"};
  return options;
});

TEST(DataRetention, ASinceOlderThanThePrunedTombstonesIs410UntilTheClientStartsOver) {
  Account a = SignUp("retention");
  auto created = Call("POST", "/v1/collections/feed/items", R"({"data":{"n":1}})", a.Auth());
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string id = Str(Json(created).at("id"));
  auto kept = Call("POST", "/v1/collections/feed/items", R"({"data":{"n":2}})", a.Auth());
  ASSERT_EQ(kept.status, 201);

  // The client syncs now: it has seen both creations.
  auto first = Call("GET", "/v1/collections/feed/changes?since=0", "", a.Auth());
  ASSERT_EQ(first.status, 200) << first.body;
  const std::string since = Str(Json(first).at("nextSince"));
  ASSERT_EQ(Json(first).at("changes").as_array().size(), 2u);

  // Then the first item is deleted.
  ASSERT_EQ(Call("DELETE", "/v1/collections/feed/items/" + id, "", a.Auth()).status, 204);
  // Once the pruner has removed the tombstone (retention 0), a client that
  // syncs from its last position would miss the deletion: it must hear 410.
  HttpResponse stale;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  do {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    stale = Call("GET", "/v1/collections/feed/changes?since=" + since, "", a.Auth());
  } while (stale.status == 200 && std::chrono::steady_clock::now() < until);
  ExpectProblem(stale, 410, "FAILED_PRECONDITION");

  // Starting over from 0 gives the collection as it is: the kept item only.
  auto fresh = Call("GET", "/v1/collections/feed/changes?since=0", "", a.Auth());
  ASSERT_EQ(fresh.status, 200) << fresh.body;
  const auto changes = Json(fresh).at("changes").as_array();
  ASSERT_EQ(changes.size(), 1u) << fresh.body;
  EXPECT_EQ(Str(changes[0].as_object().at("item").as_object().at("id")),
            Str(Json(kept).at("id")));
  EXPECT_EQ(Str(changes[0].as_object().at("kind")), "UPSERT");
}

}  // namespace
}  // namespace portico::testing
