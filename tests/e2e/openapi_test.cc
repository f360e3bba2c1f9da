// End-to-end: the gateway's OpenAPI document and Swagger UI, fetched from
// the running stack, and the UI rendered by a real headless browser.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include "e2e_client.h"

namespace portico::testing {
namespace {

const auto* const kEnv = InstallStackEnvironment();

constexpr const char* kChromium = "/usr/bin/chromium";

json::object Document() {
  auto r = Call("GET", "/openapi.json");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Header("content-type"), "application/json");
  EXPECT_FALSE(r.Header("x-request-id").empty());
  return Json(r);
}

TEST(OpenApiEndToEnd, DocumentIsServed) {
  const auto doc = Document();
  EXPECT_EQ(doc.at("openapi"), "3.1.0");
  const auto& paths = doc.at("paths").as_object();
  ASSERT_TRUE(paths.contains("/v1/auth/login"));
  EXPECT_EQ(paths.at("/v1/auth/login").at("post").at("operationId"), "AuthService_Login");
  EXPECT_TRUE(paths.contains("/v1/users/me"));
  EXPECT_TRUE(paths.contains("/v1/collections/{collection}/items/{id}"));
  // Its own routes are not API operations.
  EXPECT_FALSE(paths.contains("/openapi.json"));
  EXPECT_FALSE(paths.contains("/docs"));
}

// Every documented operation is routed: without credentials or a body the
// gateway answers 400, 401, 415 or the backend's word, never "no such
// endpoint" (404 without a path variable) or 405.
TEST(OpenApiEndToEnd, EveryDocumentedOperationIsRouted) {
  const auto doc = Document();
  int checked = 0;
  for (const auto& [path, item] : doc.at("paths").as_object()) {
    std::string target(path);
    bool has_variable = false;
    for (auto open = target.find('{'); open != std::string::npos; open = target.find('{')) {
      target.replace(open, target.find('}', open) - open + 1, "x");
      has_variable = true;
    }
    for (const auto& [method, op] : item.as_object()) {
      std::string verb(method);
      for (char& c : verb) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      const auto r = Call(verb, target, op.as_object().contains("requestBody") ? "{}" : "",
                          {{"Content-Type", "application/json"}});
      EXPECT_NE(r.status, 405) << verb << " " << target << ": " << r.body;
      if (!has_variable) {
        EXPECT_NE(r.status, 404) << verb << " " << target << ": " << r.body;
      }
      EXPECT_EQ(r.body.find("no such endpoint"), std::string::npos) << verb << " " << target;
      ++checked;
    }
  }
  EXPECT_GE(checked, 25);
}

TEST(OpenApiEndToEnd, OnlyGet) {
  auto r = Call("DELETE", "/openapi.json");
  ExpectProblem(r, 405, "UNIMPLEMENTED");
  EXPECT_EQ(r.Header("allow"), "GET");
}

#if PORTICO_SWAGGER_UI

TEST(OpenApiEndToEnd, DocsPageAndAssets) {
  auto page = Call("GET", "/docs");
  ASSERT_EQ(page.status, 200) << page.body;
  EXPECT_EQ(page.Header("content-type"), "text/html; charset=utf-8");
  EXPECT_NE(page.body.find("/docs/swagger-ui-bundle.js"), std::string::npos);
  auto bundle = Call("GET", "/docs/swagger-ui-bundle.js");
  ASSERT_EQ(bundle.status, 200);
  EXPECT_GT(bundle.body.size(), 100000u);
  EXPECT_NE(bundle.body.find("SwaggerUIBundle"), std::string::npos);
  EXPECT_EQ(Call("GET", "/docs/swagger-ui.css").status, 200);
  ExpectProblem(Call("GET", "/docs/nothing-here.js"), 404, "NOT_FOUND");
}

// Runs Debian's headless chromium on /docs and returns the DOM after the
// page's scripts ran (within a virtual-time budget); "" if it failed.
std::string RenderedDocs(std::uint16_t port) {
  char tmpl[] = "/tmp/portico-chromium-XXXXXX";
  const char* dir = mkdtemp(tmpl);
  if (dir == nullptr) return {};
  const std::string profile = dir;
  const std::string command =
      std::string(kChromium) +
      " --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking"
      " --disable-component-update --disable-sync --user-data-dir=" +
      profile + " --virtual-time-budget=15000 --dump-dom http://127.0.0.1:" + std::to_string(port) +
      "/docs 2>" + profile + "/stderr.log";
  std::string dom;
  if (FILE* out = popen(command.c_str(), "r")) {
    char buf[65536];
    std::size_t n;
    while ((n = fread(buf, 1, sizeof buf, out)) > 0) dom.append(buf, n);
    pclose(out);
  }
  std::error_code ec;
  std::filesystem::remove_all(profile, ec);
  return dom;
}

TEST(OpenApiEndToEnd, SwaggerUiRendersTheOperations) {
  if (access(kChromium, X_OK) != 0) {
    GTEST_SKIP() << kChromium << " is not installed (scripts/bootstrap installs it)";
  }
  // A cold browser start can run out of its budget before the UI renders:
  // try again until a deadline rather than trusting one attempt.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  std::string dom;
  do {
    dom = RenderedDocs(RunningStack().ports().http);
    if (dom.find("opblock-summary-path") != std::string::npos) break;
  } while (std::chrono::steady_clock::now() < deadline);
  ASSERT_NE(dom.find("opblock-summary-path"), std::string::npos) << "no operation rendered; DOM:\n"
                                                                 << dom.substr(0, 4000);
  // Paths, summaries from the proto comments, and tags per service.
  EXPECT_NE(dom.find("data-path=\"/v1/auth/login\""), std::string::npos);
  EXPECT_NE(dom.find("data-path=\"/v1/collections/{collection}/items/{id}\""), std::string::npos);
  EXPECT_NE(dom.find("Exchanges an e-mail and password for an access token"), std::string::npos);
  EXPECT_NE(dom.find("DataService"), std::string::npos);
  EXPECT_NE(dom.find("Portico API"), std::string::npos);
}

#else

TEST(OpenApiEndToEnd, DocsAnswerNotFoundWithoutSwaggerUi) {
  auto r = Call("GET", "/docs");
  ExpectProblem(r, 404, "NOT_FOUND");
  EXPECT_NE(r.body.find("/openapi.json"), std::string::npos);
}

#endif

}  // namespace
}  // namespace portico::testing
