// Route matching and request building for the real route table, on hostile
// input. Input: "<METHOD> <target>\n<body>".
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <boost/json/parse.hpp>
#include <google/protobuf/message.h>

#include "portico/transcode/problem.h"
#include "portico/transcode/route_table.h"
#include "portico/transcode/transcoder.h"

namespace {

const portico::transcode::RouteTable& Table() {
  static const auto* table = [] {
    auto t = portico::transcode::RouteTable::Build(
        {"portico.users.v1.AuthService", "portico.users.v1.UserService",
         "portico.data.v1.DataService"});
    if (!t.ok()) std::abort();
    return new portico::transcode::RouteTable(std::move(t).value());
  }();
  return *table;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  const auto nl = in.find('\n');
  const std::string_view line = in.substr(0, nl);
  const std::string_view body = nl == std::string_view::npos ? std::string_view() : in.substr(nl + 1);
  const auto sp = line.find(' ');
  const std::string_view method = line.substr(0, sp);
  const std::string_view target = sp == std::string_view::npos ? std::string_view() : line.substr(sp + 1);
  const auto q = target.find('?');
  const std::string_view path = target.substr(0, q);
  const std::string_view query = q == std::string_view::npos ? std::string_view() : target.substr(q + 1);

  auto match = Table().Match(method, path);
  if (match.kind != portico::transcode::MatchResult::Kind::kFound) return 0;
  auto msg = portico::transcode::BuildRequest(*match.route, match.vars, query, body);
  if (!msg.ok()) {
    // Every rejection must render as a valid problem document.
    const auto json = portico::transcode::RenderProblem(
        portico::transcode::ProblemFromError(msg.error()), "f");
    boost::system::error_code ec;
    (void)boost::json::parse(json, ec);
    if (ec) std::abort();
    return 0;
  }
  std::string bytes;
  if (!(*msg)->SerializeToString(&bytes)) std::abort();
  auto response = portico::transcode::NewResponse(*match.route);
  (void)portico::transcode::RenderResponse(*match.route, *response);
  return 0;
}
