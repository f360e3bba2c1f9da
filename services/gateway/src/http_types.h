#pragma once
// The gateway's view of one HTTP exchange, free of Beast so that request
// handling compiles without it.

#include <chrono>
#include <functional>
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

/// What the HTTP layer offers the handler beyond one request's bytes: a
/// way to learn that the client went away, and a response sent in pieces
/// (chunked transfer coding) for server-streaming routes. Implemented by the
/// connection; every method must be called on the connection's strand.
class ClientConnection {
 public:
  virtual ~ClientConnection() = default;
  using Written = std::function<void(bool ok)>;  // ok = false: the client is gone

  /// `cancel` runs once, on the strand, if the client closes the connection
  /// (or it fails) before the current request's response is complete. It
  /// replaces an earlier one and is dropped when the response is complete.
  virtual void OnClientGone(std::function<void()> cancel) = 0;

  /// Starts a streamed response: sends the status line and `head`'s headers
  /// (its body is ignored), then `written`. While the stream is idle for
  /// `keepalive_every`, the connection sends `keepalive` as a chunk by
  /// itself (nothing if it is empty).
  virtual void BeginStream(const HttpResponse& head, std::string keepalive,
                           std::chrono::milliseconds keepalive_every, Written written) = 0;
  /// Sends one chunk; the next may be sent only after `written` ran.
  virtual void WriteChunk(std::string data, Written written) = 0;
  /// Ends the stream (the last chunk) and closes the connection.
  virtual void EndStream() = 0;
};

}  // namespace portico::gateway
