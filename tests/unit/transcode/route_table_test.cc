#include "portico/transcode/route_table.h"

#include <gtest/gtest.h>

#include <google/protobuf/descriptor.h>

namespace portico::transcode {
namespace {

const char* kKitchen = "portico.testing.v1.KitchenService";

RouteTable Kitchen() {
  auto table = RouteTable::Build({kKitchen});
  EXPECT_TRUE(table.ok()) << table.error().message;
  return std::move(table).value();
}

RouteTable Real() {
  auto table = RouteTable::Build({"portico.users.v1.AuthService", "portico.users.v1.UserService",
                                  "portico.data.v1.DataService"});
  EXPECT_TRUE(table.ok()) << table.error().message;
  return std::move(table).value();
}

std::string RpcOf(const MatchResult& m) {
  return m.kind == MatchResult::Kind::kFound ? m.route->rpc->name() : "<none>";
}

TEST(RouteTableTest, OneRoutePerBindingAndNoneForInternalRpcs) {
  RouteTable t = Kitchen();
  int me = 0;
  for (const auto& r : t.routes()) {
    EXPECT_NE(r->rpc->name(), "Internal");
    if (r->rpc->name() == "Me") ++me;
  }
  EXPECT_EQ(me, 2);  // the rule and its additional binding
  EXPECT_EQ(t.routes().size(), 12u);
}

TEST(RouteTableTest, CarriesRuleAndAccess) {
  RouteTable t = Kitchen();
  auto m = t.Match("POST", "/v1/kitchen");
  ASSERT_EQ(m.kind, MatchResult::Kind::kFound);
  EXPECT_EQ(m.route->rpc_path, "/portico.testing.v1.KitchenService/Create");
  EXPECT_EQ(m.route->service, kKitchen);
  EXPECT_EQ(m.route->body, "*");
  EXPECT_EQ(m.route->success_status, 201);
  EXPECT_EQ(m.route->access, Access::kAdmin);
  EXPECT_EQ(m.route->scopes, std::vector<std::string>{"kitchen:write"});

  EXPECT_EQ(t.Match("GET", "/v1/kitchen/x").route->access, Access::kPublic);
  // No access option: USER.
  EXPECT_EQ(t.Match("GET", "/v1/me").route->access, Access::kUser);
  EXPECT_TRUE(t.Match("GET", "/v1/kitchen/x:watch").route->server_streaming);
}

TEST(RouteTableTest, CarriesTheRuleDeadlineToEveryBinding) {
  RouteTable t = Kitchen();
  EXPECT_EQ(t.Match("GET", "/v1/kitchen/me").route->timeout, std::chrono::milliseconds(2500));
  EXPECT_EQ(t.Match("GET", "/v1/me").route->timeout, std::chrono::milliseconds(2500));
  EXPECT_EQ(t.Match("POST", "/v1/kitchen").route->timeout, std::chrono::milliseconds(0));
  // Sign-in sheds work after 5 s instead of the gateway's default.
  RouteTable real = Real();
  EXPECT_EQ(real.Match("POST", "/v1/auth/login").route->timeout, std::chrono::milliseconds(5000));
  EXPECT_EQ(real.Match("POST", "/v1/auth/register").route->timeout, std::chrono::milliseconds(0));
}

TEST(RouteTableTest, LiteralBeatsVariableRegardlessOfDeclarationOrder) {
  RouteTable t = Kitchen();
  EXPECT_EQ(RpcOf(t.Match("GET", "/v1/kitchen/me")), "Me");
  auto m = t.Match("GET", "/v1/kitchen/abc");
  EXPECT_EQ(RpcOf(m), "Get");
  EXPECT_EQ(m.vars, (PathVars{{"id", "abc"}}));
  EXPECT_EQ(RpcOf(t.Match("GET", "/v1/me")), "Me");
}

TEST(RouteTableTest, SingleBeatsMulti) {
  RouteTable t = Kitchen();
  auto meta = t.Match("GET", "/v1/files/report/meta");
  EXPECT_EQ(RpcOf(meta), "FileMeta");
  EXPECT_EQ(meta.vars, (PathVars{{"path", "report"}}));
  auto deep = t.Match("GET", "/v1/files/a/b/meta/c");
  EXPECT_EQ(RpcOf(deep), "Files");
  EXPECT_EQ(deep.vars, (PathVars{{"path", "a/b/meta/c"}}));
  // '**' needs at least one segment.
  EXPECT_EQ(t.Match("GET", "/v1/files").kind, MatchResult::Kind::kNotFound);
}

TEST(RouteTableTest, CustomVerb) {
  RouteTable t = Kitchen();
  auto watch = t.Match("GET", "/v1/kitchen/k1:watch");
  EXPECT_EQ(RpcOf(watch), "Watch");
  EXPECT_EQ(watch.vars, (PathVars{{"id", "k1"}}));
  // A ':' that is not a known verb stays in the variable.
  auto plain = t.Match("GET", "/v1/kitchen/k1:other");
  EXPECT_EQ(RpcOf(plain), "Get");
  EXPECT_EQ(plain.vars, (PathVars{{"id", "k1:other"}}));
  EXPECT_EQ(RpcOf(t.Match("POST", "/v1/kitchen/k1:accept")), "Accepted");
  // An empty segment before the verb cannot be the verb's: it is a plain id.
  EXPECT_EQ(RpcOf(t.Match("GET", "/v1/kitchen/:watch")), "Get");
}

TEST(RouteTableTest, PercentDecodingHappensOncePerSegmentAfterSplitting) {
  RouteTable t = Kitchen();
  auto m = t.Match("GET", "/v1/kitchen/a%2Fb");
  EXPECT_EQ(RpcOf(m), "Get");
  EXPECT_EQ(m.vars, (PathVars{{"id", "a/b"}}));
  auto twice = t.Match("GET", "/v1/kitchen/a%252F");
  EXPECT_EQ(twice.vars, (PathVars{{"id", "a%2F"}}));
  auto utf8 = t.Match("GET", "/v1/kitchen/%E2%82%AC");
  EXPECT_EQ(utf8.vars, (PathVars{{"id", "\xe2\x82\xac"}}));
  // Literals compare decoded.
  EXPECT_EQ(RpcOf(t.Match("GET", "/v1/kitchen/m%65")), "Me");
  EXPECT_EQ(t.Match("GET", "/v1/kitchen/%zz").kind, MatchResult::Kind::kBadPath);
}

TEST(RouteTableTest, NotFound) {
  RouteTable t = Kitchen();
  for (const char* path : {"/", "", "v1/kitchen", "/v1", "/v1/kitchen/a/b", "/v1/kitchen/",
                           "/v1/kitchen//", "/v2/kitchen/a", "/v1/nested/"}) {
    EXPECT_EQ(t.Match("GET", path).kind, MatchResult::Kind::kNotFound) << path;
  }
}

TEST(RouteTableTest, MethodNotAllowedListsEveryMethodOfThePath) {
  RouteTable t = Kitchen();
  auto m = t.Match("PATCH", "/v1/kitchen/abc");
  ASSERT_EQ(m.kind, MatchResult::Kind::kMethodNotAllowed);
  EXPECT_EQ(m.allowed, (std::vector<std::string>{"DELETE", "GET", "PUT"}));
  auto head = t.Match("HEAD", "/v1/kitchen");
  ASSERT_EQ(head.kind, MatchResult::Kind::kMethodNotAllowed);
  EXPECT_EQ(head.allowed, (std::vector<std::string>{"POST"}));
  // Methods are case-sensitive.
  EXPECT_EQ(t.Match("get", "/v1/kitchen/a").kind, MatchResult::Kind::kMethodNotAllowed);
}

TEST(RouteTableTest, MethodComesBeforeSpecificity) {
  RouteTable t = Kitchen();
  // /v1/kitchen/me has only GET; DELETE falls back to /v1/kitchen/{id}.
  auto m = t.Match("DELETE", "/v1/kitchen/me");
  EXPECT_EQ(RpcOf(m), "Delete");
  EXPECT_EQ(m.vars, (PathVars{{"id", "me"}}));
}

TEST(RouteTableTest, NestedVariable) {
  RouteTable t = Kitchen();
  auto m = t.Match("GET", "/v1/nested/n1");
  EXPECT_EQ(RpcOf(m), "Nested");
  EXPECT_EQ(m.vars, (PathVars{{"inner.name", "n1"}}));
}

TEST(RouteTableTest, SameShapeSameMethodIsAStartupErrorNamingBoth) {
  auto t = RouteTable::Build({"portico.testing.v1.ConflictService"});
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.error().message.find("portico.testing.v1.ConflictService.ById"), std::string::npos)
      << t.error().message;
  EXPECT_NE(t.error().message.find("portico.testing.v1.ConflictService.ByName"), std::string::npos)
      << t.error().message;
}

TEST(RouteTableTest, BadRulesAreStartupErrors) {
  auto bad_template = RouteTable::Build({"portico.testing.v1.BadTemplateService"});
  ASSERT_FALSE(bad_template.ok());
  EXPECT_NE(bad_template.error().message.find("BadTemplateService.Bad"), std::string::npos);
  EXPECT_NE(bad_template.error().message.find("unbalanced"), std::string::npos);

  auto bad_var = RouteTable::Build({"portico.testing.v1.BadVariableService"});
  ASSERT_FALSE(bad_var.ok());
  EXPECT_NE(bad_var.error().message.find("nope"), std::string::npos) << bad_var.error().message;

  auto bad_body = RouteTable::Build({"portico.testing.v1.BadBodyService"});
  ASSERT_FALSE(bad_body.ok());
  EXPECT_NE(bad_body.error().message.find("body \"nope\""), std::string::npos)
      << bad_body.error().message;

  auto bad_stream = RouteTable::Build({"portico.testing.v1.BadStreamService"});
  ASSERT_FALSE(bad_stream.ok());
  EXPECT_NE(bad_stream.error().message.find("\"nope\""), std::string::npos)
      << bad_stream.error().message;
  auto unary_stream = RouteTable::Build({"portico.testing.v1.StreamFieldsOnUnaryService"});
  ASSERT_FALSE(unary_stream.ok());
  EXPECT_NE(unary_stream.error().message.find("server-streaming"), std::string::npos)
      << unary_stream.error().message;

  auto bad_mask = RouteTable::Build({"portico.testing.v1.BadFieldMaskService"});
  ASSERT_FALSE(bad_mask.ok());
  EXPECT_NE(bad_mask.error().message.find("body_field_mask \"account\" must name a singular "
                                          "google.protobuf.FieldMask"),
            std::string::npos)
      << bad_mask.error().message;
  auto mask_no_body = RouteTable::Build({"portico.testing.v1.FieldMaskWithoutBodyService"});
  ASSERT_FALSE(mask_no_body.ok());
  EXPECT_NE(mask_no_body.error().message.find("needs a body"), std::string::npos)
      << mask_no_body.error().message;
  auto good_mask = RouteTable::Build({"portico.testing.v1.AccountService"});
  ASSERT_TRUE(good_mask.ok()) << good_mask.error().message;
  EXPECT_EQ(good_mask->routes()[0]->body_field_mask, "update_mask");

  auto unknown = RouteTable::Build({"portico.nope.v1.Nothing"});
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.error().message.find("portico.nope.v1.Nothing"), std::string::npos);
}

TEST(RouteTableTest, RealServices) {
  RouteTable t = Real();
  EXPECT_EQ(RpcOf(t.Match("GET", "/v1/users/me")), "GetMe");
  EXPECT_EQ(RpcOf(t.Match("PATCH", "/v1/users/me")), "UpdateMe");
  EXPECT_EQ(RpcOf(t.Match("DELETE", "/v1/users/me")), "DeleteMe");
  EXPECT_EQ(RpcOf(t.Match("GET", "/v1/users/0190")), "GetUser");
  EXPECT_EQ(RpcOf(t.Match("GET", "/v1/users")), "ListUsers");
  EXPECT_EQ(RpcOf(t.Match("GET", "/v1/auth/jwks")), "GetJwks");
  EXPECT_EQ(RpcOf(t.Match("GET", "/.well-known/jwks.json")), "GetJwks");
  EXPECT_EQ(RpcOf(t.Match("DELETE", "/v1/users/me/sessions/s1")), "RevokeSession");
  EXPECT_EQ(RpcOf(t.Match("GET", "/v1/collections/notes/changes")), "ListChanges");
  auto watch = t.Match("GET", "/v1/collections/notes/changes:watch");
  EXPECT_EQ(RpcOf(watch), "WatchChanges");
  ASSERT_EQ(watch.kind, MatchResult::Kind::kFound);
  EXPECT_EQ(watch.route->stream_event_id, "seq");
  EXPECT_EQ(watch.route->stream_resume, "since");
  auto item = t.Match("PUT", "/v1/collections/notes/items/i1");
  EXPECT_EQ(RpcOf(item), "ReplaceItem");
  EXPECT_EQ(item.vars, (PathVars{{"collection", "notes"}, {"id", "i1"}}));

  auto put_me = t.Match("PUT", "/v1/users/me");
  ASSERT_EQ(put_me.kind, MatchResult::Kind::kMethodNotAllowed);
  EXPECT_EQ(put_me.allowed, (std::vector<std::string>{"DELETE", "GET", "PATCH"}));
  for (const auto& r : t.routes()) {
    EXPECT_NE(r->rpc->name(), "Introspect");
  }
  // Internal services have no rules at all.
  auto internal = RouteTable::Build({"portico.data.v1.DataAdmin"});
  ASSERT_TRUE(internal.ok());
  EXPECT_TRUE(internal->routes().empty());
}

}  // namespace
}  // namespace portico::transcode
