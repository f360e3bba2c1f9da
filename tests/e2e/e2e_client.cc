#include "e2e_client.h"

#include "portico/core/strings.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <boost/json.hpp>
#include <cctype>
#include <memory>
#include <stdexcept>

namespace portico::testing {
namespace {

Stack* g_stack = nullptr;
std::atomic<int> g_counter{0};

class StackEnvironment : public ::testing::Environment {
 public:
  StackEnvironment(std::function<StackOptions()> options, std::function<void()> after_teardown)
      : options_(std::move(options)), after_teardown_(std::move(after_teardown)) {}

  void SetUp() override { g_stack = new Stack(options_ ? options_() : StackOptions{}); }

  void TearDown() override {
    if (g_stack != nullptr) {
      // Graceful shutdown is part of the contract: every process exits 0 on SIGTERM.
      EXPECT_EQ(g_stack->gateway().Stop(), 0) << g_stack->Logs();
      EXPECT_EQ(g_stack->data().Stop(), 0) << g_stack->Logs();
      EXPECT_EQ(g_stack->users().Stop(), 0) << g_stack->Logs();
      delete g_stack;
      g_stack = nullptr;
    }
    if (after_teardown_) after_teardown_();
  }

 private:
  std::function<StackOptions()> options_;
  std::function<void()> after_teardown_;
};

}  // namespace

::testing::Environment* InstallStackEnvironment(std::function<StackOptions()> options,
                                                std::function<void()> after_teardown) {
  return ::testing::AddGlobalTestEnvironment(
      new StackEnvironment(std::move(options), std::move(after_teardown)));
}

Stack& RunningStack() {
  if (g_stack == nullptr) throw std::logic_error("no stack is running");
  return *g_stack;
}

HttpResponse Call(const std::string& method, const std::string& target, const std::string& body,
                  const Headers& headers) {
  return HttpRequest(RunningStack().ports().http, method, target, body, headers);
}

Headers Bearer(const std::string& token) { return {{"Authorization", "Bearer " + token}}; }

std::string UrlEscape(std::string_view s) { return PercentEncode(s); }

json::object Json(const HttpResponse& response) { return json::parse(response.body).as_object(); }

std::string Str(const json::value& v) { return json::value_to<std::string>(v); }

std::string Str(const json::object& o, std::string_view key) { return Str(o.at(key)); }

std::string JsonField(const std::string& body, std::string_view name) {
  json::error_code ec;
  const json::value v = json::parse(body, ec);
  if (ec || !v.is_object()) return "";
  const json::value* field = v.as_object().if_contains(name);
  return field != nullptr && field->is_string() ? std::string(field->as_string()) : "";
}

std::string UniqueEmail(const std::string& name) {
  return name + "." + std::to_string(::getpid()) + "." + std::to_string(++g_counter) +
         "@example.com";
}

HttpResponse LoginRaw(const std::string& email, const std::string& password) {
  return Call("POST", "/v1/auth/login",
              json::serialize(json::object{{"email", email}, {"password", password}}));
}

Tokens Login(const std::string& email, const std::string& password) {
  auto r = LoginRaw(email, password);
  EXPECT_EQ(r.status, 200) << r.body;
  if (r.status != 200) return {};
  auto o = Json(r);
  EXPECT_EQ(Str(o, "tokenType"), "Bearer");
  return {Str(o, "accessToken"), Str(o, "refreshToken")};
}

Account SignUp(const std::string& name) {
  Account a;
  a.email = UniqueEmail(name);
  auto reg = Call("POST", "/v1/auth/register",
                  json::serialize(json::object{
                      {"email", a.email}, {"password", kPassword}, {"displayName", name}}));
  EXPECT_EQ(reg.status, 201) << reg.body;
  a.id = Str(Json(reg), "id");
  a.tokens = Login(a.email);
  return a;
}

Account RegisterAndSignIn(std::uint16_t port, const std::string& email, const std::string& password,
                          const std::string& display_name) {
  Account a;
  a.email = email;
  auto reg =
      HttpRequest(port, "POST", "/v1/auth/register",
                  json::serialize(json::object{
                      {"email", email}, {"password", password}, {"displayName", display_name}}));
  a.id = JsonField(reg.body, "id");
  auto login = HttpRequest(port, "POST", "/v1/auth/login",
                           json::serialize(json::object{{"email", email}, {"password", password}}));
  a.tokens = {JsonField(login.body, "accessToken"), JsonField(login.body, "refreshToken")};
  return a;
}

void ExpectProblem(const HttpResponse& r, int status, const std::string& code,
                   const std::string& field) {
  EXPECT_EQ(r.status, status) << r.body;
  EXPECT_EQ(r.Header("content-type"), "application/problem+json") << r.body;
  if (r.body.empty()) {
    ADD_FAILURE() << "empty problem body for status " << r.status;
    return;
  }
  auto body = Json(r);
  EXPECT_EQ(body.at("status").as_int64(), status);
  EXPECT_EQ(Str(body, "code"), code) << r.body;
  EXPECT_FALSE(Str(body, "title").empty()) << r.body;
  EXPECT_EQ(Str(body, "requestId"), r.Header("x-request-id")) << r.body;
  if (!field.empty()) {
    bool named = false;
    if (const auto* errors = body.if_contains("errors")) {
      for (const auto& e : errors->as_array()) {
        named = named || Str(e.as_object(), "field") == field;
      }
    }
    EXPECT_TRUE(named) << "no error names " << field << ": " << r.body;
  }
}

bool Eventually(const std::function<bool()>& fn, int seconds) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < until) {
    if (fn()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return fn();
}

}  // namespace portico::testing
