#include "portico/transcode/transcoder.h"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <google/protobuf/util/time_util.h>

#include "portico/data/v1/data.pb.h"
#include "portico_transcode_testing.pb.h"

namespace portico::transcode {
namespace {

using portico::testing::v1::Kitchen;

class TranscoderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto t = RouteTable::Build({"portico.testing.v1.KitchenService", "portico.data.v1.DataService"});
    ASSERT_TRUE(t.ok()) << t.error().message;
    table_ = std::move(t).value();
  }

  // Matches and builds; the request must be a Kitchen.
  Result<Kitchen> Build(std::string_view method, std::string_view path, std::string_view query,
                        std::string_view body = "") {
    auto m = table_.Match(method, path);
    EXPECT_EQ(m.kind, MatchResult::Kind::kFound) << method << " " << path;
    if (m.kind != MatchResult::Kind::kFound) return Error::NotFound("no route");
    route_ = m.route;
    auto msg = BuildRequest(*m.route, m.vars, query, body);
    if (!msg.ok()) return std::move(msg).error();
    Kitchen k;
    k.CopyFrom(**msg);
    return k;
  }

  const Route* RouteFor(std::string_view method, std::string_view path) {
    auto m = table_.Match(method, path);
    EXPECT_EQ(m.kind, MatchResult::Kind::kFound);
    return m.route;
  }

  RouteTable table_;
  const Route* route_ = nullptr;
};

TEST_F(TranscoderTest, PathVariablesFillFields) {
  auto k = Build("GET", "/v1/kitchen/abc%2Fdef", "");
  ASSERT_TRUE(k.ok()) << k.error().message;
  EXPECT_EQ(k->id(), "abc/def");

  auto nested = Build("GET", "/v1/nested/n%20one", "");
  ASSERT_TRUE(nested.ok()) << nested.error().message;
  EXPECT_EQ(nested->inner().name(), "n one");
}

TEST_F(TranscoderTest, QueryParametersOfEveryKind) {
  auto k = Build("GET", "/v1/kitchen/k",
                 "i32=-5&i64=9007199254740993&u32=7&u64=18446744073709551615&f=1.5&d=-2.25e3"
                 "&b=TRUE&color=dark_green&raw=aGk%3D&tags=a&tags=b+c&nums=1&nums=2"
                 "&colors=RED&colors=2&inner.count=3&inner.leaf.flag=1"
                 "&when=2024-05-01T10:00:00.5Z&maybe=42&opt=&displayName=Ann");
  ASSERT_TRUE(k.ok()) << k.error().message;
  EXPECT_EQ(k->i32(), -5);
  EXPECT_EQ(k->i64(), 9007199254740993LL);
  EXPECT_EQ(k->u32(), 7u);
  EXPECT_EQ(k->u64(), 18446744073709551615ULL);
  EXPECT_FLOAT_EQ(k->f(), 1.5f);
  EXPECT_DOUBLE_EQ(k->d(), -2250.0);
  EXPECT_TRUE(k->b());
  EXPECT_EQ(k->color(), portico::testing::v1::DARK_GREEN);
  EXPECT_EQ(k->raw(), "hi");
  EXPECT_EQ(std::vector<std::string>(k->tags().begin(), k->tags().end()),
            (std::vector<std::string>{"a", "b c"}));
  EXPECT_EQ(std::vector<int>(k->nums().begin(), k->nums().end()), (std::vector<int>{1, 2}));
  ASSERT_EQ(k->colors_size(), 2);
  EXPECT_EQ(k->colors(0), portico::testing::v1::RED);
  EXPECT_EQ(k->colors(1), portico::testing::v1::DARK_GREEN);
  EXPECT_EQ(k->inner().count(), 3);
  EXPECT_TRUE(k->inner().leaf().flag());
  EXPECT_EQ(google::protobuf::util::TimeUtil::ToString(k->when()), "2024-05-01T10:00:00.500Z");
  ASSERT_TRUE(k->has_maybe());
  EXPECT_EQ(k->maybe().value(), 42);
  EXPECT_TRUE(k->has_opt());  // explicit presence, set to ""
  EXPECT_EQ(k->display_name(), "Ann");
  EXPECT_EQ(k->id(), "k");
}

TEST_F(TranscoderTest, QueryAcceptsProtoNames) {
  auto k = Build("GET", "/v1/kitchen/k", "display_name=Bo&inner.leaf.flag=false");
  ASSERT_TRUE(k.ok()) << k.error().message;
  EXPECT_EQ(k->display_name(), "Bo");
}

void ExpectInvalid(const Result<Kitchen>& r, std::string_view field, std::string_view text) {
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(r.error().message.find(text), std::string::npos) << r.error().message;
  if (!field.empty()) {
    ASSERT_EQ(r.error().fields.size(), 1u) << r.error().message;
    EXPECT_EQ(r.error().fields[0].field, field);
  }
}

TEST_F(TranscoderTest, UnknownQueryParameterIsNamed) {
  ExpectInvalid(Build("GET", "/v1/kitchen/k", "nope=1"), "nope", "unknown query parameter \"nope\"");
  ExpectInvalid(Build("GET", "/v1/kitchen/k", "inner.nope=1"), "inner.nope", "inner.nope");
  ExpectInvalid(Build("GET", "/v1/kitchen/k", "i32.x=1"), "i32.x", "unknown query parameter");
  // Map and Struct fields cannot come from the query.
  ExpectInvalid(Build("GET", "/v1/kitchen/k", "labels=x"), "labels", "cannot be set");
}

TEST_F(TranscoderTest, BadValuesNameTheField) {
  ExpectInvalid(Build("GET", "/v1/kitchen/k", "i32=abc"), "i32", "32-bit integer");
  ExpectInvalid(Build("GET", "/v1/kitchen/k", "i32=2147483648"), "i32", "32-bit integer");
  ExpectInvalid(Build("GET", "/v1/kitchen/k", "i64=1.5"), "i64", "64-bit integer");
  ExpectInvalid(Build("GET", "/v1/kitchen/k", "u32=-1"), "u32", "unsigned");
  ExpectInvalid(Build("GET", "/v1/kitchen/k", "d=1x"), "d", "number");
  ExpectInvalid(Build("GET", "/v1/kitchen/k", "d=inf"), "d", "number");
  ExpectInvalid(Build("GET", "/v1/kitchen/k", "f=1e39"), "f", "float");
  ExpectInvalid(Build("GET", "/v1/kitchen/k", "b=yes"), "b", "true or false");
  ExpectInvalid(Build("GET", "/v1/kitchen/k", "color=BLUE"), "color", "RED");
  ExpectInvalid(Build("GET", "/v1/kitchen/k", "color=7"), "color", "one of");
  ExpectInvalid(Build("GET", "/v1/kitchen/k", "when=yesterday"), "when", "RFC 3339");
  ExpectInvalid(Build("GET", "/v1/kitchen/k", "maybe=x"), "maybe", "integer");
  ExpectInvalid(Build("GET", "/v1/kitchen/k", "raw=@@"), "raw", "base64");
  ExpectInvalid(Build("GET", "/v1/kitchen/k", "displayName=%FF"), "displayName", "UTF-8");
  ExpectInvalid(Build("GET", "/v1/kitchen/k", "inner.count=1&inner.count=2"), "inner.count",
                "more than once");
  ExpectInvalid(Build("GET", "/v1/kitchen/k", "displayName=a&display_name=b"), "displayName",
                "more than once");
  ExpectInvalid(Build("GET", "/v1/kitchen/k", "a=%zz"), "", "percent");
  // Path values go through the same checks.
  ExpectInvalid(Build("GET", "/v1/kitchen/%FF", ""), "id", "UTF-8");
}

TEST_F(TranscoderTest, QueryCannotOverridePathOrBody) {
  ExpectInvalid(Build("GET", "/v1/kitchen/k", "id=other"), "id", "unknown query parameter");
  ExpectInvalid(Build("GET", "/v1/nested/n", "inner.name=x"), "inner.name", "unknown");
  ExpectInvalid(Build("GET", "/v1/nested/n", "inner=x"), "inner", "unknown");
  // body "*": every field comes from the body.
  ExpectInvalid(Build("POST", "/v1/kitchen", "i32=1", "{}"), "i32", "unknown query parameter");
  // body "inner": inner.* cannot come from the query, others can.
  ExpectInvalid(Build("PUT", "/v1/kitchen/k", "inner.count=1", "{}"), "inner.count", "unknown");
  auto ok = Build("PUT", "/v1/kitchen/k", "i32=4", R"({"count":2})");
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok->i32(), 4);
  EXPECT_EQ(ok->inner().count(), 2);
}

TEST_F(TranscoderTest, WholeBody) {
  auto k = Build("POST", "/v1/kitchen", "",
                 R"({"displayName":"A","i64":"12","tags":["x"],"color":"red","inner":{"leaf":{"flag":true}},
                     "when":"2024-01-02T03:04:05Z","labels":{"k":"v"},"data":{"n":1,"s":["t"]}})");
  ASSERT_TRUE(k.ok()) << k.error().message;
  EXPECT_EQ(k->display_name(), "A");
  EXPECT_EQ(k->i64(), 12);
  EXPECT_EQ(k->tags_size(), 1);
  EXPECT_EQ(k->color(), portico::testing::v1::RED);
  EXPECT_TRUE(k->inner().leaf().flag());
  EXPECT_EQ(k->when().seconds(), 1704164645);
  EXPECT_EQ(k->labels().at("k"), "v");
  EXPECT_EQ(k->data().fields().at("n").number_value(), 1.0);

  auto proto_names = Build("POST", "/v1/kitchen", "", R"({"display_name":"B"})");
  ASSERT_TRUE(proto_names.ok()) << proto_names.error().message;
  EXPECT_EQ(proto_names->display_name(), "B");

  auto empty = Build("POST", "/v1/kitchen", "", "");
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->ByteSizeLong(), 0u);
}

TEST_F(TranscoderTest, BadBodies) {
  ExpectInvalid(Build("POST", "/v1/kitchen", "", R"({"nope":1})"), "", "invalid JSON body");
  ExpectInvalid(Build("POST", "/v1/kitchen", "", R"({"i32":)"), "", "invalid JSON body");
  ExpectInvalid(Build("POST", "/v1/kitchen", "", R"([1,2])"), "", "invalid JSON body");
  ExpectInvalid(Build("POST", "/v1/kitchen", "", R"({"i32":"x"})"), "", "invalid JSON body");
  ExpectInvalid(Build("POST", "/v1/kitchen", "", "not json"), "", "invalid JSON body");
  // No body rule: a body is an error.
  ExpectInvalid(Build("GET", "/v1/kitchen/k", "", "{}"), "", "takes no request body");
  EXPECT_TRUE(Build("GET", "/v1/kitchen/k", "", " \r\n").ok());
}

TEST_F(TranscoderTest, PathWinsOverBody) {
  auto data = table_.Match("POST", "/v1/collections/notes/items");
  ASSERT_EQ(data.kind, MatchResult::Kind::kFound);
  auto msg = BuildRequest(*data.route, data.vars, "",
                          R"({"collection":"someone-elses","data":{"title":"t"}})");
  ASSERT_TRUE(msg.ok()) << msg.error().message;
  portico::data::v1::CreateItemRequest req;
  req.CopyFrom(**msg);
  EXPECT_EQ(req.collection(), "notes");
  EXPECT_EQ(req.data(), R"({"title":"t"})");
}

TEST_F(TranscoderTest, BodyIntoOneField) {
  auto msg = Build("PUT", "/v1/kitchen/k", "", R"({"name":"n","count":3})");
  ASSERT_TRUE(msg.ok()) << msg.error().message;
  EXPECT_EQ(msg->inner().name(), "n");
  EXPECT_EQ(msg->id(), "k");
  ExpectInvalid(Build("PUT", "/v1/kitchen/k", "", R"({"id":"x"})"), "", "invalid JSON body");

  // A repeated field as the body: a JSON array, and nothing else can ride along.
  auto tags = Build("POST", "/v1/kitchen/k/tags", "", R"(["a","b"])");
  ASSERT_TRUE(tags.ok()) << tags.error().message;
  EXPECT_EQ(tags->tags_size(), 2);
  ExpectInvalid(Build("POST", "/v1/kitchen/k/tags", "", R"(["a"], "i32": 5)"), "",
                "invalid JSON body");
  ExpectInvalid(Build("POST", "/v1/kitchen/k/tags", "", R"({"a":1})"), "", "invalid JSON body");
}

TEST_F(TranscoderTest, RenderWholeMessageWithDefaults) {
  Kitchen k;
  k.set_display_name("Ann");
  k.set_i64(5);
  auto out = RenderResponse(*RouteFor("GET", "/v1/kitchen/x"), k);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->status, 200);
  auto json = boost::json::parse(out->json).as_object();
  EXPECT_EQ(json.at("displayName").as_string(), "Ann");
  EXPECT_EQ(json.at("i64").as_string(), "5");  // 64-bit integers are strings
  EXPECT_EQ(json.at("i32").as_int64(), 0);      // defaults are printed
  EXPECT_EQ(json.at("b").as_bool(), false);
  EXPECT_EQ(json.at("color").as_string(), "COLOR_UNSPECIFIED");
  EXPECT_TRUE(json.at("tags").as_array().empty());
  EXPECT_FALSE(json.contains("display_name"));
}

TEST_F(TranscoderTest, RenderStatuses) {
  Kitchen k;
  auto created = RenderResponse(*RouteFor("POST", "/v1/kitchen"), k);
  ASSERT_TRUE(created.ok());
  EXPECT_EQ(created->status, 201);
  EXPECT_FALSE(created->json.empty());

  google::protobuf::Empty empty;
  auto deleted = RenderResponse(*RouteFor("DELETE", "/v1/kitchen/x"), empty);
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(deleted->status, 204);
  EXPECT_TRUE(deleted->json.empty());

  auto accepted = RenderResponse(*RouteFor("POST", "/v1/kitchen/x:accept"), empty);
  ASSERT_TRUE(accepted.ok());
  EXPECT_EQ(accepted->status, 202);
  EXPECT_EQ(accepted->json, "{}");
}

TEST_F(TranscoderTest, RenderResponseBodyField) {
  Kitchen k;
  k.mutable_inner()->set_name("in");
  k.add_tags("t1");
  k.add_tags("t2");
  auto inner = RenderResponse(*RouteFor("PUT", "/v1/kitchen/x"), k);
  ASSERT_TRUE(inner.ok());
  auto obj = boost::json::parse(inner->json).as_object();
  EXPECT_EQ(obj.at("name").as_string(), "in");
  EXPECT_EQ(obj.at("count").as_int64(), 0);
  EXPECT_FALSE(obj.contains("tags"));

  auto tags = RenderResponse(*RouteFor("POST", "/v1/kitchen/x/tags"), k);
  ASSERT_TRUE(tags.ok());
  EXPECT_EQ(tags->json, R"(["t1","t2"])");
}

TEST(ParseQueryTest, DecodesPairs) {
  auto q = ParseQuery("a=1&&b=x+y%26z&c&=v&d=");
  ASSERT_TRUE(q.ok());
  std::vector<std::pair<std::string, std::string>> want{
      {"a", "1"}, {"b", "x y&z"}, {"c", ""}, {"", "v"}, {"d", ""}};
  EXPECT_EQ(*q, want);
  EXPECT_FALSE(ParseQuery("a=%G0").ok());
  auto empty = ParseQuery("");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

// body_field_mask: the mask lists the body's keys as proto field paths.
class BodyFieldMaskTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto t = RouteTable::Build({"portico.testing.v1.AccountService"});
    ASSERT_TRUE(t.ok()) << t.error().message;
    table_ = std::move(t).value();
  }

  template <typename T>
  Result<T> Build(std::string_view path, std::string_view query, std::string_view body) {
    auto m = table_.Match("PATCH", path);
    EXPECT_EQ(m.kind, MatchResult::Kind::kFound) << path;
    if (m.kind != MatchResult::Kind::kFound) return Error::NotFound("no route");
    auto msg = BuildRequest(*m.route, m.vars, query, body);
    if (!msg.ok()) return std::move(msg).error();
    T out;
    out.CopyFrom(**msg);
    return out;
  }

  static std::vector<std::string> Paths(const google::protobuf::FieldMask& mask) {
    return {mask.paths().begin(), mask.paths().end()};
  }

  RouteTable table_;
};

using portico::testing::v1::PatchAccountRequest;
using portico::testing::v1::UpdateAccountRequest;
using Strings = std::vector<std::string>;

TEST_F(BodyFieldMaskTest, CamelCaseAndProtoNamesGiveProtoPaths) {
  auto r = Build<UpdateAccountRequest>("/v1/accounts/a1", "",
                                       R"({"displayName":"Bo","tags":["x"],"labels":{"k":"v"}})");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->account().id(), "a1");
  EXPECT_EQ(r->account().display_name(), "Bo");
  EXPECT_TRUE(r->has_update_mask());
  EXPECT_EQ(Paths(r->update_mask()), (Strings{"display_name", "tags", "labels"}));

  auto proto_names = Build<UpdateAccountRequest>("/v1/accounts/a1", "", R"({"display_name":"Bo"})");
  ASSERT_TRUE(proto_names.ok()) << proto_names.error().message;
  EXPECT_EQ(Paths(proto_names->update_mask()), (Strings{"display_name"}));
}

TEST_F(BodyFieldMaskTest, NestedMessagesGiveDottedPathsWellKnownTypesDoNot) {
  auto r = Build<UpdateAccountRequest>(
      "/v1/accounts/a1", "",
      R"({"profile":{"city":"Oslo","countryCode":"NO","leaf":{"flag":true}},)"
      R"("data":{"a":{"b":1}},"when":"2024-01-02T03:04:05Z"})");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->account().profile().city(), "Oslo");
  EXPECT_EQ(Paths(r->update_mask()), (Strings{"profile.city", "profile.country_code",
                                              "profile.leaf.flag", "data", "when"}));

  // An empty object or null replaces the message whole.
  auto whole = Build<UpdateAccountRequest>("/v1/accounts/a1", "", R"({"profile":{}})");
  ASSERT_TRUE(whole.ok()) << whole.error().message;
  EXPECT_EQ(Paths(whole->update_mask()), (Strings{"profile"}));
  auto null = Build<UpdateAccountRequest>("/v1/accounts/a1", "", R"({"profile":null})");
  ASSERT_TRUE(null.ok()) << null.error().message;
  EXPECT_EQ(Paths(null->update_mask()), (Strings{"profile"}));
}

TEST_F(BodyFieldMaskTest, ExplicitQueryMaskWins) {
  auto r = Build<UpdateAccountRequest>("/v1/accounts/a1", "updateMask=profile.city",
                                       R"({"displayName":"Bo"})");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(Paths(r->update_mask()), (Strings{"profile.city"}));

  auto list = Build<UpdateAccountRequest>("/v1/accounts/a1", "update_mask=displayName,profile.countryCode",
                                          R"({"displayName":"Bo"})");
  ASSERT_TRUE(list.ok()) << list.error().message;
  EXPECT_EQ(Paths(list->update_mask()), (Strings{"display_name", "profile.country_code"}));

  auto bad = Build<UpdateAccountRequest>("/v1/accounts/a1", "updateMask=a,,b", "{}");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("updateMask"), std::string::npos) << bad.error().message;
}

TEST_F(BodyFieldMaskTest, NoBodyKeysNoPaths) {
  auto empty = Build<UpdateAccountRequest>("/v1/accounts/a1", "", "{}");
  ASSERT_TRUE(empty.ok()) << empty.error().message;
  EXPECT_TRUE(Paths(empty->update_mask()).empty());
  auto blank = Build<UpdateAccountRequest>("/v1/accounts/a1", "", "");
  ASSERT_TRUE(blank.ok()) << blank.error().message;
  EXPECT_FALSE(blank->has_update_mask());
}

TEST_F(BodyFieldMaskTest, UnknownKeysStayBadRequests) {
  auto r = Build<UpdateAccountRequest>("/v1/accounts/a1", "", R"({"nope":1})");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(r.error().message.find("invalid JSON body"), std::string::npos) << r.error().message;
  auto nested = Build<UpdateAccountRequest>("/v1/accounts/a1", "", R"({"profile":{"nope":1}})");
  ASSERT_FALSE(nested.ok());
}

TEST_F(BodyFieldMaskTest, WholeBodyKeysAndAMaskInTheBodyWins) {
  auto r = Build<PatchAccountRequest>("/v1/profiles/p1", "",
                                      R"({"displayName":"Bo","profile":{"city":"Oslo"}})");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->id(), "p1");
  EXPECT_EQ(Paths(r->update_mask()), (Strings{"display_name", "profile.city"}));

  auto own = Build<PatchAccountRequest>("/v1/profiles/p1", "",
                                        R"({"displayName":"Bo","updateMask":"profile"})");
  ASSERT_TRUE(own.ok()) << own.error().message;
  EXPECT_EQ(Paths(own->update_mask()), (Strings{"profile"}));
}

}  // namespace
}  // namespace portico::transcode
