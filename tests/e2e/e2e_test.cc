// End-to-end: PostgreSQL and the three real binaries, driven over HTTP (and
// gRPC where a client would use it) exactly as an outside client would.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <memory>
#include <string>

#include "e2e_client.h"
#include "portico/data/v1/data.grpc.pb.h"
#include "portico/users/v1/users.grpc.pb.h"

namespace portico::testing {
namespace {

const auto* const kEnv = InstallStackEnvironment();

TEST(EndToEnd, WalkThroughFromRegisterToListingItems) {
  const std::string email = UniqueEmail("ada");
  const std::string password = "correct horse battery staple";

  auto reg = Call("POST", "/v1/auth/register",
                  json::serialize(json::object{
                      {"email", "  " + email + " "}, {"password", password}, {"displayName", "Ada"}}));
  ASSERT_EQ(reg.status, 201) << reg.body;
  auto user = Json(reg);
  EXPECT_EQ(json::value_to<std::string>(user.at("email")), email);  // trimmed
  EXPECT_EQ(json::value_to<std::string>(user.at("displayName")), "Ada");
  EXPECT_EQ(json::value_to<std::string>(user.at("role")), "USER");
  EXPECT_FALSE(user.at("disabled").as_bool());
  EXPECT_TRUE(user.contains("createTime"));
  EXPECT_EQ(reg.body.find("argon2"), std::string::npos);
  EXPECT_EQ(reg.body.find("assword"), std::string::npos);
  const std::string user_id = json::value_to<std::string>(user.at("id"));

  auto login = Call("POST", "/v1/auth/login",
                    json::serialize(json::object{{"email", email}, {"password", password}}));
  ASSERT_EQ(login.status, 200) << login.body;
  auto tokens = Json(login);
  EXPECT_EQ(json::value_to<std::string>(tokens.at("tokenType")), "Bearer");
  EXPECT_EQ(tokens.at("expiresIn").as_int64(), 900);
  EXPECT_FALSE(json::value_to<std::string>(tokens.at("refreshToken")).empty());
  const std::string token = json::value_to<std::string>(tokens.at("accessToken"));

  auto me = Call("GET", "/v1/users/me", "", Bearer(token));
  ASSERT_EQ(me.status, 200) << me.body;
  EXPECT_EQ(json::value_to<std::string>(Json(me).at("id")), user_id);
  EXPECT_EQ(json::value_to<std::string>(Json(me).at("email")), email);

  auto created = Call("POST", "/v1/collections/notes/items",
                      R"({"data":{"title":"Hello","tags":["a","b"],"n":3,"done":false}})",
                      Bearer(token));
  ASSERT_EQ(created.status, 201) << created.body;
  auto item = Json(created);
  const std::string id = json::value_to<std::string>(item.at("id"));
  EXPECT_EQ(json::value_to<std::string>(item.at("collection")), "notes");
  EXPECT_EQ(json::value_to<std::string>(item.at("ownerId")), user_id);
  EXPECT_EQ(json::value_to<std::string>(item.at("version")), "1");  // int64 as a JSON string
  EXPECT_EQ(item.at("data").as_object().at("title").as_string(), "Hello");
  EXPECT_EQ(created.Header("location"), "/v1/collections/notes/items/" + id);
  EXPECT_EQ(created.Header("etag"), "\"1\"");

  auto got = Call("GET", "/v1/collections/notes/items/" + id, "", Bearer(token));
  ASSERT_EQ(got.status, 200) << got.body;
  EXPECT_EQ(Json(got).at("data"), item.at("data"));
  EXPECT_EQ(got.Header("etag"), "\"1\"");

  auto not_modified = Call("GET", "/v1/collections/notes/items/" + id, "",
                           {{"Authorization", "Bearer " + token}, {"If-None-Match", "\"1\""}});
  EXPECT_EQ(not_modified.status, 304);
  EXPECT_TRUE(not_modified.body.empty());

  auto listed = Call("GET", "/v1/collections/notes/items", "", Bearer(token));
  ASSERT_EQ(listed.status, 200) << listed.body;
  auto items = Json(listed).at("items").as_array();
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(json::value_to<std::string>(items[0].as_object().at("id")), id);
}

TEST(EndToEnd, ListingPagesWithOpaqueCursors) {
  Account a = SignUp("pager");
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    auto r = Call("POST", "/v1/collections/tasks/items",
                  R"({"data":{"i":)" + std::to_string(i) + "}}", a.Auth());
    ASSERT_EQ(r.status, 201) << r.body;
    ids.push_back(json::value_to<std::string>(Json(r).at("id")));
  }
  std::vector<std::string> seen;
  std::string page_token;
  for (int page = 0; page < 10; ++page) {
    std::string target = "/v1/collections/tasks/items?pageSize=2";
    if (!page_token.empty()) target += "&pageToken=" + page_token;
    auto r = Call("GET", target, "", a.Auth());
    ASSERT_EQ(r.status, 200) << r.body;
    auto body = Json(r);
    for (const auto& it : body.at("items").as_array()) {
      seen.push_back(json::value_to<std::string>(it.as_object().at("id")));
    }
    EXPECT_LE(body.at("items").as_array().size(), 2u);
    page_token = json::value_to<std::string>(body.at("nextPageToken"));
    if (page_token.empty()) break;
    if (page == 0) {
      // An item created between pages does not disturb the walk.
      ASSERT_EQ(Call("POST", "/v1/collections/tasks/items", R"({"data":{"late":true}})",
                     a.Auth()).status, 201);
    }
  }
  // Newest first; every item created before the walk exactly once.
  std::vector<std::string> expected(ids.rbegin(), ids.rend());
  EXPECT_EQ(seen, expected);

  ExpectProblem(Call("GET", "/v1/collections/tasks/items?pageSize=0x", "", a.Auth()), 400,
                "INVALID_ARGUMENT");
  ExpectProblem(Call("GET", "/v1/collections/tasks/items?pageSize=1001", "", a.Auth()), 400,
                "INVALID_ARGUMENT");
  ExpectProblem(Call("GET", "/v1/collections/tasks/items?pageToken=forged", "", a.Auth()),
                400, "INVALID_ARGUMENT");
}

TEST(EndToEnd, MissingOrBadTokenIs401WithChallenge) {
  auto none = Call("GET", "/v1/users/me");
  ExpectProblem(none, 401, "UNAUTHENTICATED");
  EXPECT_NE(none.Header("www-authenticate").find("Bearer"), std::string::npos);
  auto bad = Call("GET", "/v1/collections/notes/items", "", Bearer("not.a.jwt"));
  ExpectProblem(bad, 401, "UNAUTHENTICATED");
  EXPECT_NE(bad.Header("www-authenticate").find("Bearer"), std::string::npos);
}

TEST(EndToEnd, AnotherUsersItemIs404) {
  Account alice = SignUp("alice");
  Account bob = SignUp("bob");
  auto created =
      Call("POST", "/v1/collections/secrets/items", R"({"data":{"pin":"1234"}})", alice.Auth());
  ASSERT_EQ(created.status, 201);
  const std::string id = json::value_to<std::string>(Json(created).at("id"));
  ExpectProblem(Call("GET", "/v1/collections/secrets/items/" + id, "", bob.Auth()), 404,
                "NOT_FOUND");
  auto bobs = Call("GET", "/v1/collections/secrets/items", "", bob.Auth());
  ASSERT_EQ(bobs.status, 200);
  EXPECT_TRUE(Json(bobs).at("items").as_array().empty());
  // Another user's id is not revealed either.
  ExpectProblem(Call("GET", "/v1/users/" + alice.id, "", bob.Auth()), 404, "NOT_FOUND");
  auto self = Call("GET", "/v1/users/" + bob.id, "", bob.Auth());
  EXPECT_EQ(self.status, 200) << self.body;
}

TEST(EndToEnd, GatewayErrors) {
  auto unknown = Call("GET", "/v1/nothing/here");
  ExpectProblem(unknown, 404, "NOT_FOUND");

  auto wrong_method = Call("DELETE", "/v1/auth/login");
  ExpectProblem(wrong_method, 405, "UNIMPLEMENTED");
  EXPECT_EQ(wrong_method.Header("allow"), "POST");

  auto malformed = Call("POST", "/v1/auth/register", R"({"email": "x@example.com", )");
  ExpectProblem(malformed, 400, "INVALID_ARGUMENT");

  auto unknown_field = Call("POST", "/v1/auth/login", R"({"email":"a@b.co","pasword":"x"})");
  ExpectProblem(unknown_field, 400, "INVALID_ARGUMENT");

  auto not_json = Call("POST", "/v1/auth/login", "email=a", {{"Content-Type", "text/plain"}});
  ExpectProblem(not_json, 415, "INVALID_ARGUMENT");
}

TEST(EndToEnd, RegistrationAndSignInErrors) {
  Account a = SignUp("dup");
  auto again = Call("POST", "/v1/auth/register",
                    json::serialize(json::object{{"email", a.email},
                                                 {"password", "another long password"},
                                                 {"displayName", "Dup"}}));
  ExpectProblem(again, 409, "ALREADY_EXISTS");

  auto invalid = Call("POST", "/v1/auth/register",
                      R"({"email":"not-an-address","password":"short","displayName":""})");
  ExpectProblem(invalid, 400, "INVALID_ARGUMENT");
  std::set<std::string> fields;
  const json::object problem = Json(invalid);
  for (const auto& e : problem.at("errors").as_array()) {
    fields.insert(json::value_to<std::string>(e.as_object().at("field")));
  }
  EXPECT_EQ(fields, (std::set<std::string>{"email", "password", "displayName"}));

  auto wrong = Call("POST", "/v1/auth/login",
                    json::serialize(json::object{{"email", a.email}, {"password", "wrong password!!"}}));
  ExpectProblem(wrong, 401, "UNAUTHENTICATED");
  auto nobody = Call("POST", "/v1/auth/login",
                     R"({"email":"nobody@example.com","password":"wrong password!!"})");
  ExpectProblem(nobody, 401, "UNAUTHENTICATED");
  EXPECT_EQ(Json(nobody).at("detail"), Json(wrong).at("detail"));  // no account enumeration

  auto bad_item = Call("POST", "/v1/collections/Bad Name/items", R"({"data":{}})", a.Auth());
  EXPECT_EQ(bad_item.status, 400) << bad_item.body;
  auto no_data = Call("POST", "/v1/collections/notes/items", R"({})", a.Auth());
  ExpectProblem(no_data, 400, "INVALID_ARGUMENT");
}

TEST(EndToEnd, RequestIdIsEchoedOrGenerated) {
  auto echoed = Call("GET", "/v1/auth/jwks", "", {{"X-Request-Id", "client-req-42"}});
  EXPECT_EQ(echoed.status, 200);
  EXPECT_EQ(echoed.Header("x-request-id"), "client-req-42");
  auto generated = Call("GET", "/v1/auth/jwks", "", {{"X-Request-Id", "bad id with spaces"}});
  EXPECT_FALSE(generated.Header("x-request-id").empty());
  EXPECT_NE(generated.Header("x-request-id"), "bad id with spaces");
}

TEST(EndToEnd, JwksIsPublishedOnBothPaths) {
  auto a = Call("GET", "/v1/auth/jwks");
  auto b = Call("GET", "/.well-known/jwks.json");
  ASSERT_EQ(a.status, 200);
  ASSERT_EQ(b.status, 200);
  auto keys = Json(a).at("keys").as_array();
  ASSERT_FALSE(keys.empty());
  EXPECT_EQ(keys[0].as_object().at("kty").as_string(), "OKP");
  EXPECT_EQ(keys[0].as_object().at("crv").as_string(), "Ed25519");
  EXPECT_EQ(keys[0].as_object().at("alg").as_string(), "EdDSA");
  EXPECT_EQ(Json(a), Json(b));
}

TEST(EndToEnd, ServicesVerifyTokensThemselves) {
  // An internal caller that skips the gateway still needs a valid token.
  auto channel =
      grpc::CreateChannel("127.0.0.1:" + std::to_string(RunningStack().ports().data_grpc),
                          grpc::InsecureChannelCredentials());
  auto stub = data::v1::DataService::NewStub(channel);
  grpc::ClientContext ctx;
  data::v1::ListItemsRequest req;
  req.set_collection("notes");
  data::v1::ListItemsResponse resp;
  EXPECT_EQ(stub->ListItems(&ctx, req, &resp).error_code(), grpc::StatusCode::UNAUTHENTICATED);

  Account a = SignUp("grpc");
  grpc::ClientContext authed;
  authed.AddMetadata("authorization", "Bearer " + a.tokens.access);
  EXPECT_TRUE(stub->ListItems(&authed, req, &resp).ok());

  auto users = users::v1::AuthService::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(RunningStack().ports().users_grpc),
                          grpc::InsecureChannelCredentials()));
  grpc::ClientContext jwks_ctx;
  users::v1::Jwks jwks;
  ASSERT_TRUE(users->GetJwks(&jwks_ctx, {}, &jwks).ok());
  EXPECT_GE(jwks.keys_size(), 1);
}

TEST(EndToEnd, GatewayMetricsCountRequestsByRouteAndStatus) {
  Call("GET", "/v1/users/me");  // a 401 on a known route
  auto metrics = HttpRequest(RunningStack().ports().gateway_admin, "GET", "/metrics");
  ASSERT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.body.find("portico_http_requests_total{"), std::string::npos);
  EXPECT_NE(metrics.body.find("route=\"/v1/users/me\""), std::string::npos) << metrics.body;
  EXPECT_NE(metrics.body.find("status=\"401\""), std::string::npos);
  for (auto port : {RunningStack().ports().users_admin, RunningStack().ports().data_admin}) {
    auto m = HttpRequest(port, "GET", "/metrics");
    EXPECT_NE(m.body.find("portico_grpc_requests_total{"), std::string::npos);
    EXPECT_NE(m.body.find("process_resident_memory_bytes"), std::string::npos);
    EXPECT_EQ(HttpRequest(port, "GET", "/healthz").status, 200);
  }
}

TEST(EndToEnd, LogsAreJsonLinesWithoutSecrets) {
  Account a = SignUp("logcheck");
  // Lines reach stdout within the flush interval: wait for the sign-in's.
  ASSERT_TRUE(Eventually([] {
    return RunningStack().gateway().Log().find("/v1/auth/login") != std::string::npos;
  }));
  const std::string logs = RunningStack().Logs();
  EXPECT_EQ(logs.find(a.tokens.access), std::string::npos);
  EXPECT_EQ(logs.find("correct horse battery staple"), std::string::npos);
  std::istringstream in(RunningStack().gateway().Log());
  std::string line;
  int lines = 0;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto v = json::parse(line).as_object();
    EXPECT_TRUE(v.contains("ts") && v.contains("level") && v.contains("msg")) << line;
    EXPECT_EQ(v.at("service").as_string(), "gateway");
    ++lines;
  }
  EXPECT_GT(lines, 0);
}

}  // namespace
}  // namespace portico::testing
