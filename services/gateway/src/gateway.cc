// The HTTP/1.1 server: one io_context on N threads, one strand per
// connection, sequential request handling per connection (a pipelined
// request is read only after the previous response is written), deadlines on
// every read, limits on header and body size. The only Beast translation
// unit of the gateway.
#include "portico/gateway/gateway.h"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <array>
#include <atomic>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "builtin_routes.h"
#include "handler.h"
#include "protection.h"
#include "portico/log/log.h"
#include "portico/transcode/problem.h"
#include "routing.h"

namespace portico::gateway {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

std::vector<std::string> DefaultServices() {
  return {"portico.users.v1.AuthService", "portico.users.v1.UserService",
          "portico.data.v1.DataService"};
}

class Session;

struct Gateway::Impl {
  GatewayOptions options;
  std::unique_ptr<RequestHandler> handler;
  std::unique_ptr<Protection> protection;

  // Live connections, for shutdown. Declared before the io_context: sessions
  // unregister themselves when the io_context destroys their handlers.
  std::mutex sessions_mu;
  std::condition_variable sessions_cv;
  std::map<Session*, std::weak_ptr<Session>> sessions;  // guarded by sessions_mu

  net::io_context ioc;
  tcp::acceptor acceptor{net::make_strand(ioc)};
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
  std::vector<std::thread> threads;
  std::atomic<bool> draining{false};
  std::mutex stop_mu;
  bool stopped = false;  // guarded by stop_mu
  std::uint16_t port = 0;

  void Accept();
};

class Session : public std::enable_shared_from_this<Session>, public ClientConnection {
 public:
  Session(tcp::socket&& socket, Gateway::Impl& server, Protection::Admission admission)
      : stream_(std::move(socket)), server_(server), admission_(admission) {
    beast::error_code ec;
    const auto remote = stream_.socket().remote_endpoint(ec);
    if (!ec) remote_ = remote.address().to_string();
  }

  ~Session() {
    server_.protection->ReleaseConnection(admission_);
    std::lock_guard lock(server_.sessions_mu);
    server_.sessions.erase(this);
    server_.sessions_cv.notify_all();
  }

  void Start() {
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->ReadNext(); });
  }

  // On shutdown: close a connection that is not handling a request.
  void CloseIfIdle() {
    net::post(stream_.get_executor(), [self = shared_from_this()] {
      if (!self->busy_) self->Close();
    });
  }

  void ForceClose() {
    net::post(stream_.get_executor(), [self = shared_from_this()] { self->Close(); });
  }

 private:
  static constexpr std::size_t kReadChunk = 4096;

  void ReadNext() {
    if (server_.draining) return Close();
    busy_ = false;
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(server_.options.max_header_size));
    parser_->body_limit(server_.options.max_body_size);
    if (!first_ && buffer_.size() == 0) {
      // Keep-alive: wait for the next request's first bytes for up to the
      // idle timeout; the header timeout starts once something arrives.
      stream_.expires_after(server_.options.idle_timeout);
      stream_.async_read_some(buffer_.prepare(kReadChunk),
                              [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                                if (ec) return self->Close();
                                self->buffer_.commit(n);
                                self->ReadHeader();
                              });
      return;
    }
    ReadHeader();
  }

  void ReadHeader() {
    stream_.expires_after(server_.options.header_timeout);
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = shared_from_this()](beast::error_code ec, std::size_t) {
                              self->OnHeader(ec);
                            });
  }

  void OnHeader(beast::error_code ec) {
    if (ec) return OnReadError(ec);
    busy_ = true;
    if (admission_ == Protection::Admission::kReject) {
      // Over the connection limit: told so once its request header is in.
      version_ = parser_->get().version() == 10 ? 10 : 11;
      keep_alive_ = false;
      return Write(server_.protection->OverCapacity(Convert(parser_->get())));
    }
    const auto& req = parser_->get();
    if (beast::iequals(req[http::field::expect], "100-continue") && !parser_->is_done()) {
      auto cont = std::make_shared<http::response<http::empty_body>>(http::status::continue_,
                                                                      req.version());
      http::async_write(stream_, *cont,
                        [self = shared_from_this(), cont](beast::error_code wec, std::size_t) {
                          if (wec) return self->Close();
                          self->ReadBody();
                        });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    if (parser_->is_done()) return OnRequest();
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) {
                       if (ec) return self->OnReadError(ec);
                       self->OnRequest();
                     });
  }

  void OnReadError(beast::error_code ec) {
    if (ec == http::error::header_limit) {
      return Reject(431, "RESOURCE_EXHAUSTED", "the request header is too large");
    }
    if (ec == http::error::body_limit) {
      return Reject(413, "RESOURCE_EXHAUSTED",
                    "the request body is larger than " +
                        std::to_string(server_.options.max_body_size) + " bytes");
    }
    if (ec == http::error::end_of_stream || ec == http::error::partial_message) {
      return Close();  // the client went away
    }
    if (ec.category() == http::make_error_code(http::error::bad_target).category()) {
      return Reject(400, "INVALID_ARGUMENT", "malformed HTTP request");
    }
    Close();  // timeout, reset, shutdown
  }

  HttpRequest Convert(http::request<http::string_body>& req) {
    HttpRequest r;
    r.method = std::string(req.method_string());
    r.target = std::string(req.target());
    r.headers.reserve(std::distance(req.begin(), req.end()));
    for (const auto& field : req) {
      std::string name(field.name_string());
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      r.headers.emplace_back(std::move(name), std::string(field.value()));
    }
    r.client_address = server_.protection->ClientAddress(remote_, r);
    response_context_ = server_.protection->ContextOf(r);
    return r;
  }

  void Reject(int status, std::string_view code, std::string detail) {
    busy_ = true;
    HttpRequest partial = Convert(parser_->get());
    version_ = parser_->get().version() == 10 ? 10 : 11;
    keep_alive_ = false;
    Write(server_.handler->Reject(partial, status, code, std::move(detail)));
  }

  void OnRequest() {
    first_ = false;
    auto& req = parser_->get();
    keep_alive_ = req.keep_alive();
    version_ = req.version();
    HttpRequest r = Convert(req);
    r.body = std::move(req.body());
    stream_.expires_never();  // the backend deadline bounds what follows
    if (auto early = server_.protection->Screen(r)) return Write(std::move(*early));
    auto self = shared_from_this();
    waiting_ = true;
    server_.handler->Handle(
        std::move(r),
        [self](std::function<void()> fn) { net::post(self->stream_.get_executor(), std::move(fn)); },
        [self](HttpResponse response) {
          self->server_.protection->EndRequest();
          self->Write(std::move(response));
        },
        std::shared_ptr<ClientConnection>(self, static_cast<ClientConnection*>(this)));
    if (waiting_) WatchClient();
  }

  // --- While a backend call runs: notice the client going away. -----------
  // A read stays posted on the socket while the response is pending. Bytes
  // that arrive (a pipelined request) are kept in buffer_ for the next
  // request, up to kMaxPipelined; EOF or an error means the client is gone
  // and the backend call is cancelled. A response that becomes ready while
  // the read is posted waits for it (the read is cancelled), so reads never
  // overlap.
  static constexpr std::size_t kMaxPipelined = 64 << 10;

  void WatchClient() {
    if (watching_ || gone_) return;
    if (!streaming_ && buffer_.size() >= kMaxPipelined) return;
    watching_ = true;
    stream_.expires_never();  // the read side only, while a chunk is being written
    auto on_read = [self = shared_from_this()](beast::error_code ec, std::size_t n) {
      self->watching_ = false;
      if (!ec) {
        if (!self->streaming_) self->buffer_.commit(n);  // a stream closes afterwards
        if (self->waiting_ || self->streaming_) return self->WatchClient();
        return self->ResumeAfterWatch();
      }
      if (ec != net::error::operation_aborted) {
        self->gone_ = true;
        self->keep_alive_ = false;
        if (auto cancel = std::move(self->on_gone_)) cancel();
      }
      if (!self->waiting_ && !self->streaming_) self->ResumeAfterWatch();
    };
    if (streaming_) {
      stream_.async_read_some(net::buffer(discard_), std::move(on_read));
    } else {
      stream_.async_read_some(buffer_.prepare(kReadChunk), std::move(on_read));
    }
  }

  // The read watching the client has ended and the response is ready.
  void ResumeAfterWatch() {
    if (!pending_) return;
    HttpResponse response = std::move(*pending_);
    pending_.reset();
    Write(std::move(response));
  }

  void OnClientGone(std::function<void()> cancel) override {
    if (gone_) {
      cancel();
      return;
    }
    on_gone_ = std::move(cancel);
  }

  // --- Streamed responses (chunked; the connection closes afterwards). ----
  void BeginStream(const HttpResponse& head, std::string keepalive,
                   std::chrono::milliseconds keepalive_every, Written written) override {
    waiting_ = false;
    streaming_ = true;
    keep_alive_ = false;
    // A stream stops counting as an in-flight request once it is open (the
    // response is never handed to the done callback that gives the slot
    // back); the backend bounds open streams itself.
    server_.protection->EndRequest();
    keepalive_ = std::move(keepalive);
    keepalive_every_ = keepalive_every;
    auto res = std::make_shared<http::response<http::empty_body>>();
    res->version(version_);
    res->result(static_cast<unsigned>(head.status));
    res->reason(transcode::ReasonPhrase(head.status));
    HttpResponse decorated = head;  // CORS headers; an empty body is never gzipped
    server_.protection->Decorate(response_context_, decorated);
    for (const auto& [name, value] : decorated.headers) res->insert(name, value);
    res->keep_alive(false);
    res->chunked(true);
    auto sr = std::make_shared<http::response_serializer<http::empty_body>>(*res);
    writing_ = true;
    stream_.expires_never();
    http::async_write_header(
        stream_, *sr,
        [self = shared_from_this(), res, sr, written = std::move(written)](beast::error_code ec,
                                                                          std::size_t) {
          self->OnStreamWritten(ec, written);
        });
    if (!keepalive_.empty()) ScheduleKeepalive();
    WatchClient();
  }

  void WriteChunk(std::string data, Written written) override {
    if (writing_) {
      queued_.emplace(std::move(data), std::move(written));
      return;
    }
    SendChunk(std::move(data), std::move(written));
  }

  void EndStream() override {
    on_gone_ = nullptr;
    if (writing_) {
      end_requested_ = true;
      return;
    }
    FinishStream();
  }

  void SendChunk(std::string data, Written written) {
    writing_ = true;
    last_write_ = std::chrono::steady_clock::now();
    auto body = std::make_shared<std::string>(std::move(data));
    // A peer that stops reading is bounded by the send timeout.
    stream_.expires_after(server_.options.idle_timeout);
    net::async_write(stream_, http::make_chunk(net::buffer(*body)),
                     [self = shared_from_this(), body, written = std::move(written)](
                         beast::error_code ec, std::size_t) { self->OnStreamWritten(ec, written); });
  }

  void OnStreamWritten(beast::error_code ec, const Written& written) {
    writing_ = false;
    if (ec) {
      gone_ = true;
      if (auto cancel = std::move(on_gone_)) cancel();
    }
    if (written) written(!ec);
    if (writing_) return;  // `written` sent the next chunk
    if (queued_) {
      auto [data, next] = std::move(*queued_);
      queued_.reset();
      if (gone_) {
        if (next) next(false);
      } else {
        SendChunk(std::move(data), std::move(next));
      }
      return;
    }
    if (end_requested_) FinishStream();
  }

  void ScheduleKeepalive() {
    if (!keepalive_timer_) keepalive_timer_.emplace(stream_.get_executor());
    keepalive_timer_->expires_after(keepalive_every_);
    keepalive_timer_->async_wait([self = shared_from_this()](beast::error_code ec) {
      if (ec || !self->streaming_ || self->gone_ || self->ended_) return;
      const bool idle = std::chrono::steady_clock::now() - self->last_write_ >=
                        self->keepalive_every_ - std::chrono::milliseconds(10);
      if (!self->writing_ && !self->queued_ && !self->end_requested_ && idle) {
        self->SendChunk(self->keepalive_, nullptr);
      }
      self->ScheduleKeepalive();
    });
  }

  void FinishStream() {
    if (ended_) return;
    ended_ = true;
    streaming_ = false;
    if (keepalive_timer_) keepalive_timer_->cancel();
    if (gone_) return Close();
    stream_.expires_after(std::chrono::seconds(5));
    net::async_write(stream_, http::make_chunk_last(),
                     [self = shared_from_this()](beast::error_code, std::size_t) {
                       self->CloseAfterResponse(false);
                     });
  }

  void Write(HttpResponse response) {
    waiting_ = false;
    on_gone_ = nullptr;
    if (watching_) {
      // Wait for the read watching the client to end (cancelled now).
      pending_.emplace(std::move(response));
      beast::error_code ec;
      stream_.socket().cancel(ec);
      return;
    }
    try {
      WriteResponse(std::move(response));
    } catch (const std::exception& e) {
      log::Error("cannot write a response", {{"error", e.what()}});
      Close();
    } catch (...) {
      log::Error("cannot write a response", {{"error", "unknown"}});
      Close();
    }
  }

  void WriteResponse(HttpResponse response) {
    server_.protection->Decorate(response_context_, response);
    auto res = std::make_shared<http::response<http::string_body>>();
    res->version(version_);
    res->result(static_cast<unsigned>(response.status));
    res->reason(transcode::ReasonPhrase(response.status));
    for (auto& [name, value] : response.headers) res->insert(name, value);
    res->body() = std::move(response.body);
    const bool keep = keep_alive_ && !response.close && !server_.draining;
    res->keep_alive(keep);
    res->prepare_payload();
    // An unread request body forces a lingering close.
    const bool unread = !parser_->is_done();
    stream_.expires_after(server_.options.idle_timeout);
    http::async_write(stream_, *res,
                      [self = shared_from_this(), res, keep, unread](beast::error_code ec,
                                                                     std::size_t) {
                        if (ec) return self->Close();
                        if (!keep) return self->CloseAfterResponse(unread);
                        self->ReadNext();
                      });
  }

  // Half-closes, then discards what the client still sends (briefly), so an
  // unread body does not turn into a reset that destroys the response.
  void CloseAfterResponse(bool drain) {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    if (!drain || ec) return Close();
    stream_.expires_after(std::chrono::seconds(2));
    Drain();
  }

  void Drain() {
    stream_.async_read_some(net::buffer(discard_),
                            [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                              self->drained_ += n;
                              if (ec || self->drained_ > (8u << 20)) return self->Close();
                              self->Drain();
                            });
  }

  void Close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.close();
  }

  beast::tcp_stream stream_;
  Gateway::Impl& server_;
  const Protection::Admission admission_;
  ResponseContext response_context_;  // of the request being answered
  std::string remote_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::array<char, 16384> discard_{};
  std::size_t drained_ = 0;
  bool first_ = true;
  bool busy_ = false;  // between a request's first header byte and its response
  bool keep_alive_ = false;
  unsigned version_ = 11;
  // Client watching and streamed responses; all on the strand.
  bool waiting_ = false;   // a request is with the handler, its response not yet written
  bool watching_ = false;  // a read watching the client is posted
  bool gone_ = false;      // the client closed the connection (or it failed)
  std::function<void()> on_gone_;
  std::optional<HttpResponse> pending_;  // ready while watching_
  bool streaming_ = false;
  bool writing_ = false;
  bool end_requested_ = false;
  bool ended_ = false;
  std::optional<std::pair<std::string, Written>> queued_;
  std::string keepalive_;
  std::chrono::milliseconds keepalive_every_{15000};
  std::chrono::steady_clock::time_point last_write_;
  std::optional<net::steady_timer> keepalive_timer_;
};

// Runs the io_context until it is stopped. An exception escaping a handler
// is a bug: it is logged and the thread keeps serving.
void RunIo(net::io_context& ioc) {
  for (;;) {
    try {
      ioc.run();
      return;
    } catch (const std::exception& e) {
      log::Error("unhandled exception in an I/O handler", {{"error", e.what()}});
    } catch (...) {
      log::Error("unhandled exception in an I/O handler", {{"error", "unknown"}});
    }
  }
}

void Gateway::Impl::Accept() {
  acceptor.async_accept(net::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted || !acceptor.is_open()) return;
    if (ec) {
      // E.g. out of file descriptors: back off instead of spinning.
      log::Warn("accept failed", {{"error", ec.message()}});
      auto timer = std::make_shared<net::steady_timer>(acceptor.get_executor(),
                                                       std::chrono::milliseconds(50));
      timer->async_wait([this, timer](beast::error_code) { Accept(); });
      return;
    }
    if (draining) return;
    const auto admission = protection->AdmitConnection();
    if (admission == Protection::Admission::kRefuse) {
      beast::error_code ignored;
      socket.close(ignored);
      return Accept();
    }
    auto session = std::make_shared<Session>(std::move(socket), *this, admission);
    {
      std::lock_guard lock(sessions_mu);
      sessions.emplace(session.get(), session);
    }
    session->Start();
    Accept();
  });
}

Gateway::Gateway(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Gateway::~Gateway() { Shutdown(std::chrono::milliseconds(0)); }

Result<std::unique_ptr<Gateway>> Gateway::Create(GatewayOptions options,
                                                 std::shared_ptr<auth::KeySet> keys,
                                                 std::function<void()> refresh_keys) {
  auto routes = RouteStore::Create(options);
  if (!routes.ok()) return std::move(routes).error();

  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->handler = std::make_unique<RequestHandler>(options, std::move(routes).value(),
                                                   std::move(keys), std::move(refresh_keys));
  auto protection = Protection::Create(options, *impl->handler);
  if (!protection.ok()) return std::move(protection).error();
  impl->protection = std::move(protection).value();
  return std::unique_ptr<Gateway>(new Gateway(std::move(impl)));
}

Status Gateway::Start() {
  Impl& s = *impl_;
  beast::error_code ec;
  tcp::resolver resolver(s.ioc);
  const auto endpoints = resolver.resolve(s.options.host.empty() ? "0.0.0.0" : s.options.host,
                                          std::to_string(s.options.port),
                                          tcp::resolver::passive, ec);
  if (ec || endpoints.empty()) {
    return Error::Unavailable("cannot resolve " + s.options.host + ": " + ec.message());
  }
  const tcp::endpoint endpoint = endpoints.begin()->endpoint();
  s.acceptor.open(endpoint.protocol(), ec);
  if (!ec) s.acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) s.acceptor.bind(endpoint, ec);
  if (!ec) s.acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return Error::Unavailable("cannot listen on " + s.options.host + ":" +
                              std::to_string(s.options.port) + ": " + ec.message());
  }
  s.port = s.acceptor.local_endpoint().port();
  s.Accept();
  s.work.emplace(s.ioc.get_executor());
  const int n = std::max(1, s.options.threads);
  for (int i = 0; i < n; ++i) s.threads.emplace_back([&s] { RunIo(s.ioc); });
  return {};
}

std::uint16_t Gateway::port() const { return impl_->port; }

void Gateway::Shutdown(std::chrono::milliseconds grace) {
  Impl& s = *impl_;
  {
    std::lock_guard lock(s.stop_mu);
    if (s.stopped) return;
    s.stopped = true;
  }
  if (s.threads.empty()) return;
  s.draining = true;
  // No backend call starts from here on: every call is one this function
  // can cancel and wait for.
  s.handler->StopCalls();
  // Streams never finish by themselves: end them now (each with a final
  // error event) rather than after the grace period.
  s.handler->CancelStreams();
  // Closed on its strand, and waited for: once done, every accepted
  // connection is registered (or was dropped), and none arrives any more.
  std::promise<void> acceptor_closed;
  net::post(s.acceptor.get_executor(), [&s, &acceptor_closed] {
    beast::error_code ec;
    s.acceptor.close(ec);
    acceptor_closed.set_value();
  });
  acceptor_closed.get_future().wait();

  auto each_session = [&s](auto fn) {
    // Collected under the lock, used outside it: dropping the last reference
    // runs ~Session, which takes the lock.
    std::vector<std::shared_ptr<Session>> live;
    {
      std::lock_guard lock(s.sessions_mu);
      for (auto& [raw, weak] : s.sessions) {
        if (auto session = weak.lock()) live.push_back(std::move(session));
      }
    }
    for (auto& session : live) fn(*session);
  };
  auto wait_sessions = [&s](std::chrono::milliseconds d) {
    std::unique_lock lock(s.sessions_mu);
    s.sessions_cv.wait_for(lock, d, [&s] { return s.sessions.empty(); });
  };
  each_session([](Session& session) { session.CloseIfIdle(); });
  wait_sessions(grace);
  // Whatever is still waiting on a backend gets CANCELLED (answered 499);
  // the io threads still run, so those answers get written.
  s.handler->CancelCalls();
  if (s.handler->WaitForCalls(std::chrono::seconds(2))) wait_sessions(std::chrono::seconds(1));
  each_session([](Session& session) { session.ForceClose(); });
  wait_sessions(std::chrono::seconds(1));

  s.work.reset();
  s.ioc.stop();
  for (auto& t : s.threads) t.join();
  s.threads.clear();
  // A completion may still be on its way (gRPC runs it after TryCancel, but
  // not necessarily by now). It posts to a strand of the io_context, which
  // therefore lives until the last one has run; what it posts is destroyed,
  // not run, with the io_context.
  s.handler->CancelCalls();
  s.handler->WaitForCalls(std::nullopt);
}

std::vector<admin::Check> Gateway::CheckUpstreams(std::chrono::milliseconds timeout) const {
  // Runs on the admin server's thread about once a second: a good place to
  // close the channels of routings that reloads replaced.
  impl_->handler->routes().ReleaseRetired();
  return impl_->handler->routes().Get()->upstreams->Check(timeout);
}

Status Gateway::ReloadRoutes() {
  RequestHandler& handler = *impl_->handler;
  if (auto st = handler.routes().Reload(); !st.ok()) return st;
  // /openapi.json follows the table in force.
  handler.builtin_routes().SetRoutes(*handler.routes().Get()->table);
  return {};
}

std::shared_ptr<const transcode::RouteTable> Gateway::routes() const {
  return impl_->handler->routes().Get()->table;
}

}  // namespace portico::gateway
