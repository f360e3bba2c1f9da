// End-to-end: the users service through the gateway — accounts, sessions,
// refresh rotation, administration, throttling, token checks, personal
// access tokens, key rotation and account deletion across services.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "e2e_client.h"
#include "portico/pg/pool.h"
#include "portico/users/v1/users.grpc.pb.h"

namespace portico::testing {
namespace {

const std::string kAdminEmail = "root@example.com";
const std::string kAdminPassword = "bootstrap admin password";

std::string g_dir;  // key material for forging tokens

// ---- base64url and Ed25519 signing with the stack's key file (openssl CLI) ----

std::string B64Url(std::string_view in) {
  static const char* k = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const unsigned v = (static_cast<unsigned char>(in[i]) << 16) |
                       (static_cast<unsigned char>(in[i + 1]) << 8) |
                       static_cast<unsigned char>(in[i + 2]);
    out += {k[(v >> 18) & 63], k[(v >> 12) & 63], k[(v >> 6) & 63], k[v & 63]};
  }
  if (i + 1 == in.size()) {
    const unsigned v = static_cast<unsigned char>(in[i]) << 16;
    out += {k[(v >> 18) & 63], k[(v >> 12) & 63]};
  } else if (i + 2 == in.size()) {
    const unsigned v =
        (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8);
    out += {k[(v >> 18) & 63], k[(v >> 12) & 63], k[(v >> 6) & 63]};
  }
  return out;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Writes a random Ed25519 seed as the users service's key file and as a PEM
// the openssl CLI signs with.
void MakeKeyFile() {
  std::random_device rd;
  std::string seed;
  for (int i = 0; i < 32; ++i) seed.push_back(static_cast<char>(rd() & 0xFF));
  std::ofstream(g_dir + "/jwt.key") << B64Url(seed) << "\n";
  const std::string der_prefix("\x30\x2e\x02\x01\x00\x30\x05\x06\x03\x2b\x65\x70\x04\x22\x04\x20",
                               16);
  std::ofstream(g_dir + "/jwt.der", std::ios::binary) << der_prefix << seed;
  const std::string cmd =
      "openssl pkey -inform DER -in " + g_dir + "/jwt.der -out " + g_dir + "/jwt.pem 2>/dev/null";
  if (std::system(cmd.c_str()) != 0) throw std::runtime_error("openssl pkey failed");
}

// A compact JWS over `header` and `payload`, signed with the key file's key.
std::string SignJws(const std::string& header, const std::string& payload) {
  const std::string input = B64Url(header) + "." + B64Url(payload);
  std::ofstream(g_dir + "/msg", std::ios::binary) << input;
  const std::string cmd = "openssl pkeyutl -sign -inkey " + g_dir + "/jwt.pem -rawin -in " + g_dir +
                          "/msg -out " + g_dir + "/sig 2>/dev/null";
  if (std::system(cmd.c_str()) != 0) throw std::runtime_error("openssl pkeyutl failed");
  return input + "." + B64Url(ReadFile(g_dir + "/sig"));
}

const auto* const kEnv = InstallStackEnvironment(
    [] {
      char tmpl[] = "/tmp/portico-users-e2e-XXXXXX";
      g_dir = mkdtemp(tmpl);
      MakeKeyFile();
      return StackOptions{.users_env = {
                              "PORTICO_JWT_KEY_FILE=" + g_dir + "/jwt.key",
                              "PORTICO_REFRESH_REUSE_GRACE=3s",
                              "PORTICO_LOGIN_MAX_FAILURES=3",
                              "PORTICO_LOGIN_LOCKOUT=60s",
                              "PORTICO_LOGIN_ADDRESS_MAX_FAILURES=100000",
                              "PORTICO_PURGE_MAX_BACKOFF=1s",
                              "PORTICO_BOOTSTRAP_ADMIN_EMAIL=" + kAdminEmail,
                              "PORTICO_BOOTSTRAP_ADMIN_PASSWORD=" + kAdminPassword,
                          }};
    },
    [] {
      std::error_code ec;
      std::filesystem::remove_all(g_dir, ec);
    });

HttpResponse RefreshRaw(const std::string& refresh) {
  return Call("POST", "/v1/auth/refresh", json::serialize(json::object{{"refreshToken", refresh}}));
}

// Polls `fn` until it is true (a condition that settles by itself: a key set
// refresh, a retry loop), for at most `seconds`.
// ---------------------------------------------------------------------------

TEST(Users, RegisterValidatesNormalisesAndRejectsDuplicates) {
  const std::string email = UniqueEmail("norm");
  std::string upper = email;
  for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  auto reg = Call("POST", "/v1/auth/register",
                  json::serialize(json::object{{"email", "  " + upper + " "},
                                               {"password", "twelve chars"},  // exactly 12
                                               {"displayName", "Norm"}}));
  ASSERT_EQ(reg.status, 201) << reg.body;
  EXPECT_EQ(Str(Json(reg), "email"), email);
  EXPECT_EQ(Str(Json(reg), "role"), "USER");
  EXPECT_EQ(Json(reg).if_contains("passwordHash"), nullptr);

  ExpectProblem(Call("POST", "/v1/auth/register",
                     json::serialize(json::object{
                         {"email", email}, {"password", kPassword}, {"displayName", "Dup"}})),
                409, "ALREADY_EXISTS", "email");
  auto bad = [](json::object body, const std::string& field) {
    ExpectProblem(Call("POST", "/v1/auth/register", json::serialize(body)), 400, "INVALID_ARGUMENT",
                  field);
  };
  bad({{"email", "not-an-address"}, {"password", kPassword}, {"displayName", "X"}}, "email");
  bad({{"email", UniqueEmail("s")}, {"password", "eleven char"}, {"displayName", "X"}}, "password");
  bad({{"email", UniqueEmail("l")}, {"password", std::string(129, 'p')}, {"displayName", "X"}},
      "password");
  bad({{"email", UniqueEmail("c")},
       {"password", kPassword},
       {"displayName",
        "a\x01"
        "b"}},
      "displayName");
  bad({{"email", UniqueEmail("e")}, {"password", kPassword}, {"displayName", ""}}, "displayName");
  bad({{"email", UniqueEmail("n")},
       {"password", kPassword},
       {"displayName", std::string(101, 'n')}},
      "displayName");
  // 128 characters is fine, and never truncated: 127 of them do not sign in.
  const std::string long_pw(128, 'q');
  const std::string long_email = UniqueEmail("long");
  ASSERT_EQ(Call("POST", "/v1/auth/register",
                 json::serialize(json::object{
                     {"email", long_email}, {"password", long_pw}, {"displayName", "Long"}}))
                .status,
            201);
  EXPECT_EQ(LoginRaw(long_email, long_pw).status, 200);
  EXPECT_EQ(LoginRaw(long_email, long_pw.substr(0, 127)).status, 401);
}

TEST(Users, UnknownEmailAndWrongPasswordAnswerAlike) {
  Account a = SignUp("alike");
  auto wrong = LoginRaw(a.email, "wrong password!!");
  auto unknown = LoginRaw(UniqueEmail("nobody"), "wrong password!!");
  ExpectProblem(wrong, 401, "UNAUTHENTICATED");
  ExpectProblem(unknown, 401, "UNAUTHENTICATED");
  EXPECT_EQ(Str(Json(wrong), "detail"), Str(Json(unknown), "detail"));
}

TEST(Users, JwksIsServedAtBothPaths) {
  auto a = Call("GET", "/v1/auth/jwks");
  auto b = Call("GET", "/.well-known/jwks.json");
  ASSERT_EQ(a.status, 200) << a.body;
  ASSERT_EQ(b.status, 200) << b.body;
  EXPECT_EQ(a.body, b.body);
  auto key = Json(a).at("keys").as_array().at(0).as_object();
  EXPECT_EQ(Str(key, "kty"), "OKP");
  EXPECT_EQ(Str(key, "crv"), "Ed25519");
  EXPECT_EQ(Str(key, "alg"), "EdDSA");
}

TEST(Users, RefreshRotatesDetectsReuseAndToleratesConcurrentUse) {
  Account a = SignUp("rotate");
  const std::string r1 = a.tokens.refresh;
  auto first = RefreshRaw(r1);
  ASSERT_EQ(first.status, 200) << first.body;
  const std::string r2 = Str(Json(first), "refreshToken");
  EXPECT_NE(r2, r1);
  EXPECT_EQ(Call("GET", "/v1/users/me", "", Bearer(Str(Json(first), "accessToken"))).status, 200);

  // Within the grace window a concurrent refresh gets the same new token.
  auto again = RefreshRaw(r1);
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(Str(Json(again), "refreshToken"), r2);

  auto second = RefreshRaw(r2);
  ASSERT_EQ(second.status, 200) << second.body;
  const std::string r3 = Str(Json(second), "refreshToken");

  // Past the window (3 s in this stack), presenting r1 again is theft:
  // the whole family dies, including the newest token.
  std::this_thread::sleep_for(std::chrono::milliseconds(3500));
  ExpectProblem(RefreshRaw(r1), 401, "UNAUTHENTICATED");
  ExpectProblem(RefreshRaw(r3), 401, "UNAUTHENTICATED");

  ExpectProblem(RefreshRaw("not-a-token"), 401, "UNAUTHENTICATED");
  ExpectProblem(RefreshRaw(""), 400, "INVALID_ARGUMENT", "refreshToken");
}

TEST(Users, LogoutRevokesTheSession) {
  Account a = SignUp("logout");
  auto out = Call("POST", "/v1/auth/logout",
                  json::serialize(json::object{{"refreshToken", a.tokens.refresh}}));
  EXPECT_EQ(out.status, 204) << out.body;
  ExpectProblem(RefreshRaw(a.tokens.refresh), 401, "UNAUTHENTICATED");
  // Idempotent.
  EXPECT_EQ(Call("POST", "/v1/auth/logout",
                 json::serialize(json::object{{"refreshToken", a.tokens.refresh}}))
                .status,
            204);
}

TEST(Users, UpdateMe) {
  Account a = SignUp("update");
  auto r = Call("PATCH", "/v1/users/me", R"({"displayName":"Renamed ✓"})", Bearer(a.tokens.access));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Str(Json(r), "displayName"), "Renamed ✓");
  EXPECT_EQ(Str(Json(Call("GET", "/v1/users/me", "", Bearer(a.tokens.access))), "displayName"),
            "Renamed ✓");
  ExpectProblem(Call("PATCH", "/v1/users/me", R"({"displayName":""})", Bearer(a.tokens.access)),
                400, "INVALID_ARGUMENT", "displayName");
  ExpectProblem(Call("PATCH", "/v1/users/me", R"({"displayName":"x"})"), 401, "UNAUTHENTICATED");
}

TEST(Users, ChangePasswordRevokesEveryOtherSession) {
  Account a = SignUp("passwd");
  Tokens other = Login(a.email);
  const std::string new_password = "a brand new password";
  ExpectProblem(Call("POST", "/v1/users/me/password",
                     json::serialize(json::object{{"currentPassword", "not the password"},
                                                  {"newPassword", new_password}}),
                     Bearer(a.tokens.access)),
                400, "INVALID_ARGUMENT", "currentPassword");
  ExpectProblem(
      Call("POST", "/v1/users/me/password",
           json::serialize(json::object{{"currentPassword", kPassword}, {"newPassword", "short"}}),
           Bearer(a.tokens.access)),
      400, "INVALID_ARGUMENT", "newPassword");
  auto r = Call(
      "POST", "/v1/users/me/password",
      json::serialize(json::object{{"currentPassword", kPassword}, {"newPassword", new_password}}),
      Bearer(a.tokens.access));
  ASSERT_EQ(r.status, 204) << r.body;
  ExpectProblem(RefreshRaw(other.refresh), 401, "UNAUTHENTICATED");
  EXPECT_EQ(RefreshRaw(a.tokens.refresh).status, 200);  // the caller's own session lives
  EXPECT_EQ(LoginRaw(a.email, kPassword).status, 401);
  EXPECT_EQ(LoginRaw(a.email, new_password).status, 200);
}

TEST(Users, SessionsAreListedAndRevocable) {
  Account a = SignUp("sessions");
  Tokens second = Login(a.email);
  auto list = Call("GET", "/v1/users/me/sessions", "", Bearer(a.tokens.access));
  ASSERT_EQ(list.status, 200) << list.body;
  auto sessions = Json(list).at("sessions").as_array();
  ASSERT_EQ(sessions.size(), 2u) << list.body;
  std::string current, other;
  for (const auto& s : sessions) {
    const auto& o = s.as_object();
    EXPECT_FALSE(Str(o, "createTime").empty());
    EXPECT_FALSE(Str(o, "lastUseTime").empty());
    if (o.contains("current") && o.at("current").as_bool()) {
      current = Str(o, "id");
    } else {
      other = Str(o, "id");
    }
  }
  ASSERT_FALSE(current.empty()) << list.body;
  ASSERT_FALSE(other.empty()) << list.body;
  EXPECT_EQ(Call("DELETE", "/v1/users/me/sessions/" + other, "", Bearer(a.tokens.access)).status,
            204);
  ExpectProblem(RefreshRaw(second.refresh), 401, "UNAUTHENTICATED");
  ExpectProblem(Call("DELETE", "/v1/users/me/sessions/" + other, "", Bearer(a.tokens.access)), 404,
                "NOT_FOUND");
  // Someone else's session is "not found".
  Account b = SignUp("sessions-b");
  ExpectProblem(Call("DELETE", "/v1/users/me/sessions/" + current, "", Bearer(b.tokens.access)),
                404, "NOT_FOUND");
  auto after = Call("GET", "/v1/users/me/sessions", "", Bearer(a.tokens.access));
  EXPECT_EQ(Json(after).at("sessions").as_array().size(), 1u) << after.body;
}

TEST(Users, AdminListsPagesAndSearches) {
  Tokens admin = Login(kAdminEmail, kAdminPassword);
  const std::string prefix = "page" + std::to_string(::getpid()) + "x";
  std::set<std::string> made;
  for (int i = 0; i < 5; ++i) made.insert(SignUp(prefix + std::to_string(i)).id);
  std::set<std::string> seen;
  std::string token;
  int pages = 0;
  do {
    auto r = Call("GET", "/v1/users?pageSize=2&emailPrefix=" + prefix + "&pageToken=" + token, "",
                  Bearer(admin.access));
    ASSERT_EQ(r.status, 200) << r.body;
    auto o = Json(r);
    for (const auto& u : o.at("users").as_array()) seen.insert(Str(u.as_object(), "id"));
    token = o.contains("nextPageToken") ? Str(o, "nextPageToken") : "";
    ++pages;
  } while (!token.empty() && pages < 10);
  EXPECT_EQ(seen, made);
  EXPECT_EQ(pages, 3);
  ExpectProblem(Call("GET", "/v1/users?pageSize=1001", "", Bearer(admin.access)), 400,
                "INVALID_ARGUMENT", "pageSize");
  ExpectProblem(Call("GET", "/v1/users?pageToken=garbage", "", Bearer(admin.access)), 400,
                "INVALID_ARGUMENT", "pageToken");
  Account user = SignUp("notadmin");
  ExpectProblem(Call("GET", "/v1/users", "", Bearer(user.tokens.access)), 403, "PERMISSION_DENIED");
}

TEST(Users, AdminGetPatchDeleteAndTheLastAdmin) {
  Tokens admin = Login(kAdminEmail, kAdminPassword);
  auto me = Json(Call("GET", "/v1/users/me", "", Bearer(admin.access)));
  const std::string admin_id = Str(me, "id");
  EXPECT_EQ(Str(me, "role"), "ADMIN");

  // The last admin can neither be demoted, disabled nor deleted.
  ExpectProblem(Call("PATCH", "/v1/users/" + admin_id, R"({"role":"USER"})", Bearer(admin.access)),
                400, "FAILED_PRECONDITION");
  ExpectProblem(
      Call("PATCH", "/v1/users/" + admin_id, R"({"disabled":true})", Bearer(admin.access)), 400,
      "FAILED_PRECONDITION");
  ExpectProblem(Call("DELETE", "/v1/users/" + admin_id, "", Bearer(admin.access)), 400,
                "FAILED_PRECONDITION");
  ExpectProblem(Call("DELETE", "/v1/users/me", "", Bearer(admin.access)), 400,
                "FAILED_PRECONDITION");

  Account a = SignUp("managed");
  Account b = SignUp("other");
  EXPECT_EQ(Call("GET", "/v1/users/" + a.id, "", Bearer(admin.access)).status, 200);
  EXPECT_EQ(Call("GET", "/v1/users/" + a.id, "", Bearer(a.tokens.access)).status, 200);
  ExpectProblem(Call("GET", "/v1/users/" + a.id, "", Bearer(b.tokens.access)), 404, "NOT_FOUND");
  ExpectProblem(Call("PATCH", "/v1/users/" + a.id, R"({"role":"ADMIN"})", Bearer(b.tokens.access)),
                403, "PERMISSION_DENIED");
  ExpectProblem(Call("PATCH", "/v1/users/" + a.id, R"({"displayName":""})", Bearer(admin.access)),
                400, "INVALID_ARGUMENT", "displayName");
  ExpectProblem(Call("PATCH", "/v1/users/0190a0a0-0000-7000-8000-000000000000",
                     R"({"displayName":"x"})", Bearer(admin.access)),
                404, "NOT_FOUND");

  // Promote a; now a may demote itself (root is still an admin).
  auto promoted = Call("PATCH", "/v1/users/" + a.id, R"({"role":"ADMIN","displayName":"Boss"})",
                       Bearer(admin.access));
  ASSERT_EQ(promoted.status, 200) << promoted.body;
  EXPECT_EQ(Str(Json(promoted), "role"), "ADMIN");
  EXPECT_EQ(Str(Json(promoted), "displayName"), "Boss");
  Tokens a_admin = Login(a.email);
  EXPECT_EQ(Call("GET", "/v1/users", "", Bearer(a_admin.access)).status, 200);
  EXPECT_EQ(Call("PATCH", "/v1/users/" + a.id, R"({"role":"USER"})", Bearer(a_admin.access)).status,
            200);
  // The demoted admin's token still says ADMIN, but the users service checks the account.
  ExpectProblem(Call("GET", "/v1/users", "", Bearer(a_admin.access)), 403, "PERMISSION_DENIED");

  // Disabling revokes sessions and refuses sign-in.
  auto disabled = Call("PATCH", "/v1/users/" + b.id, R"({"disabled":true})", Bearer(admin.access));
  ASSERT_EQ(disabled.status, 200) << disabled.body;
  EXPECT_TRUE(Json(disabled).at("disabled").as_bool());
  ExpectProblem(RefreshRaw(b.tokens.refresh), 401, "UNAUTHENTICATED");
  ExpectProblem(LoginRaw(b.email, kPassword), 403, "PERMISSION_DENIED");
  EXPECT_EQ(
      Call("PATCH", "/v1/users/" + b.id, R"({"disabled":false})", Bearer(admin.access)).status,
      200);
  EXPECT_EQ(LoginRaw(b.email, kPassword).status, 200);

  // Delete.
  EXPECT_EQ(Call("DELETE", "/v1/users/" + b.id, "", Bearer(admin.access)).status, 204);
  ExpectProblem(Call("DELETE", "/v1/users/" + b.id, "", Bearer(admin.access)), 404, "NOT_FOUND");
  ExpectProblem(Call("GET", "/v1/users/" + b.id, "", Bearer(admin.access)), 404, "NOT_FOUND");
  ExpectProblem(LoginRaw(b.email, kPassword), 401, "UNAUTHENTICATED");
  ExpectProblem(RefreshRaw(b.tokens.refresh), 401, "UNAUTHENTICATED");
}

TEST(Users, CreateAdminCommandReadsThePasswordFromStdin) {
  const std::string email = UniqueEmail("cli-admin");
  const std::string cmd = "printf '%s\\n' 'cli admin password' | env PORTICO_DATABASE_URL='" +
                          RunningStack().users_database_url() +
                          "' PORTICO_LOG_LEVEL=error PORTICO_ARGON2_MEMORY=8MiB "
                          "PORTICO_ARGON2_ITERATIONS=1 " +
                          Stack::UsersBinary() + " create-admin " + email + " >/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  Tokens p = Login(email, "cli admin password");
  auto me = Call("GET", "/v1/users/me", "", Bearer(p.access));
  EXPECT_EQ(Str(Json(me), "role"), "ADMIN") << me.body;
}

TEST(Users, DeleteMe) {
  Account a = SignUp("deleteme");
  EXPECT_EQ(Call("DELETE", "/v1/users/me", "", Bearer(a.tokens.access)).status, 204);
  ExpectProblem(Call("GET", "/v1/users/me", "", Bearer(a.tokens.access)), 401, "UNAUTHENTICATED");
  ExpectProblem(LoginRaw(a.email, kPassword), 401, "UNAUTHENTICATED");
  ExpectProblem(RefreshRaw(a.tokens.refresh), 401, "UNAUTHENTICATED");
}

TEST(Users, FailedSignInsAreThrottledWith429AndRetryAfter) {
  for (const std::string& email : {SignUp("throttle").email, UniqueEmail("ghost")}) {
    for (int i = 0; i < 3; ++i) {
      ExpectProblem(LoginRaw(email, "wrong password!!"), 401, "UNAUTHENTICATED");
    }
    // Even the right password waits now: the account is throttled.
    auto r = LoginRaw(email, kPassword);
    ExpectProblem(r, 429, "RESOURCE_EXHAUSTED");
    const int retry = std::atoi(r.Header("retry-after").c_str());
    EXPECT_GT(retry, 1) << r.Header("retry-after");
    EXPECT_LE(retry, 60);
  }
}

TEST(Users, ForgedExpiredAndForeignTokensAreRefused) {
  Account a = SignUp("forged");
  auto jwks = Json(Call("GET", "/v1/auth/jwks"));
  const std::string kid = Str(jwks.at("keys").as_array().at(0).as_object(), "kid");
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  auto claims = [&](std::int64_t iat, std::int64_t exp, const std::string& aud,
                    const std::string& iss = "portico") {
    return json::serialize(json::object{{"iss", iss},
                                        {"aud", aud},
                                        {"sub", a.id},
                                        {"role", "USER"},
                                        {"iat", iat},
                                        {"exp", exp},
                                        {"jti", "x.y"}});
  };
  const std::string header =
      json::serialize(json::object{{"alg", "EdDSA"}, {"typ", "JWT"}, {"kid", kid}});
  auto me = [&](const std::string& token) {
    return Call("GET", "/v1/users/me", "", Bearer(token));
  };

  // Control: a well-formed token signed with the service's key works.
  const std::string good = SignJws(header, claims(now, now + 600, "portico-api"));
  ASSERT_EQ(me(good).status, 200) << me(good).body;

  ExpectProblem(me(SignJws(header, claims(now - 7200, now - 3600, "portico-api"))), 401,
                "UNAUTHENTICATED");  // expired
  ExpectProblem(me(SignJws(header, claims(now, now + 600, "someone-else"))), 401,
                "UNAUTHENTICATED");  // wrong audience
  ExpectProblem(me(SignJws(header, claims(now, now + 600, "portico-api", "evil"))), 401,
                "UNAUTHENTICATED");  // wrong issuer
  // Tampered: the payload of a real token changed to claim ADMIN.
  {
    const std::string& t = a.tokens.access;
    const auto d1 = t.find('.');
    const auto d2 = t.find('.', d1 + 1);
    const std::string forged_payload = B64Url(json::serialize(json::object{{"iss", "portico"},
                                                                           {"aud", "portico-api"},
                                                                           {"sub", a.id},
                                                                           {"role", "ADMIN"},
                                                                           {"iat", now},
                                                                           {"exp", now + 600},
                                                                           {"jti", "x.y"}}));
    ExpectProblem(me(t.substr(0, d1 + 1) + forged_payload + t.substr(d2)), 401, "UNAUTHENTICATED");
    std::string flipped = t;
    flipped[d1 + 5] = flipped[d1 + 5] == 'A' ? 'B' : 'A';
    ExpectProblem(me(flipped), 401, "UNAUTHENTICATED");
  }
  // alg:none and HS256 (keyed with the public key, the classic confusion).
  const std::string payload = B64Url(claims(now, now + 600, "portico-api"));
  ExpectProblem(me(B64Url(R"({"alg":"none","typ":"JWT"})") + "." + payload + "."), 401,
                "UNAUTHENTICATED");
  ExpectProblem(
      me(B64Url(json::serialize(json::object{{"alg", "HS256"}, {"typ", "JWT"}, {"kid", kid}})) +
         "." + payload + "." + B64Url(std::string(32, '\x42'))),
      401, "UNAUTHENTICATED");
  // The gRPC service checks by itself, too.
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(RunningStack().ports().users_grpc),
                                     grpc::InsecureChannelCredentials());
  auto stub = users::v1::UserService::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization",
                  "Bearer " + SignJws(header, claims(now, now + 600, "someone-else")));
  users::v1::User out;
  EXPECT_EQ(stub->GetMe(&ctx, {}, &out).error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

TEST(Users, PersonalAccessTokens) {
  Account a = SignUp("pat");
  auto create = [&](const json::object& body) {
    return Call("POST", "/v1/users/me/tokens", json::serialize(body), Bearer(a.tokens.access));
  };
  ExpectProblem(create({{"name", "x"}, {"scopes", json::array{}}}), 400, "INVALID_ARGUMENT",
                "scopes");
  ExpectProblem(create({{"name", "x"}, {"scopes", json::array{"root"}}}), 400, "INVALID_ARGUMENT",
                "scopes");
  ExpectProblem(create({{"name", ""}, {"scopes", json::array{"users:read"}}}), 400,
                "INVALID_ARGUMENT", "name");
  ExpectProblem(create({{"name", "x"}, {"scopes", json::array{"users:read"}}, {"ttl", "-5"}}), 400,
                "INVALID_ARGUMENT", "ttl");

  auto reader =
      create({{"name", "reader"}, {"scopes", json::array{"users:read"}}, {"ttl", "3600"}});
  ASSERT_EQ(reader.status, 201) << reader.body;
  const std::string secret = Str(Json(reader), "token");
  const std::string reader_id = Str(Json(reader), "id");
  EXPECT_TRUE(secret.starts_with("pat_")) << secret;
  EXPECT_GE(secret.size(), 4u + 43u);
  EXPECT_FALSE(Str(Json(reader), "expireTime").empty());

  auto list = Call("GET", "/v1/users/me/tokens", "", Bearer(a.tokens.access));
  ASSERT_EQ(list.status, 200) << list.body;
  EXPECT_EQ(list.body.find(secret), std::string::npos);  // never the secret again
  ASSERT_EQ(Json(list).at("tokens").as_array().size(), 1u);

  // Usable through the gateway within its scopes only.
  auto me = Call("GET", "/v1/users/me", "", Bearer(secret));
  ASSERT_EQ(me.status, 200) << me.body;
  EXPECT_EQ(Str(Json(me), "id"), a.id);
  ExpectProblem(Call("PATCH", "/v1/users/me", R"({"displayName":"x"})", Bearer(secret)), 403,
                "PERMISSION_DENIED");
  ExpectProblem(Call("POST", "/v1/collections/notes/items", R"({"data":{}})", Bearer(secret)), 403,
                "PERMISSION_DENIED");
  ExpectProblem(Call("GET", "/v1/users/me/tokens", "", Bearer(secret)), 403, "PERMISSION_DENIED");

  auto writer = create({{"name", "writer"}, {"scopes", json::array{"data:write", "data:read"}}});
  ASSERT_EQ(writer.status, 201) << writer.body;
  const std::string wsecret = Str(Json(writer), "token");
  auto item = Call("POST", "/v1/collections/notes/items", R"({"data":{"n":1}})", Bearer(wsecret));
  ASSERT_EQ(item.status, 201) << item.body;
  EXPECT_EQ(Str(Json(item), "ownerId"), a.id);

  // Revocation: a token revoked before the gateway cached it is refused at
  // once; the users service refuses it immediately (the gateway's cache
  // holds an answer at most 30 s).
  auto unused = create({{"name", "unused"}, {"scopes", json::array{"users:read"}}});
  ASSERT_EQ(unused.status, 201);
  EXPECT_EQ(
      Call("DELETE", "/v1/users/me/tokens/" + Str(Json(unused), "id"), "", Bearer(a.tokens.access))
          .status,
      204);
  ExpectProblem(Call("GET", "/v1/users/me", "", Bearer(Str(Json(unused), "token"))), 401,
                "UNAUTHENTICATED");
  EXPECT_EQ(Call("DELETE", "/v1/users/me/tokens/" + reader_id, "", Bearer(a.tokens.access)).status,
            204);
  ExpectProblem(Call("DELETE", "/v1/users/me/tokens/" + reader_id, "", Bearer(a.tokens.access)),
                404, "NOT_FOUND");
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(RunningStack().ports().users_grpc),
                                     grpc::InsecureChannelCredentials());
  auto stub = users::v1::AuthService::NewStub(channel);
  grpc::ClientContext ctx;
  users::v1::IntrospectRequest req;
  req.set_token(secret);
  users::v1::IntrospectResponse resp;
  ASSERT_TRUE(stub->Introspect(&ctx, req, &resp).ok());
  EXPECT_FALSE(resp.active());
  EXPECT_TRUE(resp.access_token().empty());
}

TEST(Users, DeletedAccountsDataIsPurgedEvenIfDataWasDown) {
  Account a = SignUp("purge");
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(
        Call("POST", "/v1/collections/notes/items", R"({"data":{"i":1}})", Bearer(a.tokens.access))
            .status,
        201);
  }
  auto count = [&] {
    auto r = Call("GET", "/v1/collections/notes/items", "", Bearer(a.tokens.access));
    if (r.status != 200) return -1;
    return static_cast<int>(Json(r).at("items").as_array().size());
  };
  ASSERT_EQ(count(), 3);
  RunningStack().StopData();
  ASSERT_EQ(Call("DELETE", "/v1/users/me", "", Bearer(a.tokens.access)).status, 204);
  RunningStack().StartData();
  // The access token still verifies at data until it expires, so it can
  // watch the owner's items disappear once the outbox is delivered.
  EXPECT_TRUE(Eventually([&] { return count() == 0; })) << RunningStack().Logs();
  EXPECT_TRUE(Eventually(
      [&] { return RunningStack().users().Log().find("\"user.purged\"") != std::string::npos; }));
}

// Runs after the tests above (GoogleTest keeps definition order unless told
// to shuffle) and checks the audit events they caused, as well as its own.
TEST(Users, AuditEventsAreLoggedAndCountedWithoutSecrets) {
  Account a = SignUp("audit");
  (void)LoginRaw(a.email, "wrong password!!");
  auto metrics = HttpRequest(RunningStack().ports().users_admin, "GET", "/metrics");
  ASSERT_EQ(metrics.status, 200);
  for (const char* event :
       {"auth.login", "auth.login_failed", "user.password_changed", "user.role_changed",
        "user.deleted", "auth.refresh_reuse", "auth.login_throttled", "user.token_created"}) {
    EXPECT_NE(
        metrics.body.find("portico_users_audit_events_total{event=\"" + std::string(event) + "\"}"),
        std::string::npos)
        << event;
    // Lines reach stdout within the flush interval (100 ms).
    EXPECT_TRUE(Eventually(
        [&] {
          return RunningStack().users().Log().find("\"event\":\"" + std::string(event) + "\"") !=
                 std::string::npos;
        },
        5))
        << event;
  }
  const std::string log = RunningStack().users().Log() + RunningStack().gateway().Log();
  EXPECT_EQ(log.find(kPassword), std::string::npos);
  EXPECT_EQ(log.find(a.tokens.refresh), std::string::npos);
  EXPECT_EQ(log.find(a.tokens.access), std::string::npos);
  EXPECT_EQ(log.find("pat_"), std::string::npos);
}

// Last: it restarts users with other keys.
TEST(Users, TokensOutliveAKeyRotation) {
  // Keys from the database instead of the file.
  RunningStack().RestartUsers({"PORTICO_JWT_KEY_FILE="});
  Account a = SignUp("rotation");
  auto me = [](const std::string& token) {
    return Call("GET", "/v1/users/me", "", Bearer(token)).status;
  };
  // The gateway learns a new kid on first sight (asynchronously).
  ASSERT_TRUE(Eventually([&] { return me(a.tokens.access) == 200; }, 15));
  const std::string old_jwks = Call("GET", "/v1/auth/jwks").body;

  // Age the current key past the (default, 30-day) rotation period: the next
  // start rotates.
  {
    auto pool = pg::Pool::Create({.url = RunningStack().users_database_url(), .size = 1});
    ASSERT_TRUE(pool.ok());
    auto lease = (*pool)->Acquire(DeadlineIn(std::chrono::seconds(10)));
    ASSERT_TRUE(lease.ok());
    ASSERT_TRUE(
        lease->Exec("UPDATE signing_keys SET create_time = create_time - interval '31 days'").ok());
  }
  RunningStack().RestartUsers({"PORTICO_JWT_KEY_FILE="});
  auto jwks = Json(Call("GET", "/v1/auth/jwks"));
  ASSERT_EQ(jwks.at("keys").as_array().size(), 2u) << json::serialize(jwks);
  const std::string old_kid =
      Str(json::parse(old_jwks).as_object().at("keys").as_array().at(0).as_object(), "kid");
  EXPECT_EQ(Str(jwks.at("keys").as_array().at(1).as_object(), "kid"), old_kid);
  // Tokens signed with the previous key still work; new ones use the new key.
  EXPECT_EQ(me(a.tokens.access), 200);
  Tokens fresh = Login(a.email);
  EXPECT_TRUE(Eventually([&] { return me(fresh.access) == 200; }, 15));
  EXPECT_EQ(RefreshRaw(a.tokens.refresh).status, 200);  // sessions survive too

  RunningStack().RestartUsers();
}

}  // namespace
}  // namespace portico::testing
