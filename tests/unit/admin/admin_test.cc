#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <boost/json.hpp>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>

#include "portico/admin/admin_server.h"
#include "portico/admin/metrics.h"

namespace portico::admin {
namespace {

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // Lower-case names.
  std::string body;
};

// A minimal HTTP/1.1 client over one blocking TCP connection, enough to
// check what the server puts on the wire.
class Connection {
 public:
  explicit Connection(std::uint16_t port) : fd_(socket(AF_INET, SOCK_STREAM, 0)) {
    if (fd_ < 0) throw std::runtime_error("socket");
    timeval tv{5, 0};  // A hung server fails the test instead of hanging it.
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      throw std::runtime_error("connect");
    }
  }
  ~Connection() { close(fd_); }

  void Send(const std::string& data) {
    if (write(fd_, data.data(), data.size()) != static_cast<ssize_t>(data.size())) {
      throw std::runtime_error("write");
    }
  }

  // Reads one response; `head` = true for a response to HEAD (no body).
  HttpResponse ReadResponse(bool head = false) {
    std::size_t end;
    while ((end = buffer_.find("\r\n\r\n")) == std::string::npos) Fill();
    HttpResponse res;
    std::string head_text = buffer_.substr(0, end);
    buffer_.erase(0, end + 4);
    std::size_t line_end = head_text.find("\r\n");
    std::string status_line = head_text.substr(0, line_end);
    res.status = std::stoi(status_line.substr(9, 3));
    while (line_end != std::string::npos) {
      std::size_t next = head_text.find("\r\n", line_end + 2);
      std::string line = head_text.substr(line_end + 2, next - line_end - 2);
      std::size_t colon = line.find(':');
      std::string name = line.substr(0, colon);
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      res.headers[name] = line.substr(line.find_first_not_of(' ', colon + 1));
      line_end = next;
    }
    std::size_t length = head ? 0 : std::stoul(res.headers.at("content-length"));
    while (buffer_.size() < length) Fill();
    res.body = buffer_.substr(0, length);
    buffer_.erase(0, length);
    return res;
  }

  // True if the server closed the connection: EOF, or a reset when it closed
  // with request bytes still unread.
  bool PeerClosed() {
    char c;
    if (!buffer_.empty()) return false;
    const ssize_t n = read(fd_, &c, 1);
    return n == 0 || (n < 0 && errno == ECONNRESET);
  }

 private:
  void Fill() {
    char buf[4096];
    ssize_t n = read(fd_, buf, sizeof buf);
    if (n <= 0) throw std::runtime_error("connection closed or timed out");
    buffer_.append(buf, static_cast<std::size_t>(n));
  }

  int fd_;
  std::string buffer_;
};

std::string Get(const std::string& path, const std::string& method = "GET",
                const std::string& extra = "") {
  return method + " " + path + " HTTP/1.1\r\nHost: localhost\r\n" + extra + "\r\n";
}

HttpResponse Fetch(std::uint16_t port, const std::string& path, const std::string& method = "GET") {
  Connection conn(port);
  conn.Send(Get(path, method, "Connection: close\r\n"));
  return conn.ReadResponse(method == "HEAD");
}

using std::chrono::milliseconds;
using std::chrono::seconds;

// Probe rounds run only when a test asks for one (WaitForProbe).
constexpr ReadinessOptions kOnDemand{.interval = std::chrono::hours(1)};
constexpr milliseconds kWait = seconds(5);  // Generous bound for what should be quick.

// Holds a probe inside its call until opened; also opened on destruction, so
// a failing test never leaves the probe thread blocked for long.
class Gate {
 public:
  ~Gate() { Open(); }
  void Close() {
    std::lock_guard lock(mu_);
    open_ = false;
  }
  void Open() {
    {
      std::lock_guard lock(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }
  // Called by the probe: records that it has entered, then waits (bounded).
  void Pass() {
    std::unique_lock lock(mu_);
    ++entered_;
    cv_.notify_all();
    cv_.wait_for(lock, seconds(10), [&] { return open_; });
  }
  // Waits until the probe has entered `n` times in all.
  bool WaitEntered(int n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, kWait, [&] { return entered_ >= n; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = true;
  int entered_ = 0;
};

milliseconds Since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - start);
}

class AdminServerTest : public ::testing::Test {
 protected:
  void StartServer(ReadinessProbe probe = nullptr, ReadinessOptions options = kOnDemand) {
    server_ = std::make_unique<AdminServer>(registry_, std::move(probe), options);
    ASSERT_TRUE(server_->Start("127.0.0.1", 0).ok());
    ASSERT_NE(server_->port(), 0);
  }

  std::shared_ptr<prometheus::Registry> registry_ = Registry();
  std::unique_ptr<AdminServer> server_;
};

TEST_F(AdminServerTest, HealthzIsOk) {
  StartServer();
  HttpResponse res = Fetch(server_->port(), "/healthz");
  EXPECT_EQ(res.status, 200);
  EXPECT_EQ(res.body, R"({"status":"ok"})");
  EXPECT_EQ(res.headers["content-type"], "application/json");
  EXPECT_EQ(res.headers["cache-control"], "no-store");
}

TEST_F(AdminServerTest, ReadyzReflectsChecks) {
  std::atomic<bool> db_ok{true};
  StartServer([&] {
    return std::vector<Check>{{"database", db_ok.load(), db_ok ? "" : "connection refused"},
                              {"keys", true, "2 loaded"}};
  });
  ASSERT_TRUE(server_->WaitForProbe(kWait));
  HttpResponse res = Fetch(server_->port(), "/readyz");
  EXPECT_EQ(res.status, 200);
  EXPECT_EQ(res.headers["content-type"], "application/json");
  auto body = boost::json::parse(res.body);
  EXPECT_EQ(body.at("status").as_string(), "ready");
  ASSERT_EQ(body.at("checks").as_array().size(), 2u);
  EXPECT_EQ(body.at("checks").at(0).at("name").as_string(), "database");
  EXPECT_EQ(body.at("checks").at(0).at("ok").as_bool(), true);
  EXPECT_EQ(body.at("checks").at(1).at("detail").as_string(), "2 loaded");

  db_ok = false;
  ASSERT_TRUE(server_->WaitForProbe(kWait));
  res = Fetch(server_->port(), "/readyz");
  EXPECT_EQ(res.status, 503);
  body = boost::json::parse(res.body);
  EXPECT_EQ(body.at("status").as_string(), "not ready");
  EXPECT_EQ(body.at("checks").at(0).at("ok").as_bool(), false);
  EXPECT_EQ(body.at("checks").at(0).at("detail").as_string(), "connection refused");
}

TEST_F(AdminServerTest, ReadyzAfterDrainingIs503) {
  StartServer([] { return std::vector<Check>{{"database", true, ""}}; });
  ASSERT_TRUE(server_->WaitForProbe(kWait));
  EXPECT_EQ(Fetch(server_->port(), "/readyz").status, 200);
  server_->SetDraining();  // No probe round in between: takes effect at once.
  HttpResponse res = Fetch(server_->port(), "/readyz");
  EXPECT_EQ(res.status, 503);
  EXPECT_EQ(boost::json::parse(res.body).at("status").as_string(), "not ready");
  EXPECT_EQ(Fetch(server_->port(), "/healthz").status, 200);  // Still alive.
}

TEST_F(AdminServerTest, ThrowingProbeIsNotReady) {
  StartServer([]() -> std::vector<Check> { throw std::runtime_error("secret detail"); });
  ASSERT_TRUE(server_->WaitForProbe(kWait));
  HttpResponse res = Fetch(server_->port(), "/readyz");
  EXPECT_EQ(res.status, 503);
  EXPECT_EQ(res.body.find("secret detail"), std::string::npos);
  EXPECT_EQ(boost::json::parse(res.body).at("status").as_string(), "not ready");
}

TEST_F(AdminServerTest, ReadyzWithoutProbeIsReady) {
  StartServer();
  EXPECT_EQ(Fetch(server_->port(), "/readyz").status, 200);
  EXPECT_TRUE(server_->WaitForProbe(milliseconds(0)));  // Nothing to wait for.
}

TEST_F(AdminServerTest, ReadyzAnswersFromTheLastProbeResult) {
  std::atomic<int> calls{0};
  std::atomic<bool> db_ok{true};
  StartServer([&] {
    ++calls;
    return std::vector<Check>{{"database", db_ok.load(), ""}};
  });
  ASSERT_TRUE(server_->WaitForProbe(kWait));
  const int after_first = calls.load();
  EXPECT_GE(after_first, 1);
  db_ok = false;
  for (int i = 0; i < 10; ++i) {
    // Requests neither call the probe nor see the change before a round.
    EXPECT_EQ(Fetch(server_->port(), "/readyz").status, 200);
  }
  EXPECT_EQ(calls.load(), after_first);
  ASSERT_TRUE(server_->WaitForProbe(kWait));
  EXPECT_EQ(calls.load(), after_first + 1);
  EXPECT_EQ(Fetch(server_->port(), "/readyz").status, 503);
}

TEST_F(AdminServerTest, ProbeRunsPeriodically) {
  // Shared: the probe keeps running until the fixture stops the server.
  auto calls = std::make_shared<std::atomic<int>>(0);
  StartServer(
      [calls] {
        ++*calls;
        return std::vector<Check>{};
      },
      {.interval = milliseconds(10)});
  const auto start = std::chrono::steady_clock::now();
  while (calls->load() < 3 && Since(start) < kWait) std::this_thread::sleep_for(milliseconds(5));
  EXPECT_GE(calls->load(), 3);  // Without any request for one.
}

TEST_F(AdminServerTest, SlowProbeBlocksNoRequest) {
  auto gate = std::make_shared<Gate>();
  gate->Close();
  StartServer([gate] {
    gate->Pass();
    return std::vector<Check>{{"database", true, ""}};
  });
  ASSERT_TRUE(gate->WaitEntered(1));  // The first probe call now blocks for seconds.

  for (const char* path : {"/healthz", "/metrics", "/readyz", "/healthz"}) {
    const auto start = std::chrono::steady_clock::now();
    HttpResponse res = Fetch(server_->port(), path);
    EXPECT_LT(Since(start), milliseconds(200)) << path;
    if (std::string(path) == "/readyz") {
      // Not ready until the first probe call completes.
      EXPECT_EQ(res.status, 503);
      auto body = boost::json::parse(res.body);
      EXPECT_EQ(body.at("status").as_string(), "not ready");
      ASSERT_EQ(body.at("checks").as_array().size(), 1u);
      EXPECT_EQ(body.at("checks").at(0).at("name").as_string(), "probe");
      EXPECT_EQ(body.at("checks").at(0).at("detail").as_string(), "readiness probe pending");
    } else {
      EXPECT_EQ(res.status, 200) << path;
    }
  }
  // Waiting for a round is bounded too.
  EXPECT_FALSE(server_->WaitForProbe(milliseconds(50)));

  gate->Open();
  ASSERT_TRUE(server_->WaitForProbe(kWait));
  EXPECT_EQ(Fetch(server_->port(), "/readyz").status, 200);
}

TEST_F(AdminServerTest, StalledProbeIsNotReady) {
  auto gate = std::make_shared<Gate>();
  StartServer(
      [gate] {
        gate->Pass();
        return std::vector<Check>{{"database", true, ""}};
      },
      {.interval = std::chrono::hours(1), .stall_after = milliseconds(100)});
  ASSERT_TRUE(server_->WaitForProbe(kWait));
  EXPECT_EQ(Fetch(server_->port(), "/readyz").status, 200);

  gate->Close();
  EXPECT_FALSE(server_->WaitForProbe(milliseconds(0)));  // Starts a round, which blocks.
  ASSERT_TRUE(gate->WaitEntered(2));
  // The stall shows once the call has run longer than stall_after.
  const auto start = std::chrono::steady_clock::now();
  HttpResponse res;
  do {
    res = Fetch(server_->port(), "/readyz");
  } while (res.status == 200 && Since(start) < kWait);
  EXPECT_EQ(res.status, 503);
  auto body = boost::json::parse(res.body);
  ASSERT_EQ(body.at("checks").as_array().size(), 2u);
  EXPECT_EQ(body.at("checks").at(0).at("name").as_string(), "database");  // The last result.
  EXPECT_EQ(body.at("checks").at(1).at("name").as_string(), "probe");
  EXPECT_EQ(body.at("checks").at(1).at("detail").as_string(), "readiness probe stalled");

  gate->Open();
  ASSERT_TRUE(server_->WaitForProbe(kWait));
  EXPECT_EQ(Fetch(server_->port(), "/readyz").status, 200);
}

TEST_F(AdminServerTest, StopDoesNotWaitForTheInterval) {
  StartServer([] { return std::vector<Check>{}; }, {.interval = std::chrono::hours(1)});
  ASSERT_TRUE(server_->WaitForProbe(kWait));  // The probe thread now sleeps an hour.
  const auto start = std::chrono::steady_clock::now();
  server_->Stop();
  EXPECT_LT(Since(start), seconds(2));
  EXPECT_FALSE(server_->WaitForProbe(milliseconds(0)));  // Not running.
}

TEST(AdminServerOptionsTest, NonPositiveOptionsAreRejected) {
  EXPECT_THROW(AdminServer(Registry(), nullptr, {.interval = milliseconds(0)}),
               std::invalid_argument);
  EXPECT_THROW(AdminServer(Registry(), nullptr, {.stall_after = milliseconds(-1)}),
               std::invalid_argument);
}

TEST_F(AdminServerTest, MetricsExposeRegisteredAndProcessMetrics) {
  auto& family = prometheus::BuildCounter()
                     .Name("portico_admin_test_requests_total")
                     .Help("Requests seen by the test.")
                     .Register(*registry_);
  family.Add({{"route", "/x"}}).Increment(3);
  prometheus::BuildHistogram()
      .Name("portico_admin_test_latency_seconds")
      .Help("Latency.")
      .Register(*registry_)
      .Add({}, LatencyBuckets())
      .Observe(0.003);
  StartServer();
  HttpResponse res = Fetch(server_->port(), "/metrics");
  EXPECT_EQ(res.status, 200);
  EXPECT_EQ(res.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(res.headers["cache-control"], "no-store");
  const std::string& text = res.body;
  EXPECT_NE(text.find("# TYPE portico_admin_test_requests_total counter"), std::string::npos);
  EXPECT_NE(text.find("portico_admin_test_requests_total{route=\"/x\"} 3"), std::string::npos)
      << text;
  EXPECT_NE(text.find("portico_admin_test_latency_seconds_bucket{le=\"0.005\"} 1"),
            std::string::npos);
  EXPECT_NE(text.find("portico_admin_test_latency_seconds_bucket{le=\"0.0025\"} 0"),
            std::string::npos);

  auto value = [&](const std::string& name) {
    std::smatch m;
    EXPECT_TRUE(std::regex_search(text, m, std::regex("\n" + name + " ([0-9.e+]+)\n"))) << name;
    return m.empty() ? -1.0 : std::stod(m[1]);
  };
  EXPECT_NE(text.find("# TYPE process_cpu_seconds_total counter"), std::string::npos);
  EXPECT_NE(text.find("# TYPE process_resident_memory_bytes gauge"), std::string::npos);
  EXPECT_GT(value("process_resident_memory_bytes"), 1024 * 1024);
  EXPECT_GE(value("process_cpu_seconds_total"), 0);
  EXPECT_GE(value("process_open_fds"), 3);  // stdio at least, plus our sockets.
  const double start = value("process_start_time_seconds");
  const double now = static_cast<double>(std::time(nullptr));
  EXPECT_LE(start, now + 1);
  EXPECT_GT(start, now - 24 * 3600);  // This test process started recently.
}

TEST_F(AdminServerTest, OpenFdsTracksConnections) {
  StartServer();
  auto open_fds = [&] {
    std::smatch m;
    std::string text = Fetch(server_->port(), "/metrics").body;
    EXPECT_TRUE(std::regex_search(text, m, std::regex("\nprocess_open_fds ([0-9]+)\n")));
    return std::stoi(m[1]);
  };
  const int before = open_fds();
  std::vector<std::unique_ptr<Connection>> conns;
  for (int i = 0; i < 5; ++i) {
    conns.push_back(std::make_unique<Connection>(server_->port()));
    // A served request proves the server has accepted this connection.
    conns.back()->Send(Get("/healthz"));
    EXPECT_EQ(conns.back()->ReadResponse().status, 200);
  }
  EXPECT_GE(open_fds(), before + 10);  // Client and server end of each.
}

TEST_F(AdminServerTest, HeadHasHeadersButNoBody) {
  StartServer();
  Connection conn(server_->port());
  conn.Send(Get("/healthz", "HEAD"));
  HttpResponse res = conn.ReadResponse(/*head=*/true);
  EXPECT_EQ(res.status, 200);
  EXPECT_EQ(res.headers["content-length"], "15");
  // The next response on the connection follows immediately: no stray body.
  conn.Send(Get("/healthz"));
  res = conn.ReadResponse();
  EXPECT_EQ(res.status, 200);
  EXPECT_EQ(res.body, R"({"status":"ok"})");
}

TEST_F(AdminServerTest, UnknownPathIs404) {
  StartServer();
  EXPECT_EQ(Fetch(server_->port(), "/nope").status, 404);
  EXPECT_EQ(Fetch(server_->port(), "/healthz/extra").status, 404);
  EXPECT_EQ(Fetch(server_->port(), "/healthz?verbose=1").status, 200);
}

TEST_F(AdminServerTest, OtherMethodsAre405WithAllow) {
  StartServer();
  for (const char* method : {"POST", "PUT", "DELETE", "OPTIONS"}) {
    HttpResponse res = Fetch(server_->port(), "/metrics", method);
    EXPECT_EQ(res.status, 405) << method;
    EXPECT_EQ(res.headers["allow"], "GET, HEAD") << method;
  }
  Connection conn(server_->port());
  conn.Send("POST /readyz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" + Get("/healthz"));
  EXPECT_EQ(conn.ReadResponse().status, 405);
  EXPECT_EQ(conn.ReadResponse().status, 200);  // The body was consumed, not parsed as a request.
}

TEST_F(AdminServerTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  StartServer();
  Connection conn(server_->port());
  conn.Send(Get("/healthz"));
  HttpResponse first = conn.ReadResponse();
  EXPECT_EQ(first.status, 200);
  EXPECT_NE(first.headers["connection"], "close");
  conn.Send(Get("/metrics"));
  HttpResponse second = conn.ReadResponse();
  EXPECT_EQ(second.status, 200);
  EXPECT_NE(second.body.find("process_open_fds"), std::string::npos);
  // Pipelined requests are answered in order.
  conn.Send(Get("/nope") + Get("/healthz", "GET", "Connection: close\r\n"));
  EXPECT_EQ(conn.ReadResponse().status, 404);
  HttpResponse last = conn.ReadResponse();
  EXPECT_EQ(last.status, 200);
  EXPECT_EQ(last.headers["connection"], "close");
  EXPECT_TRUE(conn.PeerClosed());
}

TEST_F(AdminServerTest, OversizedRequestsAreRejected) {
  StartServer();
  {
    Connection conn(server_->port());
    conn.Send("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(9 * 1024, 'a') +
              "\r\n\r\n");
    EXPECT_EQ(conn.ReadResponse().status, 431);
    EXPECT_TRUE(conn.PeerClosed());
  }
  {
    Connection conn(server_->port());
    conn.Send("POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n");
    EXPECT_EQ(conn.ReadResponse().status, 413);
    EXPECT_TRUE(conn.PeerClosed());
  }
}

TEST_F(AdminServerTest, MalformedRequestClosesConnection) {
  StartServer();
  Connection conn(server_->port());
  conn.Send("NOT HTTP AT ALL\r\n\r\n");
  EXPECT_TRUE(conn.PeerClosed());
  EXPECT_EQ(Fetch(server_->port(), "/healthz").status, 200);  // Server unaffected.
}

TEST_F(AdminServerTest, StopIsIdempotentAndClosesConnections) {
  StartServer();
  const std::uint16_t port = server_->port();
  Connection idle(port);
  idle.Send(Get("/healthz"));
  EXPECT_EQ(idle.ReadResponse().status, 200);
  server_->Stop();
  server_->Stop();
  EXPECT_TRUE(idle.PeerClosed());
  EXPECT_THROW(Connection{port}, std::runtime_error);  // No longer listening.
  server_.reset();  // Destructor after Stop is fine too.
}

TEST_F(AdminServerTest, StartFailsOnPortInUse) {
  StartServer();
  AdminServer other(registry_, nullptr);  // The two-argument form still compiles.
  Status s = other.Start("127.0.0.1", server_->port());
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ErrorCode::kUnavailable);
  other.Stop();
}

TEST(MetricsTest, RegistryIsSharedAndBucketsAscend) {
  EXPECT_EQ(Registry(), Registry());
  const auto& b = LatencyBuckets();
  ASSERT_EQ(b.size(), 13u);
  EXPECT_DOUBLE_EQ(b.front(), 0.001);
  EXPECT_DOUBLE_EQ(b.back(), 10);
  EXPECT_TRUE(std::is_sorted(b.begin(), b.end()));
}

}  // namespace
}  // namespace portico::admin
