#pragma once
// One request's state across its backend call(s), shared by handler.cc and
// stream_call.cc. Internal to the gateway.

#include <grpcpp/client_context.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/status.h>

#include <chrono>
#include <memory>
#include <string>

#include "handler.h"
#include "routing.h"
#include "portico/log/log.h"

namespace portico::gateway {

struct RequestHandler::Exchange {
  HttpRequest request;
  std::string request_id;
  TraceContext trace;
  std::string method_label;
  std::string route_label = "unmatched";
  std::string path;
  const transcode::Route* route = nullptr;  // owned by routing->table
  // The routing the request was matched with, held until it is answered
  // (a reload meanwhile does not free its route, messages or channel).
  std::shared_ptr<const Routing> routing;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point call_start, call_end;  // of the backend call

  // Forwarded instead of the client's Authorization (the access token a
  // personal access token was exchanged for).
  std::string authorization;
  // The verified token's subject, for the access log ("" if none).
  std::string user_id;
  // The Introspect call for a personal access token, if one was made.
  std::unique_ptr<grpc::ClientContext> intro_ctx;
  grpc::ByteBuffer intro_request;
  grpc::ByteBuffer intro_response;

  // The connection the request came on (null when the HTTP layer offers
  // none): client-gone notice, streamed responses.
  std::shared_ptr<ClientConnection> conn;
  bool streaming = false;  // a server-streaming call (CancelStreams ends it)

  grpc::ClientContext ctx;
  grpc::ByteBuffer request_buffer;
  grpc::ByteBuffer response_buffer;
  grpc::Status status;

  log::Context LogContext() const { return {request_id, trace.trace_id, trace.span_id}; }
};

}  // namespace portico::gateway
