#include "portico/transcode/openapi.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <set>
#include <string>

#include "portico/proto/descriptor_set.h"
#include "portico/transcode/route_table.h"

namespace portico::transcode {
namespace {

namespace json = boost::json;

json::object Generate(const std::vector<std::string>& services, const ProtoComments* comments) {
  auto table = RouteTable::Build(services);
  EXPECT_TRUE(table.ok()) << table.error().message;
  OpenApiOptions options;
  options.version = "1.2.3";
  options.comments = comments;
  return json::parse(GenerateOpenApi(*table, options)).as_object();
}

const json::object& Kitchen() {
  static const json::object doc = Generate({"portico.testing.v1.KitchenService"}, nullptr);
  return doc;
}

const ProtoComments& PorticoComments() {
  static const ProtoComments comments = [] {
    ProtoComments c;
    auto st = c.Add(proto::PorticoDescriptorSet());
    EXPECT_TRUE(st.ok()) << st.error().message;
    return c;
  }();
  return comments;
}

const json::object& Portico() {
  static const json::object doc =
      Generate({"portico.users.v1.AuthService", "portico.users.v1.UserService",
                "portico.data.v1.DataService"},
               &PorticoComments());
  return doc;
}

const json::object& Op(const json::object& doc, const std::string& path,
                       const std::string& method) {
  return doc.at("paths").at(path).at(method).as_object();
}

// The parameter named `name` in `in`; an empty object if there is none.
json::object Param(const json::object& op, const std::string& name, const std::string& in) {
  if (!op.contains("parameters")) return {};
  for (const auto& p : op.at("parameters").as_array()) {
    if (p.at("name") == json::value(name) && p.at("in") == json::value(in)) return p.as_object();
  }
  return {};
}

std::set<std::string> Names(const json::object& op, const std::string& in) {
  std::set<std::string> out;
  if (!op.contains("parameters")) return out;
  for (const auto& p : op.at("parameters").as_array()) {
    if (p.at("in") == json::value(in)) out.insert(json::value_to<std::string>(p.at("name")));
  }
  return out;
}

const json::object& Schema(const json::object& doc, const std::string& name) {
  return doc.at("components").at("schemas").at(name).as_object();
}

std::string Ref(const json::value& v) { return json::value_to<std::string>(v.at("$ref")); }

// Every "$ref" in `v` must point at something that exists in `doc`.
void ExpectRefsResolve(const json::object& doc, const json::value& v, std::string* first_bad) {
  if (v.is_array()) {
    for (const auto& e : v.as_array()) ExpectRefsResolve(doc, e, first_bad);
    return;
  }
  if (!v.is_object()) return;
  for (const auto& [k, e] : v.as_object()) {
    if (k == "$ref" && e.is_string()) {
      const std::string ref(e.as_string());
      ASSERT_TRUE(ref.starts_with("#/")) << ref;
      std::error_code ec;
      const json::value* target = json::value(doc).find_pointer(ref.substr(1), ec);
      if (target == nullptr && first_bad->empty()) *first_bad = ref;
    } else {
      ExpectRefsResolve(doc, e, first_bad);
    }
  }
}

TEST(OpenApi, DocumentHeader) {
  const auto& doc = Kitchen();
  EXPECT_EQ(doc.at("openapi"), "3.1.0");
  EXPECT_EQ(doc.at("info").at("title"), "Portico API");
  EXPECT_EQ(doc.at("info").at("version"), "1.2.3");
  EXPECT_EQ(doc.at("components").at("securitySchemes").at("bearerAuth").at("scheme"), "bearer");
}

TEST(OpenApi, PathsFromTemplates) {
  const auto& paths = Kitchen().at("paths").as_object();
  EXPECT_TRUE(paths.contains("/v1/kitchen/{id}"));
  EXPECT_TRUE(paths.at("/v1/kitchen/{id}").as_object().contains("get"));
  EXPECT_TRUE(paths.at("/v1/kitchen/{id}").as_object().contains("put"));
  EXPECT_TRUE(paths.at("/v1/kitchen/{id}").as_object().contains("delete"));
  EXPECT_TRUE(paths.contains("/v1/kitchen/{id}:accept"));  // custom verb kept
  EXPECT_TRUE(paths.contains("/v1/me"));                   // additional binding
  EXPECT_TRUE(paths.contains("/v1/nested/{inner.name}"));
  // {path=**} is an ordinary OpenAPI variable, described as taking slashes.
  ASSERT_TRUE(paths.contains("/v1/files/{path}"));
  const auto p = Param(Op(Kitchen(), "/v1/files/{path}", "get"), "path", "path");
  ASSERT_FALSE(p.empty());
  EXPECT_NE(std::string(p.at("description").as_string()).find("slashes"), std::string::npos);
  // An RPC without an HTTP rule is not documented.
  for (const auto& [path, item] : paths) {
    for (const auto& [method, op] : item.as_object()) {
      EXPECT_NE(op.at("operationId"), "KitchenService_Internal") << path;
    }
  }
}

TEST(OpenApi, OperationIdsAreUniqueAndNameTheRpc) {
  std::set<std::string> ids;
  for (const auto& [path, item] : Portico().at("paths").as_object()) {
    for (const auto& [method, op] : item.as_object()) {
      EXPECT_TRUE(ids.insert(json::value_to<std::string>(op.at("operationId"))).second) << path;
    }
  }
  EXPECT_TRUE(ids.contains("AuthService_Login"));
  EXPECT_TRUE(ids.contains("AuthService_GetJwks"));
  EXPECT_TRUE(ids.contains("AuthService_GetJwks_2"));  // its additional binding
  EXPECT_TRUE(ids.contains("DataService_CreateItem"));
  EXPECT_FALSE(ids.contains("AuthService_Introspect"));  // internal, no rule
}

TEST(OpenApi, PathAndQueryParametersFollowTheProto3JsonMapping) {
  const auto& op = Op(Kitchen(), "/v1/kitchen/{id}", "get");
  const auto id = Param(op, "id", "path");
  ASSERT_FALSE(id.empty());
  EXPECT_EQ(id.at("required"), true);
  EXPECT_EQ(id.at("schema").at("type"), "string");

  const auto query = Names(op, "query");
  EXPECT_FALSE(query.contains("id"));      // bound by the path
  EXPECT_FALSE(query.contains("labels"));  // maps cannot come from a query
  EXPECT_FALSE(query.contains("data"));    // nor JSON-only types
  EXPECT_TRUE(query.contains("displayName"));
  EXPECT_TRUE(query.contains("inner.name"));
  EXPECT_TRUE(query.contains("inner.leaf.flag"));
  EXPECT_TRUE(query.contains("when"));

  EXPECT_EQ(Param(op, "i32", "query").at("schema").at("type"), "integer");
  EXPECT_EQ(Param(op, "i64", "query").at("schema").at("type"), "string");
  EXPECT_EQ(Param(op, "i64", "query").at("schema").at("format"), "int64");
  EXPECT_EQ(Param(op, "u64", "query").at("schema").at("type"), "string");
  EXPECT_EQ(Param(op, "d", "query").at("schema").at("type"), "number");
  EXPECT_EQ(Param(op, "b", "query").at("schema").at("type"), "boolean");
  EXPECT_EQ(Param(op, "raw", "query").at("schema").at("contentEncoding"), "base64");
  EXPECT_EQ(Param(op, "when", "query").at("schema").at("format"), "date-time");
  EXPECT_EQ(Ref(Param(op, "color", "query").at("schema")),
            "#/components/schemas/portico.testing.v1.Color");
  const auto tags = Param(op, "tags", "query");
  EXPECT_EQ(tags.at("schema").at("type"), "array");
  EXPECT_EQ(tags.at("schema").at("items").at("type"), "string");
  EXPECT_EQ(tags.at("explode"), true);
  EXPECT_EQ(Param(op, "maybe", "query").at("schema").at("type"),
            json::parse(R"(["integer","null"])"));

  // A nested path variable leaves the rest of its message to the query.
  const auto& nested = Op(Kitchen(), "/v1/nested/{inner.name}", "get");
  EXPECT_FALSE(Param(nested, "inner.name", "path").empty());
  EXPECT_FALSE(Names(nested, "query").contains("inner.name"));
  EXPECT_TRUE(Names(nested, "query").contains("inner.count"));
}

TEST(OpenApi, RequestBodies) {
  // body "*": the whole request message, nothing from the query.
  const auto& create = Op(Kitchen(), "/v1/kitchen", "post");
  EXPECT_TRUE(Names(create, "query").empty());
  EXPECT_EQ(Ref(create.at("requestBody").at("content").at("application/json").at("schema")),
            "#/components/schemas/portico.testing.v1.Kitchen");
  EXPECT_EQ(create.at("requestBody").at("required"), true);

  // body "inner": that field; its subfields are not query parameters.
  const auto& put = Op(Kitchen(), "/v1/kitchen/{id}", "put");
  EXPECT_EQ(Ref(put.at("requestBody").at("content").at("application/json").at("schema")),
            "#/components/schemas/portico.testing.v1.Inner");
  EXPECT_FALSE(Names(put, "query").contains("inner.name"));
  EXPECT_TRUE(Names(put, "query").contains("displayName"));
  // response_body "inner": the response is that field.
  EXPECT_EQ(Ref(put.at("responses").at("200").at("content").at("application/json").at("schema")),
            "#/components/schemas/portico.testing.v1.Inner");

  // body "tags": a repeated field is an array.
  const auto& tags = Op(Kitchen(), "/v1/kitchen/{id}/tags", "post");
  EXPECT_EQ(tags.at("requestBody").at("content").at("application/json").at("schema").at("type"),
            "array");

  // body "*" with path variables: the path's fields are not in the body schema.
  const auto& item = Op(Portico(), "/v1/collections/{collection}/items", "post");
  const auto& schema = item.at("requestBody").at("content").at("application/json").at("schema");
  EXPECT_TRUE(schema.at("properties").as_object().contains("data"));
  EXPECT_FALSE(schema.at("properties").as_object().contains("collection"));
  // A json_object field (a string in the proto) is documented as the object it carries.
  EXPECT_EQ(schema.at("properties").at("data").at("type"), "object");
  // GET has no body.
  EXPECT_FALSE(Op(Kitchen(), "/v1/kitchen/{id}", "get").contains("requestBody"));
}

TEST(OpenApi, SuccessStatusesAndStreams) {
  EXPECT_TRUE(Op(Kitchen(), "/v1/kitchen", "post").at("responses").as_object().contains("201"));
  const auto& del = Op(Kitchen(), "/v1/kitchen/{id}", "delete").at("responses").as_object();
  ASSERT_TRUE(del.contains("204"));
  EXPECT_FALSE(del.at("204").as_object().contains("content"));
  EXPECT_TRUE(
      Op(Kitchen(), "/v1/kitchen/{id}:accept", "post").at("responses").as_object().contains("202"));

  const auto& watch = Op(Kitchen(), "/v1/kitchen/{id}:watch", "get");
  const auto& content = watch.at("responses").at("200").at("content").as_object();
  EXPECT_TRUE(content.contains("text/event-stream"));
  EXPECT_EQ(Ref(content.at("application/x-ndjson").at("schema")),
            "#/components/schemas/portico.testing.v1.Kitchen");
  EXPECT_FALSE(content.contains("application/json"));
}

TEST(OpenApi, HeadersOnlyWhereTheRuleDeclaresThem) {
  const auto& create = Op(Portico(), "/v1/collections/{collection}/items", "post");
  const auto& created = create.at("responses").at("201").at("headers").as_object();
  EXPECT_TRUE(created.contains("ETag"));
  EXPECT_TRUE(created.contains("Location"));
  EXPECT_FALSE(Param(create, "Idempotency-Key", "header").empty());
  EXPECT_TRUE(create.at("responses").as_object().contains("422"));

  const auto& get = Op(Portico(), "/v1/collections/{collection}/items/{id}", "get");
  EXPECT_TRUE(get.at("responses").at("200").at("headers").as_object().contains("ETag"));
  EXPECT_FALSE(Param(get, "If-None-Match", "header").empty());
  EXPECT_TRUE(get.at("responses").as_object().contains("304"));

  const auto& put = Op(Portico(), "/v1/collections/{collection}/items/{id}", "put");
  EXPECT_FALSE(Param(put, "If-Match", "header").empty());
  EXPECT_TRUE(put.at("responses").as_object().contains("412"));

  // The rule of ListItems declares none: none is invented.
  const auto& list = Op(Portico(), "/v1/collections/{collection}/items", "get");
  const auto& ok = list.at("responses").at("200").at("headers").as_object();
  EXPECT_FALSE(ok.contains("ETag"));
  EXPECT_FALSE(ok.contains("Location"));
  EXPECT_FALSE(list.at("responses").as_object().contains("412"));
}

TEST(OpenApi, ErrorsAreProblems) {
  const auto& doc = Portico();
  const auto& problem = Schema(doc, "Problem").at("properties").as_object();
  for (const char* field : {"type", "title", "status", "detail", "code", "requestId", "errors"}) {
    EXPECT_TRUE(problem.contains(field)) << field;
  }
  const auto& responses = Op(doc, "/v1/users/me", "get").at("responses").as_object();
  ASSERT_TRUE(responses.contains("401"));
  const auto& unauthorized =
      doc.at("components")
          .at("responses")
          .at(json::value_to<std::string>(responses.at("401").at("$ref")).substr(23));
  EXPECT_EQ(Ref(unauthorized.at("content").at("application/problem+json").at("schema")),
            "#/components/schemas/Problem");
  EXPECT_TRUE(unauthorized.at("headers").as_object().contains("WWW-Authenticate"));
  EXPECT_TRUE(responses.contains("default"));
  // Public operations cannot answer 401.
  EXPECT_FALSE(Op(doc, "/v1/auth/login", "post").at("responses").as_object().contains("401"));
}

TEST(OpenApi, SecurityFollowsTheAccessPolicy) {
  const auto& doc = Portico();
  EXPECT_TRUE(Op(doc, "/v1/auth/login", "post").at("security").as_array().empty());
  const auto& me = Op(doc, "/v1/users/me", "get");
  ASSERT_EQ(me.at("security").as_array().size(), 1u);
  EXPECT_TRUE(me.at("security").at(0).as_object().contains("bearerAuth"));
  EXPECT_NE(std::string(me.at("description").as_string()).find("users:read"), std::string::npos);
  const auto& list = Op(doc, "/v1/users", "get");
  EXPECT_EQ(list.at("x-portico-access"), "ADMIN");
  EXPECT_NE(std::string(list.at("description").as_string()).find("ADMIN"), std::string::npos);
  EXPECT_FALSE(list.at("security").as_array().empty());
}

TEST(OpenApi, SchemasFollowTheProto3JsonMapping) {
  const auto& doc = Kitchen();
  const auto& k = Schema(doc, "portico.testing.v1.Kitchen").at("properties").as_object();
  EXPECT_TRUE(k.contains("displayName"));  // lowerCamelCase
  EXPECT_FALSE(k.contains("display_name"));
  EXPECT_EQ(k.at("i64").at("type"), "string");
  EXPECT_EQ(k.at("i32").at("type"), "integer");
  EXPECT_EQ(k.at("f").at("format"), "float");
  EXPECT_EQ(k.at("raw").at("contentEncoding"), "base64");
  EXPECT_EQ(k.at("when").at("format"), "date-time");
  EXPECT_EQ(k.at("data").at("type"), "object");                               // Struct
  EXPECT_EQ(k.at("maybe").at("type"), json::parse(R"(["integer","null"])"));  // wrapper
  EXPECT_EQ(k.at("labels").at("type"), "object");                             // map
  EXPECT_EQ(k.at("labels").at("additionalProperties").at("type"), "string");
  EXPECT_EQ(k.at("colors").at("type"), "array");
  EXPECT_EQ(Ref(k.at("colors").at("items")), "#/components/schemas/portico.testing.v1.Color");
  EXPECT_EQ(Ref(k.at("inner")), "#/components/schemas/portico.testing.v1.Inner");
  EXPECT_EQ(Schema(doc, "portico.testing.v1.Color").at("enum"),
            json::parse(R"(["COLOR_UNSPECIFIED","RED","DARK_GREEN"])"));
  // Reachable through Inner only.
  EXPECT_TRUE(doc.at("components").at("schemas").as_object().contains("portico.testing.v1.Leaf"));

  std::string bad;
  ExpectRefsResolve(doc, doc, &bad);
  EXPECT_EQ(bad, "") << "dangling $ref";
  bad.clear();
  ExpectRefsResolve(Portico(), Portico(), &bad);
  EXPECT_EQ(bad, "") << "dangling $ref";
}

TEST(OpenApi, CommentsFromTheEmbeddedDescriptorSet) {
  const auto& doc = Portico();
  const auto& login = Op(doc, "/v1/auth/login", "post");
  EXPECT_EQ(login.at("summary"),
            "Exchanges an e-mail and password for an access token and a refresh token");
  EXPECT_EQ(login.at("tags"), json::parse(R"(["AuthService"])"));
  // Multi-sentence comments: the first sentence is the summary, all of it
  // the description.
  const auto& create = Op(doc, "/v1/collections/{collection}/items", "post");
  EXPECT_EQ(create.at("summary"), "Stores a new item");
  EXPECT_NE(std::string(create.at("description").as_string()).find("Idempotency-Key header"),
            std::string::npos);
  // Field comments (trailing ones too) describe properties and parameters.
  const auto& user = Schema(doc, "portico.users.v1.User").at("properties").as_object();
  EXPECT_NE(std::string(user.at("id").at("description").as_string()).find("UUIDv7"),
            std::string::npos);
  const auto filter =
      Param(Op(doc, "/v1/collections/{collection}/items", "get"), "filter", "query");
  EXPECT_NE(std::string(filter.at("description").as_string()).find("AND, OR, NOT"),
            std::string::npos);
  // Tags carry the service comments.
  bool found = false;
  for (const auto& t : doc.at("tags").as_array()) {
    if (t.at("name") == "DataService") {
      found = true;
      EXPECT_NE(std::string(t.at("description").as_string()).find("collections"),
                std::string::npos);
    }
  }
  EXPECT_TRUE(found);
}

TEST(OpenApi, WithoutCommentsSummariesComeFromTheRpcName) {
  const auto doc = Generate({"portico.users.v1.AuthService"}, nullptr);
  EXPECT_EQ(Op(doc, "/v1/auth/login", "post").at("summary"), "Login");
  EXPECT_EQ(Op(doc, "/v1/auth/jwks", "get").at("summary"), "Get jwks");
}

TEST(OpenApi, CommentsRejectGarbage) {
  ProtoComments c;
  EXPECT_FALSE(c.Add("\xff\xff\xff not a descriptor set").ok());
  EXPECT_TRUE(c.Add(proto::PorticoDescriptorSet()).ok());
  EXPECT_TRUE(c.Add(proto::PorticoDescriptorSet()).ok());  // again: files already known
}

TEST(OpenApi, Deterministic) {
  auto table = RouteTable::Build({"portico.testing.v1.KitchenService"});
  ASSERT_TRUE(table.ok());
  EXPECT_EQ(GenerateOpenApi(*table, {}), GenerateOpenApi(*table, {}));
}

// A FieldMask is one query parameter in its JSON text form, as BuildRequest
// reads it, not a `.paths` list.
TEST(OpenApi, FieldMaskIsOneQueryParameter) {
  const auto doc = Generate({"portico.testing.v1.AccountService"}, nullptr);
  const auto& op = Op(doc, "/v1/accounts/{account.id}", "patch");
  EXPECT_EQ(Names(op, "query"), (std::set<std::string>{"updateMask"}));
  EXPECT_EQ(Param(op, "updateMask", "query").at("schema").at("type"), "string");
}

}  // namespace
}  // namespace portico::transcode
