// The gateway's route table with services loaded from a descriptor set (the
// echo service of tests/e2e/proto, not compiled into this test), and its
// reload: a good file swaps the table while the old one stays usable by
// whoever holds it; a bad one changes nothing. No server is started.
#include <gtest/gtest.h>

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <google/protobuf/descriptor.pb.h>

#include "portico/api/v1/annotations.pb.h"
#include "portico/auth/jwt.h"
#include "portico/gateway/gateway.h"
#include "portico/transcode/route_table.h"

namespace portico::gateway {
namespace {

namespace pb = google::protobuf;
using transcode::MatchResult;

constexpr const char* kEcho = "portico.test.v1.EchoService";

class RoutesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/portico-routes-XXXXXX";
    dir_ = mkdtemp(tmpl);
    path_ = dir_ + "/services.binpb";
    std::ifstream in(PORTICO_ECHO_DESCRIPTOR_SET, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    ASSERT_TRUE(full_.ParseFromString(ss.str()));
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void Write(const std::string& bytes) {
    std::ofstream out(path_, std::ios::binary | std::ios::trunc);
    out << bytes;
  }
  pb::ServiceDescriptorProto* Echo(pb::FileDescriptorSet* set) {
    for (auto& f : *set->mutable_file()) {
      for (auto& s : *f.mutable_service()) {
        if (s.name() == "EchoService") return &s;
      }
    }
    return nullptr;
  }
  pb::FileDescriptorSet WithoutReverse() {
    pb::FileDescriptorSet set = full_;
    auto* methods = Echo(&set)->mutable_method();
    for (int i = 0; i < methods->size(); ++i) {
      if (methods->Get(i).name() == "Reverse") methods->DeleteSubrange(i--, 1);
    }
    return set;
  }
  GatewayOptions Options() {
    GatewayOptions o;
    o.upstreams = {{"portico.", "127.0.0.1:1"}};
    o.descriptor_set = path_;
    o.extra_services = {{kEcho, "127.0.0.1:2"}};
    return o;
  }
  Result<std::unique_ptr<Gateway>> Create(GatewayOptions o) {
    return Gateway::Create(std::move(o), std::make_shared<auth::KeySet>());
  }

  std::string dir_, path_;
  pb::FileDescriptorSet full_;
};

TEST_F(RoutesTest, ExtraServicesAreRoutedNextToTheBuiltInOnes) {
  Write(full_.SerializeAsString());
  auto gw = Create(Options());
  ASSERT_TRUE(gw.ok()) << gw.error().message;
  auto table = (*gw)->routes();
  EXPECT_EQ(table->Match("GET", "/v1/echo/news").kind, MatchResult::Kind::kFound);
  EXPECT_EQ(table->Match("POST", "/v1/auth/login").kind, MatchResult::Kind::kFound);
  const auto services = table->Services();
  EXPECT_NE(std::find(services.begin(), services.end(), kEcho), services.end());
}

TEST_F(RoutesTest, ReloadSwapsTheTableAndTheOldOneStaysUsable) {
  Write(WithoutReverse().SerializeAsString());
  auto gw = Create(Options());
  ASSERT_TRUE(gw.ok()) << gw.error().message;
  auto before = (*gw)->routes();
  EXPECT_EQ(before->Match("GET", "/v1/echo/a/reversed").kind, MatchResult::Kind::kNotFound);

  Write(full_.SerializeAsString());
  ASSERT_TRUE((*gw)->ReloadRoutes().ok());
  auto after = (*gw)->routes();
  EXPECT_NE(after, before);
  EXPECT_EQ(after->Match("GET", "/v1/echo/a/reversed").kind, MatchResult::Kind::kFound);
  // Whoever still holds the old table (a request in flight) can use it,
  // descriptors and all.
  auto old_match = before->Match("GET", "/v1/echo/news");
  ASSERT_EQ(old_match.kind, MatchResult::Kind::kFound);
  EXPECT_EQ(old_match.route->rpc->input_type()->full_name(), "portico.test.v1.EchoRequest");
  EXPECT_NE(old_match.route->request_prototype, nullptr);
}

TEST_F(RoutesTest, AFailedReloadKeepsTheTableInForce) {
  Write(full_.SerializeAsString());
  auto gw = Create(Options());
  ASSERT_TRUE(gw.ok()) << gw.error().message;
  auto table = (*gw)->routes();

  Write("not a descriptor set");
  auto garbage = (*gw)->ReloadRoutes();
  ASSERT_FALSE(garbage.ok());
  EXPECT_EQ(garbage.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ((*gw)->routes(), table);

  pb::FileDescriptorSet conflicting = full_;
  for (auto& m : *Echo(&conflicting)->mutable_method()) {
    if (m.name() == "Echo") m.mutable_options()->MutableExtension(api::v1::http)->set_get("/v1/users/me");
  }
  Write(conflicting.SerializeAsString());
  auto conflict = (*gw)->ReloadRoutes();
  ASSERT_FALSE(conflict.ok());
  EXPECT_NE(conflict.error().message.find("portico.users.v1.UserService.GetMe"), std::string::npos)
      << conflict.error().message;
  EXPECT_NE(conflict.error().message.find("portico.test.v1.EchoService.Echo"), std::string::npos)
      << conflict.error().message;
  EXPECT_EQ((*gw)->routes(), table);

  std::filesystem::remove(path_);
  auto missing = (*gw)->ReloadRoutes();
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ((*gw)->routes(), table);
}

TEST_F(RoutesTest, BadExtraServiceConfigurationsStopTheStart) {
  Write(full_.SerializeAsString());
  // An annotated service in the set that nobody gave a target.
  GatewayOptions untargeted = Options();
  untargeted.extra_services.clear();
  auto no_target = Create(untargeted);
  ASSERT_FALSE(no_target.ok());
  EXPECT_NE(no_target.error().message.find("no target"), std::string::npos)
      << no_target.error().message;

  // A named service that the set does not define.
  GatewayOptions unknown = Options();
  unknown.extra_services.push_back({"acme.v1.Missing", "127.0.0.1:3"});
  auto missing = Create(unknown);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("acme.v1.Missing"), std::string::npos)
      << missing.error().message;

  // Extra services without a descriptor set.
  GatewayOptions no_set = Options();
  no_set.descriptor_set.clear();
  EXPECT_FALSE(Create(no_set).ok());
}

}  // namespace
}  // namespace portico::gateway
