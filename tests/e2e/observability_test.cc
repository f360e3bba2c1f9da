// End-to-end: what an operator sees of the stack — JSON log lines without
// secrets, one trace id across gateway, users and data (also through the
// purge outbox), and metrics that match the catalogue in docs/operations.md.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "e2e_client.h"

namespace portico::testing {
namespace {

const auto* const kEnv = InstallStackEnvironment();

// ---- logs ----

struct LogLine {
  std::string process;  // whose log file it came from
  std::string text;
  json::object fields;  // empty if the line is not a JSON object
  bool valid = false;
};

// Every non-empty line of every process's log (the current processes only:
// no test in this binary replaces one).
std::vector<LogLine> AllLogLines() {
  std::vector<LogLine> out;
  Stack& stack = RunningStack();
  for (Process* p : {&stack.gateway(), &stack.users(), &stack.data()}) {
    std::istringstream in(p->Log());
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      LogLine l{p->name(), line, {}, false};
      boost::system::error_code ec;
      json::value v = json::parse(line, ec);
      if (!ec && v.is_object()) {
        l.fields = v.as_object();
        l.valid = true;
      }
      out.push_back(std::move(l));
    }
  }
  return out;
}

std::string StrOr(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v != nullptr && v->is_string() ? std::string(v->as_string()) : std::string();
}

// A full session: every secret it handles, to be looked for in the logs.
std::vector<std::string> RunFullFlow(std::string* user_id) {
  std::vector<std::string> secrets;
  const std::string email = UniqueEmail("secrets");
  const std::string password = "first secret password 7f3a";
  const std::string new_password = "second secret password 9c1e";
  const std::string wrong_password = "wrong secret password 4b2d";
  secrets.insert(secrets.end(), {password, new_password, wrong_password});

  auto reg = Call("POST", "/v1/auth/register",
                  json::serialize(json::object{
                      {"email", email}, {"password", password}, {"displayName", "Secrets"}}),
                  {{"Content-Type", "application/json"}});
  EXPECT_EQ(reg.status, 201) << reg.body;
  *user_id = JsonField(reg.body, "id");
  EXPECT_EQ(LoginRaw(email, wrong_password).status, 401);
  Tokens first = Login(email, password);
  secrets.insert(secrets.end(), {first.access, first.refresh});

  auto refreshed = Call("POST", "/v1/auth/refresh",
                        json::serialize(json::object{{"refreshToken", first.refresh}}));
  EXPECT_EQ(refreshed.status, 200) << refreshed.body;
  const std::string access = JsonField(refreshed.body, "accessToken");
  const std::string refresh = JsonField(refreshed.body, "refreshToken");
  secrets.insert(secrets.end(), {access, refresh});

  auto pat = Call("POST", "/v1/users/me/tokens",
                  json::serialize(json::object{{"name", "ci"},
                                               {"scopes", json::array{"data:read", "data:write"}}}),
                  Bearer(access));
  EXPECT_EQ(pat.status, 201) << pat.body;
  const std::string pat_secret = JsonField(pat.body, "token");
  EXPECT_TRUE(pat_secret.starts_with("pat_")) << pat.body;
  secrets.push_back(pat_secret);
  auto created = Call("POST", "/v1/collections/notes/items", R"({"data":{"title":"via PAT"}})",
                      Bearer(pat_secret));
  EXPECT_EQ(created.status, 201) << created.body;
  EXPECT_EQ(Call("GET", "/v1/collections/notes/items", "", Bearer(pat_secret)).status, 200);

  auto changed = Call("POST", "/v1/users/me/password",
                      json::serialize(json::object{{"currentPassword", password},
                                                   {"newPassword", new_password}}),
                      Bearer(access));
  EXPECT_EQ(changed.status, 204) << changed.body;
  Tokens second = Login(email, new_password);
  secrets.insert(secrets.end(), {second.access, second.refresh});
  auto item = Call("POST", "/v1/collections/notes/items", R"({"data":{"title":"milk"}})",
                   Bearer(second.access));
  EXPECT_EQ(item.status, 201) << item.body;
  const std::string id = JsonField(item.body, "id");
  EXPECT_EQ(Call("GET", "/v1/collections/notes/items/" + id, "", Bearer(second.access)).status,
            200);
  EXPECT_EQ(Call("PATCH", "/v1/collections/notes/items/" + id, R"({"data":{"done":true}})",
                 Bearer(second.access))
                .status,
            200);
  EXPECT_EQ(Call("GET", "/v1/users/me", "", Bearer(second.access)).status, 200);
  EXPECT_EQ(Call("POST", "/v1/auth/logout",
                 json::serialize(json::object{{"refreshToken", second.refresh}}))
                .status,
            204);
  for (const auto& s : secrets) EXPECT_FALSE(s.empty());
  return secrets;
}

TEST(Observability, LogsAreJsonLinesWithRequestIdsAndNoSecrets) {
  std::string user_id;
  const std::vector<std::string> secrets = RunFullFlow(&user_id);
  ASSERT_FALSE(user_id.empty());
  // Lines reach stdout within the flush interval (100 ms): wait until the
  // flow's last call (the logout) is in the gateway's and users' logs.
  auto logged_logout = [](const std::vector<LogLine>& all, const std::string& process) {
    for (const LogLine& l : all) {
      if (l.process == process && l.valid &&
          (StrOr(l.fields, "path") == "/v1/auth/logout" ||
           StrOr(l.fields, "method") == "portico.users.v1.AuthService/Logout")) {
        return true;
      }
    }
    return false;
  };
  ASSERT_TRUE(Eventually([&] {
    const auto all = AllLogLines();
    return logged_logout(all, "gateway") && logged_logout(all, "users");
  }));
  const std::vector<LogLine> lines = AllLogLines();
  std::map<std::string, int> per_process;
  std::set<std::string> rpc_users, request_users;  // user ids on the access lines
  for (const LogLine& line : lines) {
    ++per_process[line.process];
    for (const auto& secret : secrets) {
      EXPECT_EQ(line.text.find(secret), std::string::npos)
          << "a secret is logged by " << line.process << ": " << line.text;
    }
    EXPECT_EQ(line.text.find("Bearer "), std::string::npos) << line.text;
    ASSERT_TRUE(line.valid) << line.process << " wrote a line that is not a JSON object: "
                            << line.text;
    const json::object& f = line.fields;
    for (const char* key : {"ts", "level", "service", "msg"}) {
      EXPECT_TRUE(f.contains(key)) << key << " missing: " << line.text;
    }
    EXPECT_EQ(StrOr(f, "service"), line.process) << line.text;
    const std::string msg = StrOr(f, "msg");
    if (msg == "request" || msg == "rpc") {
      for (const char* key : {"request_id", "trace_id", "span_id"}) {
        EXPECT_FALSE(StrOr(f, key).empty()) << key << " missing: " << line.text;
      }
      EXPECT_EQ(StrOr(f, "trace_id").size(), 32u) << line.text;
      EXPECT_EQ(StrOr(f, "span_id").size(), 16u) << line.text;
      EXPECT_TRUE(f.contains("duration_ms")) << line.text;
      EXPECT_FALSE(StrOr(f, "method").empty()) << line.text;
    }
    if (msg == "request") {
      EXPECT_EQ(line.process, "gateway");
      EXPECT_TRUE(f.contains("status") && f.at("status").is_int64()) << line.text;
      EXPECT_TRUE(f.contains("route")) << line.text;
      if (f.contains("user_id")) request_users.insert(StrOr(f, "user_id"));
    }
    if (msg == "rpc") {
      EXPECT_NE(line.process, "gateway");
      EXPECT_FALSE(StrOr(f, "code").empty()) << line.text;
      EXPECT_TRUE(f.contains("user_id")) << line.text;
      rpc_users.insert(StrOr(f, "user_id"));
    }
  }
  EXPECT_GT(per_process["gateway"], 0);
  EXPECT_GT(per_process["users"], 0);
  EXPECT_GT(per_process["data"], 0);
  // Authenticated calls name their caller on the access lines of both hops.
  EXPECT_TRUE(rpc_users.contains(user_id));
  EXPECT_TRUE(request_users.contains(user_id));
}

TEST(Observability, OneTraceIdFollowsARequestThroughEveryServiceAndTheOutbox) {
  Account a = SignUp("traced");
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(Call("POST", "/v1/collections/notes/items", R"({"data":{"n":1}})",
                   Bearer(a.tokens.access))
                  .status,
              201);
  }
  const std::string trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
  const std::string client_span = "00f067aa0ba902b7";
  auto r = Call("DELETE", "/v1/users/me", "",
                a.Auth({{"traceparent", "00-" + trace_id + "-" + client_span + "-01"}}));
  ASSERT_EQ(r.status, 204) << r.body;

  // The purge reaches data through the outbox, a moment later.
  auto lines_of = [&](const std::string& process) {
    std::vector<json::object> out;
    for (const LogLine& l : AllLogLines()) {
      if (l.process == process && l.valid && StrOr(l.fields, "trace_id") == trace_id) {
        out.push_back(l.fields);
      }
    }
    return out;
  };
  auto has_rpc = [&](const std::string& process, const std::string& method) {
    for (const auto& f : lines_of(process)) {
      if (StrOr(f, "msg") == "rpc" && StrOr(f, "method") == method) return true;
    }
    return false;
  };
  // Log lines reach stdout within the flush interval (100 ms): wait for them.
  auto has_access_line = [&] {
    for (const auto& f : lines_of("gateway")) {
      if (StrOr(f, "msg") == "request" && StrOr(f, "path") == "/v1/users/me") return true;
    }
    return false;
  };
  ASSERT_TRUE(Eventually([&] {
    std::set<std::string> users_spans;  // the DeleteMe call's and the outbox delivery's
    for (const auto& f : lines_of("users")) users_spans.insert(StrOr(f, "span_id"));
    return has_rpc("data", "portico.data.v1.DataAdmin/PurgeOwner") &&
           has_rpc("users", "portico.users.v1.UserService/DeleteMe") && has_access_line() &&
           users_spans.size() >= 2;
  })) << RunningStack().Logs();

  std::map<std::string, std::set<std::string>> spans;  // process -> span ids
  for (const std::string process : {"gateway", "users", "data"}) {
    for (const auto& f : lines_of(process)) spans[process].insert(StrOr(f, "span_id"));
    ASSERT_FALSE(spans[process].empty()) << process << " has no line of the trace";
  }
  bool gateway_access_line = false;
  for (const auto& f : lines_of("gateway")) {
    gateway_access_line |= StrOr(f, "msg") == "request" && StrOr(f, "path") == "/v1/users/me";
  }
  EXPECT_TRUE(gateway_access_line);
  // A new span per hop: the gateway's, users' (the call and the outbox
  // delivery), data's; none reuses another's or the client's.
  EXPECT_EQ(spans["gateway"].size(), 1u);
  EXPECT_EQ(spans["users"].size(), 2u) << "the DeleteMe call and the outbox delivery";
  EXPECT_EQ(spans["data"].size(), 1u);
  std::set<std::string> all;
  std::size_t total = 0;
  for (auto& [process, ids] : spans) {
    EXPECT_FALSE(ids.contains(client_span)) << process;
    total += ids.size();
    all.insert(ids.begin(), ids.end());
  }
  EXPECT_EQ(all.size(), total) << "a span id is shared between processes";
}

TEST(Observability, ATraceIsStartedWhenTheClientSendsNone) {
  Account a = SignUp("untraced");
  auto r = Call("GET", "/v1/collections", "", a.Auth({{"X-Request-Id", "obs-untraced-1"}}));
  ASSERT_EQ(r.status, 200);
  std::map<std::string, std::string> trace_of;  // process -> trace id of that request
  // Log lines reach stdout within the flush interval (100 ms): wait for them.
  Eventually([&] {
    for (const LogLine& l : AllLogLines()) {
      if (l.valid && StrOr(l.fields, "request_id") == "obs-untraced-1") {
        trace_of[l.process] = StrOr(l.fields, "trace_id");
      }
    }
    return trace_of.contains("gateway") && trace_of.contains("data");
  });
  ASSERT_TRUE(trace_of.contains("gateway") && trace_of.contains("data")) << RunningStack().Logs();
  EXPECT_EQ(trace_of["gateway"].size(), 32u);
  EXPECT_EQ(trace_of["gateway"], trace_of["data"]);
}

// ---- metrics ----

struct CatalogueEntry {
  std::string type;
  std::set<std::string> processes;
};

std::string Trim(std::string s) {
  const auto b = s.find_first_not_of(" \t");
  const auto e = s.find_last_not_of(" \t");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

// The table of the "## Metrics" section of docs/operations.md:
// | `name` | type | labels | served by | meaning |
std::map<std::string, CatalogueEntry> ReadCatalogue() {
  std::ifstream in(PORTICO_OPERATIONS_MD);
  EXPECT_TRUE(in.good()) << PORTICO_OPERATIONS_MD;
  std::map<std::string, CatalogueEntry> out;
  std::string line;
  bool in_section = false;
  while (std::getline(in, line)) {
    if (line.starts_with("## ")) in_section = line == "## Metrics";
    if (!in_section || !line.starts_with("| `")) continue;
    std::vector<std::string> cells;
    std::stringstream row(line.substr(1));
    std::string cell;
    while (std::getline(row, cell, '|')) cells.push_back(Trim(cell));
    if (cells.size() < 5) {
      ADD_FAILURE() << "malformed catalogue row: " << line;
      continue;
    }
    const std::string name = cells[0].substr(1, cells[0].size() - 2);
    CatalogueEntry entry{cells[1], {}};
    std::stringstream served(cells[3]);
    std::string process;
    while (std::getline(served, process, ',')) entry.processes.insert(Trim(process));
    EXPECT_TRUE(out.emplace(name, entry).second) << "listed twice: " << name;
  }
  return out;
}

struct Scrape {
  std::map<std::string, std::string> types;  // family -> type, from # TYPE
  std::set<std::string> with_samples;        // families with at least one sample
};

Scrape ScrapeMetrics(std::uint16_t admin_port) {
  auto r = HttpRequest(admin_port, "GET", "/metrics");
  EXPECT_EQ(r.status, 200);
  Scrape s;
  std::istringstream in(r.body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("# TYPE ")) {
      std::istringstream t(line.substr(7));
      std::string name, type;
      t >> name >> type;
      s.types[name] = type;
    }
  }
  in.clear();
  in.str(r.body);
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::string name = line.substr(0, line.find_first_of("{ "));
    if (!s.types.contains(name)) {
      for (const char* suffix : {"_bucket", "_sum", "_count"}) {
        if (name.ends_with(suffix)) {
          const std::string family = name.substr(0, name.size() - std::strlen(suffix));
          if (s.types.contains(family)) name = family;
        }
      }
    }
    s.with_samples.insert(name);
  }
  return s;
}

TEST(Observability, MetricsMatchTheCatalogueInOperationsMd) {
  // Traffic that touches every metric: sign-ins (one failed), items, an
  // account deletion (the outbox), a 404 at the gateway.
  Account a = SignUp("metrics");
  EXPECT_EQ(LoginRaw(a.email, "not the password at all").status, 401);
  ASSERT_EQ(Call("POST", "/v1/collections/m/items", R"({"data":{}})", Bearer(a.tokens.access))
                .status,
            201);
  EXPECT_EQ(Call("GET", "/v1/nothing-here").status, 404);
  ASSERT_EQ(Call("DELETE", "/v1/users/me", "", Bearer(a.tokens.access)).status, 204);

  const auto catalogue = ReadCatalogue();
  ASSERT_GT(catalogue.size(), 10u);
  const StackPorts& ports = RunningStack().ports();
  const std::map<std::string, std::uint16_t> admin_ports = {
      {"gateway", ports.gateway_admin}, {"users", ports.users_admin}, {"data", ports.data_admin}};
  for (const auto& [process, port] : admin_ports) {
    SCOPED_TRACE(process);
    // Pool gauges refresh every 2 s and the outbox gauges every pass: wait
    // until every listed metric has a sample rather than for a fixed time.
    Scrape scrape;
    auto complete = [&] {
      scrape = ScrapeMetrics(port);
      for (const auto& [name, entry] : catalogue) {
        if (entry.processes.contains(process) && !scrape.with_samples.contains(name)) return false;
      }
      return true;
    };
    Eventually(complete, 15);
    for (const auto& [name, entry] : catalogue) {
      if (!entry.processes.contains(process)) continue;
      EXPECT_TRUE(scrape.with_samples.contains(name)) << name << " is catalogued but not served";
      EXPECT_EQ(scrape.types[name], entry.type) << name;
    }
    for (const auto& [name, type] : scrape.types) {
      if (!name.starts_with("portico_") && !name.starts_with("process_")) continue;
      auto it = catalogue.find(name);
      EXPECT_TRUE(it != catalogue.end() && it->second.processes.contains(process))
          << name << " (" << type << ") is served but not in docs/operations.md's catalogue";
    }
  }
}

}  // namespace
}  // namespace portico::testing
