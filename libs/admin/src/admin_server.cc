#include "portico/admin/admin_server.h"

#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <thread>

namespace portico::admin {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr auto kIoTimeout = std::chrono::seconds(10);
constexpr std::uint32_t kHeaderLimit = 8 * 1024;
constexpr std::uint64_t kBodyLimit = 64 * 1024;

using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

using Clock = std::chrono::steady_clock;

// Runs the readiness probe on its own thread and keeps its last result, so
// that requests on the io thread only ever read a cached copy.
class ProbeRunner {
 public:
  ProbeRunner(ReadinessProbe probe, ReadinessOptions options)
      : probe_(std::move(probe)), options_(options) {
    if (!probe_) last_.emplace();  // Nothing to check: ready.
  }
  ~ProbeRunner() { Stop(); }

  void Start() {
    if (!probe_ || thread_.joinable()) return;
    {
      std::lock_guard lock(mu_);
      stopping_ = false;
    }
    thread_ = std::thread([this] { Loop(); });
  }

  void Stop() {
    if (!thread_.joinable()) return;
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  bool WaitForRound(std::chrono::milliseconds timeout) {
    if (!probe_) return true;
    std::unique_lock lock(mu_);
    if (stopping_) return false;
    // A round already running may have read the state before this call.
    const std::uint64_t target = rounds_started_ + 1;
    run_requested_ = true;
    cv_.notify_all();
    cv_.wait_for(lock, timeout, [&] { return stopping_ || rounds_completed_ >= target; });
    return rounds_completed_ >= target;
  }

  // The checks /readyz shows: the last result, plus a failing "probe" check
  // while there is none yet or while a call has run for too long.
  std::vector<Check> Snapshot() const {
    std::lock_guard lock(mu_);
    const bool stalled = running_since_ && Clock::now() - *running_since_ > options_.stall_after;
    if (!last_) {
      return {{"probe", false, stalled ? "readiness probe stalled" : "readiness probe pending"}};
    }
    std::vector<Check> checks = *last_;
    if (stalled) checks.push_back({"probe", false, "readiness probe stalled"});
    return checks;
  }

 private:
  void Loop() {
    std::unique_lock lock(mu_);
    while (!stopping_) {
      ++rounds_started_;
      run_requested_ = false;
      running_since_ = Clock::now();
      lock.unlock();
      std::vector<Check> checks = RunProbe();
      lock.lock();
      last_ = std::move(checks);
      running_since_.reset();
      ++rounds_completed_;
      cv_.notify_all();
      cv_.wait_for(lock, options_.interval, [&] { return stopping_ || run_requested_; });
    }
  }

  std::vector<Check> RunProbe() {
    try {
      return probe_();
    } catch (...) {
      return {{"probe", false, "readiness probe failed"}};
    }
  }

  const ReadinessProbe probe_;
  const ReadinessOptions options_;
  std::thread thread_;  // Started and joined by the owner's Start/Stop only.

  mutable std::mutex mu_;  // Guards the members below; notifies cv_ on change.
  std::condition_variable cv_;
  bool stopping_ = true;  // True unless between Start() and Stop().
  bool run_requested_ = false;
  std::uint64_t rounds_started_ = 0;
  std::uint64_t rounds_completed_ = 0;
  std::optional<std::vector<Check>> last_;  // Empty until the first round completes.
  std::optional<Clock::time_point> running_since_;  // Set while a round runs.
};

// What requests need from the server; outlives every session.
struct Endpoints {
  Endpoints(std::shared_ptr<prometheus::Registry> r, ReadinessProbe probe,
            ReadinessOptions options)
      : registry(std::move(r)), readiness(std::move(probe), options) {}

  std::shared_ptr<prometheus::Registry> registry;
  ProbeRunner readiness;
  std::atomic<bool> draining{false};
};

Response MakeResponse(http::status status, std::string content_type, std::string body,
                      unsigned version) {
  Response res{status, version};
  res.set(http::field::content_type, std::move(content_type));
  res.set(http::field::cache_control, "no-store");
  res.body() = std::move(body);
  return res;
}

Response Readiness(Endpoints& endpoints, unsigned version) {
  std::vector<Check> checks = endpoints.readiness.Snapshot();
  if (endpoints.draining.load()) checks.push_back({"shutdown", false, "draining"});
  bool ready = true;
  boost::json::array items;
  for (const Check& c : checks) {
    ready = ready && c.ok;
    items.push_back(boost::json::object{{"name", c.name}, {"ok", c.ok}, {"detail", c.detail}});
  }
  boost::json::object body{{"status", ready ? "ready" : "not ready"}, {"checks", std::move(items)}};
  return MakeResponse(ready ? http::status::ok : http::status::service_unavailable,
                      "application/json", boost::json::serialize(body), version);
}

Response Handle(Endpoints& endpoints, const Request& req) {
  std::string_view target = req.target();
  target = target.substr(0, target.find('?'));
  const unsigned version = req.version();
  if (target != "/healthz" && target != "/readyz" && target != "/metrics") {
    return MakeResponse(http::status::not_found, "application/json", R"({"error":"not found"})",
                        version);
  }
  if (req.method() != http::verb::get && req.method() != http::verb::head) {
    Response res = MakeResponse(http::status::method_not_allowed, "application/json",
                                R"({"error":"method not allowed"})", version);
    res.set(http::field::allow, "GET, HEAD");
    return res;
  }
  if (target == "/healthz") {
    return MakeResponse(http::status::ok, "application/json", R"({"status":"ok"})", version);
  }
  if (target == "/readyz") return Readiness(endpoints, version);
  return MakeResponse(http::status::ok, "text/plain; version=0.0.4; charset=utf-8",
                      prometheus::TextSerializer().Serialize(endpoints.registry->Collect()),
                      version);
}

// One connection: read a request, answer it, repeat while keep-alive holds.
// All handlers run on the server's single thread, so no strand is needed.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, Endpoints& endpoints)
      : stream_(std::move(socket)), endpoints_(endpoints) {}

  void Read() {
    parser_.emplace();
    parser_->header_limit(kHeaderLimit);
    parser_->body_limit(kBodyLimit);
    stream_.expires_after(kIoTimeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) {
                       self->OnRead(ec);
                     });
  }

 private:
  void OnRead(beast::error_code ec) {
    if (ec == http::error::header_limit) return Reply(ErrorResponse(
        http::status::request_header_fields_too_large, "request headers too large"), false);
    if (ec == http::error::body_limit) return Reply(ErrorResponse(
        http::status::payload_too_large, "request body too large"), false);
    if (ec) return Close();  // EOF, timeout, malformed request: nothing sensible to answer.
    const Request& req = parser_->get();
    Response res;
    try {
      res = Handle(endpoints_, req);
    } catch (...) {
      res = ErrorResponse(http::status::internal_server_error, "internal error");
    }
    const bool keep_alive = req.keep_alive();
    res.keep_alive(keep_alive);
    res.prepare_payload();
    // HEAD keeps GET's Content-Length but sends no body.
    if (req.method() == http::verb::head) res.body().clear();
    Reply(std::move(res), keep_alive);
  }

  Response ErrorResponse(http::status status, std::string_view message) {
    Response res = MakeResponse(status, "application/json",
                                boost::json::serialize(boost::json::object{{"error", message}}),
                                11);
    res.prepare_payload();
    return res;
  }

  void Reply(Response res, bool keep_alive) {
    res_ = std::move(res);
    res_.keep_alive(keep_alive);
    stream_.expires_after(kIoTimeout);
    http::async_write(stream_, res_,
                      [self = shared_from_this(), keep_alive](beast::error_code ec, std::size_t) {
                        if (ec || !keep_alive) return self->Close();
                        self->Read();
                      });
  }

  void Close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.close();
  }

  beast::tcp_stream stream_;
  Endpoints& endpoints_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  Response res_;
};

}  // namespace

struct AdminServer::Impl {
  Impl(std::shared_ptr<prometheus::Registry> registry, ReadinessProbe probe,
       ReadinessOptions options)
      : endpoints(std::move(registry), std::move(probe), options) {}

  Endpoints endpoints;  // Declared first: sessions destroyed with `io` refer to it.
  std::optional<asio::io_context> io;
  std::optional<tcp::acceptor> acceptor;
  std::optional<asio::steady_timer> retry_timer;
  std::thread thread;
  std::uint16_t port = 0;

  void Accept() {
    acceptor->async_accept([this](beast::error_code ec, tcp::socket socket) {
      if (ec) {
        // Errors such as EMFILE are transient: retry soon rather than spin.
        retry_timer->expires_after(std::chrono::milliseconds(100));
        retry_timer->async_wait([this](beast::error_code) { Accept(); });
        return;
      }
      beast::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      std::make_shared<Session>(std::move(socket), endpoints)->Read();
      Accept();
    });
  }
};

AdminServer::AdminServer(std::shared_ptr<prometheus::Registry> registry, ReadinessProbe probe,
                         ReadinessOptions options) {
  if (options.interval <= std::chrono::milliseconds::zero() ||
      options.stall_after <= std::chrono::milliseconds::zero()) {
    throw std::invalid_argument("AdminServer: readiness interval and stall_after must be > 0");
  }
  impl_ = std::make_unique<Impl>(std::move(registry), std::move(probe), options);
}

AdminServer::~AdminServer() { Stop(); }

Status AdminServer::Start(const std::string& host, std::uint16_t port) {
  if (impl_->io) return Error{ErrorCode::kFailedPrecondition, "admin server already started", {}};
  impl_->io.emplace(1);
  auto fail = [&](const std::string& what, const beast::error_code& ec) {
    impl_->retry_timer.reset();
    impl_->acceptor.reset();
    impl_->io.reset();
    return Error::Unavailable("admin server: " + what + " " + host + ":" + std::to_string(port) +
                              ": " + ec.message());
  };
  beast::error_code ec;
  tcp::endpoint endpoint;
  const std::string bind_host = host.empty() ? "0.0.0.0" : host;
  tcp::resolver resolver(*impl_->io);
  auto results = resolver.resolve(bind_host, std::to_string(port),
                                  tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec || results.empty()) return fail("cannot resolve", ec);
  endpoint = results.begin()->endpoint();

  auto& acceptor = impl_->acceptor.emplace(*impl_->io);
  if (acceptor.open(endpoint.protocol(), ec); ec) return fail("cannot open", ec);
  acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (acceptor.bind(endpoint, ec); ec) return fail("cannot bind", ec);
  if (acceptor.listen(asio::socket_base::max_listen_connections, ec); ec) {
    return fail("cannot listen on", ec);
  }
  impl_->port = acceptor.local_endpoint().port();
  impl_->retry_timer.emplace(*impl_->io);
  impl_->Accept();
  impl_->thread = std::thread([io = &*impl_->io] { io->run(); });
  impl_->endpoints.readiness.Start();
  return {};
}

std::uint16_t AdminServer::port() const { return impl_->port; }

void AdminServer::SetDraining() { impl_->endpoints.draining.store(true); }

bool AdminServer::WaitForProbe(std::chrono::milliseconds timeout) {
  return impl_->endpoints.readiness.WaitForRound(timeout);
}

void AdminServer::Stop() {
  // Probing stops first, so /healthz still answers while a probe call ends.
  impl_->endpoints.readiness.Stop();
  if (!impl_->thread.joinable()) return;
  impl_->io->stop();
  impl_->thread.join();
  // Destroying the io_context destroys the sessions held by pending handlers,
  // closing their connections.
  impl_->retry_timer.reset();
  impl_->acceptor.reset();
  impl_->io.reset();
}

}  // namespace portico::admin
