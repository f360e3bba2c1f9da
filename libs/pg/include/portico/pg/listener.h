#pragma once
// PostgreSQL LISTEN/NOTIFY on a dedicated connection (not from the pool: a
// listening connection stays open and idle for as long as it listens).

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "portico/core/result.h"

namespace portico::pg {

class Connection;

struct Notification {
  std::string channel;
  std::string payload;
};

/// One connection that LISTENs on some channels. Wait blocks the calling
/// thread (one thread owns the Listener); Interrupt may be called from any
/// thread. Notifications are delivered by PostgreSQL after the notifying
/// transaction commits, and only while the connection is up: after an error
/// the owner opens a new Listener and must assume it missed some.
class Listener {
 public:
  /// Connects (bounded by `connect_timeout`) and runs LISTEN for every
  /// channel. kUnavailable if the database cannot be reached;
  /// kInvalidArgument for a channel name that is not a plain identifier.
  static Result<std::unique_ptr<Listener>> Open(const std::string& url,
                                                const std::vector<std::string>& channels,
                                                std::chrono::milliseconds connect_timeout);
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  /// Waits up to `timeout` for notifications and returns those that arrived
  /// (empty on timeout or after Interrupt). kUnavailable once the connection
  /// is lost. Blocks; not to be called from two threads at once.
  Result<std::vector<Notification>> Wait(std::chrono::milliseconds timeout);

  /// Makes a Wait in progress (or the next one) return at once. Thread-safe.
  void Interrupt();

 private:
  Listener(std::unique_ptr<Connection> conn, int wake_fd);
  std::unique_ptr<Connection> conn_;
  int wake_fd_;  // eventfd
};

}  // namespace portico::pg
