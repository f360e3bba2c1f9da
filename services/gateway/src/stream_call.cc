// Server-streaming routes: one gRPC call through the generic stub's callback
// API (the one request written with WritesDone, then reads), relayed as
// Server-Sent Events (Accept: text/event-stream) or newline-delimited JSON
// over a chunked HTTP/1.1 response.
//
// Threads: gRPC runs the reactor's callbacks on its own threads; they only
// post to the connection's strand. Everything that touches the response
// runs there. Backpressure: the next message is read only once the previous
// one's chunk is written, so a slow client slows the backend stream (gRPC
// flow control) instead of growing a buffer.
//
// Lifetime: the reactor holds itself (self_) from StartCall until OnDone,
// which hands that reference to the strand, so no gRPC callback outlives
// the call and OnDone's unregistering is the last use of the handler (the
// same rule as unary calls, see CallBackend).
#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <grpcpp/client_context.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/client_callback.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <cctype>
#include <stdexcept>

#include "exchange.h"
#include "portico/core/strings.h"
#include "handler.h"
#include "portico/admin/metrics.h"
#include "portico/log/log.h"
#include "portico/transcode/problem.h"
#include "portico/transcode/transcoder.h"

namespace portico::gateway {
namespace {

namespace pb = google::protobuf;

struct StreamMetrics {
  prometheus::Gauge& open;
  prometheus::Counter& messages;
  static StreamMetrics& Get() {
    static StreamMetrics m{prometheus::BuildGauge()
                               .Name("portico_http_streams_open")
                               .Help("Streamed responses (server-streaming routes) open.")
                               .Register(*admin::Registry())
                               .Add({}),
                           prometheus::BuildCounter()
                               .Name("portico_http_stream_messages_total")
                               .Help("Messages sent on streamed responses.")
                               .Register(*admin::Registry())
                               .Add({})};
    return m;
  }
};

bool AcceptsEventStream(std::string_view accept) {
  return AsciiLower(accept).find("text/event-stream") != std::string::npos;
}

// Last-Event-ID fills the route's resume field unless the query sets it
// (by its proto or JSON name). A bad value then fails like a bad query
// parameter would (400 naming the field).
Result<std::string> WithResume(const transcode::Route& route, std::string query,
                               std::string_view last_event_id) {
  if (route.stream_resume.empty() || last_event_id.empty()) return query;
  auto params = transcode::ParseQuery(query);
  if (!params.ok()) return std::move(params).error();
  const pb::FieldDescriptor* f = route.rpc->input_type()->FindFieldByName(route.stream_resume);
  for (const auto& [name, value] : *params) {
    if (name == route.stream_resume || (f != nullptr && name == f->json_name())) return query;
  }
  if (!query.empty()) query += '&';
  query += route.stream_resume + "=" + PercentEncode(last_event_id);
  return query;
}

// The SSE id of a message: its stream_event_id field as text, "" if none.
std::string EventId(const transcode::Route& route, const pb::Message& m) {
  if (route.stream_event_id.empty()) return {};
  const pb::FieldDescriptor* f = m.GetDescriptor()->FindFieldByName(route.stream_event_id);
  if (f == nullptr || f->is_repeated()) return {};
  const pb::Reflection* r = m.GetReflection();
  switch (f->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_INT32:
      return std::to_string(r->GetInt32(m, f));
    case pb::FieldDescriptor::CPPTYPE_INT64:
      return std::to_string(r->GetInt64(m, f));
    case pb::FieldDescriptor::CPPTYPE_UINT32:
      return std::to_string(r->GetUInt32(m, f));
    case pb::FieldDescriptor::CPPTYPE_UINT64:
      return std::to_string(r->GetUInt64(m, f));
    case pb::FieldDescriptor::CPPTYPE_STRING: {
      std::string v = r->GetString(m, f);
      // An id with a line break would end the field early.
      if (v.find_first_of("\r\n") != std::string::npos) return {};
      return v;
    }
    default:
      return {};
  }
}

// `data:` lines for a JSON text (compact JSON has no line breaks, but a
// stray one must not end the event).
std::string DataLines(std::string_view json) {
  std::string out = "data: ";
  for (char c : json) {
    if (c == '\n') {
      out += "\ndata: ";
    } else if (c != '\r') {
      out += c;
    }
  }
  out += '\n';
  return out;
}

std::string BufferToString(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  std::string out;
  if (!buffer.Dump(&slices).ok()) return out;
  for (const auto& s : slices) out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

}  // namespace

void RequestHandler::RegisterStreamMetrics() { StreamMetrics::Get(); }

class StreamCall final : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>,
                         public std::enable_shared_from_this<StreamCall> {
 public:
  using Exchange = RequestHandler::Exchange;

  StreamCall(RequestHandler& handler, std::shared_ptr<Exchange> ex, RequestHandler::Post post,
             RequestHandler::Done done, bool sse, std::function<void()> unregister)
      : handler_(handler),
        ex_(std::move(ex)),
        post_(std::move(post)),
        done_(std::move(done)),
        sse_(sse),
        unregister_(std::move(unregister)) {}

  void Start(grpc::GenericStub* stub) {
    stub->PrepareBidiStreamingCall(&ex_->ctx, ex_->route->rpc_path, grpc::StubOptions(), this);
    self_ = shared_from_this();
    StartWriteLast(&ex_->request_buffer, grpc::WriteOptions());
    StartRead(&read_buffer_);
    // Reads are restarted from the strand, outside any reactor callback:
    // the hold keeps OnDone from running before the last of them.
    AddHold();
    ex_->call_start = std::chrono::steady_clock::now();
    StartCall();
  }

  // gRPC threads.
  void OnReadInitialMetadataDone(bool ok) override {
    // A service says the stream is open (the request passed its checks) with
    // `x-stream-open` in its initial metadata; the HTTP response starts then,
    // not only with the first message, which may be a long way off.
    if (!ok) return;
    const auto& md = ex_->ctx.GetServerInitialMetadata();
    if (md.find("x-stream-open") == md.end()) return;
    Post([this] { Begin(nullptr); });
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      RemoveHold();  // the stream is over; OnDone follows
      return;
    }
    std::string bytes = BufferToString(read_buffer_);
    Post([this, bytes = std::move(bytes)]() mutable { Relay(std::move(bytes)); });
  }

  void OnDone(const grpc::Status& status) override {
    auto self = std::move(self_);
    auto unregister = std::move(unregister_);
    try {
      post_([self, status] { self->End(status); });
    } catch (const std::exception& e) {
      log::ScopedContext scope(ex_->LogContext());
      log::Error("cannot hand a stream's end to its connection", {{"error", e.what()}});
    }
    // The last use of the handler: Shutdown may destroy it once the entry
    // is gone. `self` may be the last reference (if the post failed).
    unregister();
  }

 private:
  void Post(std::function<void()> fn) {
    try {
      post_([self = shared_from_this(), fn = std::move(fn)] { fn(); });
    } catch (const std::exception& e) {
      log::ScopedContext scope(ex_->LogContext());
      log::Error("cannot hand a stream message to its connection", {{"error", e.what()}});
      ex_->ctx.TryCancel();
      RemoveHold();
    }
  }

  // Strand: one message becomes one event/line; the next read starts once
  // it is written.
  void Relay(std::string bytes) {
    const transcode::Route& route = *ex_->route;
    std::string chunk;
    try {
      auto message = transcode::NewResponse(route);
      if (!message->ParseFromString(bytes)) throw std::runtime_error("unparsable stream message");
      auto body = transcode::RenderResponse(route, *message);
      if (!body.ok()) throw std::runtime_error(body.error().message);
      if (sse_) {
        if (auto id = EventId(route, *message); !id.empty()) chunk = "id: " + id + "\n";
        chunk += DataLines(body->json) + "\n";
      } else {
        chunk = body->json + "\n";
      }
    } catch (const std::exception& e) {
      log::ScopedContext scope(ex_->LogContext());
      log::Error("cannot relay a stream message", {{"rpc", route.rpc_path}, {"error", e.what()}});
      failure_ = transcode::ProblemFromError(Error::Internal("bad stream message"));
      ex_->ctx.TryCancel();
      RemoveHold();
      return;
    }
    auto written = [self = shared_from_this()](bool ok) {
      if (!ok) {
        self->client_gone_ = true;
        self->ex_->ctx.TryCancel();
        self->RemoveHold();
        return;
      }
      StreamMetrics::Get().messages.Increment();
      self->StartRead(&self->read_buffer_);
    };
    if (!begun_) {
      Begin([self = shared_from_this(), chunk = std::move(chunk),
             written = std::move(written)](bool ok) mutable {
        if (!ok) return written(false);
        self->ex_->conn->WriteChunk(std::move(chunk), std::move(written));
      });
      return;
    }
    ex_->conn->WriteChunk(std::move(chunk), std::move(written));
  }

  // Strand: sends the response head (once), then `then` (if any).
  void Begin(ClientConnection::Written then) {
    if (begun_) return;
    {
      begun_ = true;
      StreamMetrics::Get().open.Increment();
      HttpResponse head;
      head.status = 200;
      head.headers.emplace_back("Content-Type",
                                sse_ ? "text/event-stream" : "application/x-ndjson");
      head.headers.emplace_back("Cache-Control", "no-store");
      head.headers.emplace_back("X-Request-Id", ex_->request_id);
      head.headers.emplace_back("X-Content-Type-Options", "nosniff");
      head.headers.emplace_back("X-Accel-Buffering", "no");  // proxies: do not buffer
      ex_->conn->BeginStream(head, sse_ ? ": keep-alive\n\n" : "",
                             handler_.options_.stream_keepalive,
                             [self = shared_from_this(), then = std::move(then)](bool ok) {
                               if (!ok) self->client_gone_ = true;
                               if (then) then(ok);
                             });
    }
  }

  // Strand: the call is over.
  void End(const grpc::Status& status) {
    Exchange& ex = *ex_;
    handler_.CountUpstream(ex, status.error_code());
    transcode::Problem problem;
    bool clean = status.ok();
    if (failure_) {
      problem = *failure_;
      clean = false;
    } else if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED &&
               std::chrono::steady_clock::now() - ex.start >=
                   handler_.options_.stream_max_duration) {
      clean = true;  // the configured maximum: the client reconnects from its last id
    } else if (status.error_code() == grpc::StatusCode::CANCELLED && handler_.Stopped()) {
      problem = transcode::MakeProblem(503, "UNAVAILABLE", "the gateway is shutting down");
      problem.retry_after_seconds = 1;
    } else if (!status.ok()) {
      problem = transcode::ProblemFromRpcStatus(status.error_code(), status.error_message(),
                                                status.error_details());
    }
    if (!clean && problem.status >= 500 && !client_gone_) {
      log::ScopedContext scope(ex.LogContext());
      log::Warn(
          "backend stream failed",
          {{"rpc", ex.route->rpc_path}, {"code", problem.code}, {"error", status.error_message()}});
    }
    if (!begun_) {
      // Nothing sent yet: an ordinary response.
      HttpResponse r;
      if (clean) {
        r.status = 200;
        r.headers.emplace_back("Content-Type", sse_ ? "text/event-stream" : "application/x-ndjson");
      } else {
        r = handler_.ProblemResponse(ex, problem);
      }
      handler_.Deliver(ex, std::move(r), done_);
      return;
    }
    StreamMetrics::Get().open.Decrement();
    // The access log and metrics record the stream with the status it began with.
    HttpResponse record;
    record.status = 200;
    handler_.Finish(ex, record);
    if (client_gone_) return ex.conn->EndStream();
    if (clean) return ex.conn->EndStream();
    const std::string json = transcode::RenderProblem(problem, ex.request_id);
    std::string last =
        sse_ ? "event: error\n" + DataLines(json) + "\n" : "{\"error\":" + json + "}\n";
    ex.conn->WriteChunk(std::move(last),
                        [self = shared_from_this()](bool) { self->ex_->conn->EndStream(); });
  }

  RequestHandler& handler_;
  std::shared_ptr<Exchange> ex_;
  RequestHandler::Post post_;
  RequestHandler::Done done_;  // used only if the stream fails before its first message
  const bool sse_;
  std::function<void()> unregister_;
  std::shared_ptr<StreamCall> self_;  // from Start until OnDone
  grpc::ByteBuffer read_buffer_;      // one read at a time
  // Strand only:
  bool begun_ = false;
  bool client_gone_ = false;
  std::optional<transcode::Problem> failure_;
};

bool RequestHandler::StartStream(std::shared_ptr<Exchange> ex, const transcode::PathVars& vars,
                                 std::string query, const Post& post, Done& done) {
  const transcode::Route& route = *ex->route;
  auto problem = [&](const transcode::Problem& p) {
    Deliver(*ex, ProblemResponse(*ex, p), done);
    return true;
  };
  auto resumed = WithResume(route, std::move(query), ex->request.Header("last-event-id"));
  if (!resumed.ok()) return problem(transcode::ProblemFromError(resumed.error()));
  auto message = transcode::BuildRequest(route, vars, *resumed, ex->request.body);
  if (!message.ok()) return problem(transcode::ProblemFromError(message.error()));
  std::string bytes;
  if (!(*message)->SerializeToString(&bytes)) {
    return problem(transcode::ProblemFromError(Error::Internal("serialize request")));
  }
  grpc::Slice slice(std::move(bytes));
  ex->request_buffer = grpc::ByteBuffer(&slice, 1);
  ex->streaming = true;
  // No request deadline: a stream lives up to the configured maximum.
  ex->ctx.set_deadline(std::chrono::system_clock::now() + options_.stream_max_duration);
  AddCallMetadata(*ex);
  grpc::GenericStub* stub = ex->routing->upstreams->StubFor(route.service);
  if (stub == nullptr) throw std::logic_error("no upstream for routed service " + route.service);

  Exchange* raw = ex.get();
  {
    std::lock_guard lock(calls_mu_);
    if (calls_stopped_) return false;
    calls_.emplace(raw, ex);
  }
  auto unregister = [this, raw] {
    std::lock_guard lock(calls_mu_);
    calls_.erase(raw);
    calls_cv_.notify_all();
  };
  std::shared_ptr<StreamCall> call;
  try {
    call =
        std::make_shared<StreamCall>(*this, ex, post, std::move(done),
                                     AcceptsEventStream(ex->request.Header("accept")), unregister);
  } catch (...) {
    unregister();
    throw;
  }
  call->Start(stub);  // from here on OnDone unregisters
  CancelOnClientGone(ex);
  return true;
}

}  // namespace portico::gateway
