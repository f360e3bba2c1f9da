// End-to-end: the gateway's protection as a client meets it — size and
// nesting limits, connection and in-flight limits, per-client rate limits,
// the client address behind trusted proxies, CORS, gzip, read timeouts and
// per-route deadlines. Limits that need their own setting run against an
// extra gateway (Stack::StartGateway) in front of the same services.
// Requests are held in flight deterministically by locking the users'
// `sessions` table from the test through libpq.
#include <gtest/gtest.h>

#include <algorithm>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include <boost/json.hpp>
#include <chrono>
#include <future>
#include <optional>
#include <string>
#include <thread>

#include "e2e_client.h"
#include "portico/pg/pool.h"

namespace portico::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

const std::string kOrigin = "https://app.example.com";

const auto* const kEnv = InstallStackEnvironment([] {
  StackOptions o;
  o.gateway_env = {"PORTICO_MAX_BODY_SIZE=64KiB", "PORTICO_CORS_ORIGINS=" + kOrigin,
                   "PORTICO_CORS_MAX_AGE=5m", "PORTICO_GZIP_MIN_SIZE=256"};
  return o;
});

// ---- a raw HTTP/1.1 connection, for what the test client cannot do ----

class RawConnection {
 public:
  explicit RawConnection(std::uint16_t port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd_ < 0 || connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      throw std::runtime_error("cannot connect to port " + std::to_string(port));
    }
  }
  ~RawConnection() { Close(); }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

  void Send(const std::string& data) {
    std::size_t sent = 0;
    while (sent < data.size()) {
      const auto n = send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) throw std::runtime_error("send failed");
      sent += static_cast<std::size_t>(n);
    }
  }

  // Reads one response (Content-Length framed), waiting up to `timeout`;
  // nullopt if the connection ends or the time is up first.
  std::optional<HttpResponse> ReadResponse(std::chrono::milliseconds timeout = 10s) {
    const auto until = Clock::now() + timeout;
    std::size_t head_end;
    while ((head_end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (!Fill(until)) return std::nullopt;
    }
    HttpResponse r;
    const std::string head = buffer_.substr(0, head_end);
    r.status = std::stoi(head.substr(9, 3));
    std::size_t pos = head.find("\r\n");
    while (pos != std::string::npos && pos < head.size()) {
      const auto next = head.find("\r\n", pos + 2);
      const std::string line =
          head.substr(pos + 2, next == std::string::npos ? std::string::npos : next - pos - 2);
      if (const auto colon = line.find(':'); colon != std::string::npos) {
        std::string name = line.substr(0, colon);
        for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        r.headers[name] = line.substr(line.find_first_not_of(' ', colon + 1));
      }
      pos = next;
    }
    const std::size_t length =
        r.headers.count("content-length") ? std::stoul(r.headers["content-length"]) : 0;
    while (buffer_.size() < head_end + 4 + length) {
      if (!Fill(until)) return std::nullopt;
    }
    r.body = buffer_.substr(head_end + 4, length);
    buffer_.erase(0, head_end + 4 + length);
    return r;
  }

  // True once the server has closed the connection (EOF or reset), waiting
  // up to `timeout`; data that arrives meanwhile is kept.
  bool WaitClosed(std::chrono::milliseconds timeout) {
    const auto until = Clock::now() + timeout;
    while (Clock::now() < until) {
      if (!Fill(until)) return closed_;
    }
    return closed_;
  }

 private:
  // Reads what is there; false on EOF, error or time-out.
  bool Fill(Clock::time_point until) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char chunk[4096];
    const auto n = recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) {
      closed_ = true;
      return false;
    }
    buffer_.append(chunk, static_cast<std::size_t>(n));
    return true;
  }

  int fd_ = -1;
  bool closed_ = false;
  std::string buffer_;
};

std::string Get(const std::string& target, const std::string& extra = "") {
  return "GET " + target + " HTTP/1.1\r\nHost: gateway\r\n" + extra + "\r\n";
}

// ---- holding requests in flight ----

// Locks the users service's `sessions` table until destroyed: sign-in and
// the session list wait on it (a statement blocked on a lock, not a sleep).
class SessionsLock {
 public:
  SessionsLock() {
    auto pool = pg::Pool::Create({.url = RunningStack().users_database_url(), .size = 2});
    if (!pool.ok()) throw std::runtime_error(pool.error().message);
    pool_ = std::move(*pool);
    auto lease = pool_->Acquire(pg::kNoDeadline);
    if (!lease.ok()) throw std::runtime_error(lease.error().message);
    lease_.emplace(std::move(*lease));
    Exec("BEGIN");
    Exec("LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE");
  }
  ~SessionsLock() { Release(); }

  void Release() {
    if (lease_) Exec("ROLLBACK");
    lease_.reset();
  }

  // Polls until `n` statements of the users service wait on a lock.
  void WaitForWaiters(int n) {
    auto probe = pool_->Acquire(pg::kNoDeadline);
    ASSERT_TRUE(probe.ok());
    const auto until = Clock::now() + 30s;
    int waiting = -1;
    while (Clock::now() < until) {
      auto rows = probe->Exec(
          "SELECT count(*)::int AS n FROM pg_stat_activity "
          "WHERE datname = current_database() AND wait_event_type = 'Lock'");
      ASSERT_TRUE(rows.ok()) << rows.error().message;
      waiting = static_cast<int>(rows->front().GetInt64("n"));
      if (waiting >= n) return;
      std::this_thread::sleep_for(20ms);
    }
    FAIL() << "only " << waiting << " statements wait on the lock, expected " << n;
  }

 private:
  void Exec(const char* sql) {
    auto r = lease_->Exec(sql);
    if (!r.ok()) throw std::runtime_error(std::string(sql) + ": " + r.error().message);
  }

  std::unique_ptr<pg::Pool> pool_;
  std::optional<pg::Lease> lease_;
};

std::future<HttpResponse> Async(std::uint16_t port, const std::string& method,
                                const std::string& target, const std::string& body = "",
                                const Headers& headers = {}) {
  return std::async(std::launch::async,
                    [=] { return HttpRequest(port, method, target, body, headers); });
}

HttpResponse LoginVia(std::uint16_t port, const Account& a, const Headers& headers = {}) {
  Headers h = headers;
  h.emplace_back("Content-Type", "application/json");
  return HttpRequest(port, "POST", "/v1/auth/login",
                     R"({"email":")" + a.email + R"(","password":")" + kPassword + R"("})", h);
}

// The client address users recorded for the session of `access_token`.
std::string CurrentSessionAddress(const std::string& access_token) {
  auto r = Call("GET", "/v1/users/me/sessions", "", Bearer(access_token));
  EXPECT_EQ(r.status, 200) << r.body;
  if (r.status != 200) return "";
  const json::object body = Json(r);
  for (const auto& s : body.at("sessions").as_array()) {
    const auto& o = s.as_object();
    if (o.contains("current") && o.at("current").as_bool()) return Str(o, "clientAddress");
  }
  ADD_FAILURE() << "no current session in " << r.body;
  return "";
}

std::string Nested(int depth) {
  // {"data": {"a": {"a": ... {}}}}: `depth` levels of objects in all.
  std::string s = R"({"data":)";
  for (int i = 1; i < depth; ++i) s += i + 1 < depth ? R"({"a":)" : "{}";
  for (int i = 2; i < depth; ++i) s += "}";
  return s + "}";
}

std::string Gunzip(const std::string& in) {
  z_stream z{};
  EXPECT_EQ(inflateInit2(&z, 15 + 16), Z_OK);
  std::string out;
  char chunk[16384];
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  int rc = Z_OK;
  while (rc == Z_OK) {
    z.next_out = reinterpret_cast<Bytef*>(chunk);
    z.avail_out = sizeof chunk;
    rc = inflate(&z, Z_NO_FLUSH);
    out.append(chunk, sizeof chunk - z.avail_out);
  }
  EXPECT_EQ(rc, Z_STREAM_END);
  inflateEnd(&z);
  return out;
}

// ---- configuration ----

TEST(Limits, ABadProxyOrOriginListStopsTheStartWithExit2) {
  for (const std::string bad :
       {"PORTICO_TRUSTED_PROXIES=10.0.0.1/8", "PORTICO_CORS_ORIGINS=https://app.example.com/"}) {
    const std::string log = ::testing::TempDir() + "/bad_gateway.log";
    Process gateway("bad gateway", Stack::GatewayBinary(),
                    {bad, "PORTICO_HTTP_ADDR=127.0.0.1:0", "PORTICO_ADMIN_ADDR=127.0.0.1:0"}, log);
    const auto until = Clock::now() + 20s;
    while (gateway.Running() && Clock::now() < until) std::this_thread::sleep_for(20ms);
    EXPECT_EQ(gateway.Stop(), 2) << bad << "\n" << gateway.Log();
    EXPECT_NE(gateway.Log().find(bad.substr(0, bad.find('='))), std::string::npos) << gateway.Log();
  }
}

// ---- sizes and nesting ----

TEST(Limits, HeaderTooLargeIs431) {
  auto r = Call("GET", "/v1/auth/jwks", "", {{"X-Padding", std::string(20 << 10, 'x')}});
  ExpectProblem(r, 431, "RESOURCE_EXHAUSTED");
}

TEST(Limits, BodyTooLargeIs413NamingTheLimit) {
  const std::string body = R"({"email":"a@example.com","password":")" + std::string(70 << 10, 'p') +
                           R"(","displayName":"x"})";
  auto r = Call("POST", "/v1/auth/register", body, {{"Content-Type", "application/json"}});
  ExpectProblem(r, 413, "RESOURCE_EXHAUSTED");
  EXPECT_NE(JsonField(r.body, "detail").find(std::to_string(64 << 10)), std::string::npos)
      << r.body;
}

TEST(Limits, JsonNestedDeeperThanTheLimitIs400BeforeAnyParser) {
  Account a = SignUp("deep");
  const Headers h = a.Auth({{"Content-Type", "application/json"}});
  // An item's data at its limit (64 levels): stored and returned whole.
  auto ok = Call("POST", "/v1/collections/deep/items", Nested(65), h);
  ASSERT_EQ(ok.status, 201) << ok.body;
  // (The id from Location: the body nests deeper than a JSON reader's default limit.)
  auto back = Call("GET", ok.Header("location"), "", h);
  ASSERT_EQ(back.status, 200) << back.body;
  // The item's own braces and the data's 64 levels.
  EXPECT_EQ(std::count(back.body.begin(), back.body.end(), '{'), 65) << back.body;
  // One deeper: the data rule's answer, naming `data`.
  auto deep_data = Call("POST", "/v1/collections/deep/items", Nested(66), h);
  ExpectProblem(deep_data, 400, "INVALID_ARGUMENT", "data");
  EXPECT_NE(deep_data.body.find("deeper than 64 levels"), std::string::npos) << deep_data.body;
  // Past the gateway's own limit: its answer, naming the limit.
  auto deep = Call("POST", "/v1/collections/deep/items", Nested(73), h);
  ExpectProblem(deep, 400, "INVALID_ARGUMENT");
  EXPECT_NE(JsonField(deep.body, "detail").find("deeper than 72"), std::string::npos) << deep.body;
  // Far deeper (protobuf's own limit is 100): still the gateway's answer.
  auto deeper =
      Call("POST", "/v1/collections/deep/items", std::string(500, '[') + std::string(500, ']'), h);
  ExpectProblem(deeper, 400, "INVALID_ARGUMENT");
  EXPECT_NE(JsonField(deeper.body, "detail").find("deeper than 72"), std::string::npos)
      << deeper.body;
  // Brackets inside strings are text, not nesting.
  auto text = Call("POST", "/v1/collections/deep/items",
                   R"({"data":{"s":")" + std::string(100, '[') + R"("}})", h);
  EXPECT_EQ(text.status, 201) << text.body;
}

// ---- CORS ----

TEST(Limits, CorsPreflightFromAnAllowedOrigin) {
  auto r = Call("OPTIONS", "/v1/collections/notes/items", "",
                {{"Origin", kOrigin},
                 {"Access-Control-Request-Method", "POST"},
                 {"Access-Control-Request-Headers", "authorization, content-type"}});
  EXPECT_EQ(r.status, 204) << r.body;
  EXPECT_EQ(r.Header("access-control-allow-origin"), kOrigin);
  EXPECT_EQ(r.Header("access-control-allow-methods"), "GET, POST");
  const std::string allow_headers = r.Header("access-control-allow-headers");
  for (const char* h : {"Authorization", "Content-Type", "Idempotency-Key", "If-Match",
                        "If-None-Match", "X-Request-Id", "Traceparent"}) {
    EXPECT_NE(allow_headers.find(h), std::string::npos) << h << " in " << allow_headers;
  }
  EXPECT_EQ(r.Header("access-control-max-age"), "300");
  EXPECT_NE(r.Header("vary").find("Origin"), std::string::npos);
  EXPECT_FALSE(r.Header("x-request-id").empty());
  EXPECT_TRUE(r.body.empty());

  auto item = Call("OPTIONS", "/v1/collections/notes/items/0190e0c8-0000-7000-8000-000000000000",
                   "", {{"Origin", kOrigin}, {"Access-Control-Request-Method", "PUT"}});
  EXPECT_EQ(item.status, 204);
  EXPECT_EQ(item.Header("access-control-allow-methods"), "DELETE, GET, PATCH, PUT");
}

TEST(Limits, CorsPreflightFromAnotherOriginIs403WithoutCorsHeaders) {
  auto r =
      Call("OPTIONS", "/v1/collections/notes/items", "",
           {{"Origin", "https://evil.example.net"}, {"Access-Control-Request-Method", "POST"}});
  ExpectProblem(r, 403, "PERMISSION_DENIED");
  EXPECT_EQ(r.Header("access-control-allow-origin"), "");
  EXPECT_EQ(r.Header("access-control-allow-methods"), "");
}

TEST(Limits, OptionsWithoutOriginIsStill405) {
  auto r = Call("OPTIONS", "/v1/collections/notes/items");
  ExpectProblem(r, 405, "UNIMPLEMENTED");
  EXPECT_EQ(r.Header("allow"), "GET, POST");
  EXPECT_EQ(r.Header("access-control-allow-origin"), "");
}

TEST(Limits, ActualCorsResponsesCarryTheOriginAndExposedHeaders) {
  Account a = SignUp("cors");
  auto created = Call("POST", "/v1/collections/cors/items", R"({"data":{"x":1}})",
                      a.Auth({{"Origin", kOrigin}, {"Content-Type", "application/json"}}));
  ASSERT_EQ(created.status, 201) << created.body;
  EXPECT_EQ(created.Header("access-control-allow-origin"), kOrigin);
  EXPECT_EQ(created.Header("access-control-allow-credentials"), "true");
  const std::string exposed = created.Header("access-control-expose-headers");
  for (const char* h : {"ETag", "Location", "Retry-After", "X-Request-Id"}) {
    EXPECT_NE(exposed.find(h), std::string::npos) << h << " in " << exposed;
  }
  EXPECT_NE(created.Header("vary").find("Origin"), std::string::npos);
  // Errors too: a browser script must be able to read the problem.
  auto missing = Call("GET", "/v1/users/me", "", {{"Origin", kOrigin}});
  EXPECT_EQ(missing.status, 401);
  EXPECT_EQ(missing.Header("access-control-allow-origin"), kOrigin);

  auto other = Call("GET", "/v1/collections/cors/items", "",
                    a.Auth({{"Origin", "https://evil.example.net"}}));
  EXPECT_EQ(other.status, 200);  // served (CORS is the browser's check), but not shared
  EXPECT_EQ(other.Header("access-control-allow-origin"), "");
  EXPECT_EQ(other.Header("access-control-expose-headers"), "");
}

// ---- gzip ----

TEST(Limits, GzipRoundTripWhenAcceptedAndPlainOtherwise) {
  Account a = SignUp("gzip");
  for (int i = 0; i < 10; ++i) {
    auto r = Call("POST", "/v1/collections/zipped/items",
                  R"({"data":{"text":"the same words again and again and again","n":)" +
                      std::to_string(i) + "}}",
                  a.Auth({{"Content-Type", "application/json"}}));
    ASSERT_EQ(r.status, 201) << r.body;
  }
  auto plain = Call("GET", "/v1/collections/zipped/items", "", a.Auth());
  ASSERT_EQ(plain.status, 200);
  EXPECT_EQ(plain.Header("content-encoding"), "");
  EXPECT_NE(plain.Header("vary").find("Accept-Encoding"), std::string::npos);
  ASSERT_GT(plain.body.size(), 256u);

  auto zipped = Call("GET", "/v1/collections/zipped/items", "",
                     a.Auth({{"Accept-Encoding", "br, gzip;q=0.8"}}));
  ASSERT_EQ(zipped.status, 200);
  EXPECT_EQ(zipped.Header("content-encoding"), "gzip");
  EXPECT_NE(zipped.Header("vary").find("Accept-Encoding"), std::string::npos);
  EXPECT_LT(zipped.body.size(), plain.body.size());
  EXPECT_EQ(json::parse(Gunzip(zipped.body)), json::parse(plain.body));

  auto refused = Call("GET", "/v1/collections/zipped/items", "",
                      a.Auth({{"Accept-Encoding", "gzip;q=0, identity"}}));
  EXPECT_EQ(refused.Header("content-encoding"), "");
  EXPECT_EQ(json::parse(refused.body), json::parse(plain.body));

  // Small bodies and bodiless answers are never encoded.
  auto small = Call("GET", "/v1/users/me", "", a.Auth({{"Accept-Encoding", "gzip"}}));
  EXPECT_EQ(small.status, 200);
  EXPECT_EQ(small.Header("content-encoding"), "");
  const std::string id = Str(Json(plain).at("items").as_array().front().as_object(), "id");
  auto gone = Call("DELETE", "/v1/collections/zipped/items/" + id, "",
                   a.Auth({{"Accept-Encoding", "gzip"}}));
  EXPECT_EQ(gone.status, 204);
  EXPECT_EQ(gone.Header("content-encoding"), "");
}

// ---- read timeouts ----

TEST(Limits, ASlowHeaderAndAnIdleConnectionAreClosedAfterTheirTimeouts) {
  std::uint16_t port = 0;
  auto gw = RunningStack().StartGateway(
      {"PORTICO_HEADER_TIMEOUT=1s", "PORTICO_IDLE_TIMEOUT=1500ms"}, &port);

  RawConnection slow(port);
  const auto start = Clock::now();
  slow.Send("GET /v1/auth/jwks HTTP/1.1\r\nHost: gateway\r\nX-Slow: ");  // never finished
  EXPECT_TRUE(slow.WaitClosed(20s)) << "a client that never finishes its header stays connected";
  EXPECT_GE(Clock::now() - start, 900ms);

  RawConnection idle(port);
  idle.Send(Get("/v1/auth/jwks"));
  auto r = idle.ReadResponse();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  const auto answered = Clock::now();
  EXPECT_TRUE(idle.WaitClosed(20s)) << "an idle keep-alive connection stays open";
  EXPECT_GE(Clock::now() - answered, 1400ms);

  // A connection in use is not cut by the idle timeout of the previous wait.
  RawConnection busy(port);
  for (int i = 0; i < 3; ++i) {
    busy.Send(Get("/v1/auth/jwks"));
    auto again = busy.ReadResponse();
    ASSERT_TRUE(again.has_value()) << i;
    EXPECT_EQ(again->status, 200);
  }
}

// ---- connections and requests in flight ----

TEST(Limits, AConnectionBeyondTheLimitGets503AndIsClosed) {
  std::uint16_t port = 0;
  auto gw = RunningStack().StartGateway({"PORTICO_MAX_CONNECTIONS=3"}, &port);
  std::vector<std::unique_ptr<RawConnection>> open;
  for (int i = 0; i < 3; ++i) {
    open.push_back(std::make_unique<RawConnection>(port));
    open.back()->Send(Get("/v1/auth/jwks"));  // answered: the connection is surely counted
    auto r = open.back()->ReadResponse();
    ASSERT_TRUE(r.has_value()) << i;
    EXPECT_EQ(r->status, 200);
  }
  RawConnection extra(port);
  extra.Send(Get("/v1/auth/jwks"));
  auto refused = extra.ReadResponse();
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->status, 503);
  EXPECT_EQ(refused->Header("retry-after"), "1");
  EXPECT_EQ(refused->Header("content-type"), "application/problem+json");
  EXPECT_EQ(refused->Header("connection"), "close");
  EXPECT_EQ(JsonField(refused->body, "code"), "UNAVAILABLE");
  EXPECT_TRUE(extra.WaitClosed(10s));

  // The open ones still work; once one closes, a new connection is served.
  open[0]->Send(Get("/v1/auth/jwks"));
  auto still = open[0]->ReadResponse();
  ASSERT_TRUE(still.has_value());
  EXPECT_EQ(still->status, 200);
  open[1]->Close();
  const auto until = Clock::now() + 20s;
  int status = 0;
  while (Clock::now() < until && status != 200) {
    RawConnection next(port);
    next.Send(Get("/v1/auth/jwks"));
    auto r = next.ReadResponse();
    status = r ? r->status : 0;
    if (status != 200) std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(status, 200);
}

TEST(Limits, RequestsBeyondTheInFlightLimitGet503WithRetryAfter) {
  std::uint16_t port = 0;
  auto gw = RunningStack().StartGateway({"PORTICO_MAX_IN_FLIGHT=2"}, &port);
  Account a = SignUp("inflight");
  std::vector<std::future<HttpResponse>> held;
  {
    SessionsLock lock;
    for (int i = 0; i < 2; ++i) {
      held.push_back(Async(port, "GET", "/v1/users/me/sessions", "", a.Auth()));
    }
    lock.WaitForWaiters(2);
    auto over = HttpRequest(port, "GET", "/v1/auth/jwks");
    ExpectProblem(over, 503, "UNAVAILABLE");
    EXPECT_EQ(over.Header("retry-after"), "1");
    EXPECT_NE(JsonField(over.body, "detail").find("2 requests"), std::string::npos) << over.body;
  }
  for (auto& f : held) EXPECT_EQ(f.get().status, 200);
  EXPECT_EQ(HttpRequest(port, "GET", "/v1/auth/jwks").status, 200);
}

// ---- rate limit and client address ----

TEST(Limits, RateLimitIsPerClientWithRetryAfterAndRecovers) {
  std::uint16_t port = 0, admin = 0;
  auto gw = RunningStack().StartGateway(
      {"PORTICO_RATE_LIMIT=1", "PORTICO_RATE_BURST=3", "PORTICO_TRUSTED_PROXIES=127.0.0.1/32"},
      &port, &admin);
  const Headers first = {{"X-Forwarded-For", "198.51.100.1"}};
  // The burst always passes; right after it the bucket runs dry.
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(HttpRequest(port, "GET", "/v1/auth/jwks", "", first).status, 200);
  std::optional<HttpResponse> limited;
  for (int i = 0; i < 20 && !limited; ++i) {
    auto r = HttpRequest(port, "GET", "/v1/auth/jwks", "", first);
    if (r.status == 429) limited = r;
  }
  ASSERT_TRUE(limited.has_value()) << "no 429 after the burst";
  ExpectProblem(*limited, 429, "RESOURCE_EXHAUSTED");
  EXPECT_EQ(limited->Header("retry-after"), "1");  // one request per second: one token in <= 1 s
  // Operators see it in the metrics.
  const std::string metrics = HttpRequest(admin, "GET", "/metrics").body;
  EXPECT_NE(metrics.find("portico_http_shed_total{reason=\"rate_limit\"}"), std::string::npos)
      << metrics;

  // Another client (behind the same trusted proxy) has its own bucket.
  EXPECT_EQ(
      HttpRequest(port, "GET", "/v1/auth/jwks", "", {{"X-Forwarded-For", "198.51.100.2"}}).status,
      200);
  // After Retry-After the first one is served again.
  std::this_thread::sleep_for(1s);
  const auto until = Clock::now() + 10s;
  int status = 0;
  while (Clock::now() < until &&
         (status = HttpRequest(port, "GET", "/v1/auth/jwks", "", first).status) != 200) {
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(status, 200);
}

TEST(Limits, ForwardedForIsBelievedOnlyFromTrustedProxies) {
  Account a = SignUp("xff");
  // The stack's own gateway trusts no proxy: the peer is the client.
  auto direct = Call("POST", "/v1/auth/login",
                     R"({"email":")" + a.email + R"(","password":")" + kPassword + R"("})",
                     {{"Content-Type", "application/json"}, {"X-Forwarded-For", "203.0.113.9"}});
  ASSERT_EQ(direct.status, 200) << direct.body;
  EXPECT_EQ(CurrentSessionAddress(JsonField(direct.body, "accessToken")), "127.0.0.1");

  std::uint16_t port = 0;
  auto gw = RunningStack().StartGateway({"PORTICO_TRUSTED_PROXIES=10.0.0.0/8, 127.0.0.0/8"}, &port);
  // Walked from the right: the trusted hop 10.1.2.3 is skipped, 203.0.113.7
  // is the first untrusted one; what the client wrote to its left is not believed.
  auto proxied = LoginVia(port, a, {{"X-Forwarded-For", "6.6.6.6, 203.0.113.7, 10.1.2.3"}});
  ASSERT_EQ(proxied.status, 200) << proxied.body;
  EXPECT_EQ(CurrentSessionAddress(JsonField(proxied.body, "accessToken")), "203.0.113.7");
  // The gateway logs that address too.
  const auto until = Clock::now() + 10s;
  while (Clock::now() < until &&
         gw->Log().find("\"client\":\"203.0.113.7\"") == std::string::npos) {
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_NE(gw->Log().find("\"client\":\"203.0.113.7\""), std::string::npos);
}

// ---- deadlines ----

TEST(Limits, ARouteDeadlineOverridesTheDefault) {
  // Default 30 s; sign-in declares 5 s in its HTTP rule.
  std::uint16_t port = 0;
  auto gw = RunningStack().StartGateway({"PORTICO_REQUEST_TIMEOUT=30s"}, &port);
  Account a = SignUp("deadline");
  SessionsLock lock;
  const auto start = Clock::now();
  auto login = std::async(std::launch::async, [&] { return LoginVia(port, a); });
  auto list = Async(port, "GET", "/v1/users/me/sessions", "", a.Auth());
  lock.WaitForWaiters(2);
  const HttpResponse timed_out = login.get();
  const auto elapsed = Clock::now() - start;
  ExpectProblem(timed_out, 504, "DEADLINE_EXCEEDED");
  EXPECT_GE(elapsed, 4900ms);
  EXPECT_LT(elapsed, 25s);
  // The default-deadline call is still waiting; released, it succeeds.
  EXPECT_EQ(list.wait_for(0s), std::future_status::timeout);
  lock.Release();
  EXPECT_EQ(list.get().status, 200);
}

}  // namespace
}  // namespace portico::testing
