// Services loaded at run time from the echo service's descriptor set
// (tests/e2e/proto), whose generated code this test does not link: every
// echo type here is a dynamic message.
#include "portico/transcode/descriptor_set.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include <boost/json/parse.hpp>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/message.h>

#include "portico/api/v1/annotations.pb.h"
#include "portico/transcode/route_table.h"
#include "portico/transcode/transcoder.h"

namespace portico::transcode {
namespace {

namespace pb = google::protobuf;

constexpr const char* kEcho = "portico.test.v1.EchoService";

std::string ReadSet() {
  std::ifstream in(PORTICO_ECHO_DESCRIPTOR_SET, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

pb::FileDescriptorSet ParsedSet() {
  pb::FileDescriptorSet set;
  EXPECT_TRUE(set.ParseFromString(ReadSet()));
  return set;
}

pb::MethodDescriptorProto* FindMethod(pb::FileDescriptorSet* set, const std::string& name) {
  for (auto& file : *set->mutable_file()) {
    for (auto& service : *file.mutable_service()) {
      for (auto& method : *service.mutable_method()) {
        if (method.name() == name) return &method;
      }
    }
  }
  return nullptr;
}

TEST(DescriptorSetTest, EchoIsNotCompiledIn) {
  // Otherwise this test would not exercise dynamic messages at all.
  EXPECT_EQ(pb::DescriptorPool::generated_pool()->FindServiceByName(kEcho), nullptr);
}

TEST(DescriptorSetTest, LoadsServicesAndReadsTheAnnotations) {
  auto set = DescriptorSet::Load(PORTICO_ECHO_DESCRIPTOR_SET);
  ASSERT_TRUE(set.ok()) << set.error().message;
  // Only the set's own services: annotations.proto and the well-known types
  // come from the generated pool.
  EXPECT_EQ((*set)->services(), std::vector<std::string>{kEcho});
  const auto* file = (*set)->pool()->FindFileByName("portico/api/v1/annotations.proto");
  ASSERT_NE(file, nullptr);
  EXPECT_EQ(file->pool(), pb::DescriptorPool::generated_pool());

  auto table = RouteTable::BuildFrom({{{"portico.users.v1.AuthService"}, nullptr},
                                      {{kEcho}, *set}});
  ASSERT_TRUE(table.ok()) << table.error().message;
  EXPECT_EQ(table->Services(),
            (std::vector<std::string>{"portico.users.v1.AuthService", kEcho}));

  auto post = table->Match("POST", "/v1/echo/news/messages");
  ASSERT_EQ(post.kind, MatchResult::Kind::kFound);
  EXPECT_EQ(post.route->rpc_path, "/portico.test.v1.EchoService/Post");
  EXPECT_EQ(post.route->success_status, 201);
  EXPECT_EQ(post.route->body, "message");
  EXPECT_EQ(post.route->access, Access::kPublic);
  EXPECT_EQ(post.route->rpc->file()->pool(), (*set)->pool());
  // The comments came along (--include_source_info), for API documentation.
  pb::SourceLocation where;
  ASSERT_TRUE(post.route->rpc->GetSourceLocation(&where));
  EXPECT_NE(where.leading_comments.find("answers 201"), std::string::npos);

  // The built-in routes still come from the generated pool.
  auto login = table->Match("POST", "/v1/auth/login");
  ASSERT_EQ(login.kind, MatchResult::Kind::kFound);
  EXPECT_EQ(login.route->rpc->file()->pool(), pb::DescriptorPool::generated_pool());
}

TEST(DescriptorSetTest, TranscodesDynamicMessages) {
  auto set = DescriptorSet::Load(PORTICO_ECHO_DESCRIPTOR_SET);
  ASSERT_TRUE(set.ok()) << set.error().message;
  auto table = RouteTable::BuildFrom({{{kEcho}, *set}});
  ASSERT_TRUE(table.ok()) << table.error().message;

  auto m = table->Match("POST", "/v1/echo/news/messages");
  ASSERT_EQ(m.kind, MatchResult::Kind::kFound);
  auto request = BuildRequest(*m.route, m.vars, "", R"({"text":"hi","tags":["a","b"]})");
  ASSERT_TRUE(request.ok()) << request.error().message;
  EXPECT_EQ((*request)->GetDescriptor()->full_name(), "portico.test.v1.PostRequest");
  EXPECT_EQ((*request)->ShortDebugString(),
            R"(channel: "news" message { text: "hi" tags: "a" tags: "b" })");

  auto get = table->Match("GET", "/v1/echo/news");
  ASSERT_EQ(get.kind, MatchResult::Kind::kFound);
  auto bad = BuildRequest(*get.route, get.vars, "text=x&nope=1", "");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("nope"), std::string::npos);

  auto reply = NewResponse(*m.route);
  const pb::Descriptor* d = reply->GetDescriptor();
  const pb::Reflection* r = reply->GetReflection();
  r->SetString(reply.get(), d->FindFieldByName("text"), "hi");
  r->SetInt64(reply.get(), d->FindFieldByName("length"), 2);
  pb::Message* time = r->MutableMessage(reply.get(), d->FindFieldByName("time"));
  time->GetReflection()->SetInt64(time, time->GetDescriptor()->FindFieldByName("seconds"), 0);
  time->GetReflection()->SetInt32(time, time->GetDescriptor()->FindFieldByName("nanos"), 1000000);
  auto body = RenderResponse(*m.route, *reply);
  ASSERT_TRUE(body.ok()) << body.error().message;
  EXPECT_EQ(body->status, 201);
  const auto json = boost::json::parse(body->json).as_object();
  EXPECT_EQ(json.at("text").as_string(), "hi");
  EXPECT_EQ(json.at("length").as_string(), "2");
  EXPECT_EQ(json.at("time").as_string(), "1970-01-01T00:00:00.001Z");
}

TEST(DescriptorSetTest, RouteConflictWithABuiltInServiceNamesBoth) {
  pb::FileDescriptorSet changed = ParsedSet();
  auto* echo = FindMethod(&changed, "Echo");
  ASSERT_NE(echo, nullptr);
  echo->mutable_options()->MutableExtension(api::v1::http)->set_get("/v1/users/{channel}");
  auto set = DescriptorSet::Parse(changed.SerializeAsString(), "changed");
  ASSERT_TRUE(set.ok()) << set.error().message;
  auto table = RouteTable::BuildFrom({{{"portico.users.v1.UserService"}, nullptr},
                                      {{kEcho}, *set}});
  ASSERT_FALSE(table.ok());
  EXPECT_NE(table.error().message.find("portico.users.v1.UserService.GetUser"), std::string::npos)
      << table.error().message;
  EXPECT_NE(table.error().message.find("portico.test.v1.EchoService.Echo"), std::string::npos)
      << table.error().message;
}

TEST(DescriptorSetTest, BadSetsAreErrors) {
  auto missing = DescriptorSet::Load("/nonexistent/echo.binpb");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::kUnavailable);

  auto garbage = DescriptorSet::Parse("\xff\xff\xff not protobuf", "garbage");
  ASSERT_FALSE(garbage.ok());
  EXPECT_EQ(garbage.error().code, ErrorCode::kInvalidArgument);

  // An import that is neither in the set nor compiled in.
  pb::FileDescriptorSet changed = ParsedSet();
  for (auto& file : *changed.mutable_file()) {
    if (file.name() == "portico/test/v1/echo.proto") file.add_dependency("portico/nowhere.proto");
  }
  auto unresolved = DescriptorSet::Parse(changed.SerializeAsString(), "unresolved");
  ASSERT_FALSE(unresolved.ok());
  EXPECT_NE(unresolved.error().message.find("portico/nowhere.proto"), std::string::npos)
      << unresolved.error().message;

  // A type that does not exist.
  pb::FileDescriptorSet untyped = ParsedSet();
  FindMethod(&untyped, "Echo")->set_input_type(".portico.test.v1.NoSuchMessage");
  auto bad_type = DescriptorSet::Parse(untyped.SerializeAsString(), "untyped");
  ASSERT_FALSE(bad_type.ok());
  EXPECT_NE(bad_type.error().message.find("NoSuchMessage"), std::string::npos)
      << bad_type.error().message;
}

}  // namespace
}  // namespace portico::transcode
