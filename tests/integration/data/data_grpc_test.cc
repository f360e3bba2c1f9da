// The data service's gRPC transport against a real PostgreSQL: who may call
// what (including the internal DataAdmin), response metadata, and the
// ErrorDetails reasons the gateway turns into 410/412/422/409.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <google/protobuf/util/json_util.h>

#include <span>

#include "grpc_services.h"
#include "items.h"
#include "portico/api/v1/error_details.pb.h"
#include "portico/auth/jwt.h"
#include "portico/core/uuid.h"
#include "portico/pg/migrate.h"
#include "portico/pg/pool.h"
#include "portico/rpc/executor.h"
#include "portico/rpc/server.h"
#include "portico/testing/pg_cluster.h"

namespace portico::data {
std::span<const pg::Migration> Migrations();

namespace {

Deadline Soon() { return DeadlineIn(std::chrono::seconds(20)); }

class DataGrpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto pool = pg::Pool::Create(
        {.url = testing::SharedPgCluster().CreateUniqueDatabase("data_grpc"), .size = 4});
    ASSERT_TRUE(pool.ok());
    pool_ = std::move(*pool);
    ASSERT_TRUE(pg::Migrate(*pool_, Migrations(), "portico_data", Soon()).ok());
    items_ = std::make_unique<Items>(*pool_, ItemLimits{});
    auto keys = std::make_shared<auth::KeySet>();
    keys->Replace({{key_.kid, key_.public_key}});
    verifier_ = std::make_unique<auth::Verifier>(
        keys, auth::VerifierOptions{.issuer = "portico", .audience = "portico-api"});
    data_ = std::make_unique<DataServiceImpl>(*items_, *verifier_, executor_);
    admin_ = std::make_unique<DataAdminImpl>(*items_, *verifier_, executor_);
    server_ = std::make_unique<rpc::Server>(rpc::ServerOptions{.address = "127.0.0.1:0"});
    server_->AddService(data_.get());
    server_->AddService(admin_.get());
    ASSERT_TRUE(server_->Start().ok());
    auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()),
                                       grpc::InsecureChannelCredentials());
    data_stub_ = v1::DataService::NewStub(channel);
    admin_stub_ = v1::DataAdmin::NewStub(channel);
  }
  void TearDown() override { server_->Shutdown(std::chrono::milliseconds(100)); }

  std::string Token(const std::string& sub, const std::string& role) {
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    return auth::Sign({.iss = "portico", .aud = "portico-api", .sub = sub, .role = role,
                       .iat = now, .exp = now + 300, .jti = NewUuidV7()},
                      key_);
  }
  void As(grpc::ClientContext* ctx, const std::string& sub, const std::string& role) {
    ctx->AddMetadata("authorization", "Bearer " + Token(sub, role));
  }
  static std::string Reason(const grpc::Status& s) {
    api::v1::ErrorDetails d;
    d.ParseFromString(s.error_details());
    return d.reason();
  }
  static std::string Meta(const grpc::ClientContext& ctx, const std::string& key) {
    auto it = ctx.GetServerInitialMetadata().find(key);
    return it == ctx.GetServerInitialMetadata().end()
               ? ""
               : std::string(it->second.data(), it->second.size());
  }

  auth::SigningKey key_ = auth::GenerateSigningKey();
  std::unique_ptr<pg::Pool> pool_;
  std::unique_ptr<Items> items_;
  std::unique_ptr<auth::Verifier> verifier_;
  rpc::Executor executor_{{.name = "data-test", .threads = 4, .max_queue = 64}};
  std::unique_ptr<DataServiceImpl> data_;
  std::unique_ptr<DataAdminImpl> admin_;
  std::unique_ptr<rpc::Server> server_;
  std::unique_ptr<v1::DataService::Stub> data_stub_;
  std::unique_ptr<v1::DataAdmin::Stub> admin_stub_;
  const std::string alice_ = NewUuidV7();
};

TEST_F(DataGrpcTest, PurgeOwnerAcceptsOnlyServiceTokens) {
  ASSERT_TRUE(items_->Create(alice_, "notes", "{}", Soon()).ok());
  v1::PurgeOwnerRequest req;
  req.set_owner_id(alice_);
  google::protobuf::Empty resp;
  {
    grpc::ClientContext ctx;
    EXPECT_EQ(admin_stub_->PurgeOwner(&ctx, req, &resp).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  for (const char* role : {"USER", "ADMIN"}) {
    grpc::ClientContext ctx;
    As(&ctx, alice_, role);
    EXPECT_EQ(admin_stub_->PurgeOwner(&ctx, req, &resp).error_code(),
              grpc::StatusCode::PERMISSION_DENIED)
        << role;
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + Token("portico-users", "SERVICE") + "x");
    EXPECT_EQ(admin_stub_->PurgeOwner(&ctx, req, &resp).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  EXPECT_EQ(items_->ListCollections(alice_, Soon())->collections_size(), 1);
  for (int i = 0; i < 2; ++i) {  // idempotent
    grpc::ClientContext ctx;
    As(&ctx, "portico-users", "SERVICE");
    auto st = admin_stub_->PurgeOwner(&ctx, req, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
  }
  EXPECT_EQ(items_->ListCollections(alice_, Soon())->collections_size(), 0);
  // Service tokens have no business on the user routes.
  grpc::ClientContext ctx;
  As(&ctx, alice_, "SERVICE");
  v1::ListCollectionsResponse collections;
  EXPECT_EQ(data_stub_->ListCollections(&ctx, {}, &collections).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

// After the purge the deleted user's access token is still valid for a
// while: writes with it are UNAUTHENTICATED (401 at the gateway) and store
// nothing; reads find nothing.
TEST_F(DataGrpcTest, APurgedUsersStillValidTokenCannotWrite) {
  const std::string token = Token(alice_, "USER");
  {
    grpc::ClientContext ctx;
    As(&ctx, "portico-users", "SERVICE");
    v1::PurgeOwnerRequest req;
    req.set_owner_id(alice_);
    google::protobuf::Empty resp;
    ASSERT_TRUE(admin_stub_->PurgeOwner(&ctx, req, &resp).ok());
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + token);
    v1::CreateItemRequest create;
    create.set_collection("notes");
    create.set_data(R"({"a":1})");
    v1::Item item;
    auto st = data_stub_->CreateItem(&ctx, create, &item);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED) << st.error_message();
    EXPECT_EQ(st.error_message(), "the account no longer exists");
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + token);
    v1::ListCollectionsResponse collections;
    ASSERT_TRUE(data_stub_->ListCollections(&ctx, {}, &collections).ok());
    EXPECT_EQ(collections.collections_size(), 0);
  }
}

// An operator PostgreSQL does not have is a 400 naming the position, not a
// 500 from the database.
TEST_F(DataGrpcTest, UnknownFilterOperatorIsInvalidArgument) {
  for (const char* filter : {"data.a == 1", "data.a <> 1", "createTime == 2024-01-01T00:00:00Z",
                             "createTime > 0001-01-01T00:00:00+01:00"}) {
    grpc::ClientContext ctx;
    As(&ctx, alice_, "USER");
    v1::ListItemsRequest req;
    req.set_collection("notes");
    req.set_filter(filter);
    v1::ListItemsResponse resp;
    auto st = data_stub_->ListItems(&ctx, req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << filter;
    EXPECT_NE(st.error_message().find("position"), std::string::npos) << st.error_message();
  }
}

TEST_F(DataGrpcTest, ErrorReasonsAndHeaders) {
  v1::CreateItemRequest create;
  create.set_collection("notes");
  create.set_data(R"({"a":1})");
  v1::Item first;
  {
    grpc::ClientContext ctx;
    As(&ctx, alice_, "USER");
    ctx.AddMetadata("idempotency-key", "k1");
    ASSERT_TRUE(data_stub_->CreateItem(&ctx, create, &first).ok());
    EXPECT_EQ(Meta(ctx, "etag"), "\"1\"");
    EXPECT_EQ(Meta(ctx, "location"), "/v1/collections/notes/items/" + first.id());
  }
  {
    grpc::ClientContext ctx;
    As(&ctx, alice_, "USER");
    ctx.AddMetadata("idempotency-key", "k1");
    v1::CreateItemRequest other = create;
    other.set_data(R"({"a":2})");
    v1::Item item;
    auto st = data_stub_->CreateItem(&ctx, other, &item);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_EQ(Reason(st), kReasonIdempotencyKeyReused);
  }
  {
    // The same key while a first request holds it: 409 with its reason.
    auto lease = pool_->Acquire(Soon());
    auto tx = lease->Begin();
    ASSERT_TRUE(tx.ok());
    ASSERT_TRUE(tx->Exec("SELECT pg_advisory_xact_lock(hashtextextended($1::text || '/' || $2, 0))",
                         {alice_, "k2"}).ok());
    grpc::ClientContext ctx;
    As(&ctx, alice_, "USER");
    ctx.AddMetadata("idempotency-key", "k2");
    v1::Item item;
    auto st = data_stub_->CreateItem(&ctx, create, &item);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::ALREADY_EXISTS);
    EXPECT_EQ(Reason(st), kReasonIdempotencyInFlight);
  }
  {
    grpc::ClientContext ctx;
    As(&ctx, alice_, "USER");
    ctx.AddMetadata("if-match", "\"7\"");
    v1::ReplaceItemRequest replace;
    replace.set_collection("notes");
    replace.set_id(first.id());
    *replace.mutable_data() = create.data();
    v1::Item item;
    auto st = data_stub_->ReplaceItem(&ctx, replace, &item);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_EQ(Reason(st), "VERSION_MISMATCH");
  }
  {
    grpc::ClientContext ctx;
    As(&ctx, alice_, "USER");
    v1::ListChangesRequest req;
    req.set_collection("notes");
    req.set_since(1000);
    v1::ListChangesResponse resp;
    auto st = data_stub_->ListChanges(&ctx, req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_EQ(Reason(st), kReasonSinceTooOld);
  }
  {
    // 304: the gateway sends no body; the status comes as metadata.
    grpc::ClientContext ctx;
    As(&ctx, alice_, "USER");
    ctx.AddMetadata("if-none-match", "W/\"1\"");
    v1::GetItemRequest get;
    get.set_collection("notes");
    get.set_id(first.id());
    v1::Item item;
    ASSERT_TRUE(data_stub_->GetItem(&ctx, get, &item).ok());
    EXPECT_EQ(Meta(ctx, "x-http-status"), "304");
  }
}

}  // namespace
}  // namespace portico::data
