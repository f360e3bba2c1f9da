// End-to-end: the data API over HTTP through the real gateway, as a client
// would use it — items with versions and preconditions, idempotent creates,
// listing with orderBy/filter, collections, the change feed and sync.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <boost/json.hpp>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>

#include "e2e_client.h"
#include "portico/data/v1/data.grpc.pb.h"

namespace portico::testing {
namespace {

const auto* const kEnv = InstallStackEnvironment();

std::string Items(const std::string& collection) {
  return "/v1/collections/" + collection + "/items";
}

json::object MustCreate(const Account& a, const std::string& collection, const std::string& data) {
  auto r = Call("POST", Items(collection), R"({"data":)" + data + "}", a.Auth());
  EXPECT_EQ(r.status, 201) << r.body;
  return r.status == 201 ? Json(r) : json::object();
}

std::vector<json::object> ListAll(const Account& a, const std::string& collection,
                                  const std::string& query = "", int page_size = 50) {
  std::vector<json::object> out;
  std::string token;
  for (int page = 0; page < 1000; ++page) {
    std::string target = Items(collection) + "?pageSize=" + std::to_string(page_size) + query;
    if (!token.empty()) target += "&pageToken=" + UrlEscape(token);
    auto r = Call("GET", target, "", a.Auth());
    EXPECT_EQ(r.status, 200) << target << " " << r.body;
    if (r.status != 200) break;
    auto body = Json(r);
    if (body.contains("items")) {
      for (const auto& it : body.at("items").as_array()) out.push_back(it.as_object());
    }
    token = body.contains("nextPageToken") ? Str(body.at("nextPageToken")) : "";
    if (token.empty()) break;
  }
  return out;
}

TEST(DataApi, ItemLifecycleWithVersionsAndPreconditions) {
  Account a = SignUp("lifecycle");
  auto created = Call("POST", Items("notes"), R"({"data":{"title":"t","keep":{"x":1,"y":2}}})",
                      a.Auth());
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string id = Str(Json(created).at("id"));
  const std::string path = Items("notes") + "/" + id;
  EXPECT_EQ(created.Header("location"), path);
  EXPECT_EQ(created.Header("etag"), "\"1\"");

  auto replaced = Call("PUT", path, R"({"data":{"title":"u","keep":{"x":1,"y":2}}})",
                       a.Auth({{"If-Match", "\"1\""}}));
  ASSERT_EQ(replaced.status, 200) << replaced.body;
  EXPECT_EQ(replaced.Header("etag"), "\"2\"");
  EXPECT_EQ(Str(Json(replaced).at("version")), "2");
  EXPECT_NE(Str(Json(replaced).at("updateTime")), Str(Json(created).at("updateTime")));

  // Stale preconditions: 412 and nothing changes.
  ExpectProblem(Call("PUT", path, R"({"data":{}})", a.Auth({{"If-Match", "\"1\""}})), 412,
                "FAILED_PRECONDITION");
  ExpectProblem(Call("PATCH", path, R"({"data":{"title":null}})",
                     a.Auth({{"If-Match", "\"1\""}, {"Content-Type", "application/merge-patch+json"}})),
                412, "FAILED_PRECONDITION");
  ExpectProblem(Call("DELETE", path, "", a.Auth({{"If-Match", "\"9\""}})), 412,
                "FAILED_PRECONDITION");
  auto still = Call("GET", path, "", a.Auth());
  ASSERT_EQ(still.status, 200);
  EXPECT_EQ(still.Header("etag"), "\"2\"");
  EXPECT_EQ(Str(Json(still).at("data").as_object().at("title")), "u");

  // Merge patch: null deletes a key, objects merge, other values replace.
  auto patched = Call("PATCH", path, R"({"data":{"title":null,"keep":{"y":null,"z":3},"n":1}})",
                      a.Auth({{"If-Match", "\"2\""}, {"Content-Type", "application/merge-patch+json"}}));
  ASSERT_EQ(patched.status, 200) << patched.body;
  EXPECT_EQ(patched.Header("etag"), "\"3\"");
  EXPECT_EQ(Json(patched).at("data"), json::parse(R"({"keep":{"x":1,"z":3},"n":1})"));
  auto plain = Call("PATCH", path, R"({"data":{"m":true}})", a.Auth());  // plain JSON works too
  ASSERT_EQ(plain.status, 200) << plain.body;
  EXPECT_EQ(plain.Header("etag"), "\"4\"");

  // Conditional GET.
  EXPECT_EQ(Call("GET", path, "", a.Auth({{"If-None-Match", "\"4\""}})).status, 304);
  EXPECT_EQ(Call("GET", path, "", a.Auth({{"If-None-Match", "W/\"4\""}})).status, 304);
  EXPECT_EQ(Call("GET", path, "", a.Auth({{"If-None-Match", "\"3\""}})).status, 200);

  auto deleted = Call("DELETE", path, "", a.Auth({{"If-Match", "\"4\""}}));
  EXPECT_EQ(deleted.status, 204) << deleted.body;
  EXPECT_TRUE(deleted.body.empty());
  ExpectProblem(Call("GET", path, "", a.Auth()), 404, "NOT_FOUND");
  ExpectProblem(Call("DELETE", path, "", a.Auth()), 404, "NOT_FOUND");
  ExpectProblem(Call("PUT", path, R"({"data":{}})", a.Auth()), 404, "NOT_FOUND");
}

TEST(DataApi, AnotherOwnersItemIs404ForEveryVerb) {
  Account alice = SignUp("owner");
  Account bob = SignUp("intruder");
  const std::string id = Str(MustCreate(alice, "private", R"({"secret":1})").at("id"));
  const std::string path = Items("private") + "/" + id;
  ExpectProblem(Call("GET", path, "", bob.Auth()), 404, "NOT_FOUND");
  ExpectProblem(Call("PUT", path, R"({"data":{}})", bob.Auth()), 404, "NOT_FOUND");
  ExpectProblem(Call("PATCH", path, R"({"data":{}})", bob.Auth()), 404, "NOT_FOUND");
  ExpectProblem(Call("DELETE", path, "", bob.Auth()), 404, "NOT_FOUND");
  auto feed = Call("GET", "/v1/collections/private/changes", "", bob.Auth());
  ASSERT_EQ(feed.status, 200) << feed.body;
  EXPECT_FALSE(Json(feed).contains("changes") && !Json(feed).at("changes").as_array().empty());
  auto mine = Call("GET", path, "", alice.Auth());
  ASSERT_EQ(mine.status, 200);
  EXPECT_EQ(mine.Header("etag"), "\"1\"");
}

TEST(DataApi, ManyWritersRacingOnOneVersionHaveOneWinner) {
  Account a = SignUp("racer");
  const std::string id = Str(MustCreate(a, "race", R"({"n":0})").at("id"));
  const std::string path = Items("race") + "/" + id;
  constexpr int kThreads = 16;
  std::atomic<int> ok{0}, precondition_failed{0}, other{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto r = t % 2 ? Call("PUT", path, R"({"data":{"writer":)" + std::to_string(t) + "}}",
                            a.Auth({{"If-Match", "\"1\""}}))
                     : Call("PATCH", path, R"({"data":{"writer":)" + std::to_string(t) + "}}",
                            a.Auth({{"If-Match", "\"1\""}}));
      if (r.status == 200) {
        ++ok;
      } else if (r.status == 412) {
        ++precondition_failed;
      } else {
        ++other;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 1);
  EXPECT_EQ(precondition_failed.load(), kThreads - 1);
  EXPECT_EQ(other.load(), 0);
  auto now = Call("GET", path, "", a.Auth());
  EXPECT_EQ(now.Header("etag"), "\"2\"");
}

TEST(DataApi, IdempotentCreate) {
  Account a = SignUp("idem");
  const std::string body = R"({"data":{"sku":"a","qty":1}})";
  auto first = Call("POST", Items("orders"), body, a.Auth({{"Idempotency-Key", "order-1"}}));
  ASSERT_EQ(first.status, 201) << first.body;
  auto retry = Call("POST", Items("orders"), R"({"data":{"qty":1,"sku":"a"}})",
                    a.Auth({{"Idempotency-Key", "order-1"}}));
  ASSERT_EQ(retry.status, 201) << retry.body;
  EXPECT_EQ(Json(retry), Json(first));
  EXPECT_EQ(retry.Header("location"), first.Header("location"));
  EXPECT_EQ(retry.Header("etag"), "\"1\"");
  ExpectProblem(Call("POST", Items("orders"), R"({"data":{"sku":"b"}})",
                     a.Auth({{"Idempotency-Key", "order-1"}})),
                422, "FAILED_PRECONDITION");
  // Another user's identical key is a different request.
  Account b = SignUp("idem2");
  auto other = Call("POST", Items("orders"), body, b.Auth({{"Idempotency-Key", "order-1"}}));
  ASSERT_EQ(other.status, 201);
  EXPECT_NE(Json(other).at("id"), Json(first).at("id"));
  ExpectProblem(Call("POST", Items("orders"), body,
                     a.Auth({{"Idempotency-Key", std::string(300, 'k')}})),
                400, "INVALID_ARGUMENT", "idempotencyKey");

  // Retries racing each other: one item; each answer is that item or 409.
  std::mutex mu;
  std::set<std::string> ids;
  std::atomic<int> conflicts{0}, other_status{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 10; ++t) {
    threads.emplace_back([&] {
      auto r = Call("POST", Items("burst"), body, a.Auth({{"Idempotency-Key", "burst-1"}}));
      if (r.status == 201) {
        std::lock_guard lock(mu);
        ids.insert(Str(Json(r).at("id")));
      } else if (r.status == 409) {
        ++conflicts;
        EXPECT_EQ(Str(Json(r).at("code")), "ALREADY_EXISTS");
      } else {
        ++other_status;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ids.size(), 1u);
  EXPECT_EQ(other_status.load(), 0);
  EXPECT_EQ(ListAll(a, "burst").size(), 1u);
}

TEST(DataApi, CollectionsWithCounts) {
  Account a = SignUp("collector");
  for (int i = 0; i < 3; ++i) MustCreate(a, "books", "{}");
  MustCreate(a, "films", "{}");
  auto r = Call("GET", "/v1/collections", "", a.Auth());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Json(r).at("collections"),
            json::parse(R"([{"name":"books","itemCount":"3"},{"name":"films","itemCount":"1"}])"));
  Account empty = SignUp("nobody");
  auto none = Call("GET", "/v1/collections", "", empty.Auth());
  ASSERT_EQ(none.status, 200);
  EXPECT_TRUE(!Json(none).contains("collections") || Json(none).at("collections").as_array().empty());
}

TEST(DataApi, LimitsAreBadRequestsNamingTheField) {
  Account a = SignUp("limits");
  ExpectProblem(Call("POST", Items("Bad"), R"({"data":{}})", a.Auth()), 400, "INVALID_ARGUMENT",
                "collection");
  ExpectProblem(Call("POST", Items(std::string(64, 'a')), R"({"data":{}})", a.Auth()), 400,
                "INVALID_ARGUMENT", "collection");
  ExpectProblem(Call("POST", Items("notes"), R"({"data":{"s":")" + std::string(257 * 1024, 'x') +
                                                 "\"}}",
                     a.Auth()),
                400, "INVALID_ARGUMENT", "data");
  std::string deep = "1";
  for (int i = 0; i < 65; ++i) deep = "{\"a\":" + deep + "}";
  auto too_deep = Call("POST", Items("notes"), R"({"data":)" + deep + "}", a.Auth());
  EXPECT_EQ(too_deep.status, 400) << too_deep.body;
  ExpectProblem(Call("POST", Items("notes"), R"({"data":[1,2]})", a.Auth()), 400,
                "INVALID_ARGUMENT");
  ExpectProblem(Call("POST", Items("notes"), R"({})", a.Auth()), 400, "INVALID_ARGUMENT", "data");
  const std::string id = Str(MustCreate(a, "notes", "{}").at("id"));
  ExpectProblem(Call("PUT", Items("notes") + "/" + id, R"({})", a.Auth()), 400,
                "INVALID_ARGUMENT", "data");
  ExpectProblem(Call("GET", Items("notes") + "?pageSize=1001", "", a.Auth()), 400,
                "INVALID_ARGUMENT", "pageSize");
  ExpectProblem(Call("GET", Items("notes") + "?orderBy=" + UrlEscape("title asc"), "", a.Auth()),
                400, "INVALID_ARGUMENT", "orderBy");
  ExpectProblem(Call("GET", "/v1/collections/notes/changes?since=-1", "", a.Auth()), 400,
                "INVALID_ARGUMENT", "since");
}

TEST(DataApi, PaginationWithOrderByStaysCorrectUnderConcurrentInserts) {
  Account a = SignUp("pages");
  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i) {
    ids.push_back(Str(MustCreate(a, "stream", "{\"i\":" + std::to_string(i) + "}").at("id")));
  }
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    while (!stop) MustCreate(a, "stream", R"({"late":true})");
  });
  std::vector<std::string> seen;
  for (const auto& item : ListAll(a, "stream", "&orderBy=createTime", 3)) {
    if (!item.at("data").as_object().contains("late")) seen.push_back(Str(item.at("id")));
  }
  stop = true;
  writer.join();
  EXPECT_EQ(seen, ids);
  std::vector<std::string> by_i;
  const std::string query =
      "&orderBy=" + UrlEscape("data.i desc") + "&filter=" + UrlEscape("data.i >= 0");
  for (const auto& item : ListAll(a, "stream", query, 4)) {
    by_i.push_back(Str(item.at("id")));
  }
  EXPECT_EQ(by_i, std::vector<std::string>(ids.rbegin(), ids.rend()));
  // Tokens are bound to their query and tamper-checked.
  auto first = Call("GET", Items("stream") + "?pageSize=2&orderBy=createTime", "", a.Auth());
  const std::string token = Str(Json(first).at("nextPageToken"));
  ExpectProblem(Call("GET", Items("stream") + "?pageSize=2&orderBy=updateTime&pageToken=" +
                                UrlEscape(token),
                     "", a.Auth()),
                400, "INVALID_ARGUMENT", "pageToken");
  std::string altered = token;
  altered[altered.size() / 2] = altered[altered.size() / 2] == 'A' ? 'B' : 'A';
  ExpectProblem(Call("GET", Items("stream") + "?pageSize=2&orderBy=createTime&pageToken=" +
                                UrlEscape(altered),
                     "", a.Auth()),
                400, "INVALID_ARGUMENT", "pageToken");
}

TEST(DataApi, FilterTable) {
  Account a = SignUp("filter");
  const std::vector<std::pair<std::string, std::string>> docs = {
      {"open3", R"({"status":"open","priority":3,"archived":false})"},
      {"open1", R"({"status":"open","priority":1,"archived":true})"},
      {"closed5", R"({"status":"closed","priority":5})"},
      {"inject", R"({"status":"x' OR '1'='1","q":"\"; DROP TABLE items; --","r":"') OR true --"})"},
  };
  std::map<std::string, std::string> name_of;
  for (const auto& [name, data] : docs) name_of[Str(MustCreate(a, "tickets", data).at("id"))] = name;
  const std::vector<std::pair<std::string, std::set<std::string>>> valid = {
      {R"(data.status = "open" AND (data.priority >= 3 OR NOT data.archived = true))", {"open3"}},
      {R"(data.status != "open")", {"closed5", "inject"}},
      {"data.priority IN (1, 5)", {"open1", "closed5"}},
      {"data.priority > 1 AND data.priority < 5", {"open3"}},
      {R"(data.status = "x' OR '1'='1")", {"inject"}},
      {R"(data.q = "\"; DROP TABLE items; --")", {"inject"}},
      {R"(data.r = "') OR true --")", {"inject"}},
      {"createTime > 2000-01-01T00:00:00Z", {"open3", "open1", "closed5", "inject"}},
  };
  for (const auto& [filter, expected] : valid) {
    auto r = Call("GET", Items("tickets") + "?filter=" + UrlEscape(filter), "", a.Auth());
    ASSERT_EQ(r.status, 200) << filter << " " << r.body;
    std::set<std::string> got;
    const auto body = Json(r);
    const auto items = body.contains("items") ? body.at("items").as_array() : json::array();
    for (const auto& it : items) got.insert(name_of[Str(it.as_object().at("id"))]);
    EXPECT_EQ(got, expected) << filter;
  }
  const std::vector<std::pair<std::string, std::string>> invalid = {
      {"data.status = open", "position 15"},
      {"data.a = 1 AND", "position 15"},
      {"(data.a = 1", "position 12"},
      {"data.a = 1; DELETE FROM items", "position 11"},
      {"title = \"x\"", "position 1"},
      {"createTime > \"soon\"", "position 14"},
      {R"(data.status = "x" OR "1"="1")", "position 22"},
  };
  for (const auto& [filter, where] : invalid) {
    auto r = Call("GET", Items("tickets") + "?filter=" + UrlEscape(filter), "", a.Auth());
    ExpectProblem(r, 400, "INVALID_ARGUMENT", "filter");
    EXPECT_NE(r.body.find(where), std::string::npos) << filter << " " << r.body;
  }
  EXPECT_EQ(ListAll(a, "tickets").size(), docs.size());  // nothing was touched
}

TEST(DataApi, ChangeFeedAndSyncAfterARandomMixFromSeveralConnections) {
  Account a = SignUp("sync");
  struct Replica {
    std::map<std::string, json::object> items;
    std::string since = "0";
  };
  auto sync = [&](Replica* r, int page_size) {
    for (int i = 0; i < 10000; ++i) {
      auto resp = Call("GET", "/v1/collections/sync/changes?pageSize=" + std::to_string(page_size) +
                                  "&since=" + r->since,
                       "", a.Auth());
      ASSERT_EQ(resp.status, 200) << resp.body;
      auto body = Json(resp);
      const auto changes = body.contains("changes") ? body.at("changes").as_array() : json::array();
      for (const auto& c : changes) {
        const auto& change = c.as_object();
        const auto& item = change.at("item").as_object();
        if (Str(change.at("kind")) == "DELETE") {
          r->items.erase(Str(item.at("id")));
        } else {
          EXPECT_EQ(Str(change.at("kind")), "UPSERT");
          r->items[Str(item.at("id"))] = item;
        }
      }
      if (body.contains("nextSince")) r->since = Str(body.at("nextSince"));
      if (static_cast<int>(changes.size()) < page_size) return;
    }
  };
  Replica live;
  std::atomic<bool> done{false};
  std::thread reader([&] {
    while (!done) sync(&live, 4);
  });
  std::vector<std::thread> writers;
  for (int t = 0; t < 4; ++t) {
    writers.emplace_back([&, t] {
      std::mt19937 rng(100 + t);
      std::vector<std::string> mine;
      for (int op = 0; op < 30; ++op) {
        const int dice = static_cast<int>(rng() % 10);
        if (mine.empty() || dice < 4) {
          mine.push_back(Str(MustCreate(a, "sync", "{\"t\":" + std::to_string(t) + "}").at("id")));
        } else if (dice < 8) {
          auto r = Call("PATCH", Items("sync") + "/" + mine[rng() % mine.size()],
                        "{\"data\":{\"op\":" + std::to_string(op) + "}}", a.Auth());
          EXPECT_EQ(r.status, 200) << r.body;
        } else {
          const std::size_t k = rng() % mine.size();
          EXPECT_EQ(Call("DELETE", Items("sync") + "/" + mine[k], "", a.Auth()).status, 204);
          mine.erase(mine.begin() + static_cast<long>(k));
        }
      }
    });
  }
  for (auto& w : writers) w.join();
  done = true;
  reader.join();
  sync(&live, 4);
  Replica fresh;
  sync(&fresh, 50);
  std::map<std::string, json::object> server;
  for (const auto& item : ListAll(a, "sync")) server[Str(item.at("id"))] = item;
  ASSERT_FALSE(server.empty());
  EXPECT_EQ(live.items, server);
  EXPECT_EQ(fresh.items, server);
  // A position the feed never had: the client must start over (410).
  ExpectProblem(Call("GET", "/v1/collections/sync/changes?since=999999999", "", a.Auth()), 410,
                "FAILED_PRECONDITION");
}

TEST(DataApi, PurgeOwnerIsInternalAndRefusesUserTokens) {
  Account a = SignUp("purge");
  auto stub = data::v1::DataAdmin::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(RunningStack().ports().data_grpc),
                          grpc::InsecureChannelCredentials()));
  data::v1::PurgeOwnerRequest req;
  req.set_owner_id(a.id);
  google::protobuf::Empty resp;
  grpc::ClientContext anonymous;
  EXPECT_EQ(stub->PurgeOwner(&anonymous, req, &resp).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  grpc::ClientContext as_user;
  as_user.AddMetadata("authorization", "Bearer " + a.tokens.access);
  EXPECT_EQ(stub->PurgeOwner(&as_user, req, &resp).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // The gateway does not route it.
  EXPECT_EQ(Call("POST", "/portico.data.v1.DataAdmin/PurgeOwner", "{}", a.Auth()).status, 404);
}

}  // namespace
}  // namespace portico::testing
