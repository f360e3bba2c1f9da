#pragma once
// The gateway's view of one HTTP exchange, free of Beast so that request
// handling compiles without it.

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace portico::gateway {

struct HttpRequest {
  std::string method;  // as sent, e.g. "GET"
  std::string target;  // origin-form "/path?query" (absolute-form is accepted too)
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-case
  std::string body;
  std::string client_address;  // peer IP

  /// The first value of header `name` (lower-case), or "".
  std::string_view Header(std::string_view name) const {
    for (const auto& [k, v] : headers) {
      if (k == name) return v;
    }
    return {};
  }
};

struct HttpResponse {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;  // empty for 204/304
  /// The connection must be closed after this response (e.g. the request
  /// body was not read).
  bool close = false;
};

}  // namespace portico::gateway
