// portico::rpc: the Error <-> grpc::Status table, and the per-call plumbing
// (metadata, trace context, authentication, exceptions, health, metrics)
// through a real in-process gRPC server.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <condition_variable>
#include <future>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "portico/admin/metrics.h"
#include "portico/api/v1/error_details.pb.h"
#include "portico/auth/jwt.h"
#include "portico/log/log.h"
#include "portico/rpc/call.h"
#include "portico/rpc/executor.h"
#include "portico/rpc/server.h"
#include "portico/rpc/status.h"
#include "portico/users/v1/users.grpc.pb.h"

namespace portico::rpc {
namespace {

TEST(Status, EveryCodeRoundTrips) {
  for (ErrorCode code :
       {ErrorCode::kInvalidArgument, ErrorCode::kNotFound, ErrorCode::kAlreadyExists,
        ErrorCode::kVersionMismatch, ErrorCode::kFailedPrecondition, ErrorCode::kUnauthenticated,
        ErrorCode::kPermissionDenied, ErrorCode::kResourceExhausted, ErrorCode::kUnavailable,
        ErrorCode::kDeadlineExceeded, ErrorCode::kUnimplemented, ErrorCode::kInternal}) {
    Error e{code, "why", {}};
    EXPECT_EQ(FromGrpcStatus(ToGrpcStatus(e)).code, code) << ErrorCodeName(code);
  }
}

TEST(Status, VersionMismatchAndFieldsTravelInDetails) {
  grpc::Status s = ToGrpcStatus(Error{ErrorCode::kVersionMismatch, "stale", {}});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  api::v1::ErrorDetails details;
  ASSERT_TRUE(details.ParseFromString(s.error_details()));
  EXPECT_EQ(details.reason(), "VERSION_MISMATCH");

  grpc::Status v = ToGrpcStatus(Error::InvalidArgument("bad", {{"email", "required"}}));
  EXPECT_EQ(v.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  Error back = FromGrpcStatus(v);
  ASSERT_EQ(back.fields.size(), 1u);
  EXPECT_EQ(back.fields[0], (FieldViolation{"email", "required"}));
  EXPECT_TRUE(ToGrpcStatus(Status()).ok());
}

TEST(Status, ReasonAndRetryAfterTravelInDetails) {
  Error gone{ErrorCode::kFailedPrecondition, "too old", {}, "SINCE_TOO_OLD"};
  grpc::Status s = ToGrpcStatus(gone);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  Error back = FromGrpcStatus(s);
  EXPECT_EQ(back.code, ErrorCode::kFailedPrecondition);
  EXPECT_EQ(back.reason, "SINCE_TOO_OLD");

  Error busy{ErrorCode::kResourceExhausted, "slow down", {}, {}, 42};
  api::v1::ErrorDetails details;
  ASSERT_TRUE(details.ParseFromString(ToGrpcStatus(busy).error_details()));
  EXPECT_EQ(details.retry_after_seconds(), 42);
  EXPECT_EQ(FromGrpcStatus(ToGrpcStatus(busy)).retry_after_seconds, 42);
}

TEST(Status, InternalMessagesDoNotCrossProcesses) {
  grpc::Status s = ToGrpcStatus(Error::Internal("relation \"users\" does not exist"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(s.error_message(), "internal error");
}

// A stand-in service whose handlers report what rpc::Call decoded. It is
// served as the services are: callback API, handlers on an Executor.
class EchoService final : public users::v1::AuthService::CallbackService {
 public:
  EchoService(const auth::Verifier& verifier, Executor& executor)
      : verifier_(verifier), executor_(executor) {}

  grpc::ServerUnaryReactor* GetJwks(grpc::CallbackServerContext* ctx,
                                    const users::v1::GetJwksRequest*,
                                    users::v1::Jwks* resp) override {
    return Serve(ctx, "test/GetJwks", executor_, [resp](Call& call) -> Status {
      auto* k = resp->add_keys();
      k->set_kid(call.request_id());
      k->set_x(call.trace_id());
      k->set_crv(call.span_id());
      k->set_kty(call.user_agent());
      k->set_use(call.client_address());
      grpc::ClientContext downstream;
      call.PropagateTo(&downstream);
      call.SetHeader("etag", "\"7\"");
      return {};
    });
  }
  // Answers as if it were DataService/GetItem, whose access policy accepts
  // the scope data:read: what matters for scopes is the method name.
  grpc::ServerUnaryReactor* Logout(grpc::CallbackServerContext* ctx,
                                   const users::v1::LogoutRequest*,
                                   google::protobuf::Empty*) override {
    return Serve(ctx, "portico.data.v1.DataService/GetItem", executor_,
                 [this](Call& call) -> Status {
                   auto who = call.Authenticate(verifier_);
                   if (!who.ok()) return std::move(who).error();
                   return {};
                 });
  }
  grpc::ServerUnaryReactor* Login(grpc::CallbackServerContext* ctx,
                                  const users::v1::LoginRequest* req,
                                  users::v1::TokenPair* resp) override {
    return Serve(ctx, "test/Login", executor_, [this, req, resp](Call& call) -> Status {
      if (req->email() == "throw") throw std::runtime_error("secret internals");
      auto who = call.Authorize(verifier_, {"ADMIN"});
      if (!who.ok()) return std::move(who).error();
      resp->set_access_token(who->subject);
      return {};
    });
  }
  // Holds its worker until the gate opens (or 5 s pass): a call that blocks,
  // as a database call does.
  grpc::ServerUnaryReactor* Refresh(grpc::CallbackServerContext* ctx,
                                    const users::v1::RefreshRequest*,
                                    users::v1::TokenPair*) override {
    return Serve(ctx, "test/Refresh", executor_, [this](Call&) -> Status {
      std::unique_lock lock(gate_mu_);
      ++blocked_;
      gate_cv_.notify_all();
      gate_cv_.wait_for(lock, std::chrono::seconds(5), [this] { return open_; });
      return {};
    });
  }

  void OpenGate() {
    std::lock_guard lock(gate_mu_);
    open_ = true;
    gate_cv_.notify_all();
  }
  void WaitBlocked(int n) {
    std::unique_lock lock(gate_mu_);
    gate_cv_.wait_for(lock, std::chrono::seconds(5), [&] { return blocked_ >= n; });
  }

 private:
  const auth::Verifier& verifier_;
  Executor& executor_;
  std::mutex gate_mu_;
  std::condition_variable gate_cv_;
  bool open_ = false;  // guarded by gate_mu_
  int blocked_ = 0;    // guarded by gate_mu_
};

class RpcServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    key_ = auth::GenerateSigningKey();
    keys_->Replace({{key_.kid, key_.public_key}});
    server_ = std::make_unique<Server>(ServerOptions{.address = "127.0.0.1:0"});
    server_->AddService(&service_);
    ASSERT_TRUE(server_->Start().ok());
    ASSERT_GT(server_->port(), 0);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()),
                                   grpc::InsecureChannelCredentials());
    stub_ = users::v1::AuthService::NewStub(channel_);
  }
  std::string Token(const std::string& role, std::vector<std::string> scopes = {}) {
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    return auth::Sign({.iss = "i", .aud = "a", .sub = "user-1", .role = role, .iat = now,
                       .exp = now + 60, .jti = "j", .scopes = std::move(scopes)},
                      key_);
  }
  grpc::StatusCode LogoutWith(const std::string& token) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + token);
    google::protobuf::Empty out;
    return stub_->Logout(&ctx, {}, &out).error_code();
  }

  auth::SigningKey key_;
  std::shared_ptr<auth::KeySet> keys_ = std::make_shared<auth::KeySet>();
  auth::Verifier verifier_{keys_, {.issuer = "i", .audience = "a"}};
  Executor executor_{{.name = "test", .threads = 2, .max_queue = 2}};
  EchoService service_{verifier_, executor_};
  std::unique_ptr<Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<users::v1::AuthService::Stub> stub_;
};

grpc::Status RefreshThrough(users::v1::AuthService::Stub& stub) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  users::v1::TokenPair out;
  return stub.Refresh(&ctx, {}, &out);
}

// Two workers, two queue slots: four blocked calls all succeed once the
// gate opens (two waited in the queue instead of being refused); a fifth,
// with the queue full, is UNAVAILABLE with a retry hint — the server's
// overload, never RESOURCE_EXHAUSTED.
TEST_F(RpcServerTest, CallsQueueForAWorkerAndOnlyAFullQueueSheds) {
  std::vector<std::future<grpc::Status>> calls;
  for (int i = 0; i < 2; ++i) {
    calls.push_back(std::async(std::launch::async, [this] { return RefreshThrough(*stub_); }));
  }
  service_.WaitBlocked(2);
  for (int i = 0; i < 2; ++i) {
    calls.push_back(std::async(std::launch::async, [this] { return RefreshThrough(*stub_); }));
  }
  for (int i = 0; i < 100 && executor_.queued() < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(executor_.queued(), 2u);
  grpc::Status shed = RefreshThrough(*stub_);
  EXPECT_EQ(shed.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(FromGrpcStatus(shed).retry_after_seconds, 1);
  service_.OpenGate();
  for (auto& c : calls) EXPECT_TRUE(c.get().ok());
}

// A call that waited in the queue past its deadline is not run.
TEST_F(RpcServerTest, ACallWhoseDeadlinePassedInTheQueueIsNotRun) {
  std::vector<std::future<grpc::Status>> blockers;
  for (int i = 0; i < 2; ++i) {
    blockers.push_back(std::async(std::launch::async, [this] { return RefreshThrough(*stub_); }));
  }
  service_.WaitBlocked(2);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
  users::v1::TokenPair out;
  users::v1::LoginRequest req;
  req.set_email("throw");  // would be INTERNAL if it ran
  EXPECT_EQ(stub_->Login(&ctx, req, &out).error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  service_.OpenGate();
  for (auto& b : blockers) EXPECT_TRUE(b.get().ok());
  // Recorded as such once a worker got to it, without running the handler.
  for (int i = 0; i < 100; ++i) {
    prometheus::TextSerializer text;
    const std::string metrics = text.Serialize(admin::Registry()->Collect());
    if (metrics.find("method=\"test/Login\",code=\"DEADLINE_EXCEEDED\"") != std::string::npos ||
        metrics.find("code=\"DEADLINE_EXCEEDED\",method=\"test/Login\"") != std::string::npos) {
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ADD_FAILURE() << "the queued call was not recorded as DEADLINE_EXCEEDED";
}

TEST_F(RpcServerTest, CallDecodesIdsAndKeepsTheTraceId) {
  grpc::ClientContext ctx;
  ctx.AddMetadata("x-request-id", "req-1");
  ctx.AddMetadata("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
  ctx.AddMetadata("x-user-agent", "curl/8");
  ctx.AddMetadata("x-client-address", "203.0.113.9");
  users::v1::Jwks out;
  ASSERT_TRUE(stub_->GetJwks(&ctx, {}, &out).ok());
  ASSERT_EQ(out.keys_size(), 1);
  EXPECT_EQ(out.keys(0).kid(), "req-1");
  EXPECT_EQ(out.keys(0).x(), "0af7651916cd43dd8448eb211c80319c");
  EXPECT_EQ(out.keys(0).crv().size(), 16u);
  EXPECT_NE(out.keys(0).crv(), "b7ad6b7169203331");  // a new span for this hop
  EXPECT_EQ(out.keys(0).kty(), "curl/8");
  EXPECT_EQ(out.keys(0).use(), "203.0.113.9");
  auto etag = ctx.GetServerInitialMetadata().find("etag");
  ASSERT_NE(etag, ctx.GetServerInitialMetadata().end());
  EXPECT_EQ(std::string(etag->second.data(), etag->second.size()), "\"7\"");
}

TEST_F(RpcServerTest, MissingOrBadIdsAreReplaced) {
  grpc::ClientContext ctx;
  ctx.AddMetadata("x-request-id", "has spaces");
  ctx.AddMetadata("traceparent", "00-00000000000000000000000000000000-b7ad6b7169203331-01");
  users::v1::Jwks out;
  ASSERT_TRUE(stub_->GetJwks(&ctx, {}, &out).ok());
  EXPECT_NE(out.keys(0).kid(), "has spaces");
  EXPECT_EQ(out.keys(0).kid().size(), 36u);  // a UUID
  EXPECT_EQ(out.keys(0).x().size(), 32u);
  EXPECT_NE(out.keys(0).x(), std::string(32, '0'));
  EXPECT_EQ(out.keys(0).use().rfind("ipv4:127.0.0.1", 0), 0u) << out.keys(0).use();
}

TEST_F(RpcServerTest, AuthorizeChecksTokenAndRole) {
  users::v1::LoginRequest req;
  users::v1::TokenPair resp;
  grpc::ClientContext none;
  EXPECT_EQ(stub_->Login(&none, req, &resp).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  grpc::ClientContext user;
  user.AddMetadata("authorization", "Bearer " + Token("USER"));
  EXPECT_EQ(stub_->Login(&user, req, &resp).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  grpc::ClientContext admin;
  admin.AddMetadata("authorization", "bearer " + Token("ADMIN"));
  ASSERT_TRUE(stub_->Login(&admin, req, &resp).ok());
  EXPECT_EQ(resp.access_token(), "user-1");
  grpc::ClientContext forged;
  forged.AddMetadata("authorization", "Bearer " + Token("ADMIN") + "x");
  EXPECT_EQ(stub_->Login(&forged, req, &resp).error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(RpcServerTest, ScopedTokensReachOnlyMethodsAcceptingTheirScopes) {
  EXPECT_EQ(AcceptedScopes("portico.data.v1.DataService/GetItem"),
            std::vector<std::string>{"data:read"});
  EXPECT_TRUE(AcceptedScopes("portico.users.v1.UserService/ChangePassword").empty());
  EXPECT_TRUE(AcceptedScopes("no/such").empty());
  EXPECT_EQ(LogoutWith(Token("USER")), grpc::StatusCode::OK);  // full access
  EXPECT_EQ(LogoutWith(Token("USER", {"data:read"})), grpc::StatusCode::OK);
  EXPECT_EQ(LogoutWith(Token("USER", {"users:read", "data:read"})), grpc::StatusCode::OK);
  EXPECT_EQ(LogoutWith(Token("USER", {"data:write"})), grpc::StatusCode::PERMISSION_DENIED);
  // A method without scopes refuses every scoped token.
  users::v1::LoginRequest req;
  users::v1::TokenPair resp;
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer " + Token("ADMIN", {"users:write"}));
  EXPECT_EQ(stub_->Login(&ctx, req, &resp).error_code(), grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(RpcServerTest, ExceptionsBecomeInternalWithoutDetails) {
  users::v1::LoginRequest req;
  req.set_email("throw");
  users::v1::TokenPair resp;
  grpc::ClientContext ctx;
  grpc::Status s = stub_->Login(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(s.error_message().find("secret"), std::string::npos);
}

TEST_F(RpcServerTest, HealthServiceAndMetrics) {
  grpc::GenericStub generic(channel_);
  grpc::ClientContext ctx;
  grpc::ByteBuffer request;  // HealthCheckRequest{} is empty on the wire
  grpc::Slice empty("", 0);
  request = grpc::ByteBuffer(&empty, 1);
  grpc::ByteBuffer response;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  grpc::Status status;
  generic.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request,
                    &response, [&](grpc::Status s) {
                      std::lock_guard lock(mu);
                      status = s;
                      done = true;
                      cv.notify_one();
                    });
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return done; });
  ASSERT_TRUE(status.ok()) << status.error_message();
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));  // status: SERVING

  grpc::ClientContext c2;
  users::v1::Jwks out;
  ASSERT_TRUE(stub_->GetJwks(&c2, {}, &out).ok());
  const std::string text = prometheus::TextSerializer().Serialize(admin::Registry()->Collect());
  EXPECT_NE(text.find("portico_grpc_requests_total{code=\"OK\",method=\"test/GetJwks\"}"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("portico_grpc_request_duration_seconds_bucket{method=\"test/GetJwks\""),
            std::string::npos);
  // Every call has left the handler by now.
  EXPECT_NE(text.find("portico_grpc_in_flight_requests 0"), std::string::npos) << text;
}

TEST(TraceParent, ParsesValidHeadersAndRejectsTheRest) {
  auto tp = ParseTraceParent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  ASSERT_TRUE(tp.has_value());
  EXPECT_EQ(tp->trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(tp->span_id, "00f067aa0ba902b7");
  EXPECT_EQ(tp->flags, "01");
  EXPECT_EQ(FormatTraceParent(*tp), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  for (const char* bad : {"", "garbage",
                          "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                          "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                          "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                          "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                          "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
                          "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}) {
    EXPECT_FALSE(ParseTraceParent(bad).has_value()) << bad;
  }
}

TEST(TraceParent, CurrentTraceParentContinuesTheLogContext) {
  EXPECT_EQ(CurrentTraceParent(), "");
  log::ScopedContext scope({"req-1", "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"});
  EXPECT_EQ(CurrentTraceParent(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  // An unsampled trace stays unsampled.
  log::ScopedContext inner(
      {"req-2", "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "00"});
  EXPECT_EQ(CurrentTraceParent(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
}

TEST(Server, BusyAddressIsUnavailable) {
  Server first(ServerOptions{.address = "127.0.0.1:0"});
  ASSERT_TRUE(first.Start().ok());
  Server second(ServerOptions{.address = "127.0.0.1:" + std::to_string(first.port())});
  auto st = second.Start();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ErrorCode::kUnavailable);
}

}  // namespace
}  // namespace portico::rpc
