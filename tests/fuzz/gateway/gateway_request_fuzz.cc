// The gateway's request path up to the backend call, on hostile bytes, with
// no network: the bytes a client sends on one connection go through Beast's
// request_parser with the gateway's header and body limits (as
// services/gateway/src/gateway.cc reads them), then through what
// RequestHandler::Route does before it calls gRPC (handler.cc): split the
// target, match the built-in services' routes, check the media type, build
// the protobuf request from path, query and JSON body. Up to a few pipelined
// requests per input, each with a fresh parser, as on a keep-alive
// connection. Token checks are left to jwt_fuzz.
//
// Invariants checked (a violation aborts, which the fuzzer reports):
// - every answer the gateway would give itself renders as valid problem+json;
// - a request that transcodes serializes, and the backend can parse the
//   bytes back into the request type (what the gRPC server will do).
#include <google/protobuf/message.h>

#include <boost/asio/buffer.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/json/parse.hpp>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "handler.h"
#include "http_types.h"
#include "portico/gateway/gateway.h"
#include "portico/transcode/problem.h"
#include "portico/transcode/route_table.h"
#include "portico/transcode/transcoder.h"

namespace {

namespace http = boost::beast::http;
namespace gw = portico::gateway;
namespace tc = portico::transcode;

constexpr int kMaxRequestsPerInput = 4;

const gw::GatewayOptions& Options() {
  static const gw::GatewayOptions options;
  return options;
}

const tc::RouteTable& Table() {
  static const auto* table = [] {
    auto t = tc::RouteTable::Build(Options().services);
    if (!t.ok()) std::abort();
    return new tc::RouteTable(std::move(t).value());
  }();
  return *table;
}

// An answer the gateway gives itself must be a valid JSON document.
void CheckProblem(int status, std::string_view code, std::string detail) {
  const auto json = tc::RenderProblem(tc::MakeProblem(status, code, std::move(detail)), "f");
  boost::system::error_code ec;
  (void)boost::json::parse(json, ec);
  if (ec) std::abort();
}

void CheckProblem(const portico::Error& error) {
  const auto json = tc::RenderProblem(tc::ProblemFromError(error), "f");
  boost::system::error_code ec;
  (void)boost::json::parse(json, ec);
  if (ec) std::abort();
}

// Session::Convert in gateway.cc: header names lower-cased, values as sent.
gw::HttpRequest Convert(http::request<http::string_body>& req) {
  gw::HttpRequest r;
  r.method = std::string(req.method_string());
  r.target = std::string(req.target());
  for (const auto& field : req) {
    std::string name(field.name_string());
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    r.headers.emplace_back(std::move(name), std::string(field.value()));
  }
  r.body = std::move(req.body());
  r.client_address = "127.0.0.1";
  return r;
}

// RequestHandler::Route up to the backend call, without the token check.
void Route(const gw::HttpRequest& request) {
  (void)gw::IsSaneRequestId(request.Header("x-request-id"));
  (void)gw::ContinueTrace(request.Header("traceparent"));
  std::string path, query;
  gw::SplitTarget(request.target, &path, &query);

  auto match = Table().Match(request.method, path);
  switch (match.kind) {
    case tc::MatchResult::Kind::kFound:
      break;
    case tc::MatchResult::Kind::kNotFound:
      return CheckProblem(404, "NOT_FOUND", "no such endpoint: " + path);
    case tc::MatchResult::Kind::kBadPath:
      return CheckProblem(400, "INVALID_ARGUMENT", "malformed percent-encoding in the path");
    case tc::MatchResult::Kind::kMethodNotAllowed:
      if (match.allowed.empty()) std::abort();
      return CheckProblem(405, "UNIMPLEMENTED", "method " + request.method + " is not allowed");
  }
  const tc::Route& route = *match.route;
  const bool blank = request.body.find_first_not_of(" \t\r\n") == std::string::npos;
  if (!blank && !gw::IsJsonMediaType(request.Header("content-type"))) {
    return CheckProblem(415, "INVALID_ARGUMENT", "the request body must be JSON");
  }
  if (route.server_streaming) return;

  auto message = tc::BuildRequest(route, match.vars, query, request.body);
  if (!message.ok()) return CheckProblem(message.error());
  std::string bytes;
  if (!(*message)->SerializeToString(&bytes)) std::abort();
  std::unique_ptr<google::protobuf::Message> parsed((*message)->New());
  if (!parsed->ParseFromString(bytes)) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  for (int i = 0; i < kMaxRequestsPerInput && !rest.empty(); ++i) {
    // gateway.cc: a fresh parser per request, with the configured limits.
    http::request_parser<http::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(Options().max_header_size));
    parser.body_limit(Options().max_body_size);
    boost::beast::error_code ec;
    // Beast's read loop: put what has arrived, read more on need_more, and
    // at the end of the bytes the client has closed the connection.
    while (!parser.is_done()) {
      if (rest.empty()) {
        parser.put_eof(ec);
        if (!ec && !parser.is_done()) std::abort();
        break;
      }
      const std::size_t used = parser.put(boost::asio::buffer(rest.data(), rest.size()), ec);
      rest.remove_prefix(used);
      if (ec == http::error::need_more) {
        ec = {};
        if (used == 0) rest = {};  // all of it is not enough: nothing more comes
        continue;
      }
      if (ec) break;
    }
    if (ec == http::error::header_limit) {
      CheckProblem(431, "RESOURCE_EXHAUSTED", "the request header is too large");
      return 0;
    }
    if (ec == http::error::body_limit) {
      CheckProblem(413, "RESOURCE_EXHAUSTED", "the request body is too large");
      return 0;
    }
    if (ec) return 0;  // malformed (400) or cut short (the client went away)
    auto& req = parser.get();
    const bool keep_alive = req.keep_alive();
    Route(Convert(req));
    if (!keep_alive) return 0;
  }
  return 0;
}
