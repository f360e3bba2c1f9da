// json_object fields (an item's `data`): the rules a stored JSON object
// obeys, the request rewrite that passes its text on byte for byte, and the
// response splice — through the real DataService routes.
#include "portico/transcode/json_object.h"

#include <gtest/gtest.h>

#include "portico/data/v1/data.pb.h"
#include "portico/transcode/route_table.h"
#include "portico/transcode/transcoder.h"

namespace portico::transcode {
namespace {

namespace v1 = portico::data::v1;

// The reason a value is refused, as the client reads it in `errors`.
std::string Why(const Status& st) {
  if (st.ok()) return "ok";
  EXPECT_EQ(st.error().code, ErrorCode::kInvalidArgument);
  if (st.error().fields.size() != 1) return "fields: " + std::to_string(st.error().fields.size());
  return st.error().fields[0].field + ": " + st.error().fields[0].message;
}

std::string Nested(int levels) {
  std::string s;
  for (int i = 0; i < levels; ++i) s += R"({"a":)";
  s += "1";
  for (int i = 0; i < levels; ++i) s += "}";
  return s;
}

TEST(ValidateJsonObject, AcceptsEveryObjectItCanStoreExactly) {
  for (const char* ok : {R"({})", R"({"id":9007199254740993})", R"({"x":1e400,"y":-0})",
                         R"({"d":0.1000000000000000055511})", R"({"s":"\ud83d\ude00 😀"})",
                         R"( { "a" : [ 1 , { "a" : 2 } ] } )", R"({"a":{"a":1},"b":{"a":2}})"}) {
    EXPECT_EQ(Why(ValidateJsonObject(ok, "data")), "ok") << ok;
  }
  EXPECT_EQ(Why(ValidateJsonObject(Nested(kMaxJsonObjectDepth), "data")), "ok");
}

TEST(ValidateJsonObject, NamesTheFieldAndSaysWhyInJsonsWords) {
  EXPECT_EQ(Why(ValidateJsonObject("[1,2]", "data")), "data: must be a JSON object");
  EXPECT_EQ(Why(ValidateJsonObject("3", "data")), "data: must be a JSON object");
  EXPECT_EQ(Why(ValidateJsonObject("null", "data")), "data: must be a JSON object");
  EXPECT_EQ(Why(ValidateJsonObject(R"({"a":1,"a":2})", "data")),
            "data: has the member \"a\" twice in one object");
  EXPECT_EQ(Why(ValidateJsonObject(R"({"o":{"k":1,"k":1}})", "data")),
            "data: has the member \"k\" twice in one object");
  EXPECT_EQ(Why(ValidateJsonObject(R"({"s":"a\u0000b"})", "data")),
            "data: must not contain \\u0000 in a string");
  EXPECT_EQ(Why(ValidateJsonObject(R"({"a\u0000":1})", "data")),
            "data: must not contain \\u0000 in a member name");
  EXPECT_EQ(Why(ValidateJsonObject(R"({"s":"\udc00"})", "data")),
            "data: has a lone surrogate (\\uD800-\\uDFFF) in a string");
  EXPECT_EQ(Why(ValidateJsonObject(R"({"s":"\ud800"})", "data")), "data: is not valid JSON");
  EXPECT_EQ(Why(ValidateJsonObject(Nested(kMaxJsonObjectDepth + 1), "data")),
            "data: must not nest deeper than 64 levels");
  EXPECT_EQ(Why(ValidateJsonObject(R"({"a":1} x)", "data")),
            "data: is not valid JSON: there is more after the value");
  EXPECT_EQ(Why(ValidateJsonObject(R"({"a":)", "data")), "data: is not valid JSON: it ends too early");
  EXPECT_EQ(Why(ValidateJsonObject("{\"s\":\"\xff\"}", "data")), "data: is not valid JSON");
  EXPECT_EQ(Why(ValidateJsonObject(R"({"s":"0123456789"})", "data", 10)),
            "data: must be at most 10 bytes of JSON");
}

class JsonObjectRoutesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto t = RouteTable::Build({"portico.data.v1.DataService"});
    ASSERT_TRUE(t.ok()) << t.error().message;
    table_ = std::move(t).value();
  }
  const Route& RouteFor(std::string_view method, std::string_view path) {
    auto m = table_.Match(method, path);
    EXPECT_EQ(m.kind, MatchResult::Kind::kFound);
    vars_ = m.vars;
    return *m.route;
  }
  Result<v1::CreateItemRequest> Create(std::string_view body) {
    const Route& route = RouteFor("POST", "/v1/collections/notes/items");
    auto msg = BuildRequest(route, vars_, "", body);
    if (!msg.ok()) return std::move(msg).error();
    v1::CreateItemRequest req;
    req.CopyFrom(**msg);
    return req;
  }
  Status CreateStatus(std::string_view body) {
    auto r = Create(body);
    if (!r.ok()) return std::move(r).error();
    return {};
  }

  RouteTable table_;
  PathVars vars_;
};

TEST_F(JsonObjectRoutesTest, DataTravelsAsItsTextWithEveryDigit) {
  auto req = Create(
      R"({"data": {"id": 9007199254740993, "big": 1e400, "d": 0.1000000000000000055511,)"
      R"( "neg": -0, "e": 1E+2, "s": "😀 \ud83d\ude00 \"q\" \\ \n", "a": [1, {"x": null}]}})");
  ASSERT_TRUE(req.ok()) << req.error().message;
  EXPECT_EQ(req->collection(), "notes");
  EXPECT_EQ(req->data(),
            R"({"id":9007199254740993,"big":1e400,"d":0.1000000000000000055511,"neg":-0,)"
            R"("e":1E+2,"s":"😀 😀 \"q\" \\ \n","a":[1,{"x":null}]})");
  EXPECT_EQ(Why(ValidateJsonObject(req->data(), "data")), "ok");
}

TEST_F(JsonObjectRoutesTest, BadDataIsA400NamingDataInJsonsWords) {
  EXPECT_EQ(Why(CreateStatus(R"({"data":[1,2]})")), "data: must be a JSON object");
  EXPECT_EQ(Why(CreateStatus(R"({"data":"{}"})")), "data: must be a JSON object");
  EXPECT_EQ(Why(CreateStatus(R"({"data":{"a":1,"a":2}})")),
            "data: has the member \"a\" twice in one object");
  EXPECT_EQ(Why(CreateStatus(R"({"data":{"s":"\u0000"}})")),
            "data: must not contain \\u0000 in a string");
  EXPECT_EQ(Why(CreateStatus(R"({"data":{"s":"\udfff"}})")),
            "data: has a lone surrogate (\\uD800-\\uDFFF) in a string");
  EXPECT_EQ(Why(CreateStatus(R"({"data":)" + Nested(kMaxJsonObjectDepth + 1) + "}")),
            "data: must not nest deeper than 64 levels");
  EXPECT_TRUE(CreateStatus(R"({"data":)" + Nested(kMaxJsonObjectDepth) + "}").ok());
  // Outside `data` the body is the body; protobuf's own words never show.
  auto broken = CreateStatus(R"({"data":{}} trailing)");
  ASSERT_FALSE(broken.ok());
  EXPECT_NE(broken.error().message.find("invalid JSON body"), std::string::npos);
  auto unknown = CreateStatus(R"({"data":{},"nope":1})");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().code, ErrorCode::kInvalidArgument);
}

TEST_F(JsonObjectRoutesTest, PatchAndPutCarryDataTheSameWay) {
  const Route& patch = RouteFor("PATCH", "/v1/collections/notes/items/0193a1b2-0000-7000-8000-000000000001");
  auto msg = BuildRequest(patch, vars_, "", R"({"data":{"n":12345678901234567890123}})");
  ASSERT_TRUE(msg.ok()) << msg.error().message;
  v1::UpdateItemRequest req;
  req.CopyFrom(**msg);
  EXPECT_EQ(req.data(), R"({"n":12345678901234567890123})");
  EXPECT_EQ(req.id(), "0193a1b2-0000-7000-8000-000000000001");
}

TEST_F(JsonObjectRoutesTest, ResponsesSpliceTheStoredTextUnchanged) {
  v1::Item item;
  item.set_id("0193a1b2-0000-7000-8000-000000000001");
  item.set_collection("notes");
  item.set_data(R"({"big": 1e400, "id": 9007199254740993, "s": "\"😀\""})");  // as jsonb prints
  item.set_version(3);
  const Route& get = RouteFor("GET", "/v1/collections/notes/items/x");
  auto out = RenderResponse(get, item);
  ASSERT_TRUE(out.ok()) << out.error().message;
  EXPECT_NE(out->json.find(R"("data":{"big": 1e400, "id": 9007199254740993, "s": "\"😀\""})"),
            std::string::npos)
      << out->json;
  EXPECT_NE(out->json.find(R"("version":"3")"), std::string::npos) << out->json;

  // A list of them, and a tombstone (no data): its `data` is left out.
  v1::ListChangesResponse changes;
  auto* upsert = changes.add_changes();
  upsert->set_seq(1);
  *upsert->mutable_item() = item;
  auto* tombstone = changes.add_changes();
  tombstone->set_seq(2);
  tombstone->set_kind(v1::Change::DELETE);
  tombstone->mutable_item()->set_id("gone");
  const Route& feed = RouteFor("GET", "/v1/collections/notes/changes");
  auto listed = RenderResponse(feed, changes);
  ASSERT_TRUE(listed.ok()) << listed.error().message;
  EXPECT_NE(listed->json.find(R"("data":{"big": 1e400,)"), std::string::npos) << listed->json;
  const auto gone = listed->json.find(R"("id":"gone")");
  ASSERT_NE(gone, std::string::npos);
  EXPECT_EQ(listed->json.find("\"data\"", gone), std::string::npos) << listed->json;

  // A service that breaks the contract gets a 500, never broken JSON.
  item.set_data("[1]");
  auto broken = RenderResponse(get, item);
  ASSERT_FALSE(broken.ok());
  EXPECT_EQ(broken.error().code, ErrorCode::kInternal);
}

TEST(HasJsonObjectFields, FindsThemThroughNestedMessages) {
  EXPECT_TRUE(HasJsonObjectFields(v1::Item::descriptor()));
  EXPECT_TRUE(HasJsonObjectFields(v1::ListItemsResponse::descriptor()));
  EXPECT_TRUE(HasJsonObjectFields(v1::Change::descriptor()));
  EXPECT_FALSE(HasJsonObjectFields(v1::GetItemRequest::descriptor()));
  EXPECT_FALSE(HasJsonObjectFields(v1::ListCollectionsResponse::descriptor()));
}

}  // namespace
}  // namespace portico::transcode
