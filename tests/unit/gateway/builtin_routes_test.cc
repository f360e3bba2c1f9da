#include "builtin_routes.h"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/json.hpp>
#include <string>
#include <thread>

#include "portico/gateway/gateway.h"

namespace portico::gateway {
namespace {

namespace json = boost::json;

transcode::RouteTable Table(const std::vector<std::string>& services) {
  auto t = transcode::RouteTable::Build(services);
  EXPECT_TRUE(t.ok()) << t.error().message;
  return std::move(t).value();
}

std::string HeaderOf(const HttpResponse& r, const std::string& name) {
  for (const auto& [k, v] : r.headers) {
    if (k == name) return v;
  }
  return {};
}

json::object PathsServed(const BuiltinRoutes& b) {
  auto a = b.Serve("GET", "/openapi.json");
  EXPECT_TRUE(a.has_value());
  if (!a) return {};
  EXPECT_FALSE(a->problem.has_value());
  EXPECT_EQ(HeaderOf(a->response, "Content-Type"), "application/json");
  return json::parse(a->response.body).at("paths").as_object();
}

TEST(BuiltinRoutes, ServesTheDocumentOfTheCurrentTable) {
  BuiltinRoutes b(Table(DefaultServices()));
  auto paths = PathsServed(b);
  EXPECT_TRUE(paths.contains("/v1/auth/login"));
  EXPECT_TRUE(paths.contains("/v1/collections"));

  // After the table changes, the document follows it.
  b.SetRoutes(Table({"portico.data.v1.DataService"}));
  paths = PathsServed(b);
  EXPECT_FALSE(paths.contains("/v1/auth/login"));
  EXPECT_TRUE(paths.contains("/v1/collections"));
}

TEST(BuiltinRoutes, OtherPathsAreLeftToTheRouteTable) {
  BuiltinRoutes b(Table(DefaultServices()));
  EXPECT_FALSE(b.Serve("GET", "/v1/users/me").has_value());
  EXPECT_FALSE(b.Serve("GET", "/docsx").has_value());
  EXPECT_FALSE(b.Serve("GET", "/openapi.json/x").has_value());
  EXPECT_FALSE(b.Serve("GET", "/").has_value());
}

TEST(BuiltinRoutes, OnlyGet) {
  BuiltinRoutes b(Table(DefaultServices()));
  for (const char* path : {"/openapi.json", "/docs"}) {
    auto a = b.Serve("POST", path);
    ASSERT_TRUE(a.has_value()) << path;
    ASSERT_TRUE(a->problem.has_value());
    EXPECT_EQ(a->problem->status, 405);
    EXPECT_EQ(a->allow, "GET");
  }
}

TEST(BuiltinRoutes, DocsMatchTheBuild) {
  BuiltinRoutes b(Table(DefaultServices()));
  auto page = b.Serve("GET", "/docs");
  ASSERT_TRUE(page.has_value());
  EXPECT_EQ(page->label, "/docs");
  auto missing = b.Serve("GET", "/docs/no-such-file.js");
  ASSERT_TRUE(missing.has_value());
  ASSERT_TRUE(missing->problem.has_value());
  EXPECT_EQ(missing->problem->status, 404);
  if (SwaggerUiBuiltIn()) {
    ASSERT_FALSE(page->problem.has_value());
    EXPECT_EQ(HeaderOf(page->response, "Content-Type"), "text/html; charset=utf-8");
    EXPECT_NE(page->response.body.find("/docs/swagger-init.js"), std::string::npos);
    auto init = b.Serve("GET", "/docs/swagger-init.js");
    ASSERT_TRUE(init.has_value());
    EXPECT_NE(init->response.body.find("\"/openapi.json\""), std::string::npos);
    EXPECT_EQ(b.Serve("GET", "/docs/")->response.body, page->response.body);
    auto bundle = b.Serve("GET", "/docs/swagger-ui-bundle.js");
    ASSERT_TRUE(bundle.has_value());
    ASSERT_FALSE(bundle->problem.has_value());
    EXPECT_NE(bundle->response.body.find("SwaggerUIBundle"), std::string::npos);
  } else {
    ASSERT_TRUE(page->problem.has_value());
    EXPECT_EQ(page->problem->status, 404);
    EXPECT_NE(page->problem->detail.find("/openapi.json"), std::string::npos);
  }
}

// Requests keep being answered with a whole document while the table changes.
TEST(BuiltinRoutes, RegeneratesWhileServing) {
  BuiltinRoutes b(Table(DefaultServices()));
  const auto small = Table({"portico.data.v1.DataService"});
  const auto big = Table(DefaultServices());
  std::atomic<bool> stop = false;
  std::atomic<int> served = 0;
  std::thread reader([&] {
    while (!stop) {
      auto a = b.Serve("GET", "/openapi.json");
      json::error_code ec;
      json::parse(a->response.body, ec);
      EXPECT_FALSE(ec) << "an incomplete document";
      ++served;
    }
  });
  for (int i = 0; i < 10; ++i) b.SetRoutes(i % 2 == 0 ? small : big);
  stop = true;
  reader.join();
  EXPECT_GT(served.load(), 0);
}

}  // namespace
}  // namespace portico::gateway
