#pragma once
// Client-side helpers shared by the end-to-end tests and the load benches:
// the stack a test binary runs against, HTTP calls through its gateway, JSON
// access, accounts, and problem+json checks.

#include <boost/json/fwd.hpp>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "http_client.h"
#include "stack.h"

namespace testing {
class Environment;
}  // namespace testing

namespace portico::testing {

namespace json = boost::json;

using Headers = std::vector<std::pair<std::string, std::string>>;

/// The password every account made by these helpers signs up with.
inline const std::string kPassword = "correct horse battery staple";

// ---- the stack of a test binary ----

/// Registers a GoogleTest environment that, before the first test, starts a
/// Stack with the options `options()` returns (defaults if `options` is
/// empty; it runs at that point, so it may prepare files the options name).
/// After the last test it stops gateway, data and users in that order with
/// SIGTERM, expecting each to exit 0 (a failure otherwise, with the logs),
/// destroys the stack and then runs `after_teardown` if set. Call it once per
/// binary, from a namespace-scope initializer.
::testing::Environment* InstallStackEnvironment(std::function<StackOptions()> options = {},
                                                std::function<void()> after_teardown = {});

/// The stack the installed environment started. Throws std::logic_error
/// outside the environment's lifetime.
Stack& RunningStack();

// ---- HTTP and JSON ----

/// Sends one request to the running stack's gateway (see HttpRequest).
HttpResponse Call(const std::string& method, const std::string& target,
                  const std::string& body = "", const Headers& headers = {});

/// An Authorization header carrying `token` as a bearer token.
Headers Bearer(const std::string& token);

/// `s` percent-encoded for a URL query value or path segment: everything but
/// the RFC 3986 unreserved characters (ALPHA DIGIT - . _ ~) is escaped.
std::string UrlEscape(std::string_view s);

/// The response body parsed as a JSON object; throws if it is not one.
json::object Json(const HttpResponse& response);

/// The string `v` holds; throws if it holds something else.
std::string Str(const json::value& v);
/// The string member `key` of `o`; throws if it is missing or not a string.
std::string Str(const json::object& o, std::string_view key);

/// The string member `name` of the JSON object in `body`, or "" if the body
/// is not a JSON object or has no such string member.
std::string JsonField(const std::string& body, std::string_view name);

/// "<name>.<pid>.<n>@example.com", unique within this process.
std::string UniqueEmail(const std::string& name);

// ---- accounts ----

struct Tokens {
  std::string access, refresh;
};

struct Account {
  std::string id, email;
  Tokens tokens;
  /// `more` plus an Authorization header with the access token.
  Headers Auth(Headers more = {}) const {
    more.emplace_back("Authorization", "Bearer " + tokens.access);
    return more;
  }
};

/// POST /v1/auth/login with `email` and `password`, as sent.
HttpResponse LoginRaw(const std::string& email, const std::string& password);

/// Signs in; a test failure unless the answer is 200 with token type Bearer
/// (then the tokens are empty).
Tokens Login(const std::string& email, const std::string& password = kPassword);

/// Registers UniqueEmail(name) with kPassword and display name `name`, then
/// signs in. A test failure unless registration answers 201 and Login
/// succeeds.
Account SignUp(const std::string& name);

/// Polls `fn` every 50 ms until it is true, for at most `seconds`; its last
/// answer.
bool Eventually(const std::function<bool()>& fn, int seconds = 30);

/// For programs without GoogleTest: registers `email` through the gateway on
/// `port` (no check of the answer, so an existing account is fine) and signs
/// in. `id` is empty unless registration answered with one; the tokens are
/// empty unless sign-in did.
Account RegisterAndSignIn(std::uint16_t port, const std::string& email, const std::string& password,
                          const std::string& display_name);

// ---- errors ----

/// Expects an application/problem+json answer with `status` (also in the
/// body), error `code`, a non-empty title and a requestId equal to the
/// X-Request-Id header; with `field`, also an entry in `errors` naming it.
void ExpectProblem(const HttpResponse& r, int status, const std::string& code,
                   const std::string& field = "");

}  // namespace portico::testing
