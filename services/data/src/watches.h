#pragma once
// Live change feeds (DataService/WatchChanges): the backlog after `since`,
// then each change as it commits, in seq order, never skipping or repeating
// one. Every read is Items::WatchPage (the ListChanges query), so the feed's
// no-skip guarantee (items.cc) holds for watches too. Wake-ups come from
// PostgreSQL NOTIFY (one listening connection per process, fanned out to
// the watchers of the notified owner) and from a periodic re-poll, so a lost
// notification delays a change but never loses it.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "portico/core/deadline.h"
#include "portico/core/result.h"
#include "portico/data/v1/data.pb.h"

namespace prometheus {
class Gauge;
}
namespace portico::pg {
class Listener;
}

namespace portico::data {

class Items;

struct WatchOptions {
  int max_watches = 16;                           // beyond: kResourceExhausted
  std::chrono::milliseconds poll_interval{5000};  // re-read without a notification
  std::chrono::milliseconds cancel_check{200};    // how often `cancelled` is asked
  int page_size = 500;                            // changes per read of the backlog
};

/// Thread-safe. Start and Stop from the owning thread; Watch from any number
/// of handler threads at once (each blocks for its watch's life).
class Watches {
 public:
  /// `database_url` opens the listening connection (not from the pool).
  Watches(Items& items, std::string database_url, WatchOptions options);
  ~Watches();  // Stop()
  Watches(const Watches&) = delete;
  Watches& operator=(const Watches&) = delete;

  /// Starts the listener thread (it reconnects by itself, waking every
  /// watcher after a reconnect since notifications may have been missed).
  void Start();
  /// Ends every watch (they return kUnavailable "the service is shutting
  /// down") and refuses new ones; stops the listener. Idempotent; returns
  /// once the listener thread has ended (watches end on their own threads
  /// within cancel_check).
  void Stop();

  /// Runs one watch on the calling thread until it ends: calls `on_open`
  /// once the first read succeeded (the request is valid), then `send` for
  /// each change in seq order (false from `send`: the client is gone).
  /// Returns why it ended: the read's error (SINCE_TOO_OLD,
  /// kUnauthenticated once the owner is purged, kInvalidArgument, pool
  /// errors), kResourceExhausted if max_watches are open,
  /// kUnavailable when stopped or the client went away (`send` false or
  /// `cancelled` true), kDeadlineExceeded at `end`. Blocks.
  Status Watch(const std::string& owner, std::string_view collection, std::int64_t since,
               Deadline end, const std::function<bool(const v1::Change&)>& send,
               const std::function<bool()>& cancelled, const std::function<void()>& on_open = {});

  /// Watches open now.
  int open() const;

 private:
  struct Waiter {
    std::uint64_t epoch = 0;  // bumped by each wake-up; guarded by mu_
    std::condition_variable cv;
  };
  void Listen(std::stop_token stop);
  void WakeOwner(const std::string& owner);
  void WakeAll();

  Items& items_;
  std::string database_url_;
  WatchOptions options_;
  prometheus::Gauge& open_gauge_;

  mutable std::mutex mu_;
  std::multimap<std::string, Waiter*> waiters_;  // by owner; guarded by mu_
  int open_ = 0;                                 // guarded by mu_
  bool stopping_ = false;                        // guarded by mu_
  std::jthread listen_thread_;
  std::mutex listener_mu_;
  pg::Listener* listener_ = nullptr;  // the thread's current one, for Stop; guarded by listener_mu_
};

}  // namespace portico::data
