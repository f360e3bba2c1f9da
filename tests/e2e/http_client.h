#pragma once
// A minimal blocking HTTP/1.1 client for tests, on Beast (kept out of the
// test files so only one translation unit pays for Beast).

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace portico::testing {

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  std::string Header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
};

/// Sends one request on a new connection to 127.0.0.1:`port` and reads the
/// response. `headers` are added as given. Throws on connection errors.
HttpResponse HttpRequest(std::uint16_t port, const std::string& method, const std::string& target,
                         const std::string& body = "",
                         const std::vector<std::pair<std::string, std::string>>& headers = {});

/// One keep-alive HTTP/1.1 connection to 127.0.0.1:`port` (for load
/// benchmarks): requests go one after another on the same socket, with
/// headers as HttpRequest sends them. Not thread-safe. Throws on connection
/// errors, including when the server has closed the connection.
class HttpConnection {
 public:
  explicit HttpConnection(std::uint16_t port);
  ~HttpConnection();
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  HttpResponse Request(const std::string& method, const std::string& target,
                       const std::string& body = "",
                       const std::vector<std::pair<std::string, std::string>>& headers = {});

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// True if GET `target` answers 200 within `timeout_ms` (polls).
bool WaitForHttp200(std::uint16_t port, const std::string& target, int timeout_ms);

}  // namespace portico::testing
