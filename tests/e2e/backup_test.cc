// End-to-end: scripts/backup and scripts/restore. A populated stack is backed
// up, changed, stopped and its databases dropped; after the restore every
// account signs in with its password (and its old access token verifies: the
// signing keys came back), every item, version, tombstone and change-feed
// entry is as it was at the backup, and nothing written after it survives.
// The data of an account that vanished between the two dumps is purged
// through the outbox after the restore.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "e2e_client.h"
#include "portico/testing/pg_cluster.h"

namespace portico::testing {
namespace {

namespace json = boost::json;

const auto* const kEnv = InstallStackEnvironment([] {
  StackOptions options;
  options.users_env = {"PORTICO_PURGE_MAX_BACKOFF=1s"};
  return options;
});

struct CommandResult {
  int status = -1;
  std::string output;  // stdout and stderr
};

CommandResult Shell(const std::string& command) {
  CommandResult r;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return r;
  std::array<char, 4096> buf{};
  size_t n = 0;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) r.output.append(buf.data(), n);
  const int status = pclose(pipe);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
  return r;
}

std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// One value from `sql` run against `url`; the test fails if psql does.
std::string Query(const std::string& url, const std::string& sql) {
  auto r = Shell("psql -X -q -At -v ON_ERROR_STOP=1 -d " + Quote(url) + " -c " + Quote(sql));
  EXPECT_EQ(r.status, 0) << sql << "\n" << r.output;
  while (!r.output.empty() && r.output.back() == '\n') r.output.pop_back();
  return r.output;
}

std::string DatabaseName(const std::string& url) { return url.substr(url.rfind('/') + 1); }

std::string Script(const std::string& name) {
  return std::string(PORTICO_SOURCE_DIR) + "/scripts/" + name;
}

std::string Urls() {
  Stack& s = RunningStack();
  return " --users-url " + Quote(s.users_database_url()) + " --data-url " +
         Quote(s.data_database_url());
}

// Everything a client can read about an account: its profile, and per
// collection the items and the whole change feed, as the gateway answers
// (parsed: the order of keys inside `data` is not significant).
std::map<std::string, json::value> Snapshot(const Account& a) {
  std::map<std::string, json::value> out;
  auto me = Call("GET", "/v1/users/me", "", a.Auth());
  EXPECT_EQ(me.status, 200) << me.body;
  out["me"] = json::parse(me.body);
  auto collections = Call("GET", "/v1/collections", "", a.Auth());
  EXPECT_EQ(collections.status, 200) << collections.body;
  out["collections"] = json::parse(collections.body);
  const json::object listed = Json(collections);
  for (const auto& c : listed.at("collections").as_array()) {
    const std::string name = Str(c.as_object().at("name"));
    auto items = Call("GET", "/v1/collections/" + name + "/items?pageSize=1000", "", a.Auth());
    EXPECT_EQ(items.status, 200) << items.body;
    out["items/" + name] = json::parse(items.body);
    auto changes =
        Call("GET", "/v1/collections/" + name + "/changes?since=0&pageSize=1000", "", a.Auth());
    EXPECT_EQ(changes.status, 200) << changes.body;
    out["changes/" + name] = json::parse(changes.body);
  }
  return out;
}

std::string Create(const Account& a, const std::string& collection, const std::string& data) {
  auto r = Call("POST", "/v1/collections/" + collection + "/items", R"({"data":)" + data + "}",
                a.Auth());
  EXPECT_EQ(r.status, 201) << r.body;
  return r.status == 201 ? Str(Json(r).at("id")) : "";
}

TEST(Backup, RestoreBringsBackEveryAccountItemAndChangeAsOfTheBackup) {
  Stack& stack = RunningStack();
  const std::string users_url = stack.users_database_url();
  const std::string data_url = stack.data_database_url();

  // ---- a populated stack
  Account ada = SignUp("backup-ada"), bob = SignUp("backup-bob"), cy = SignUp("backup-cy");
  const std::string kept = Create(ada, "notes", R"({"title":"kept","n":1})");
  const std::string updated = Create(ada, "notes", R"({"title":"draft"})");
  const std::string deleted = Create(ada, "notes", R"({"title":"gone"})");
  Create(ada, "tasks", R"({"done":false,"tags":["a","b"]})");
  Create(ada, "tasks", R"({"done":true,"nested":{"x":1.5}})");
  Create(bob, "notes", R"({"title":"bob's"})");
  const std::string patched = Create(bob, "journal", R"({"mood":"ok","day":1})");
  ASSERT_EQ(Call("PUT", "/v1/collections/notes/items/" + updated, R"({"data":{"title":"final"}})",
                 ada.Auth({{"If-Match", "\"1\""}}))
                .status,
            200);
  ASSERT_EQ(Call("PATCH", "/v1/collections/journal/items/" + patched, R"({"data":{"mood":"good"}})",
                 bob.Auth())
                .status,
            200);
  ASSERT_EQ(Call("DELETE", "/v1/collections/notes/items/" + deleted, "", ada.Auth()).status, 204);

  // An account that disappears between the dump of data and the dump of
  // users, its purge already done: users has no trace of it, data still has
  // its items. (Made here by deleting the row behind the services' back.)
  Account gone = SignUp("backup-gone");
  Create(gone, "notes", R"({"secret":1})");
  Create(gone, "notes", R"({"secret":2})");
  Query(users_url, "DELETE FROM users WHERE id = '" + gone.id + "'");

  std::map<std::string, std::map<std::string, json::value>> before;
  for (const Account* a : {&ada, &bob, &cy}) before[a->id] = Snapshot(*a);

  // ---- the backup
  char tmpl[] = "/tmp/portico-backup-XXXXXX";
  const std::string dir = std::string(mkdtemp(tmpl)) + "/b1";
  auto backup = Shell(Script("backup") + Urls() + " " + dir);
  ASSERT_EQ(backup.status, 0) << backup.output;
  // The manifest names both databases, data first, with the archives'
  // checksums.
  std::ifstream manifest_file(dir + "/manifest.json");
  std::stringstream manifest_text;
  manifest_text << manifest_file.rdbuf();
  const json::object manifest = json::parse(manifest_text.str()).as_object();
  const auto& dbs = manifest.at("databases").as_array();
  ASSERT_EQ(dbs.size(), 2u) << manifest_text.str();
  EXPECT_EQ(Str(dbs[0].as_object().at("service")), "data");
  EXPECT_EQ(Str(dbs[0].as_object().at("database")), DatabaseName(data_url));
  EXPECT_EQ(Str(dbs[1].as_object().at("service")), "users");
  EXPECT_EQ(Str(dbs[1].as_object().at("database")), DatabaseName(users_url));
  for (const auto& db : dbs) {
    auto sum = Shell("sha256sum " + Quote(dir + "/" + Str(db.as_object().at("file"))));
    EXPECT_EQ(sum.output.substr(0, 64), Str(db.as_object().at("sha256")));
  }
  EXPECT_EQ(manifest_text.str().find("postgres@"), std::string::npos)
      << "credentials in the manifest";

  // Restoring over databases the services still use is refused.
  auto busy = Shell(Script("restore") + Urls() + " --clean " + dir);
  EXPECT_NE(busy.status, 0) << busy.output;
  EXPECT_NE(busy.output.find("other session"), std::string::npos) << busy.output;

  // ---- writes after the backup, which the restore must undo
  const std::string late_item = Create(ada, "notes", R"({"title":"after the backup"})");
  Account late = SignUp("backup-late");
  ASSERT_EQ(Call("DELETE", "/v1/collections/notes/items/" + kept, "", ada.Auth()).status, 204);

  // ---- disaster: services stopped, databases gone
  stack.StopData();
  stack.StopUsers();
  PgCluster& pg = SharedPgCluster();
  for (const std::string& url : {users_url, data_url}) {
    pg.AdminExec("DROP DATABASE " + DatabaseName(url));
    pg.AdminExec("CREATE DATABASE " + DatabaseName(url));
  }

  // A damaged archive is refused before anything is touched.
  const std::string damaged = dir + "-damaged";
  std::filesystem::copy(dir, damaged);
  { std::ofstream(damaged + "/portico_users.dump", std::ios::app) << "x"; }
  auto refused = Shell(Script("restore") + Urls() + " " + damaged);
  EXPECT_NE(refused.status, 0) << refused.output;
  EXPECT_EQ(Query(users_url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"), "0");

  auto restore = Shell(Script("restore") + Urls() + " " + dir);
  ASSERT_EQ(restore.status, 0) << restore.output;
  EXPECT_NE(restore.output.find("1 owner(s) without an account queued"), std::string::npos)
      << restore.output;
  // Restoring again over the restored databases needs --clean.
  auto again = Shell(Script("restore") + Urls() + " " + dir);
  EXPECT_NE(again.status, 0) << again.output;
  EXPECT_NE(again.output.find("table(s)"), std::string::npos) << again.output;

  stack.StartUsersAgain();
  stack.StartData();
  // The gateway reconnects to data on its own schedule.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (Call("GET", "/v1/collections", "", ada.Auth()).status != 200 &&
         std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }

  // ---- everything as of the backup
  for (const Account* a : {&ada, &bob, &cy}) {
    // The access token issued before the backup still verifies (same keys),
    // and the password still signs in.
    const auto after = Snapshot(*a);
    EXPECT_EQ(after, before[a->id]) << a->email;
    EXPECT_FALSE(Login(a->email).access.empty()) << a->email;
  }
  EXPECT_EQ(LoginRaw(late.email, kPassword).status, 401);
  EXPECT_EQ(Call("GET", "/v1/collections/notes/items/" + late_item, "", ada.Auth()).status, 404);
  EXPECT_EQ(Call("GET", "/v1/collections/notes/items/" + kept, "", ada.Auth()).status, 200);
  EXPECT_EQ(Call("GET", "/v1/collections/notes/items/" + deleted, "", ada.Auth()).status, 404);
  auto item = Call("GET", "/v1/collections/notes/items/" + updated, "", ada.Auth());
  EXPECT_EQ(item.Header("etag"), "\"2\"") << item.body;
  // The feed goes on where it was: a new change gets the next sequence number.
  auto feed = Json(Call("GET", "/v1/collections/notes/changes?since=0", "", ada.Auth()));
  const std::string next_since = Str(feed.at("nextSince"));
  Create(ada, "notes", R"({"title":"after the restore"})");
  auto newer = Json(Call("GET", "/v1/collections/notes/changes?since=" + next_since, "", ada.Auth()));
  ASSERT_EQ(newer.at("changes").as_array().size(), 1u) << json::serialize(newer);
  EXPECT_EQ(std::stoll(Str(newer.at("changes").as_array()[0].as_object().at("seq"))),
            std::stoll(next_since) + 1);

  // The orphaned owner's data is purged through the outbox.
  const auto purge_until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  std::string left;
  do {
    left = Query(data_url, "SELECT count(*) FROM items WHERE owner_id = '" + gone.id + "'");
    if (left == "0") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  } while (std::chrono::steady_clock::now() < purge_until);
  EXPECT_EQ(left, "0") << stack.Logs();
  EXPECT_EQ(Query(data_url, "SELECT count(*) FROM purged_owners WHERE owner_id = '" + gone.id + "'"),
            "1");

  std::error_code ec;
  std::filesystem::remove_all(std::filesystem::path(dir).parent_path(), ec);
}

}  // namespace
}  // namespace portico::testing
