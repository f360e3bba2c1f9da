// The gateway in-process on a free port, in front of fake gRPC backends that
// return canned answers and echo what the gateway forwarded; spoken to over
// real HTTP.
#include "portico/gateway/gateway.h"

#include <functional>

#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json/parse.hpp>

#include <chrono>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "portico/api/v1/error_details.pb.h"
#include "portico/auth/jwt.h"
#include "portico/core/uuid.h"
#include "portico/data/v1/data.grpc.pb.h"
#include "portico/users/v1/users.grpc.pb.h"

namespace portico::gateway {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
namespace uv1 = portico::users::v1;
namespace dv1 = portico::data::v1;

std::string Md(grpc::ServerContext* ctx, const std::string& key) {
  auto it = ctx->client_metadata().find(key);
  return it == ctx->client_metadata().end() ? "" : std::string(it->second.data(), it->second.size());
}

// A token in the exact format the users service issues: "pat_" + 43 base64url characters.
std::string Pat(const std::string& stem) {
  std::string secret = stem;
  secret.resize(43, 'A');
  return "pat_" + secret;
}
const std::string kPatScoped = Pat("scoped");
const std::string kPatNope = Pat("nope");
const std::string kPatUnavailable = Pat("unavailable");

grpc::Status WithDetails(grpc::StatusCode code, const std::string& msg,
                         const portico::api::v1::ErrorDetails& d) {
  return grpc::Status(code, msg, d.SerializeAsString());
}

class FakeAuth final : public uv1::AuthService::Service {
 public:
  std::mutex mu;
  std::condition_variable cv;
  bool slow_started = false;  // guarded by mu
  int blocked_calls = 0;      // "block@x" logins that started, guarded by mu
  bool release_blocked = false;  // guarded by mu

  grpc::Status Register(grpc::ServerContext*, const uv1::RegisterRequest* req,
                        uv1::User* out) override {
    out->set_id("0190-user");
    out->set_email(req->email());
    out->set_display_name(req->display_name());
    out->set_role(uv1::USER);
    return grpc::Status::OK;
  }
  grpc::Status Login(grpc::ServerContext* ctx, const uv1::LoginRequest* req,
                     uv1::TokenPair* out) override {
    const std::string& email = req->email();
    portico::api::v1::ErrorDetails d;
    if (email == "slow@x") {
      {
        std::lock_guard lock(mu);
        slow_started = true;
      }
      cv.notify_all();
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
    if (email == "block@x") {
      // Held until released or cancelled by the caller. The short wait only
      // re-checks IsCancelled, which has no notification of its own.
      std::unique_lock lock(mu);
      ++blocked_calls;
      cv.notify_all();
      while (!release_blocked && !ctx->IsCancelled()) {
        cv.wait_for(lock, std::chrono::milliseconds(5));
      }
      if (!release_blocked) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    }
    if (email == "missing@x") return grpc::Status(grpc::StatusCode::NOT_FOUND, "no such account");
    if (email == "throttled@x") {
      d.set_retry_after_seconds(7);
      return WithDetails(grpc::StatusCode::RESOURCE_EXHAUSTED, "too many attempts", d);
    }
    if (email == "broken@x") {
      return grpc::Status(grpc::StatusCode::INTERNAL, "pq: password for db at 10.1.2.3 is hunter2");
    }
    if (email == "invalid@x") {
      auto* v = d.add_field_violations();
      v->set_field("password");
      v->set_description("too short");
      return WithDetails(grpc::StatusCode::INVALID_ARGUMENT, "invalid credentials format", d);
    }
    // Echo what crossed into metadata.
    out->set_access_token(Md(ctx, "x-request-id"));
    out->set_refresh_token(Md(ctx, "traceparent"));
    out->set_token_type(Md(ctx, "x-user-agent") + "|" + Md(ctx, "x-client-address") + "|" +
                        Md(ctx, "authorization") + "|" + Md(ctx, "idempotency-key"));
    out->set_expires_in(900);
    return grpc::Status::OK;
  }
  grpc::Status Logout(grpc::ServerContext*, const uv1::LogoutRequest*,
                      google::protobuf::Empty*) override {
    return grpc::Status::OK;
  }
  grpc::Status GetJwks(grpc::ServerContext*, const uv1::GetJwksRequest*, uv1::Jwks* out) override {
    auto* k = out->add_keys();
    k->set_kty("OKP");
    k->set_kid("k1");
    return grpc::Status::OK;
  }
  // Personal access tokens: pats[token] is the access token it exchanges for.
  std::map<std::string, std::string> pats;  // guarded by mu
  int introspections = 0;                    // guarded by mu
  grpc::Status Introspect(grpc::ServerContext*, const uv1::IntrospectRequest* req,
                          uv1::IntrospectResponse* out) override {
    std::lock_guard lock(mu);
    ++introspections;
    if (req->token() == kPatUnavailable) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "users is down");
    }
    auto it = pats.find(req->token());
    if (it == pats.end()) return grpc::Status::OK;  // inactive
    out->set_active(true);
    out->set_subject("user-1");
    out->set_access_token(it->second);
    out->set_access_token_expires_in(300);
    return grpc::Status::OK;
  }
};

class FakeUsers final : public uv1::UserService::Service {
 public:
  std::mutex mu;
  std::string last_authorization;  // of the last GetMe, guarded by mu
  grpc::Status GetMe(grpc::ServerContext* ctx, const uv1::GetMeRequest*, uv1::User* out) override {
    out->set_id("me");
    out->set_display_name(Md(ctx, "authorization").substr(0, 7));
    std::lock_guard lock(mu);
    last_authorization = Md(ctx, "authorization");
    return grpc::Status::OK;
  }
  grpc::Status ListUsers(grpc::ServerContext*, const uv1::ListUsersRequest* req,
                         uv1::ListUsersResponse* out) override {
    out->add_users()->set_email(req->email_prefix() + "@x");
    out->set_next_page_token(std::to_string(req->page_size()));
    return grpc::Status::OK;
  }
  grpc::Status GetUser(grpc::ServerContext*, const uv1::GetUserRequest* req,
                       uv1::User* out) override {
    if (req->id() == "other") return grpc::Status(grpc::StatusCode::NOT_FOUND, "no such user");
    out->set_id(req->id());
    return grpc::Status::OK;
  }
};

class FakeData final : public dv1::DataService::Service {
 public:
  grpc::Status CreateItem(grpc::ServerContext* ctx, const dv1::CreateItemRequest* req,
                          dv1::Item* out) override {
    out->set_id("item-1");
    out->set_collection(req->collection());
    *out->mutable_data() = req->data();
    out->set_version(1);
    ctx->AddInitialMetadata("etag", "\"1\"");
    ctx->AddInitialMetadata("location", "/v1/collections/" + req->collection() + "/items/item-1");
    return grpc::Status::OK;
  }
  grpc::Status GetItem(grpc::ServerContext* ctx, const dv1::GetItemRequest* req,
                       dv1::Item* out) override {
    if (req->id() == "missing") return grpc::Status(grpc::StatusCode::NOT_FOUND, "no such item");
    ctx->AddInitialMetadata("etag", "\"3\"");
    if (Md(ctx, "if-none-match") == "\"3\"") {
      ctx->AddInitialMetadata("x-http-status", "304");
      return grpc::Status::OK;
    }
    out->set_id(req->id());
    out->set_collection(req->collection());
    out->set_version(3);
    return grpc::Status::OK;
  }
  grpc::Status ReplaceItem(grpc::ServerContext* ctx, const dv1::ReplaceItemRequest* req,
                           dv1::Item* out) override {
    if (Md(ctx, "if-match") != "\"3\"") {
      portico::api::v1::ErrorDetails d;
      d.set_reason("VERSION_MISMATCH");
      return WithDetails(grpc::StatusCode::FAILED_PRECONDITION, "the item has changed", d);
    }
    out->set_id(req->id());
    return grpc::Status::OK;
  }
  grpc::Status DeleteItem(grpc::ServerContext*, const dv1::DeleteItemRequest*,
                          google::protobuf::Empty*) override {
    return grpc::Status::OK;
  }
  grpc::Status ListItems(grpc::ServerContext*, const dv1::ListItemsRequest* req,
                         dv1::ListItemsResponse* out) override {
    out->set_next_page_token(req->collection() + "|" + std::to_string(req->page_size()) + "|" +
                             req->order_by());
    return grpc::Status::OK;
  }
};

struct Response {
  int status = 0;
  http::response<http::string_body> raw;
  std::string Header(std::string_view name) const { return std::string(raw[name]); }
  boost::json::object Json() const { return boost::json::parse(raw.body()).as_object(); }
};

class Connection {
 public:
  explicit Connection(std::uint16_t port) : stream_(ioc_) {
    stream_.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
  }
  Response Send(http::request<http::string_body> req) {
    req.prepare_payload();
    http::write(stream_, req);
    return Read();
  }
  Response Read() {
    Response r;
    http::read(stream_, buffer_, r.raw);
    r.status = static_cast<int>(r.raw.result_int());
    return r;
  }
  // As Read; status 0 if the connection ended first.
  Response TryRead() {
    Response r;
    beast::error_code ec;
    http::read(stream_, buffer_, r.raw, ec);
    if (!ec) r.status = static_cast<int>(r.raw.result_int());
    return r;
  }
  void WriteRaw(const std::string& bytes) { net::write(stream_.socket(), net::buffer(bytes)); }
  // True if the server closed the connection (EOF on the next read).
  bool ClosedByPeer() {
    beast::error_code ec;
    char c;
    stream_.expires_after(std::chrono::seconds(5));
    stream_.read_some(net::buffer(&c, 1), ec);
    return ec == net::error::eof || ec == net::error::connection_reset;
  }

 private:
  net::io_context ioc_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
};

http::request<http::string_body> Req(http::verb verb, std::string target, std::string body = "",
                                     std::string token = "") {
  http::request<http::string_body> req{verb, target, 11};
  req.set(http::field::host, "localhost");
  if (!body.empty()) req.set(http::field::content_type, "application/json");
  if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
  req.body() = std::move(body);
  return req;
}

class GatewayTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &backend_port_);
    builder.RegisterService(&auth_);
    builder.RegisterService(&users_);
    builder.RegisterService(&data_);
    backend_ = builder.BuildAndStart().release();
    ASSERT_NE(backend_port_, 0);

    key_ = new auth::SigningKey(auth::GenerateSigningKey());
    keys_ = new std::shared_ptr<auth::KeySet>(std::make_shared<auth::KeySet>());
    (*keys_)->Replace({{key_->kid, key_->public_key}});

    GatewayOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    options.max_body_size = 1024;
    options.max_header_size = 8 * 1024;
    const std::string target = "127.0.0.1:" + std::to_string(backend_port_);
    options.upstreams = {{"portico.users.v1.", target}, {"portico.data.v1.", target}};
    auto gw = Gateway::Create(options, *keys_);
    ASSERT_TRUE(gw.ok()) << gw.error().message;
    gateway_ = std::move(gw).value().release();
    ASSERT_TRUE(gateway_->Start().ok());
    ASSERT_NE(gateway_->port(), 0);
  }

  static void TearDownTestSuite() {
    gateway_->Shutdown(std::chrono::seconds(1));
    delete gateway_;
    backend_->Shutdown();
    delete backend_;
    delete keys_;
    delete key_;
  }

  static std::string Token(const std::string& role, const std::string& kid = "",
                           std::vector<std::string> scopes = {}) {
    auth::Claims c;
    c.iss = "portico";
    c.aud = "portico-api";
    c.sub = "user-1";
    c.role = role;
    c.iat = std::chrono::duration_cast<std::chrono::seconds>(
                std::chrono::system_clock::now().time_since_epoch())
                .count();
    c.exp = c.iat + 600;
    c.jti = "j1";
    c.scopes = std::move(scopes);
    auth::SigningKey key = *key_;
    if (!kid.empty()) key.kid = kid;
    return auth::Sign(c, key);
  }

  Response Send(http::request<http::string_body> req) {
    Connection c(gateway_->port());
    return c.Send(std::move(req));
  }

  static void ExpectProblem(const Response& r, int status, const std::string& code) {
    EXPECT_EQ(r.status, status) << r.raw.body();
    EXPECT_EQ(r.Header("Content-Type"), "application/problem+json");
    auto j = r.Json();
    EXPECT_EQ(j.at("status").as_int64(), status);
    EXPECT_EQ(j.at("code").as_string(), code);
    EXPECT_EQ(j.at("requestId").as_string(), r.Header("X-Request-Id"));
    EXPECT_TRUE(j.contains("type") && j.contains("title") && j.contains("detail"));
  }

  static std::unique_ptr<Gateway> NewGateway(
      const std::function<void(GatewayOptions&)>& adjust = nullptr) {
    GatewayOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    options.upstreams = {{"portico.", "127.0.0.1:" + std::to_string(backend_port_)}};
    if (adjust) adjust(options);
    auto gw = Gateway::Create(options, *keys_);
    if (!gw.ok()) ADD_FAILURE() << gw.error().message;
    if (!gw.ok()) return nullptr;
    if (!(*gw)->Start().ok()) ADD_FAILURE() << "cannot start";
    return std::move(gw).value();
  }

  static inline int backend_port_ = 0;
  static inline FakeAuth auth_;
  static inline FakeUsers users_;
  static inline FakeData data_;
  static inline grpc::Server* backend_ = nullptr;
  static inline auth::SigningKey* key_ = nullptr;
  static inline std::shared_ptr<auth::KeySet>* keys_ = nullptr;
  static inline Gateway* gateway_ = nullptr;
};

TEST_F(GatewayTest, CreatedWithJsonBodyAndStandardHeaders) {
  auto r = Send(Req(http::verb::post, "/v1/auth/register",
                    R"({"email":"a@b.c","password":"pw","display_name":"Ann"})"));
  ASSERT_EQ(r.status, 201) << r.raw.body();
  EXPECT_EQ(r.Header("Content-Type"), "application/json");
  EXPECT_EQ(r.Header("X-Content-Type-Options"), "nosniff");
  EXPECT_EQ(r.Header("Cache-Control"), "no-store");
  EXPECT_TRUE(IsUuid(r.Header("X-Request-Id"))) << r.Header("X-Request-Id");
  auto j = r.Json();
  EXPECT_EQ(j.at("email").as_string(), "a@b.c");
  EXPECT_EQ(j.at("displayName").as_string(), "Ann");
  EXPECT_EQ(j.at("role").as_string(), "USER");
  EXPECT_EQ(j.at("disabled").as_bool(), false);  // defaults are printed
}

TEST_F(GatewayTest, EmptyResponseIs204WithoutBody) {
  auto r = Send(Req(http::verb::post, "/v1/auth/logout", R"({"refreshToken":"x"})"));
  EXPECT_EQ(r.status, 204);
  EXPECT_TRUE(r.raw.body().empty());
  EXPECT_EQ(r.Header("Content-Type"), "");
}

TEST_F(GatewayTest, AdditionalBinding) {
  auto r = Send(Req(http::verb::get, "/.well-known/jwks.json"));
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.Json().at("keys").as_array().at(0).as_object().at("kid").as_string(), "k1");
}

TEST_F(GatewayTest, ForwardsAllowlistedMetadata) {
  auto req = Req(http::verb::post, "/v1/auth/login", R"({"email":"a@x","password":"p"})");
  req.set("X-Request-Id", "client-id_1.2");
  req.set(http::field::user_agent, "portico-test/1.0");
  req.set("Idempotency-Key", "idem-1");
  req.set(http::field::authorization, "Bearer whatever");
  req.set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
  auto r = Send(std::move(req));
  ASSERT_EQ(r.status, 200) << r.raw.body();
  EXPECT_EQ(r.Header("X-Request-Id"), "client-id_1.2");
  auto j = r.Json();
  EXPECT_EQ(j.at("accessToken").as_string(), "client-id_1.2");
  EXPECT_EQ(j.at("tokenType").as_string(),
            "portico-test/1.0|127.0.0.1|Bearer whatever|idem-1");
  const std::string tp(j.at("refreshToken").as_string());
  ASSERT_EQ(tp.size(), 55u) << tp;
  EXPECT_EQ(tp.substr(0, 36), "00-0af7651916cd43dd8448eb211c80319c-");  // same trace
  EXPECT_NE(tp.substr(36, 16), "b7ad6b7169203331");                   // new span
  EXPECT_EQ(tp.substr(52), "-01");                                    // same flags
  EXPECT_EQ(j.at("expiresIn").as_int64(), 900);
}

TEST_F(GatewayTest, StartsATraceAndReplacesAnInsaneRequestId) {
  auto req = Req(http::verb::post, "/v1/auth/login", R"({"email":"a@x"})");
  req.set("X-Request-Id", "has space");
  req.set("traceparent", "garbage");
  auto r = Send(std::move(req));
  ASSERT_EQ(r.status, 200);
  EXPECT_TRUE(IsUuid(r.Header("X-Request-Id")));
  auto j = r.Json();
  EXPECT_EQ(j.at("accessToken").as_string(), r.Header("X-Request-Id"));
  const std::string tp(j.at("refreshToken").as_string());
  EXPECT_EQ(tp.size(), 55u);
  EXPECT_EQ(tp.substr(0, 3), "00-");
}

TEST_F(GatewayTest, TraceparentOfAnotherVersionStartsANewTrace) {
  auto login = [&](const std::string& traceparent) {
    auto req = Req(http::verb::post, "/v1/auth/login", R"({"email":"a@x"})");
    req.set("traceparent", traceparent);
    auto r = Send(std::move(req));
    EXPECT_EQ(r.status, 200) << r.raw.body();
    return std::string(r.Json().at("refreshToken").as_string());
  };
  const std::string kept = login("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03");
  EXPECT_EQ(kept.substr(0, 36), "00-0af7651916cd43dd8448eb211c80319c-");
  EXPECT_EQ(kept.substr(52), "-03");

  const std::string fresh = login("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
  ASSERT_EQ(fresh.size(), 55u) << fresh;
  EXPECT_EQ(fresh.substr(0, 3), "00-");
  EXPECT_NE(fresh.substr(3, 32), "0af7651916cd43dd8448eb211c80319c");
  EXPECT_EQ(fresh.substr(52), "-00");
}

TEST_F(GatewayTest, BackendStatusesBecomeProblems) {
  auto login = [&](const std::string& email) {
    return Send(Req(http::verb::post, "/v1/auth/login", R"({"email":")" + email + R"("})"));
  };
  auto missing = login("missing@x");
  ExpectProblem(missing, 404, "NOT_FOUND");
  EXPECT_EQ(missing.Json().at("detail").as_string(), "no such account");

  auto throttled = login("throttled@x");
  ExpectProblem(throttled, 429, "RESOURCE_EXHAUSTED");
  EXPECT_EQ(throttled.Header("Retry-After"), "7");

  auto broken = login("broken@x");
  ExpectProblem(broken, 500, "INTERNAL");
  EXPECT_EQ(broken.raw.body().find("hunter2"), std::string::npos);
  EXPECT_EQ(broken.raw.body().find("10.1.2.3"), std::string::npos);

  auto invalid = login("invalid@x");
  ExpectProblem(invalid, 400, "INVALID_ARGUMENT");
  auto errors = invalid.Json().at("errors").as_array();
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].as_object().at("field").as_string(), "password");
  EXPECT_EQ(errors[0].as_object().at("message").as_string(), "too short");
}

TEST_F(GatewayTest, PathAndQueryFillRequestFields) {
  auto r = Send(Req(http::verb::get, "/v1/collections/notes/items?pageSize=5&order_by=name+desc",
                    "", Token("USER")));
  ASSERT_EQ(r.status, 200) << r.raw.body();
  EXPECT_EQ(r.Json().at("nextPageToken").as_string(), "notes|5|name desc");
}

TEST_F(GatewayTest, BadRequests) {
  ExpectProblem(Send(Req(http::verb::get, "/v1/collections/notes/items?bogus=1", "", Token("USER"))),
                400, "INVALID_ARGUMENT");
  ExpectProblem(Send(Req(http::verb::get, "/v1/collections/notes/items?pageSize=many", "",
                         Token("USER"))),
                400, "INVALID_ARGUMENT");
  ExpectProblem(Send(Req(http::verb::post, "/v1/auth/register", R"({"email":)")), 400,
                "INVALID_ARGUMENT");
  ExpectProblem(Send(Req(http::verb::post, "/v1/auth/register", R"({"unknownField":1})")), 400,
                "INVALID_ARGUMENT");
  auto text = Req(http::verb::post, "/v1/auth/register", R"({"email":"a"})");
  text.set(http::field::content_type, "text/plain");
  ExpectProblem(Send(std::move(text)), 415, "INVALID_ARGUMENT");
  auto merge = Req(http::verb::post, "/v1/auth/register", R"({"email":"a"})");
  merge.set(http::field::content_type, "application/merge-patch+json; charset=utf-8");
  EXPECT_EQ(Send(std::move(merge)).status, 201);
}

TEST_F(GatewayTest, BodyTooLarge) {
  const std::string big = R"({"email":")" + std::string(2000, 'a') + R"("})";
  Connection c(gateway_->port());
  auto r = c.Send(Req(http::verb::post, "/v1/auth/register", big));
  ExpectProblem(r, 413, "RESOURCE_EXHAUSTED");
  EXPECT_TRUE(c.ClosedByPeer());
}

TEST_F(GatewayTest, HeaderTooLarge) {
  auto req = Req(http::verb::get, "/v1/auth/jwks");
  req.set("X-Padding", std::string(10 * 1024, 'p'));
  auto r = Send(std::move(req));
  ExpectProblem(r, 431, "RESOURCE_EXHAUSTED");
}

TEST_F(GatewayTest, UnknownPathAndWrongMethod) {
  auto unknown = Send(Req(http::verb::get, "/v1/nothing/here"));
  ExpectProblem(unknown, 404, "NOT_FOUND");
  auto wrong = Send(Req(http::verb::put, "/v1/users/me", "", Token("USER")));
  ExpectProblem(wrong, 405, "UNIMPLEMENTED");
  EXPECT_EQ(wrong.Header("Allow"), "DELETE, GET, PATCH");
}

TEST_F(GatewayTest, AuthenticationAndRoles) {
  auto none = Send(Req(http::verb::get, "/v1/users/me"));
  ExpectProblem(none, 401, "UNAUTHENTICATED");
  EXPECT_EQ(none.Header("WWW-Authenticate"), "Bearer");

  auto bad = Send(Req(http::verb::get, "/v1/users/me", "", "not.a.jwt"));
  ExpectProblem(bad, 401, "UNAUTHENTICATED");
  EXPECT_EQ(bad.Header("WWW-Authenticate"), "Bearer error=\"invalid_token\"");

  auto unknown_key = Send(Req(http::verb::get, "/v1/users/me", "", Token("USER", "other-kid")));
  ExpectProblem(unknown_key, 401, "UNAUTHENTICATED");

  auto pat = Send(Req(http::verb::get, "/v1/users/me", "", "pat_abcdef"));
  ExpectProblem(pat, 401, "UNAUTHENTICATED");
  EXPECT_EQ(pat.Header("WWW-Authenticate"), "Bearer error=\"invalid_token\"");

  auto basic = Req(http::verb::get, "/v1/users/me");
  basic.set(http::field::authorization, "Basic dXNlcjpwdw==");
  ExpectProblem(Send(std::move(basic)), 401, "UNAUTHENTICATED");

  auto me = Send(Req(http::verb::get, "/v1/users/me", "", Token("USER")));
  ASSERT_EQ(me.status, 200) << me.raw.body();
  EXPECT_EQ(me.Json().at("displayName").as_string(), "Bearer ");  // token forwarded

  ExpectProblem(Send(Req(http::verb::get, "/v1/users?pageSize=3", "", Token("USER"))), 403,
                "PERMISSION_DENIED");
  auto admin = Send(Req(http::verb::get, "/v1/users?pageSize=3&emailPrefix=ad", "", Token("ADMIN")));
  ASSERT_EQ(admin.status, 200) << admin.raw.body();
  EXPECT_EQ(admin.Json().at("nextPageToken").as_string(), "3");
  EXPECT_EQ(admin.Json().at("users").as_array().at(0).as_object().at("email").as_string(), "ad@x");
}

TEST_F(GatewayTest, ScopedTokensReachOnlyRoutesAcceptingOneOfTheirScopes) {
  const std::string read = Token("USER", "", {"data:read"});
  auto list = Send(Req(http::verb::get, "/v1/collections/notes/items?pageSize=2", "", read));
  ASSERT_EQ(list.status, 200) << list.raw.body();
  EXPECT_EQ(list.Json().at("nextPageToken").as_string(), "notes|2|");

  auto create = Send(Req(http::verb::post, "/v1/collections/notes/items", R"({"data":{}})", read));
  ExpectProblem(create, 403, "PERMISSION_DENIED");
  EXPECT_EQ(create.Json().at("detail").as_string(), "this token lacks the scope data:write");

  auto me = Send(Req(http::verb::get, "/v1/users/me", "", read));
  ExpectProblem(me, 403, "PERMISSION_DENIED");
  EXPECT_EQ(me.Json().at("detail").as_string(), "this token lacks the scope users:read");

  // Routes without scopes take full access tokens only.
  auto tokens = Send(Req(http::verb::get, "/v1/users/me/tokens", "", read));
  ExpectProblem(tokens, 403, "PERMISSION_DENIED");
  EXPECT_EQ(tokens.Json().at("detail").as_string(), "this endpoint does not accept scoped tokens");

  const std::string both = Token("USER", "", {"data:write", "users:read"});
  auto me_ok = Send(Req(http::verb::get, "/v1/users/me", "", both));
  ASSERT_EQ(me_ok.status, 200) << me_ok.raw.body();
  EXPECT_EQ(me_ok.Json().at("id").as_string(), "me");
  EXPECT_EQ(Send(Req(http::verb::post, "/v1/collections/notes/items", R"({"data":{}})", both))
                .status,
            201);

  // A token without scopes is a full access token.
  EXPECT_EQ(Send(Req(http::verb::post, "/v1/collections/notes/items", R"({"data":{}})",
                     Token("USER")))
                .status,
            201);
}

TEST_F(GatewayTest, ResponseMetadataBecomesHeaders) {
  auto created = Send(Req(http::verb::post, "/v1/collections/notes/items",
                          R"({"data":{"title":"t"}})", Token("USER")));
  ASSERT_EQ(created.status, 201) << created.raw.body();
  EXPECT_EQ(created.Header("ETag"), "\"1\"");
  EXPECT_EQ(created.Header("Location"), "/v1/collections/notes/items/item-1");
  auto j = created.Json();
  EXPECT_EQ(j.at("collection").as_string(), "notes");
  EXPECT_EQ(j.at("version").as_string(), "1");
  EXPECT_EQ(j.at("data").as_object().at("title").as_string(), "t");

  auto get = Send(Req(http::verb::get, "/v1/collections/notes/items/i1", "", Token("USER")));
  ASSERT_EQ(get.status, 200);
  EXPECT_EQ(get.Header("ETag"), "\"3\"");

  auto cond = Req(http::verb::get, "/v1/collections/notes/items/i1", "", Token("USER"));
  cond.set(http::field::if_none_match, "\"3\"");
  auto not_modified = Send(std::move(cond));
  EXPECT_EQ(not_modified.status, 304);
  EXPECT_TRUE(not_modified.raw.body().empty());
  EXPECT_EQ(not_modified.Header("ETag"), "\"3\"");

  auto put = Req(http::verb::put, "/v1/collections/notes/items/i1", R"({"data":{}})", Token("USER"));
  put.set(http::field::if_match, "\"2\"");
  ExpectProblem(Send(std::move(put)), 412, "FAILED_PRECONDITION");

  ExpectProblem(Send(Req(http::verb::get, "/v1/collections/notes/items/missing", "", Token("USER"))),
                404, "NOT_FOUND");
  auto del = Send(Req(http::verb::delete_, "/v1/collections/notes/items/i1", "", Token("USER")));
  EXPECT_EQ(del.status, 204);
}

// The fake data service does not implement WatchChanges: its status comes
// before the stream opens, so it is an ordinary problem.
TEST_F(GatewayTest, AStreamTheBackendDoesNotImplementIsAPlain501) {
  ExpectProblem(
      Send(Req(http::verb::get, "/v1/collections/notes/changes:watch", "", Token("USER"))), 501,
      "UNIMPLEMENTED");
}

TEST_F(GatewayTest, KeepAliveServesManyRequestsOnOneConnection) {
  Connection c(gateway_->port());
  for (int i = 0; i < 3; ++i) {
    auto r = c.Send(Req(http::verb::get, "/v1/auth/jwks"));
    EXPECT_EQ(r.status, 200);
    EXPECT_TRUE(r.raw.keep_alive());
  }
  // Errors the gateway answers itself keep the connection too.
  EXPECT_EQ(c.Send(Req(http::verb::get, "/nope")).status, 404);
  EXPECT_EQ(c.Send(Req(http::verb::get, "/v1/auth/jwks")).status, 200);
}

TEST_F(GatewayTest, PipelinedRequestsAreAnsweredInOrder) {
  Connection c(gateway_->port());
  c.WriteRaw(
      "GET /v1/auth/jwks HTTP/1.1\r\nHost: x\r\nX-Request-Id: first\r\n\r\n"
      "GET /nope HTTP/1.1\r\nHost: x\r\nX-Request-Id: second\r\n\r\n");
  auto first = c.Read();
  auto second = c.Read();
  EXPECT_EQ(first.status, 200);
  EXPECT_EQ(first.Header("X-Request-Id"), "first");
  EXPECT_EQ(second.status, 404);
  EXPECT_EQ(second.Header("X-Request-Id"), "second");
}

TEST_F(GatewayTest, Http10ClosesUnlessKeepAlive) {
  Connection c(gateway_->port());
  c.WriteRaw("GET /v1/auth/jwks HTTP/1.0\r\n\r\n");
  auto r = c.Read();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.raw.version(), 10u);
  EXPECT_TRUE(c.ClosedByPeer());
}

TEST_F(GatewayTest, MalformedRequestIs400AndCloses) {
  Connection c(gateway_->port());
  c.WriteRaw("GET /v1/auth/jwks HTTP/1.1\r\nBad Header\r\n\r\n");
  auto r = c.Read();
  ExpectProblem(r, 400, "INVALID_ARGUMENT");
  EXPECT_TRUE(c.ClosedByPeer());
}

TEST_F(GatewayTest, ShutdownFinishesInFlightRequestsAndRefusesNewOnes) {
  {
    std::lock_guard lock(auth_.mu);
    auth_.slow_started = false;
  }
  GatewayOptions options;
  options.host = "127.0.0.1";
  options.port = 0;
  const std::string target = "127.0.0.1:" + std::to_string(backend_port_);
  options.upstreams = {{"portico.", target}};
  auto gw = Gateway::Create(options, *keys_);
  ASSERT_TRUE(gw.ok()) << gw.error().message;
  ASSERT_TRUE((*gw)->Start().ok());
  const auto port = (*gw)->port();

  Connection idle(port);  // an idle keep-alive connection must not hold shutdown up
  Connection busy(port);
  busy.WriteRaw(
      "POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
      "Content-Length: 18\r\n\r\n{\"email\":\"slow@x\"}");
  {
    std::unique_lock lock(auth_.mu);
    ASSERT_TRUE(auth_.cv.wait_for(lock, std::chrono::seconds(10), [] { return auth_.slow_started; }));
  }
  auto reply = std::async(std::launch::async, [&] { return busy.Read(); });
  const auto start = std::chrono::steady_clock::now();
  (*gw)->Shutdown(std::chrono::seconds(5));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(4));
  auto r = reply.get();
  EXPECT_EQ(r.status, 200) << r.raw.body();
  EXPECT_FALSE(r.raw.keep_alive());
  EXPECT_TRUE(idle.ClosedByPeer());
  boost::system::error_code ec;
  net::io_context ioc;
  tcp::socket s(ioc);
  s.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port), ec);
  EXPECT_TRUE(ec) << "still accepting after shutdown";
}

TEST_F(GatewayTest, NoBackendCallStartsOnceShutdownBegan) {
  auto gw = NewGateway();
  ASSERT_NE(gw, nullptr);
  const auto port = gw->port();
  Connection idle(port);
  Connection c(port);
  // The request's header is in (the server asked for the body), so the
  // connection is busy and survives the start of the shutdown.
  c.WriteRaw(
      "POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
      "Expect: 100-continue\r\nContent-Length: 15\r\n\r\n");
  ASSERT_EQ(c.Read().status, 100);
  auto shutdown = std::async(std::launch::async, [&] { gw->Shutdown(std::chrono::seconds(10)); });
  // Idle connections are closed only after the gateway stopped calling backends.
  EXPECT_TRUE(idle.ClosedByPeer());
  c.WriteRaw(R"({"email":"a@x"})");
  auto r = c.Read();
  ExpectProblem(r, 503, "UNAVAILABLE");
  EXPECT_EQ(r.Header("Retry-After"), "1");
  EXPECT_FALSE(r.raw.keep_alive());
  shutdown.get();
}

TEST_F(GatewayTest, ShutdownWaitsForEveryBackendCallBeforeTheGatewayGoes) {
  {
    std::lock_guard lock(auth_.mu);
    auth_.blocked_calls = 0;
    auth_.release_blocked = false;
  }
  // Even rounds: the backend never answers, shutdown must cancel the call.
  // Odd rounds: the backend answers while the gateway shuts down. Either
  // way the gateway is destroyed right after Shutdown returns.
  for (int round = 0; round < 6; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    auto gw = NewGateway();
    ASSERT_NE(gw, nullptr);
    Connection c(gw->port());
    c.WriteRaw(
        "POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 19\r\n\r\n{\"email\":\"block@x\"}");
    {
      std::unique_lock lock(auth_.mu);
      ASSERT_TRUE(auth_.cv.wait_for(lock, std::chrono::seconds(10),
                                    [&] { return auth_.blocked_calls == round + 1; }));
    }
    const bool release = round % 2 == 1;
    std::thread releaser;
    if (release) {
      releaser = std::thread([] {
        std::lock_guard lock(auth_.mu);
        auth_.release_blocked = true;
        auth_.cv.notify_all();
      });
    }
    gw->Shutdown(std::chrono::milliseconds(0));
    gw.reset();
    if (releaser.joinable()) releaser.join();
    auto r = c.TryRead();
    if (release) {
      EXPECT_TRUE(r.status == 200 || r.status == 499 || r.status == 0) << r.status;
    } else {
      ExpectProblem(r, 499, "CANCELLED");
    }
    std::lock_guard lock(auth_.mu);
    auth_.release_blocked = false;
  }
  std::lock_guard lock(auth_.mu);
  auth_.release_blocked = true;
  auth_.cv.notify_all();
}

TEST_F(GatewayTest, UpstreamHealthChecks) {
  // The fake server registers no health service: the check must say so
  // rather than claim health.
  auto checks = gateway_->CheckUpstreams(std::chrono::seconds(2));
  ASSERT_EQ(checks.size(), 1u);
  EXPECT_FALSE(checks[0].ok);
}

}  // namespace
TEST_F(GatewayTest, PersonalAccessTokensAreExchangedCachedAndScoped) {
  const std::string exchanged = Token("USER", "", {"users:read"});
  {
    std::lock_guard lock(auth_.mu);
    auth_.pats[kPatScoped] = exchanged;
    auth_.introspections = 0;
  }
  auto me = Send(Req(http::verb::get, "/v1/users/me", "", kPatScoped));
  ASSERT_EQ(me.status, 200) << me.raw.body();
  {
    // The backend sees the exchanged access token, never the secret.
    std::lock_guard lock(users_.mu);
    EXPECT_EQ(users_.last_authorization, "Bearer " + exchanged);
  }
  // A scope the token lacks: 403, decided from the cached answer.
  auto create = Send(Req(http::verb::post, "/v1/collections/notes/items", R"({"data":{}})",
                         kPatScoped));
  ExpectProblem(create, 403, "PERMISSION_DENIED");
  ASSERT_EQ(Send(Req(http::verb::get, "/v1/users/me", "", kPatScoped)).status, 200);
  {
    std::lock_guard lock(auth_.mu);
    EXPECT_EQ(auth_.introspections, 1);  // cached
  }
  // Unknown tokens are cached as inactive too.
  ExpectProblem(Send(Req(http::verb::get, "/v1/users/me", "", kPatNope)), 401,
                "UNAUTHENTICATED");
  ExpectProblem(Send(Req(http::verb::get, "/v1/users/me", "", kPatNope)), 401,
                "UNAUTHENTICATED");
  {
    std::lock_guard lock(auth_.mu);
    EXPECT_EQ(auth_.introspections, 2);
  }
  // When the users service cannot answer, the request is 503 (and nothing is cached).
  auto down = Send(Req(http::verb::get, "/v1/users/me", "", kPatUnavailable));
  ExpectProblem(down, 503, "UNAVAILABLE");
  EXPECT_EQ(down.Header("Retry-After"), "1");
  ExpectProblem(Send(Req(http::verb::get, "/v1/users/me", "", kPatUnavailable)), 503,
                "UNAVAILABLE");
  std::lock_guard lock(auth_.mu);
  EXPECT_EQ(auth_.introspections, 4);
}

TEST_F(GatewayTest, MalformedPersonalAccessTokensAreRefusedWithoutIntrospection) {
  {
    std::lock_guard lock(auth_.mu);
    auth_.introspections = 0;
  }
  const std::string well_formed = Pat("x");
  for (const std::string& bad :
       {std::string("pat_"), std::string("pat_abcdef"), well_formed.substr(0, 46),
        well_formed + "A", well_formed.substr(0, 46) + "=", well_formed.substr(0, 46) + "+",
        well_formed.substr(0, 46) + "."}) {
    auto r = Send(Req(http::verb::get, "/v1/users/me", "", bad));
    ExpectProblem(r, 401, "UNAUTHENTICATED");
    EXPECT_EQ(r.Header("WWW-Authenticate"), "Bearer error=\"invalid_token\"") << bad;
  }
  {
    std::lock_guard lock(auth_.mu);
    EXPECT_EQ(auth_.introspections, 0);
  }
  // The exact format reaches the users service (and is unknown there).
  ExpectProblem(Send(Req(http::verb::get, "/v1/users/me", "", well_formed)), 401,
                "UNAUTHENTICATED");
  std::lock_guard lock(auth_.mu);
  EXPECT_EQ(auth_.introspections, 1);
}

TEST_F(GatewayTest, AFloodOfUnknownPersonalAccessTokensDoesNotEvictValidOnes) {
  // A small cache, kept long: the flood, not the clock, decides what stays.
  auto gw = NewGateway([](GatewayOptions& o) {
    o.pat_cache_size = 100;
    o.pat_cache_ttl = std::chrono::hours(1);
  });
  ASSERT_NE(gw, nullptr);
  const std::string valid = Pat("valid");
  {
    std::lock_guard lock(auth_.mu);
    auth_.pats[valid] = Token("USER", "", {"users:read"});
    auth_.introspections = 0;
  }
  Connection c(gw->port());
  ASSERT_EQ(c.Send(Req(http::verb::get, "/v1/users/me", "", valid)).status, 200);
  // More unknown tokens than the cache holds: the negative entries make way
  // for each other, never for the valid token's entry.
  constexpr int kFlood = 250;
  for (int i = 0; i < kFlood; ++i) {
    auto r = c.Send(Req(http::verb::get, "/v1/users/me", "", Pat("flood" + std::to_string(i))));
    ASSERT_EQ(r.status, 401) << i;
  }
  ASSERT_EQ(c.Send(Req(http::verb::get, "/v1/users/me", "", valid)).status, 200);
  std::lock_guard lock(auth_.mu);
  EXPECT_EQ(auth_.introspections, 1 + kFlood);  // the valid token was still cached
}

}  // namespace portico::gateway
