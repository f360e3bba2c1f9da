// End-to-end: the live change feed (GET .../changes:watch) through the real
// gateway, as Server-Sent Events and as newline-delimited JSON: backlog then
// live changes, resuming with Last-Event-ID, errors before and during a
// stream, and what a client going away or a shutdown does to the backend.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "e2e_client.h"

namespace portico::testing {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

const auto* const kEnv = InstallStackEnvironment([] {
  StackOptions o;
  o.gateway_env = {"PORTICO_STREAM_KEEPALIVE=300ms"};
  return o;
});

// A streamed HTTP/1.1 response read as it arrives (chunked transfer coding
// decoded), on a plain socket so that the test controls when it closes.
class StreamClient {
 public:
  StreamClient(std::uint16_t port, const std::string& target, const Headers& headers) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      throw std::runtime_error("connect failed");
    }
    std::string req = "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    for (const auto& [k, v] : headers) req += k + ": " + v + "\r\n";
    req += "\r\n";
    Send(req);
  }
  ~StreamClient() { Close(); }

  void Send(const std::string& bytes) {
    if (::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(bytes.size())) {
      throw std::runtime_error("send failed");
    }
  }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  // Reads until the head is complete; returns the status (0 on timeout).
  int ReadHead(std::chrono::milliseconds timeout = 10s) {
    const auto until = Clock::now() + timeout;
    while (raw_.find("\r\n\r\n") == std::string::npos) {
      if (!ReadSome(until)) return 0;
    }
    const auto end = raw_.find("\r\n\r\n");
    head_ = raw_.substr(0, end);
    raw_.erase(0, end + 4);
    status_ = std::stoi(head_.substr(9, 3));
    chunked_ = Lower(head_).find("transfer-encoding: chunked") != std::string::npos;
    return status_;
  }
  std::string Header(const std::string& name) const {
    const std::string lower = Lower(head_);
    const auto at = lower.find("\r\n" + name + ":");
    if (at == std::string::npos) return {};
    const auto start = at + name.size() + 3;
    const auto end = head_.find("\r\n", start);
    std::string v = head_.substr(start, end - start);
    while (!v.empty() && v.front() == ' ') v.erase(0, 1);
    return v;
  }

  // Reads (decoding chunks) until `done(body)` or the timeout; true if done.
  bool ReadUntil(const std::function<bool(const std::string&)>& done,
                 std::chrono::milliseconds timeout = 10s) {
    const auto until = Clock::now() + timeout;
    for (;;) {
      Decode();
      if (done(body_)) return true;
      if (ended_) return false;
      if (!ReadSome(until)) return false;
    }
  }
  // Reads until the response ends (last chunk or EOF); true if it did.
  bool ReadToEnd(std::chrono::milliseconds timeout = 10s) {
    const auto until = Clock::now() + timeout;
    for (;;) {
      Decode();
      if (ended_) return true;
      if (!ReadSome(until)) return ended_;
    }
  }
  const std::string& body() const { return body_; }
  bool ended() const { return ended_; }

 private:
  static std::string Lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  }
  bool ReadSome(Clock::time_point until) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
    if (left.count() <= 0 || fd_ < 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char buf[4096];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) {
      eof_ = true;
      ended_ = true;
      return false;
    }
    raw_.append(buf, static_cast<std::size_t>(n));
    return true;
  }
  void Decode() {
    if (status_ == 0) return;
    if (!chunked_) {
      body_ += raw_;
      raw_.clear();
      return;
    }
    for (;;) {
      const auto line = raw_.find("\r\n");
      if (line == std::string::npos) return;
      const std::size_t size = std::stoul(raw_.substr(0, line), nullptr, 16);
      if (size == 0) {
        ended_ = true;
        return;
      }
      if (raw_.size() < line + 2 + size + 2) return;
      body_ += raw_.substr(line + 2, size);
      raw_.erase(0, line + 2 + size + 2);
    }
  }

  int fd_ = -1;
  std::string raw_, head_, body_;
  int status_ = 0;
  bool chunked_ = false, ended_ = false, eof_ = false;
};

std::string WatchTarget(const std::string& collection, const std::string& query = "") {
  return "/v1/collections/" + collection + "/changes:watch" + (query.empty() ? "" : "?" + query);
}

std::string CreateItem(const Account& a, const std::string& collection, const std::string& data) {
  auto r = Call("POST", "/v1/collections/" + collection + "/items", R"({"data":)" + data + "}",
                a.Auth());
  EXPECT_EQ(r.status, 201) << r.body;
  return r.status == 201 ? Str(Json(r), "id") : "";
}

struct Event {
  std::string id, event;
  std::string data;
};

// Complete SSE events in `body` (comments skipped).
std::vector<Event> Events(const std::string& body) {
  std::vector<Event> out;
  std::size_t pos = 0;
  for (;;) {
    const auto end = body.find("\n\n", pos);
    if (end == std::string::npos) break;
    std::string block = body.substr(pos, end - pos);
    pos = end + 2;
    Event e;
    bool any = false;
    std::size_t lp = 0;
    while (lp <= block.size()) {
      auto le = block.find('\n', lp);
      if (le == std::string::npos) le = block.size();
      const std::string line = block.substr(lp, le - lp);
      lp = le + 1;
      if (line.empty() || line[0] == ':') continue;
      any = true;
      if (line.rfind("id: ", 0) == 0) e.id = line.substr(4);
      if (line.rfind("event: ", 0) == 0) e.event = line.substr(7);
      if (line.rfind("data: ", 0) == 0) e.data += line.substr(6);
    }
    if (any) out.push_back(std::move(e));
  }
  return out;
}

// Complete NDJSON lines.
std::vector<json::object> Lines(const std::string& body) {
  std::vector<json::object> out;
  std::size_t pos = 0;
  for (;;) {
    const auto end = body.find('\n', pos);
    if (end == std::string::npos) break;
    out.push_back(json::parse(body.substr(pos, end - pos)).as_object());
    pos = end + 1;
  }
  return out;
}

auto HasEvents(std::size_t n) {
  return [n](const std::string& body) { return Events(body).size() >= n; };
}
auto HasLines(std::size_t n) {
  return [n](const std::string& body) { return Lines(body).size() >= n; };
}

// A metric's value on an admin /metrics page (the first series matching
// `series`, which may include labels), or -1.
double Metric(std::uint16_t admin_port, const std::string& series) {
  auto r = HttpRequest(admin_port, "GET", "/metrics");
  std::size_t pos = 0;
  while ((pos = r.body.find(series, pos)) != std::string::npos) {
    if (pos == 0 || r.body[pos - 1] == '\n') {
      const auto sp = r.body.find(' ', pos + series.size() - 1);
      if (sp != std::string::npos && (r.body[pos + series.size()] == ' ' ||
                                      r.body[pos + series.size()] == '{' || series.back() == '}')) {
        return std::stod(r.body.substr(sp + 1, r.body.find('\n', sp) - sp - 1));
      }
    }
    pos += series.size();
  }
  return -1;
}

bool PollMetric(std::uint16_t port, const std::string& series, double want,
                std::chrono::milliseconds timeout = 10s) {
  const auto until = Clock::now() + timeout;
  while (Clock::now() < until) {
    if (Metric(port, series) == want) return true;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

TEST(Stream, SseDeliversBacklogThenLiveChangesWithTombstones) {
  Account a = SignUp("sse");
  const std::string first = CreateItem(a, "notes", R"({"n":1})");
  const std::string second = CreateItem(a, "notes", R"({"n":2})");

  StreamClient s(RunningStack().ports().http, WatchTarget("notes", "since=0"),
                 a.Auth({{"Accept", "text/event-stream"}}));
  ASSERT_EQ(s.ReadHead(), 200);
  EXPECT_EQ(s.Header("content-type"), "text/event-stream");
  EXPECT_FALSE(s.Header("x-request-id").empty());
  ASSERT_TRUE(s.ReadUntil(HasEvents(2))) << s.body();

  // Live, while the stream is open: an update and a delete.
  ASSERT_EQ(
      Call("PUT", "/v1/collections/notes/items/" + second, R"({"data":{"n":22}})", a.Auth()).status,
      200);
  ASSERT_EQ(Call("DELETE", "/v1/collections/notes/items/" + first, "", a.Auth()).status, 204);
  ASSERT_TRUE(s.ReadUntil(HasEvents(4))) << s.body();

  const auto events = Events(s.body());
  ASSERT_EQ(events.size(), 4u) << s.body();
  for (std::size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].id, std::to_string(i + 1));
    EXPECT_TRUE(events[i].event.empty());
    auto change = json::parse(events[i].data).as_object();
    EXPECT_EQ(Str(change, "seq"), std::to_string(i + 1));
  }
  auto c2 = json::parse(events[1].data).as_object();
  EXPECT_EQ(Str(c2, "kind"), "UPSERT");
  EXPECT_EQ(Str(c2.at("item").as_object(), "id"), second);
  auto c3 = json::parse(events[2].data).as_object();
  EXPECT_EQ(Str(c3, "kind"), "UPSERT");
  EXPECT_EQ(c3.at("item").at("data").at("n").to_number<double>(), 22);
  auto c4 = json::parse(events[3].data).as_object();
  EXPECT_EQ(Str(c4, "kind"), "DELETE");
  EXPECT_EQ(Str(c4.at("item").as_object(), "id"), first);

  // Idle: keep-alive comments (every 300 ms in this stack).
  ASSERT_TRUE(s.ReadUntil(
      [](const std::string& b) { return b.find(": keep-alive\n\n") != std::string::npos; }, 5s))
      << s.body();
}

TEST(Stream, NdjsonDeliversBacklogThenLiveChanges) {
  Account a = SignUp("ndjson");
  const std::string first = CreateItem(a, "todo", R"({"t":"a"})");
  StreamClient s(RunningStack().ports().http, WatchTarget("todo"), a.Auth());
  ASSERT_EQ(s.ReadHead(), 200);
  EXPECT_EQ(s.Header("content-type"), "application/x-ndjson");
  ASSERT_TRUE(s.ReadUntil(HasLines(1))) << s.body();
  const std::string second = CreateItem(a, "todo", R"({"t":"b"})");
  ASSERT_EQ(Call("DELETE", "/v1/collections/todo/items/" + first, "", a.Auth()).status, 204);
  ASSERT_TRUE(s.ReadUntil(HasLines(3))) << s.body();
  const auto lines = Lines(s.body());
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(Str(lines[0], "seq"), "1");
  EXPECT_EQ(Str(lines[1], "seq"), "2");
  EXPECT_EQ(Str(lines[1].at("item").as_object(), "id"), second);
  EXPECT_EQ(Str(lines[2], "seq"), "3");
  EXPECT_EQ(Str(lines[2], "kind"), "DELETE");
  EXPECT_EQ(s.body().find(": keep-alive"), std::string::npos);  // SSE only
}

TEST(Stream, LastEventIdResumesAfterTheLastSeenEvent) {
  Account a = SignUp("resume");
  for (int i = 0; i < 3; ++i) CreateItem(a, "log", R"({"i":)" + std::to_string(i) + "}");
  StreamClient s(RunningStack().ports().http, WatchTarget("log"),
                 a.Auth({{"Accept", "text/event-stream"}, {"Last-Event-ID", "2"}}));
  ASSERT_EQ(s.ReadHead(), 200);
  ASSERT_TRUE(s.ReadUntil(HasEvents(1))) << s.body();
  EXPECT_EQ(Events(s.body()).front().id, "3");

  // An explicit since wins over Last-Event-ID.
  StreamClient t(RunningStack().ports().http, WatchTarget("log", "since=1"),
                 a.Auth({{"Accept", "text/event-stream"}, {"Last-Event-ID", "2"}}));
  ASSERT_EQ(t.ReadHead(), 200);
  ASSERT_TRUE(t.ReadUntil(HasEvents(2))) << t.body();
  EXPECT_EQ(Events(t.body()).front().id, "2");

  // A Last-Event-ID that is no position: 400 naming since.
  ExpectProblem(Call("GET", WatchTarget("log"), "",
                     a.Auth({{"Accept", "text/event-stream"}, {"Last-Event-ID", "x"}})),
                400, "INVALID_ARGUMENT", "since");
}

TEST(Stream, ErrorsBeforeTheFirstMessageAreOrdinaryProblems) {
  Account a = SignUp("errors");
  CreateItem(a, "notes", R"({})");
  // A position this feed never had: 410, as ListChanges.
  ExpectProblem(
      Call("GET", WatchTarget("notes", "since=999"), "", a.Auth({{"Accept", "text/event-stream"}})),
      410, "FAILED_PRECONDITION");
  auto unauth = Call("GET", WatchTarget("notes"), "", {{"Accept", "text/event-stream"}});
  ExpectProblem(unauth, 401, "UNAUTHENTICATED");
  EXPECT_EQ(unauth.Header("www-authenticate"), "Bearer");
  ExpectProblem(Call("GET", WatchTarget("Bad!"), "", a.Auth()), 400, "INVALID_ARGUMENT");
}

TEST(Stream, AnotherUserSeesNothingOfTheOwnersCollection) {
  Account owner = SignUp("owner");
  Account other = SignUp("other");
  CreateItem(owner, "shared", R"({"secret":1})");
  StreamClient s(RunningStack().ports().http, WatchTarget("shared"),
                 other.Auth({{"Accept", "text/event-stream"}}));
  ASSERT_EQ(s.ReadHead(), 200);
  CreateItem(owner, "shared", R"({"secret":2})");
  // The other user's own write comes after the owner's; had the owner's
  // changes leaked, they would arrive first.
  const std::string mine = CreateItem(other, "shared", R"({"mine":true})");
  ASSERT_TRUE(s.ReadUntil(HasEvents(1))) << s.body();
  const auto events = Events(s.body());
  ASSERT_EQ(events.size(), 1u) << s.body();
  auto change = json::parse(events[0].data).as_object();
  EXPECT_EQ(Str(change.at("item").as_object(), "id"), mine);
  EXPECT_EQ(Str(change.at("item").as_object(), "ownerId"), other.id);
  EXPECT_EQ(s.body().find("secret"), std::string::npos);
}

TEST(Stream, DeletingTheAccountEndsTheStreamWithAFinalErrorEvent) {
  Account a = SignUp("gone");
  CreateItem(a, "notes", R"({})");
  StreamClient sse(RunningStack().ports().http, WatchTarget("notes"),
                   a.Auth({{"Accept", "text/event-stream"}}));
  StreamClient nd(RunningStack().ports().http, WatchTarget("notes"), a.Auth());
  ASSERT_EQ(sse.ReadHead(), 200);
  ASSERT_EQ(nd.ReadHead(), 200);
  ASSERT_TRUE(sse.ReadUntil(HasEvents(1))) << sse.body();
  ASSERT_TRUE(nd.ReadUntil(HasLines(1))) << nd.body();
  ASSERT_EQ(Call("DELETE", "/v1/users/me", "", a.Auth()).status, 204);

  // The purge reaches data through the users outbox; the watch then ends.
  ASSERT_TRUE(sse.ReadToEnd(20s)) << sse.body();
  const auto events = Events(sse.body());
  ASSERT_EQ(events.size(), 2u) << sse.body();
  EXPECT_EQ(events[1].event, "error");
  auto problem = json::parse(events[1].data).as_object();
  EXPECT_EQ(problem.at("status").as_int64(), 401);
  EXPECT_EQ(Str(problem, "code"), "UNAUTHENTICATED");

  ASSERT_TRUE(nd.ReadToEnd(20s)) << nd.body();
  const auto lines = Lines(nd.body());
  ASSERT_EQ(lines.size(), 2u) << nd.body();
  ASSERT_TRUE(lines[1].contains("error")) << nd.body();
  EXPECT_EQ(Str(lines[1].at("error").as_object(), "code"), "UNAUTHENTICATED");
}

TEST(Stream, ClientDisconnectCancelsTheBackendWatch) {
  const auto data_admin = RunningStack().ports().data_admin;
  ASSERT_TRUE(PollMetric(data_admin, "portico_data_watches_open", 0));
  Account a = SignUp("leaver");
  {
    StreamClient s(RunningStack().ports().http, WatchTarget("notes"),
                   a.Auth({{"Accept", "text/event-stream"}}));
    ASSERT_EQ(s.ReadHead(), 200);
    ASSERT_TRUE(PollMetric(data_admin, "portico_data_watches_open", 1));
    EXPECT_EQ(Metric(RunningStack().ports().gateway_admin, "portico_http_streams_open"), 1);
  }  // closes the connection
  EXPECT_TRUE(PollMetric(data_admin, "portico_data_watches_open", 0));
  EXPECT_TRUE(PollMetric(RunningStack().ports().gateway_admin, "portico_http_streams_open", 0));
}

TEST(Stream, ClientDisconnectCancelsAUnaryBackendCall) {
  Stack& stack = RunningStack();
  Account a = SignUp("impatient");
  const std::string series =
      "portico_upstream_requests_total{code=\"CANCELLED\",method=\"ListItems\","
      "service=\"portico.data.v1.DataService\",target=\"127.0.0.1:" +
      std::to_string(stack.ports().data_grpc) + "\"}";
  const double before = std::max(0.0, Metric(stack.ports().gateway_admin, series));
  // A data service that does not answer (stopped, not gone: the connection
  // stays up) keeps the call in flight until the client leaves.
  ASSERT_EQ(::kill(stack.data().pid(), SIGSTOP), 0);
  struct Resume {
    pid_t pid;
    ~Resume() { ::kill(pid, SIGCONT); }
  } resume{stack.data().pid()};
  {
    // The whole request goes out, then the connection closes: the gateway
    // reads it, starts the call, and sees EOF on the socket.
    StreamClient s(stack.ports().http, "/v1/collections/notes/items", a.Auth());
  }
  // Well before the 10 s request deadline.
  EXPECT_TRUE(PollMetric(stack.ports().gateway_admin, series, before + 1, 5s))
      << Metric(stack.ports().gateway_admin, series);
}

TEST(Stream, PipelinedRequestSurvivesTheClientWatch) {
  Account a = SignUp("pipeline");
  const std::string id = CreateItem(a, "notes", R"({"p":1})");
  std::string auth;
  for (const auto& [k, v] : a.Auth()) auth += k + ": " + v + "\r\n";
  const std::string get =
      "GET /v1/collections/notes/items/" + id + " HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n";
  StreamClient s(RunningStack().ports().http, "/v1/collections/notes/items/" + id, a.Auth());
  s.Send(get);  // arrives while the first is with the backend, or just after
  ASSERT_EQ(s.ReadHead(), 200);
  // The second answer follows the first on the same connection.
  ASSERT_TRUE(s.ReadUntil([&](const std::string& b) {
    const auto second = b.find("HTTP/1.1 200");
    return second != std::string::npos && b.find(id, second) != std::string::npos &&
           b.find("\"p\"", second) != std::string::npos;
  })) << s.body();
}

TEST(Stream, TheDataServiceStoppingEndsOpenStreamsWithAFinalError) {
  Stack& stack = RunningStack();
  Account a = SignUp("stopping");
  StreamClient s(stack.ports().http, WatchTarget("notes"),
                 a.Auth({{"Accept", "text/event-stream"}}));
  ASSERT_EQ(s.ReadHead(), 200);
  ASSERT_TRUE(PollMetric(stack.ports().data_admin, "portico_data_watches_open", 1));
  // SIGTERM: the watch ends at once instead of holding the drain's grace.
  const auto start = Clock::now();
  stack.StopData();  // throws unless it exits 0
  EXPECT_LT(Clock::now() - start, 5s);
  ASSERT_TRUE(s.ReadToEnd(10s)) << s.body();
  const auto events = Events(s.body());
  ASSERT_FALSE(events.empty()) << s.body();
  EXPECT_EQ(events.back().event, "error");
  auto problem = json::parse(events.back().data).as_object();
  EXPECT_EQ(Str(problem, "code"), "UNAVAILABLE");
  EXPECT_EQ(problem.at("status").as_int64(), 503);
  stack.StartData();
}

TEST(Stream, ShutdownEndsOpenStreamsPromptlyAndExitsZero) {
  Stack stack;
  const std::string email = UniqueEmail("shutdown");
  Account a = RegisterAndSignIn(stack.ports().http, email, kPassword, "shutdown");
  ASSERT_FALSE(a.tokens.access.empty());
  StreamClient s(stack.ports().http, WatchTarget("notes"),
                 {{"Authorization", "Bearer " + a.tokens.access}, {"Accept", "text/event-stream"}});
  ASSERT_EQ(s.ReadHead(), 200);
  ASSERT_TRUE(PollMetric(stack.ports().data_admin, "portico_data_watches_open", 1));
  const auto start = Clock::now();
  EXPECT_EQ(stack.gateway().Stop(), 0) << stack.Logs();
  EXPECT_LT(Clock::now() - start, 5s);
  ASSERT_TRUE(s.ReadToEnd(5s)) << s.body();
  const auto events = Events(s.body());
  ASSERT_FALSE(events.empty()) << s.body();
  EXPECT_EQ(events.back().event, "error");
  EXPECT_EQ(Str(json::parse(events.back().data).as_object(), "code"), "UNAVAILABLE");
  EXPECT_TRUE(PollMetric(stack.ports().data_admin, "portico_data_watches_open", 0));
  // The data service, with no watch open, stops promptly too.
  const auto data_start = Clock::now();
  EXPECT_EQ(stack.data().Stop(), 0);
  EXPECT_LT(Clock::now() - data_start, 5s);
}

}  // namespace
}  // namespace portico::testing
